"""Circuit breakers, one per provider model, usable from async code.

pybreaker keeps the state machine (closed -> open after ``fail_max`` consecutive failures,
open -> half-open once ``reset_timeout`` has elapsed, half-open -> closed on success or back
to open on failure) and notifies its listeners of every change. Its own ``call_async``
needs tornado, so :func:`guarded` and :func:`call` drive the same state objects around an
``await`` instead. Two choices differ from pybreaker's defaults, on purpose:

* an exception the caller's ``counts`` predicate rejects (the caller's own mistake, a
  cancellation) is neither a failure nor a success: it tells nothing about the provider;
* while half-open only one trial call is let through at a time; concurrent callers get
  :class:`~runtime.errors.CircuitOpen` instead of all piling onto a provider that may
  still be down.

Listeners get pybreaker's ``state_change``, ``failure`` and ``success`` callbacks (not
``before_call``: there is no plain function to hand them).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pybreaker

from runtime.errors import CircuitOpen

T = TypeVar("T")

ErrorFilter = Callable[[BaseException], bool]


class ModelBreaker(pybreaker.CircuitBreaker):
    """A pybreaker breaker that admits one half-open trial call at a time."""

    def __init__(
        self,
        model: str,
        *,
        fail_max: int,
        reset_timeout_s: float,
        listeners: Sequence[pybreaker.CircuitBreakerListener] = (),
    ) -> None:
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

    def _reset_elapsed(self) -> bool:
        opened_at = self._state_storage.opened_at
        if opened_at is None:
            return True
        return datetime.now(UTC) >= opened_at + timedelta(seconds=self.reset_timeout)

    def refuses_calls(self) -> bool:
        """Whether a call made now would be refused without reaching the provider."""
        state = self.current_state
        if state == pybreaker.STATE_OPEN:
            return not self._reset_elapsed()
        if state == pybreaker.STATE_HALF_OPEN:
            return self._trial_in_flight
        return False

    def admit(self) -> bool:
        """Let a call through or raise :class:`CircuitOpen`; True when it is the trial call."""
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

    def record_success(self) -> None:
        with self._lock:
            # The state *now* judges the outcome: a success seen while half-open closes it.
            self.state._handle_success()

    def record_failure(self, exc: BaseException) -> None:
        with self._lock:
            try:
                self.state._handle_error(exc, reraise=False)
            except pybreaker.CircuitBreakerError:
                pass  # tripped; the caller re-raises the provider's own error
            except BaseException as raised:
                # pybreaker re-raises the failure itself when it trips the breaker.
                if raised is not exc:
                    raise

    def end_trial(self) -> None:
        with self._lock:
            self._trial_in_flight = False


@contextmanager
def guarded(breaker: ModelBreaker, *, counts: ErrorFilter) -> Iterator[None]:
    """Run the ``with`` body under ``breaker`` (the body may ``await`` and ``yield``).

    Raises :class:`CircuitOpen` at once, without running the body, while the breaker is
    open. An exception from the body is recorded as a failure when ``counts(exc)`` is true
    and is re-raised unchanged either way; a normal exit records a success.
    """
    trial = breaker.admit()
    try:
        yield
    except BaseException as exc:
        if counts(exc):
            breaker.record_failure(exc)
        raise
    else:
        breaker.record_success()
    finally:
        if trial:
            breaker.end_trial()


async def call(breaker: ModelBreaker, fn: Callable[[], Awaitable[T]], *, counts: ErrorFilter) -> T:
    """Await ``fn()`` under ``breaker``; see :func:`guarded` for what is recorded."""
    with guarded(breaker, counts=counts):
        return await fn()


class BreakerRegistry:
    """One :class:`ModelBreaker` per provider model, created on first use.

    State is kept in process memory, so each router replica trips its own breakers; sharing
    breaker state across replicas through Redis (pybreaker's ``CircuitRedisStorage``) is a
    later step.
    """

    def __init__(
        self,
        fail_max: int,
        reset_timeout_s: float,
        listeners: Sequence[pybreaker.CircuitBreakerListener] = (),
    ) -> None:
        self._fail_max = fail_max
        self._reset_timeout_s = reset_timeout_s
        self._listeners = tuple(listeners)
        self._breakers: dict[str, ModelBreaker] = {}

    def get(self, model: str) -> ModelBreaker:
        breaker = self._breakers.get(model)
        if breaker is None:
            breaker = ModelBreaker(
                model,
                fail_max=self._fail_max,
                reset_timeout_s=self._reset_timeout_s,
                listeners=self._listeners,
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
