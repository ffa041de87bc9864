"""Router failures: fallback, retries, Retry-After, deadline, breakers, rejections."""

from __future__ import annotations

import time
from typing import Any

import pytest
from langchain_core.messages import ChatMessage

from agent_runtime.config.fault_profiles import FaultProfile, RateLimit
from agent_runtime.core.errors import ProviderChainExhausted, ProviderRejected
from agent_runtime.core.types import ChatRequest
from agent_runtime.gateway.breakers import BreakerRegistry
from tests.gateway.router_harness import API_KEY, ASGIApp, Switchable, ask, fake, faulty, harness
from tests.servers import served
from tests.time_control import ManualClock


def fails_first(app: ASGIApp, times: int, status: int, headers: dict[str, str]) -> ASGIApp:
    """The first ``times`` chat calls answer ``status`` (with ``headers``), then ``app`` does."""
    left = times

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        nonlocal left
        if scope["type"] == "http" and scope["path"].endswith("/chat/completions") and left > 0:
            left -= 1
            raw = [(k.encode(), v.encode()) for k, v in headers.items()]
            await send({"type": "http.response.start", "status": status, "headers": raw})
            await send({"type": "http.response.body", "body": b'{"error": {"message": "busy"}}'})
            return
        await app(scope, receive, send)

    return wrapped


async def test_failing_primary_falls_back_and_counts_against_its_breaker() -> None:
    async with harness(fake(failing_models=["fake-smart"]), breaker_fail_max=3) as h:
        result = await h.router.chat(ask("hello"))
        assert h.breakers.get("fake-smart").fail_counter == 1

    assert result.model == "fake-fallback"
    assert result.message.content == "[fake-fallback] You said: hello"
    # A plain 500 is not retried: the next model answers sooner.
    assert [(a.model, a.outcome) for a in result.attempts] == [
        ("fake-smart", "error"),
        ("fake-fallback", "ok"),
    ]
    assert result.attempts[0].error is not None
    assert result.attempts[0].error.startswith("HTTP 500")
    assert h.hits == {"fake-smart": 1, "fake-fallback": 1}
    assert [a.model for a in h.report.attempts] == ["fake-smart", "fake-fallback"]
    assert h.report.cost_usd is not None and h.report.model == "fake-fallback"


async def test_retryable_status_is_retried_on_the_same_model_with_backoff() -> None:
    app = fails_first(fake(), 1, 503, {})
    async with harness(app) as h:
        result = await h.router.chat(ask("hello"))
        assert h.breakers.get("fake-smart").fail_counter == 0, "the success reset the count"
    assert [(a.model, a.outcome) for a in result.attempts] == [
        ("fake-smart", "error"),
        ("fake-smart", "ok"),
    ]
    assert result.model == "fake-smart"


async def test_retries_are_bounded_then_the_next_model_is_tried() -> None:
    async with harness(faulty(fake_smart=FaultProfile(error_rates={503: 1.0}))) as h:
        result = await h.router.chat(ask("hello"))
    assert [(a.model, a.outcome) for a in result.attempts] == [
        ("fake-smart", "error"),
        ("fake-smart", "error"),
        ("fake-fallback", "ok"),
    ]
    assert h.hits == {"fake-smart": 2, "fake-fallback": 1}


async def test_retry_after_is_honoured_when_short() -> None:
    app = fails_first(fake(), 1, 429, {"retry-after-ms": "300", "retry-after": "1"})
    async with harness(app) as h:
        started = time.perf_counter()
        result = await h.router.chat(ask("hello"))
        elapsed_s = time.perf_counter() - started
    assert result.model == "fake-smart"
    assert [a.outcome for a in result.attempts] == ["error", "ok"]
    assert 0.3 <= elapsed_s < 1.0, "retry-after-ms wins over the rounded Retry-After"


async def test_a_long_retry_after_moves_to_the_next_model_at_once() -> None:
    limited = FaultProfile(rate_limit=RateLimit(rate=1.0, retry_after_s=5))
    async with harness(faulty(fake_smart=limited)) as h:
        started = time.perf_counter()
        result = await h.router.chat(ask("hello"))
        elapsed_s = time.perf_counter() - started
    assert result.model == "fake-fallback"
    assert result.attempts[0].error is not None
    assert result.attempts[0].error.startswith("HTTP 429")
    assert h.hits["fake-smart"] == 1
    assert elapsed_s < 1.0


async def test_a_retry_after_past_the_deadline_moves_on() -> None:
    limited = FaultProfile(rate_limit=RateLimit(rate=1.0, retry_after_s=1))
    async with harness(faulty(fake_smart=limited), router_deadline_s=0.8) as h:
        result = await h.router.chat(ask("hello"))
    assert result.model == "fake-fallback"
    assert h.hits["fake-smart"] == 1


async def test_the_deadline_bounds_the_whole_chain() -> None:
    app = fake(hanging_models=["fake-hang"])
    async with (
        served(app) as url,
        harness(app, base_url=url, transport=False, router_deadline_s=0.3) as h,
    ):
        started = time.perf_counter()
        with pytest.raises(ProviderChainExhausted) as raised:
            await h.router.chat(ask("anyone?", alias="hang"))
        elapsed_s = time.perf_counter() - started
    assert raised.value.attempts == [
        "fake-hang: no answer within 0.3 s",
        "fake-fallback: request deadline exceeded",
    ]
    assert 0.3 <= elapsed_s < 1.0
    assert [a.outcome for a in h.report.attempts] == ["error", "deadline"]


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
    clock = ManualClock()
    breakers = BreakerRegistry(fail_max=1, reset_timeout_s=30, clock=clock)
    async with harness(provider, breakers=breakers) as h:
        await h.router.chat(ask("hello"))
        assert h.router.breaker_states()["fake-smart"] == "open"
        skipped = await h.router.chat(ask("hello"))
        assert skipped.attempts[0].outcome == "circuit_open"

        clock.advance(30)
        provider.target = fake()  # the provider has recovered
        result = await h.router.chat(ask("hello again"))

    assert result.model == "fake-smart"
    assert [(a.model, a.outcome) for a in result.attempts] == [("fake-smart", "ok")]
    assert h.hits["fake-smart"] == 2
    assert h.router.breaker_states()["fake-smart"] == "closed"


async def test_half_open_trial_failure_reopens() -> None:
    clock = ManualClock()
    breakers = BreakerRegistry(fail_max=1, reset_timeout_s=30, clock=clock)
    async with harness(fake(failing_models=["fake-smart"]), breakers=breakers) as h:
        await h.router.chat(ask("hello"))
        clock.advance(30)
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
    assert (h.report.outcome, h.report.model) == ("rejected", None)
    assert [a.outcome for a in h.report.attempts] == ["rejected"]


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
    assert [r.outcome for r in h.recorder.reports] == ["error"] * 3


async def test_connection_errors_count_and_fall_through() -> None:
    async with harness(fake(), base_url="http://127.0.0.1:9/v1", transport=False) as h:
        with pytest.raises(ProviderChainExhausted) as raised:
            await h.router.chat(ask("hello"))
        assert h.breakers.get("fake-smart").fail_counter == 2, "tried twice: retryable"
    assert raised.value.attempts == [
        "fake-smart: connection failed: ConnectError",
        "fake-fallback: connection failed: ConnectError",
    ]
