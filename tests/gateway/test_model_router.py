"""The model router against the fake provider over the OpenAI wire protocol: aliases and
direct names, what observers see, tool calls, models configs and pings (failures:
test_model_router_fallbacks.py; streams: test_model_router_stream.py)."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from pydantic import ValidationError

from agent_runtime.config.builtin_models import builtin_config
from agent_runtime.config.fault_profiles import FaultProfile, RateLimit
from agent_runtime.config.models_file import (
    BreakerPolicy,
    ModelsConfig,
    ModelSpec,
    ProviderConfig,
    RetryPolicy,
    Timeouts,
    UnlistedPrice,
)
from agent_runtime.core.errors import (
    BudgetExceeded,
    DependencyUnavailable,
    ModelNotFound,
)
from agent_runtime.core.types import ChatRequest
from agent_runtime.gateway.breakers import BreakerRegistry
from agent_runtime.gateway.call_observer import CallPlan, CallReport
from agent_runtime.gateway.model_router import ModelRouter
from tests.gateway.router_harness import (
    BASE_URL,
    Recorder,
    ask,
    fake,
    faulty,
    harness,
    provider_settings,
)
from tests.tool_specs import CALCULATOR


def test_resolve_alias_or_listed_model_name_and_refuse_the_rest() -> None:
    router = ModelRouter(provider_settings(), BASE_URL, BreakerRegistry(1, 1.0))
    assert router.resolve("smart") == ["fake-smart", "fake-fallback"]
    assert router.resolve("fake-smart") == ["fake-smart"]
    # Unlisted names are unpriced: passed through, they would dodge the ledger and budgets.
    assert router.config.default_provider is None
    with pytest.raises(ModelNotFound) as refused:
        router.resolve("gpt-direct")
    assert (
        refused.value.code == "model_not_found" and refused.value.details["model"] == "gpt-direct"
    )


def test_pass_through_needs_a_default_price() -> None:
    fake = {"fake": ProviderConfig(kind="fake")}
    with pytest.raises(ValidationError, match="needs a default_price"):
        ModelsConfig(providers=fake, default_provider="fake")


async def test_unknown_name_is_a_404_without_a_default_provider() -> None:
    config = ModelsConfig(
        providers={"fake": ProviderConfig(kind="fake")},
        models={"fake-fast": ModelSpec(provider="fake")},
        aliases={"fast": ["fake-fast"]},
    )
    router = ModelRouter(config, BASE_URL)
    with pytest.raises(ModelNotFound) as raised:
        await router.chat(ask("hi", alias="gpt-5"))
    assert "GET /v1/models" in raised.value.message
    await router.close()


async def test_plain_answer_from_the_primary_and_what_observers_see() -> None:
    async with harness(fake()) as h:
        result = await h.router.chat(ask("hello router", tenant_id="acme"))

    assert result.model == "fake-smart"
    assert result.message.content == "[fake-smart] You said: hello router"
    assert result.message.response_metadata["model_name"] == "fake-smart"
    assert result.message.response_metadata["finish_reason"] == "stop"
    assert result.message.usage_metadata is not None
    assert result.usage.input_tokens == result.message.usage_metadata["input_tokens"] > 0
    assert result.usage.output_tokens == result.message.usage_metadata["output_tokens"] > 0
    assert [(a.model, a.outcome) for a in result.attempts] == [("fake-smart", "ok")]
    assert 0 < result.provider_ms <= result.router_ms
    assert h.hits == {"fake-smart": 1}
    assert h.router.breaker_states() == {"fake-smart": "closed"}

    (plan,) = h.recorder.plans
    assert (plan.alias, plan.stream, plan.request.tenant_id) == ("smart", False, "acme")
    assert [(m.name, m.max_tokens, m.context_window) for m in plan.models] == [
        ("fake-smart", 4096, 128_000),
        ("fake-fallback", 4096, 128_000),
    ]
    assert plan.prompt_tokens > 0
    # The dearest model of the chain, its whole bound: fake-smart at $2.50 / $10.00.
    worst = plan.worst_case_usd(default_max_tokens=1)
    assert worst == (Decimal("2.50") * plan.prompt_tokens + Decimal("10.00") * 4096) / 10**6
    assert h.bodies[0]["max_completion_tokens"] == 4096, "the worst case is a real bound"
    report = h.report
    assert (report.outcome, report.model, report.error) == ("ok", "fake-smart", None)
    assert report.usage == result.usage
    assert (
        report.cost_usd
        == (
            Decimal("2.50") * result.usage.input_tokens
            + Decimal("10.00") * result.usage.output_tokens
        )
        / 10**6
    )
    assert list(report.attempts) == result.attempts


async def test_an_unlisted_name_passes_through_at_the_default_price() -> None:
    listed = builtin_config(provider_settings(), base_url=BASE_URL)
    price = UnlistedPrice(input_per_million_usd=Decimal(1), output_per_million_usd=Decimal(2))
    models = listed.model_copy(update={"default_provider": "provider", "default_price": price})
    async with harness(fake(), models=models) as h:
        result = await h.router.chat(
            ask("hi", alias="custom-model", temperature=0.2, max_tokens=50, stop=["\n"])
        )
    assert result.model == "custom-model"
    assert result.message.content == "[custom-model] You said: hi"
    body = h.bodies[0]
    assert (body["temperature"], body["max_completion_tokens"], body["stop"]) == (0.2, 50, ["\n"])
    assert h.report.price == price.price and h.report.cost_usd is not None
    assert h.report.cost_usd > 0


async def test_tool_call_round_trip() -> None:
    async with harness(fake()) as h:
        question = HumanMessage("what is 2 + 3 * 4?")
        first = await h.router.chat(
            ChatRequest(alias="smart", messages=[question], tools=[CALCULATOR])
        )
        assert first.message.tool_calls
        call = first.message.tool_calls[0]
        assert call["name"] == "calculator"
        assert call["args"] == {"expression": "2 + 3 * 4"}
        assert call["id"]
        assert first.message.usage_metadata is not None

        answer = ToolMessage(content="14", tool_call_id=call["id"])
        second = await h.router.chat(
            ChatRequest(
                alias="smart",
                messages=[question, first.message, answer],
                tools=[CALCULATOR],
                tool_choice="calculator",
            )
        )
    assert isinstance(second.message, AIMessage)
    assert second.message.content == "Tool result: 14"
    assert not second.message.tool_calls
    assert h.bodies[1]["tool_choice"] == {"type": "function", "function": {"name": "calculator"}}


async def test_classification_prompt_answers_one_word() -> None:
    async with harness(fake()) as h:
        result = await h.router.chat(
            ChatRequest(
                alias="smart",
                messages=[SystemMessage("Classify the request."), HumanMessage("fix my python")],
            )
        )
    assert result.message.content == "code"


async def test_an_observer_can_refuse_before_any_provider_call() -> None:
    class Budget(Recorder):
        async def before_call(self, plan: CallPlan) -> object:
            raise BudgetExceeded("budget of tenant acme exhausted")

    first, budget = Recorder(), Budget()
    async with harness(fake()) as h:
        router = ModelRouter(
            provider_settings(),
            BASE_URL,
            h.breakers,
            http_client=h.router._clients["provider"].http,
            observers=[first, budget],
        )
        with pytest.raises(BudgetExceeded):
            await router.chat(ask("hello"))
    assert h.hits == {}
    assert [r.outcome for r in first.reports] == ["refused"]
    assert budget.reports == [], "the refusing observer got no after_call"


async def test_a_failing_after_call_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(Recorder):
        async def after_call(self, plan: CallPlan, report: CallReport, ticket: object) -> None:
            raise RuntimeError("ledger down")

    async with harness(fake()) as h:
        router = ModelRouter(
            provider_settings(),
            BASE_URL,
            http_client=h.router._clients["provider"].http,
            observers=[Broken()],
        )
        with caplog.at_level(logging.ERROR):
            result = await router.chat(ask("hello"))
    assert result.model == "fake-smart"
    assert "call observer Broken failed after a call: RuntimeError" in caplog.text


def config_of(breaker: BreakerPolicy | None = None, **retry: Any) -> ModelsConfig:
    fake_provider = ProviderConfig(
        kind="fake",
        timeouts=Timeouts(request_s=2.0),
        retry=RetryPolicy(**{"max_retries": 0, **retry}),
    )
    return ModelsConfig(
        providers={"fake": fake_provider},
        models={
            "cheap": ModelSpec(provider="fake", model_id="fake-fast"),
            "spare": ModelSpec(provider="fake", model_id="fake-fallback"),
        },
        aliases={"chain": ["cheap", "spare"]},
        breaker=breaker or BreakerPolicy(fail_max=1),
    )


async def test_a_models_config_maps_names_to_provider_ids_and_its_breaker_policy() -> None:
    policy = BreakerPolicy(fail_max=1, count_statuses=("5xx",))
    limited = FaultProfile(rate_limit=RateLimit(rate=1.0, retry_after_s=10))
    async with harness(faulty(fake_fast=limited)) as h:
        router = ModelRouter(
            config_of(policy), BASE_URL, http_client=h.router._clients["provider"].http
        )
        for _ in range(3):
            result = await router.chat(ask("hi", alias="chain"))
            assert result.model == "spare"
            assert result.message.content == "[fake-fallback] You said: hi"
        # 429 does not count under this policy: three calls, the breaker still closed.
        assert router.breaker_states() == {"cheap": "closed", "spare": "closed"}
    assert h.hits == {"fake-fast": 3, "fake-fallback": 3}


async def test_ping() -> None:
    async with harness(fake()) as h:
        await h.router.ping()

    async def broken(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 503, "headers": []})
        await send({"type": "http.response.body", "body": b"down"})

    async with harness(broken) as h:
        with pytest.raises(DependencyUnavailable) as raised:
            await h.router.ping()
    assert "provider: HTTPStatusError" in raised.value.message


async def test_ping_unreachable_provider() -> None:
    # Nothing listens on port 9 (discard) locally: the connection is refused.
    async with harness(fake(), base_url="http://127.0.0.1:9/v1", transport=False) as h:
        with pytest.raises(DependencyUnavailable):
            await h.router.ping()


async def test_router_owns_and_closes_its_clients() -> None:
    router = ModelRouter(provider_settings(), BASE_URL, BreakerRegistry(1, 1.0))
    client = router._clients["provider"].http
    assert (client.timeout.read, client.timeout.connect) == (2.0, 2.0)
    await router.close()
    assert client.is_closed
