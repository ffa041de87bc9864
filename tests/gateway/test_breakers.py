"""The breaker state machine driven from async code, with a ``counts`` filter."""

from __future__ import annotations

import asyncio
from typing import Any

import pybreaker
import pytest

from agent_runtime.core.errors import CircuitOpen, ProviderError, ProviderRejected
from agent_runtime.gateway.breakers import BreakerRegistry, ModelBreaker, call, policy_filter
from tests.time_control import ManualClock

RESET_S = 30.0  # on a ManualClock: tests advance it, nothing waits


class Flaky:
    """An async operation that fails while ``error`` is set, counting its invocations."""

    def __init__(self) -> None:
        self.calls = 0
        self.error: BaseException | None = None

    async def __call__(self) -> str:
        self.calls += 1
        await asyncio.sleep(0)  # suspends, as a real provider call does
        if self.error is not None:
            raise self.error
        return "ok"


class StateLog(pybreaker.CircuitBreakerListener):
    def __init__(self) -> None:
        self.changes: list[tuple[str | None, str, str]] = []
        self.failures: list[BaseException] = []

    def state_change(
        self,
        cb: pybreaker.CircuitBreaker,
        old_state: pybreaker.CircuitBreakerState | None,
        new_state: pybreaker.CircuitBreakerState,
    ) -> None:
        self.changes.append((cb.name, old_state.name if old_state else "", new_state.name))

    def failure(self, cb: pybreaker.CircuitBreaker, exc: BaseException) -> None:
        self.failures.append(exc)


def provider_failures(exc: BaseException) -> bool:
    return isinstance(exc, ProviderError)


async def fail(breaker: ModelBreaker, op: Flaky, error: BaseException) -> None:
    op.error = error
    with pytest.raises(type(error)) as raised:
        await call(breaker, op, counts=provider_failures)
    # The caller gets the operation's own exception, never a wrapper.
    assert raised.value is error


async def trip(breaker: ModelBreaker, op: Flaky) -> None:
    for _ in range(breaker.fail_max):
        await fail(breaker, op, ProviderError("HTTP 500", model="m", status=500))
    assert breaker.current_state == pybreaker.STATE_OPEN


async def test_counted_failures_open_the_breaker_and_it_then_refuses_at_once() -> None:
    log = StateLog()
    registry = BreakerRegistry(fail_max=3, reset_timeout_s=60, listeners=[log])
    breaker = registry.get("fake-smart")
    op = Flaky()

    await fail(breaker, op, ProviderError("HTTP 500", model="fake-smart", status=500))
    await fail(breaker, op, ProviderError("HTTP 502", model="fake-smart", status=502))
    assert breaker.fail_counter == 2
    assert registry.states() == {"fake-smart": "closed"}
    assert not registry.is_open("fake-smart")

    await fail(breaker, op, ProviderError("timed out", model="fake-smart"))
    assert registry.states() == {"fake-smart": "open"}
    assert registry.is_open("fake-smart")
    assert log.changes == [("fake-smart", "closed", "open")]
    assert len(log.failures) == 3

    op.error = None
    with pytest.raises(CircuitOpen) as refused:
        await call(breaker, op, counts=provider_failures)
    assert refused.value.model == "fake-smart"
    assert op.calls == 3, "an open breaker must not run the operation"


async def test_uncounted_errors_pass_through_and_leave_the_counter_alone() -> None:
    breaker = BreakerRegistry(fail_max=2, reset_timeout_s=60).get("m")
    op = Flaky()
    await fail(breaker, op, ProviderError("HTTP 500", model="m", status=500))
    assert breaker.fail_counter == 1

    # The caller's own mistake and a cancellation tell nothing about the provider.
    await fail(breaker, op, ProviderRejected("bad role", model="m", status=400))
    await fail(breaker, op, ValueError("caller bug"))
    op.error = asyncio.CancelledError()
    with pytest.raises(asyncio.CancelledError):
        await call(breaker, op, counts=provider_failures)
    assert breaker.fail_counter == 1
    assert breaker.current_state == pybreaker.STATE_CLOSED

    await fail(breaker, op, ProviderError("HTTP 503", model="m", status=503))
    assert breaker.current_state == pybreaker.STATE_OPEN


async def test_a_success_resets_the_consecutive_failure_count() -> None:
    breaker = BreakerRegistry(fail_max=2, reset_timeout_s=60).get("m")
    op = Flaky()
    await fail(breaker, op, ProviderError("HTTP 500", model="m", status=500))
    op.error = None
    assert await call(breaker, op, counts=provider_failures) == "ok"
    assert breaker.fail_counter == 0
    await fail(breaker, op, ProviderError("HTTP 500", model="m", status=500))
    assert breaker.current_state == pybreaker.STATE_CLOSED


async def test_half_open_trial_success_closes() -> None:
    log = StateLog()
    clock = ManualClock()
    registry = BreakerRegistry(fail_max=1, reset_timeout_s=RESET_S, listeners=[log], clock=clock)
    breaker = registry.get("m")
    op = Flaky()
    await trip(breaker, op)
    clock.advance(RESET_S - 0.01)
    assert registry.is_open("m"), "refused until reset_timeout has elapsed"
    clock.advance(0.01)
    assert not registry.is_open("m"), "after reset_timeout one trial call may go through"

    op.error = None
    assert await call(breaker, op, counts=provider_failures) == "ok"
    assert registry.states() == {"m": "closed"}
    assert [change[1:] for change in log.changes] == [
        ("closed", "open"),
        ("open", "half-open"),
        ("half-open", "closed"),
    ]


