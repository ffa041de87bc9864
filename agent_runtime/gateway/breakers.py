"""Circuit breakers, one per provider model, usable from async code.

pybreaker keeps the state machine (closed -> open after ``fail_max`` consecutive failures,
open -> half-open once ``reset_timeout`` has elapsed, half-open -> closed on success or back
to open on failure) and notifies its listeners of every change. Its own ``call_async``
needs tornado, so :func:`guarded` and :func:`call` drive the same state objects around an
``await`` instead. Two choices differ from pybreaker's defaults, on purpose:

* an exception the caller's ``counts`` predicate rejects (the caller's own mistake, a
  cancellation) is neither a failure nor a success: it tells nothing about the provider;
* while half-open only one trial call is let through at a time; concurrent callers get
  :class:`~agent_runtime.core.errors.CircuitOpen` instead of all piling onto a provider that may
  still be down.

Time comes from an injected :class:`~agent_runtime.core.clock.Clock` (the real one by
default): :class:`ModelBreaker` stamps the opening time with it and decides open ->
half-open from it, never from pybreaker's own ``datetime.now``, so tests move time instead
of waiting out ``reset_timeout``.

:class:`ModelBreaker` / :class:`BreakerRegistry` keep the state in this process (each
replica its own); :mod:`agent_runtime.gateway.shared_breakers` keeps it in Redis for every
replica, with the same :class:`Breaker` interface, and its ``build_breakers`` picks one.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol, TypeVar

import pybreaker

from agent_runtime.config.models_file import BreakerPolicy
from agent_runtime.core.clock import SYSTEM_CLOCK, Clock
from agent_runtime.core.errors import CircuitOpen, ProviderError

T = TypeVar("T")
logger = logging.getLogger(__name__)

ErrorFilter = Callable[[BaseException], bool]
# (model, old state, new state) for each transition this replica makes.
TransitionHook = Callable[[str, str, str], None]


@dataclass(frozen=True, slots=True)
class Ticket:
    """One admitted call: whether it is the half-open trial, and how it was admitted."""

    trial: bool = False
    shared: bool = False  # by the shared state (else by this replica's own)
    token: str = ""  # the shared trial lock's value


ADMITTED = Ticket()
TRIAL = Ticket(trial=True)


class Breaker(Protocol):
    """What the router needs of a model's breaker (in-process or shared)."""

    model: str

    @property
    def current_state(self) -> str: ...

    def refuses_calls(self) -> bool:
        """Whether a call made now would be refused; never waits for I/O."""
        ...

    async def admit(self) -> Ticket:
        """Let a call through or raise :class:`CircuitOpen`."""
        ...

    async def record_success(self, ticket: Ticket) -> None: ...

    async def record_failure(self, exc: BaseException, ticket: Ticket) -> None: ...

    async def end_trial(self, ticket: Ticket) -> None:
        """A trial call ended with an outcome that does not count either way."""
        ...


class Breakers(Protocol):
    """One :class:`Breaker` per provider model."""

    def get(self, model: str) -> Breaker: ...

    def states(self) -> dict[str, str]: ...

    async def close(self) -> None: ...


def policy_filter(policy: BreakerPolicy) -> ErrorFilter:
    """The ``counts`` predicate of a policy: which provider failures trip a breaker."""

    def counts(exc: BaseException) -> bool:
        if not isinstance(exc, ProviderError):
            return False  # rejections, cancellations, the caller's bugs
        if exc.status is not None:
            return policy.counts_status(exc.status)
        kind = getattr(exc, "kind", None)
        if kind == "timeout":
            return policy.count_timeouts
        if kind == "connection":
            return policy.count_connection_errors
        return True

    return counts


class _HookListener(pybreaker.CircuitBreakerListener):
    def __init__(self, hook: TransitionHook) -> None:
        self._hook = hook

    def state_change(
        self,
        cb: pybreaker.CircuitBreaker,
        old_state: pybreaker.CircuitBreakerState | None,
        new_state: pybreaker.CircuitBreakerState,
    ) -> None:
        old = old_state.name if old_state is not None else pybreaker.STATE_CLOSED
        if old != new_state.name:
            self._hook(str(cb.name), old, new_state.name)


