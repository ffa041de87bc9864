"""The model router against the fake provider over the OpenAI wire protocol.

The fake app is served in-process through httpx's ASGI transport; an httpx event hook
counts the requests that reach it, so a test can prove a model was skipped. The tests
about a stream breaking off midway need real incremental delivery (the ASGI transport
buffers a whole response), so they run the app under uvicorn on a free local port.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from pydantic import SecretStr

from runtime.breakers import BreakerRegistry
from runtime.errors import (
    DependencyUnavailable,
    ProviderChainExhausted,
    ProviderError,
    ProviderRejected,
)
from runtime.fake_provider import create_fake_provider_app
from runtime.routing import STREAM_SUMMARY_KEY, ModelRouter, StreamSummary
from runtime.settings import FakeProviderSettings, ProviderSettings
from runtime.types import Attempt, ChatRequest, TokenUsage
from tests.servers import served

BASE_URL = "http://fake/v1"
API_KEY = "sk-router-test-secret"
ALIASES = {
    "smart": ["fake-smart", "fake-fallback"],
    "hang": ["fake-hang", "fake-fallback"],
}
CALCULATOR = {
    "type": "function",
    "function": {
        "name": "calculator",
        "description": "Evaluate an arithmetic expression.",
        "parameters": {
            "type": "object",
            "properties": {"expression": {"type": "string"}},
            "required": ["expression"],
        },
    },
}

ASGIApp = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
    Awaitable[None],
]


class Switchable:
    """An ASGI app that forwards to ``target``; swapping it models a provider recovering."""

    def __init__(self, target: ASGIApp) -> None:
        self.target = target

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.target(scope, receive, send)


class Harness:
    """A router wired to a fake provider app, and the requests each model received."""

    def __init__(
        self,
        router: ModelRouter,
        breakers: BreakerRegistry,
        hits: Counter[str],
        calls: list[Attempt],
    ) -> None:
        self.router = router
        self.breakers = breakers
        self.hits = hits
        self.calls = calls


def fake(**overrides: Any) -> FastAPI:
    return create_fake_provider_app(FakeProviderSettings(**{"latency_ms": 0.0, **overrides}))


def provider_settings(**overrides: Any) -> ProviderSettings:
    values: dict[str, Any] = {
        "provider_api_key": SecretStr(API_KEY),
        "provider_timeout_s": 2.0,
        "model_aliases": ALIASES,
        "breaker_fail_max": 2,
        "breaker_reset_timeout_s": 30.0,
        **overrides,
    }
    return ProviderSettings(**values)


@asynccontextmanager
async def harness(
    app: ASGIApp, base_url: str = BASE_URL, transport: bool = True, **settings: Any
) -> AsyncIterator[Harness]:
    hits: Counter[str] = Counter()
    calls: list[Attempt] = []

    async def count(request: httpx.Request) -> None:
        if request.url.path.endswith("/chat/completions"):
            hits[json.loads(request.content)["model"]] += 1

    config = provider_settings(**settings)
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app) if transport else None,
        base_url=base_url,
        timeout=config.provider_timeout_s,
        event_hooks={"request": [count]},
    )
    breakers = BreakerRegistry(config.breaker_fail_max, config.breaker_reset_timeout_s)

    def on_call(alias: str, attempt: Attempt, usage: TokenUsage | None) -> None:
        assert alias in ALIASES or alias == attempt.model
        assert (usage is not None) == (attempt.outcome == "ok")
        calls.append(attempt)

    router = ModelRouter(config, base_url, breakers, http_client=client, on_call=on_call)
    try:
        yield Harness(router, breakers, hits, calls)
    finally:
        await router.close()
        assert not client.is_closed, "a client passed in belongs to the caller"
        await client.aclose()


def ask(text: str, alias: str = "smart", **fields: Any) -> ChatRequest:
    return ChatRequest(alias=alias, messages=[HumanMessage(text)], **fields)


async def collect(stream: AsyncIterator[AIMessageChunk]) -> tuple[list[AIMessageChunk], str]:
    chunks = [chunk async for chunk in stream]
    return chunks, "".join(chunk.text for chunk in chunks)


def test_resolve_alias_or_direct_model_name() -> None:
    settings = provider_settings()
    router = ModelRouter(settings, BASE_URL, BreakerRegistry(1, 1.0))
    assert router.resolve("smart") == ["fake-smart", "fake-fallback"]
    assert router.resolve("gpt-direct") == ["gpt-direct"]


async def test_plain_answer_from_the_primary() -> None:
    async with harness(fake()) as h:
        result = await h.router.chat(ask("hello router"))

    assert result.model == "fake-smart"
    assert result.message.content == "[fake-smart] You said: hello router"
    assert result.message.usage_metadata is not None
    assert result.usage.input_tokens == result.message.usage_metadata["input_tokens"] > 0
    assert result.usage.output_tokens == result.message.usage_metadata["output_tokens"] > 0
    assert [(a.model, a.outcome) for a in result.attempts] == [("fake-smart", "ok")]
    assert not result.fallback_used
    assert 0 < result.provider_ms <= result.router_ms
    assert h.hits == {"fake-smart": 1}
    assert h.calls == result.attempts
    assert h.router.breaker_states() == {"fake-smart": "closed"}


async def test_direct_model_name_with_options_passed_through() -> None:
    async with harness(fake()) as h:
        result = await h.router.chat(
            ask("hi", alias="custom-model", temperature=0.2, max_tokens=50, stop=["\n"])
        )
    assert result.model == "custom-model"
    assert result.message.content == "[custom-model] You said: hi"


async def test_failing_primary_falls_back_and_counts_against_its_breaker() -> None:
    async with harness(fake(failing_models=["fake-smart"]), breaker_fail_max=3) as h:
        result = await h.router.chat(ask("hello"))
        breaker = h.breakers.get("fake-smart")
        assert breaker.fail_counter == 1

    assert result.model == "fake-fallback"
    assert result.message.content == "[fake-fallback] You said: hello"
    assert result.fallback_used
    assert [(a.model, a.outcome) for a in result.attempts] == [
        ("fake-smart", "error"),
        ("fake-fallback", "ok"),
    ]
    assert result.attempts[0].error is not None
    assert result.attempts[0].error.startswith("HTTP 500")
    assert h.hits == {"fake-smart": 1, "fake-fallback": 1}
    assert h.calls == result.attempts


@pytest.mark.parametrize("status", [429, 503])
async def test_rate_limits_and_server_errors_fall_back(status: int) -> None:
    async with harness(fake(failing_models=["fake-smart"], fail_status=status)) as h:
        result = await h.router.chat(ask("hello"))
    assert result.model == "fake-fallback"
    assert result.attempts[0].error is not None
    assert result.attempts[0].error.startswith(f"HTTP {status}")


async def test_open_breaker_skips_the_primary_without_calling_it() -> None:
    async with harness(
        fake(failing_models=["fake-smart"]), breaker_fail_max=2, provider_timeout_s=5.0
    ) as h:
        for _ in range(2):
            await h.router.chat(ask("hello"))
        assert h.router.breaker_states()["fake-smart"] == "open"
        assert h.hits["fake-smart"] == 2

        started = time.perf_counter()
        result = await h.router.chat(ask("hello"))
        elapsed_s = time.perf_counter() - started

    assert h.hits["fake-smart"] == 2, "the open breaker must keep the primary uncalled"
    assert result.model == "fake-fallback"
    assert [(a.model, a.outcome) for a in result.attempts] == [
        ("fake-smart", "circuit_open"),
        ("fake-fallback", "ok"),
    ]
    assert elapsed_s < 1.0, "skipping must not wait for the provider timeout"


async def test_half_open_trial_after_reset_timeout_closes_on_success() -> None:
    provider = Switchable(fake(failing_models=["fake-smart"]))
    async with harness(provider, breaker_fail_max=1, breaker_reset_timeout_s=0.2) as h:
        await h.router.chat(ask("hello"))
        assert h.router.breaker_states()["fake-smart"] == "open"
        skipped = await h.router.chat(ask("hello"))
        assert skipped.attempts[0].outcome == "circuit_open"

        await asyncio.sleep(0.25)
        provider.target = fake()  # the provider has recovered
        result = await h.router.chat(ask("hello again"))

    assert result.model == "fake-smart"
    assert [(a.model, a.outcome) for a in result.attempts] == [("fake-smart", "ok")]
    assert h.hits["fake-smart"] == 2
    assert h.router.breaker_states()["fake-smart"] == "closed"


async def test_half_open_trial_failure_reopens() -> None:
    async with harness(
        fake(failing_models=["fake-smart"]), breaker_fail_max=1, breaker_reset_timeout_s=0.2
    ) as h:
        await h.router.chat(ask("hello"))
        await asyncio.sleep(0.25)
        trial = await h.router.chat(ask("hello"))
        assert h.router.breaker_states()["fake-smart"] == "open"
        after = await h.router.chat(ask("hello"))

    assert [a.outcome for a in trial.attempts] == ["error", "ok"]
    assert [a.outcome for a in after.attempts] == ["circuit_open", "ok"]
    assert h.hits["fake-smart"] == 2


async def test_hanging_model_times_out_and_falls_back() -> None:
    async with harness(fake(hanging_models=["fake-hang"]), provider_timeout_s=0.3) as h:
        started = time.perf_counter()
        result = await h.router.chat(ask("anyone there?", alias="hang"))
        elapsed_s = time.perf_counter() - started
        assert h.breakers.get("fake-hang").fail_counter == 1

    assert result.model == "fake-fallback"
    assert result.attempts[0].outcome == "error"
    assert result.attempts[0].error == "no answer within 0.3 s"
    assert 0.3 <= elapsed_s < 2.0
    assert result.provider_ms >= 300


async def test_rejected_request_raises_at_once_without_fallback_or_breaker_count() -> None:
    async with harness(fake(), breaker_fail_max=1) as h:
        request = ChatRequest(alias="smart", messages=[ChatMessage(role="wizard", content="hi")])
        with pytest.raises(ProviderRejected) as raised:
            await h.router.chat(request)
        assert h.breakers.get("fake-smart").fail_counter == 0
        assert h.router.breaker_states() == {"fake-smart": "closed"}

    error = raised.value
    assert "messages.[0].role" in error.message
    assert API_KEY not in error.message
    assert error.details == {"model": "fake-smart", "status": 400}
    assert h.hits == {"fake-smart": 1}, "a rejected request must not be retried elsewhere"
    assert [a.outcome for a in h.calls] == ["rejected"]


async def test_whole_chain_failing_lists_every_model() -> None:
    app = fake(failing_models=["fake-smart", "fake-fallback"])
    async with harness(app, breaker_fail_max=2) as h:
        with pytest.raises(ProviderChainExhausted) as first:
            await h.router.chat(ask("hello"))
        with pytest.raises(ProviderChainExhausted):
            await h.router.chat(ask("hello"))  # the second failure of each opens its breaker
        with pytest.raises(ProviderChainExhausted) as later:
            await h.router.chat(ask("hello"))
        assert h.hits == {"fake-smart": 2, "fake-fallback": 2}

    assert first.value.alias == "smart"
    assert first.value.attempts == ["fake-smart: HTTP 500", "fake-fallback: HTTP 500"]
    assert later.value.attempts == ["fake-smart: circuit open", "fake-fallback: circuit open"]
    assert API_KEY not in first.value.message


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
                tool_choice="auto",
            )
        )
    assert isinstance(second.message, AIMessage)
    assert second.message.content == "Tool result: 14"
    assert not second.message.tool_calls


async def test_classification_prompt_answers_one_word() -> None:
    async with harness(fake()) as h:
        result = await h.router.chat(
            ChatRequest(
                alias="smart",
                messages=[SystemMessage("Classify the request."), HumanMessage("fix my python")],
            )
        )
    assert result.message.content == "code"


async def test_streaming_answer_arrives_in_chunks_with_a_summary() -> None:
    async with harness(fake()) as h:
        chunks, text = await collect(h.router.stream(ask("hello streaming world")))

    assert text == "[fake-smart] You said: hello streaming world"
    assert sum(1 for chunk in chunks if chunk.text) > 1
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk
    assert merged.usage_metadata is not None
    assert merged.usage_metadata["output_tokens"] > 0
    summary = StreamSummary.model_validate(chunks[-1].response_metadata[STREAM_SUMMARY_KEY])
    assert summary.model == "fake-smart"
    assert [(a.model, a.outcome) for a in summary.attempts] == [("fake-smart", "ok")]
    assert 0 < summary.provider_ms <= summary.router_ms
    assert h.calls == summary.attempts


async def test_streaming_tool_call() -> None:
    async with harness(fake()) as h:
        chunks, _ = await collect(
            h.router.stream(ask("what is 6 * 7?", tools=[CALCULATOR], tool_choice="calculator"))
        )
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk
    assert [(c["name"], c["args"]) for c in merged.tool_calls] == [
        ("calculator", {"expression": "6 * 7"})
    ]


async def test_stream_fails_over_before_the_first_chunk() -> None:
    async with harness(fake(failing_models=["fake-smart"])) as h:
        chunks, text = await collect(h.router.stream(ask("hello")))

    assert text == "[fake-fallback] You said: hello"
    summary = StreamSummary.model_validate(chunks[-1].response_metadata[STREAM_SUMMARY_KEY])
    assert summary.model == "fake-fallback"
    assert [(a.model, a.outcome) for a in summary.attempts] == [
        ("fake-smart", "error"),
        ("fake-fallback", "ok"),
    ]
    assert h.hits == {"fake-smart": 1, "fake-fallback": 1}


async def test_stream_from_a_hanging_model_fails_over() -> None:
    async with harness(fake(hanging_models=["fake-hang"]), provider_timeout_s=0.3) as h:
        chunks, text = await collect(h.router.stream(ask("hello", alias="hang")))
    assert text == "[fake-fallback] You said: hello"
    summary = StreamSummary.model_validate(chunks[-1].response_metadata[STREAM_SUMMARY_KEY])
    assert summary.attempts[0].error == "no answer within 0.3 s"


async def test_stream_rejected_and_exhausted() -> None:
    async with harness(fake(failing_models=["fake-smart", "fake-fallback"])) as h:
        bad = ChatRequest(alias="smart", messages=[ChatMessage(role="wizard", content="x")])
        with pytest.raises(ProviderRejected):
            await collect(h.router.stream(bad))
        with pytest.raises(ProviderChainExhausted) as raised:
            await collect(h.router.stream(ask("hello")))
    assert raised.value.attempts == ["fake-smart: HTTP 500", "fake-fallback: HTTP 500"]


def stalls_after_first_event(app: ASGIApp, stall_s: float) -> ASGIApp:
    """The provider sends its first SSE event, then goes silent (a stuck upstream)."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        bodies = 0

        async def slow_send(message: Any) -> None:
            nonlocal bodies
            if message["type"] == "http.response.body" and message.get("body"):
                bodies += 1
                if bodies == 2:
                    await asyncio.sleep(stall_s)
            await send(message)

        await app(scope, receive, slow_send)

    return wrapped