async def test_half_open_trial_failure_reopens_for_another_timeout() -> None:
    clock = ManualClock()
    registry = BreakerRegistry(fail_max=1, reset_timeout_s=RESET_S, clock=clock)
    breaker = registry.get("m")
    op = Flaky()
    await trip(breaker, op)
    clock.advance(RESET_S)

    await fail(breaker, op, ProviderError("HTTP 500", model="m", status=500))
    assert registry.states() == {"m": "open"}
    clock.advance(RESET_S - 0.01)
    assert registry.is_open("m"), "a whole new reset_timeout from the reopening"
    calls = op.calls
    with pytest.raises(CircuitOpen):
        await call(breaker, op, counts=provider_failures)
    assert op.calls == calls


async def test_half_open_uncounted_outcome_keeps_it_half_open() -> None:
    clock = ManualClock()
    registry = BreakerRegistry(fail_max=1, reset_timeout_s=RESET_S, clock=clock)
    breaker = registry.get("m")
    op = Flaky()
    await trip(breaker, op)
    clock.advance(RESET_S)

    await fail(breaker, op, ProviderRejected("bad request", model="m", status=400))
    assert registry.states() == {"m": "half-open"}
    assert not registry.is_open("m"), "the next call is a new trial"
    op.error = None
    assert await call(breaker, op, counts=provider_failures) == "ok"
    assert registry.states() == {"m": "closed"}


async def test_only_one_trial_call_at_a_time_while_half_open() -> None:
    clock = ManualClock()
    registry = BreakerRegistry(fail_max=1, reset_timeout_s=RESET_S, clock=clock)
    breaker = registry.get("m")
    await trip(breaker, Flaky())
    clock.advance(RESET_S)

    release = asyncio.Event()
    started = asyncio.Event()

    async def slow_trial() -> str:
        started.set()
        await release.wait()
        return "recovered"

    trial = asyncio.create_task(call(breaker, slow_trial, counts=provider_failures))
    await started.wait()
    assert registry.states() == {"m": "half-open"}
    assert registry.is_open("m")
    bystander = Flaky()
    with pytest.raises(CircuitOpen):
        await call(breaker, bystander, counts=provider_failures)
    assert bystander.calls == 0

    release.set()
    assert await trial == "recovered"
    assert registry.states() == {"m": "closed"}
    assert await call(breaker, bystander, counts=provider_failures) == "ok"


def test_registry_keeps_one_breaker_per_model() -> None:
    registry = BreakerRegistry(fail_max=4, reset_timeout_s=7.5)
    first = registry.get("fake-smart")
    assert registry.get("fake-smart") is first
    assert registry.get("fake-fallback") is not first
    assert first.name == "fake-smart"
    assert (first.fail_max, first.reset_timeout) == (4, 7.5)
    assert registry.states() == {"fake-smart": "closed", "fake-fallback": "closed"}
    assert not registry.is_open("never-used")
    assert "never-used" not in registry.states()


async def test_tripping_call_reraises_the_providers_error() -> None:
    # pybreaker's default would replace it with CircuitBreakerError on the tripping call.
    breaker = BreakerRegistry(fail_max=1, reset_timeout_s=60).get("m")
    error = ProviderError("HTTP 500", model="m", status=500)

    async def boom() -> Any:
        raise error

    with pytest.raises(ProviderError) as raised:
        await call(breaker, boom, counts=provider_failures)
    assert raised.value is error
    assert breaker.current_state == pybreaker.STATE_OPEN


async def test_transitions_reach_the_hook() -> None:
    seen: list[tuple[str, str, str]] = []
    clock = ManualClock()
    registry = BreakerRegistry(
        fail_max=1, reset_timeout_s=RESET_S, on_transition=lambda *t: seen.append(t), clock=clock
    )
    breaker = registry.get("m")
    await trip(breaker, Flaky())
    clock.advance(RESET_S)
    assert await call(breaker, Flaky(), counts=provider_failures) == "ok"
    assert seen == [
        ("m", "closed", "open"),
        ("m", "open", "half-open"),
        ("m", "half-open", "closed"),
    ]


def test_policy_decides_which_failures_count() -> None:
    from agent_runtime.config.models_file import BreakerPolicy
    from agent_runtime.gateway.provider_client import ProviderFailure

    default = policy_filter(BreakerPolicy())
    for status in (500, 502, 503, 504, 401, 403, 408, 429):
        assert default(ProviderFailure("x", model="m", status=status)), status
    assert default(ProviderFailure("x", model="m", kind="timeout"))
    assert default(ProviderFailure("x", model="m", kind="connection"))
    assert default(ProviderFailure("x", model="m", kind="invalid"))
    # The caller's fault and anything that is not a provider error never count.
    assert not default(ProviderRejected("bad", model="m", status=400))
    assert not default(asyncio.CancelledError())
    assert not default(ValueError("caller bug"))

    narrow = policy_filter(
        BreakerPolicy(count_statuses=("5xx",), count_timeouts=False, count_connection_errors=False)
    )
    assert narrow(ProviderFailure("x", model="m", status=503))
    assert not narrow(ProviderFailure("x", model="m", status=429))
    assert not narrow(ProviderFailure("x", model="m", kind="timeout"))
    assert not narrow(ProviderFailure("x", model="m", kind="connection"))