class ModelBreaker(pybreaker.CircuitBreaker):
    """A pybreaker breaker in this process that admits one half-open trial call at a time."""

    def __init__(
        self,
        model: str,
        *,
        fail_max: int,
        reset_timeout_s: float,
        listeners: Sequence[pybreaker.CircuitBreakerListener] = (),
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._clock = clock
        # throw_new_error_on_trip=False: the call that trips the breaker re-raises its own
        # error (the provider's), not a generic CircuitBreakerError.
        super().__init__(
            fail_max=fail_max,
            reset_timeout=reset_timeout_s,
            listeners=list(listeners),
            name=model,
            throw_new_error_on_trip=False,
        )
        self.model = model
        self._trial_in_flight = False

    def open(self) -> bool:
        """pybreaker's ``open``, with the opening time from the injected clock."""
        with self._lock:
            thrown = super().open()
            # Still under the lock: nobody reads pybreaker's own stamp in between.
            self._state_storage.opened_at = self._clock.now()
            return thrown

    def _reset_elapsed(self) -> bool:
        opened_at = self._state_storage.opened_at
        if opened_at is None:
            return True
        return self._clock.now() >= opened_at + timedelta(seconds=self.reset_timeout)

    def refuses_calls(self) -> bool:
        state = self.current_state
        if state == pybreaker.STATE_OPEN:
            return not self._reset_elapsed()
        if state == pybreaker.STATE_HALF_OPEN:
            return self._trial_in_flight
        return False

    def admit_now(self) -> bool:
        """:meth:`admit`, synchronously (it never waits)."""
        with self._lock:
            state = self.state.name
            if state == pybreaker.STATE_CLOSED:
                return False
            if state == pybreaker.STATE_OPEN:
                if not self._reset_elapsed():
                    raise CircuitOpen(self.model)
                self.half_open()
            elif self._trial_in_flight:
                raise CircuitOpen(self.model)
            self._trial_in_flight = True
            return True

    async def admit(self) -> Ticket:
        return TRIAL if self.admit_now() else ADMITTED

    def success_now(self, trial: bool) -> None:
        with self._lock:
            try:
                # The state *now* judges the outcome: a success seen while half-open closes it.
                self.state._handle_success()
            finally:
                if trial:
                    self._trial_in_flight = False

    async def record_success(self, ticket: Ticket) -> None:
        self.success_now(ticket.trial)

    def failure_now(self, exc: BaseException, trial: bool) -> None:
        with self._lock:
            try:
                self.state._handle_error(exc, reraise=False)
            except pybreaker.CircuitBreakerError:
                pass  # tripped; the caller re-raises the provider's own error
            except BaseException as raised:
                # pybreaker re-raises the failure itself when it trips the breaker.
                if raised is not exc:
                    raise
            finally:
                if trial:
                    self._trial_in_flight = False

    async def record_failure(self, exc: BaseException, ticket: Ticket) -> None:
        self.failure_now(exc, ticket.trial)

    def end_trial_now(self) -> None:
        with self._lock:
            self._trial_in_flight = False

    async def end_trial(self, ticket: Ticket) -> None:
        self.end_trial_now()


@asynccontextmanager
async def guarded(breaker: Breaker, *, counts: ErrorFilter) -> AsyncIterator[None]:
    """Run the ``async with`` body under ``breaker`` (the body may ``await`` and ``yield``).

    Raises :class:`CircuitOpen` at once, without running the body, while the breaker is
    open. An exception from the body is recorded as a failure when ``counts(exc)`` is true
    and is re-raised unchanged either way; a normal exit records a success.
    """
    ticket = await breaker.admit()
    try:
        yield
    except BaseException as exc:
        if counts(exc):
            await breaker.record_failure(exc, ticket)
        elif ticket.trial:
            await breaker.end_trial(ticket)
        raise
    await breaker.record_success(ticket)


async def call(breaker: Breaker, fn: Callable[[], Awaitable[T]], *, counts: ErrorFilter) -> T:
    """Await ``fn()`` under ``breaker``; see :func:`guarded` for what is recorded."""
    async with guarded(breaker, counts=counts):
        return await fn()


class BreakerRegistry:
    """One :class:`ModelBreaker` per provider model, created on first use, in this process.

    Each router replica then trips its own breakers; :mod:`agent_runtime.gateway.shared_breakers`
    shares them through Redis.
    """

    def __init__(
        self,
        fail_max: int,
        reset_timeout_s: float,
        listeners: Sequence[pybreaker.CircuitBreakerListener] = (),
        on_transition: TransitionHook | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.fail_max = fail_max
        self.reset_timeout_s = reset_timeout_s
        self._clock = clock
        hooks = [_HookListener(on_transition)] if on_transition is not None else []
        self._listeners = (*listeners, *hooks)
        self._breakers: dict[str, ModelBreaker] = {}

    def get(self, model: str) -> ModelBreaker:
        breaker = self._breakers.get(model)
        if breaker is None:
            breaker = ModelBreaker(
                model,
                fail_max=self.fail_max,
                reset_timeout_s=self.reset_timeout_s,
                listeners=self._listeners,
                clock=self._clock,
            )
            self._breakers[model] = breaker
        return breaker

    def states(self) -> dict[str, str]:
        """``{model: "closed" | "open" | "half-open"}`` for every model seen so far."""
        return {model: breaker.current_state for model, breaker in self._breakers.items()}

    def is_open(self, model: str) -> bool:
        """True while calls to ``model`` are refused: open and ``reset_timeout`` not elapsed
        (or half-open with its one trial call still in flight)."""
        breaker = self._breakers.get(model)
        return breaker is not None and breaker.refuses_calls()

    async def close(self) -> None:
        return None