def drops_after_first_event(app: ASGIApp) -> ASGIApp:
    """The connection is cut after the first SSE event (an upstream crash)."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        bodies = 0

        async def cut_send(message: Any) -> None:
            nonlocal bodies
            if message["type"] == "http.response.body" and message.get("body"):
                bodies += 1
                if bodies == 2:
                    raise ConnectionResetError("upstream crashed mid-answer")
            await send(message)

        await app(scope, receive, cut_send)

    return wrapped


@pytest.mark.parametrize("fault", ["stall", "drop"])
async def test_stream_failure_after_the_first_chunk_reaches_the_caller(fault: str) -> None:
    base = fake()
    app = stalls_after_first_event(base, 5.0) if fault == "stall" else drops_after_first_event(base)
    async with (
        served(app) as url,
        harness(app, base_url=url, transport=False, provider_timeout_s=0.5) as h,
    ):
        received: list[str] = []
        with pytest.raises(ProviderError) as raised:
            async for chunk in h.router.stream(ask("hello there")):
                received.append(chunk.text)

    assert received, "the first chunk was delivered before the failure"
    assert "".join(received) != "[fake-smart] You said: hello there"
    assert raised.value.model == "fake-smart"
    assert "broke off" in raised.value.message
    assert h.hits == {"fake-smart": 1}, "a started answer is not replayed on another model"
    assert [a.outcome for a in h.calls] == ["error"]


async def test_ping() -> None:
    async with harness(fake()) as h:
        await h.router.ping()

    async def broken(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 503, "headers": []})
        await send({"type": "http.response.body", "body": b"down"})

    async with harness(broken) as h:
        with pytest.raises(DependencyUnavailable):
            await h.router.ping()


async def test_ping_unreachable_provider() -> None:
    # Nothing listens on port 9 (discard) locally: the connection is refused.
    async with harness(fake(), base_url="http://127.0.0.1:9/v1", transport=False) as h:
        with pytest.raises(DependencyUnavailable):
            await h.router.ping()


async def test_router_owns_and_closes_its_client() -> None:
    router = ModelRouter(provider_settings(), BASE_URL, BreakerRegistry(1, 1.0))
    client = router._client
    assert client.timeout.read == 2.0
    await router.close()
    assert client.is_closed
