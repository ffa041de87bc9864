"""Circuit breakers whose state every router replica shares through Redis, without blocking.

pybreaker's ``CircuitRedisStorage`` shares state too, but with blocking Redis calls on
every call, on the event loop. :class:`SharedBreaker` keeps pybreaker's state machine
(closed -> open after ``fail_max`` consecutive counted failures, open -> half-open after
``reset_timeout``, half-open -> closed on a success or open again on a failure) with the
state in one Redis hash per model, changed by Lua scripts, one round trip per transition
(:mod:`agent_runtime.gateway.breaker_redis`):

* the happy path makes no Redis call: the breaker keeps a local copy of the shared state,
  refreshed in the background at most every ``cache_ttl_s`` (0.25 s) while it is used, and
  a success writes only when the shared failure counter is known to be non-zero;
* a counted failure is one ``EVALSHA`` that increments the counter and opens the breaker at
  ``fail_max`` (or re-opens it from half-open); the reply updates the local copy at once;
* after ``reset_timeout`` exactly one trial call runs across all replicas: the one that
  takes the trial lock (``SET NX PX``, expiring after ``trial_ttl_s`` should its replica
  die); the others skip the model until the trial's outcome closes or re-opens it;
* times are Redis's own (``TIME``): replicas' clocks never have to agree. Only this
  replica's own timing (its local copy, its outage retries, its fallback breakers) reads
  the injected :class:`~agent_runtime.core.clock.Clock`.

Another replica's transition is seen within ``cache_ttl_s``. If Redis cannot be reached,
the breakers fall back to this replica's own state (an in-process :class:`ModelBreaker`
each) with one warning per outage, and retry Redis every ``retry_s``: a call never fails
because Redis is down.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import pybreaker
from redis.asyncio import Redis

from agent_runtime.config.models_file import BreakerPolicy
from agent_runtime.core.clock import SYSTEM_CLOCK, Clock
from agent_runtime.core.errors import CircuitOpen
from agent_runtime.db.redis_client import make_redis_client
from agent_runtime.gateway.breaker_redis import RedisLink
from agent_runtime.gateway.breakers import (
    ADMITTED,
    TRIAL,
    BreakerRegistry,
    Breakers,
    ModelBreaker,
    Ticket,
    TransitionHook,
    _HookListener,
)

logger = logging.getLogger(__name__)

DEFAULT_PREFIX = "agent:breaker:"
CACHE_TTL_S = 0.25
RETRY_S = 1.0
OP_TIMEOUT_S = 0.5
CLOSED, OPEN, HALF_OPEN = pybreaker.STATE_CLOSED, pybreaker.STATE_OPEN, pybreaker.STATE_HALF_OPEN
SHARED = Ticket(shared=True)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class SharedBreaker:
    """One model's breaker, its state shared through Redis (see the module docstring)."""

    def __init__(
        self,
        model: str,
        link: RedisLink,
        *,
        key: str,
        fail_max: int,
        reset_timeout_s: float,
        trial_ttl_s: float,
        key_ttl_s: float,
        cache_ttl_s: float,
        on_transition: TransitionHook | None,
    ) -> None:
        self.model = model
        self.fail_max = fail_max
        self.reset_timeout_s = reset_timeout_s
        self._link = link
        self._keys = [key, key + ":trial"]
        self._reset_ms = round(reset_timeout_s * 1000)
        self._trial_ttl_ms = max(1, round(trial_ttl_s * 1000))
        self._key_ttl_ms = max(1, round(key_ttl_s * 1000))
        self._cache_ttl_s = cache_ttl_s
        self._hook = on_transition
        listeners = [_HookListener(on_transition)] if on_transition is not None else []
        # Used while Redis is unreachable.
        self.local = ModelBreaker(
            model,
            fail_max=fail_max,
            reset_timeout_s=reset_timeout_s,
            listeners=listeners,
            clock=link.clock,
        )
        # The local copy of the shared state.
        self._state = CLOSED
        self.fail_counter = 0
        self._retry_at = 0.0  # monotonic: when an open breaker may try again
        self._busy_until = 0.0  # monotonic: another replica's trial was seen in flight
        self._fetched_at = float("-inf")
        self._refresh: asyncio.Task[None] | None = None
        self._synced = False

    @property
    def current_state(self) -> str:
        return self._state if self._link.usable else self.local.current_state

    def refuses_calls(self) -> bool:
        now = self._link.clock.monotonic()
        self._maybe_refresh(now)
        if not self._link.usable:
            return self.local.refuses_calls()
        if self._state == OPEN:
            return now < self._retry_at
        if self._state == HALF_OPEN:
            return now < self._busy_until
        return False

    async def sync(self) -> None:
        """Read the shared state now (tests; the router never waits for this)."""
        await self._do_refresh()

    async def admit(self) -> Ticket:
        if not self._synced and self._link.usable:
            # This replica's first call of the model: learn the shared state first (once),
            # so that a new replica does not call a model the others have given up on.
            pending = self._refresh
            if pending is not None and not pending.done():
                await asyncio.shield(pending)
            else:
                await self._do_refresh()
        if not self._link.usable:
            return TRIAL if self.local.admit_now() else ADMITTED
        now = self._link.clock.monotonic()
        if self._state == CLOSED:
            return SHARED
        if self._state == OPEN and now < self._retry_at:
            raise CircuitOpen(self.model)
        if self._state == HALF_OPEN and now < self._busy_until:
            raise CircuitOpen(self.model)
        # Open long enough, or half-open: whoever takes the trial lock makes the trial call.
        token = uuid.uuid4().hex
        args: list[int | str] = [self._reset_ms, token, self._trial_ttl_ms, self._key_ttl_ms]
        reply = await self._link.run(lambda: self._link.trial(keys=self._keys, args=args))
        if reply is None:
            return TRIAL if self.local.admit_now() else ADMITTED
        self._apply(reply)
        verdict = int(reply[4])
        if verdict == 0:
            if self._state == HALF_OPEN:
                self._busy_until = self._link.clock.monotonic() + self._cache_ttl_s
            raise CircuitOpen(self.model)
        if verdict == 2:
            self._notify(_text(reply[0]), HALF_OPEN)
            return Ticket(trial=True, shared=True, token=token)
        return SHARED

    async def record_success(self, ticket: Ticket) -> None:
        if not ticket.shared or not self._link.usable:
            self.local.success_now(ticket.trial and not ticket.shared)
            return
        if not ticket.trial and self._state == CLOSED and self.fail_counter == 0:
            return  # nothing to reset: the happy path makes no Redis call
        reply = await self._link.run(
            lambda: self._link.success(keys=self._keys, args=[self._reset_ms])
        )
        if reply is None:
            self.local.success_now(False)
        else:
            self._transition(reply)

    async def record_failure(self, exc: BaseException, ticket: Ticket) -> None:
        if not ticket.shared or not self._link.usable:
            self.local.failure_now(exc, ticket.trial and not ticket.shared)
            return
        args = [self._reset_ms, self.fail_max, self._key_ttl_ms]
        reply = await self._link.run(lambda: self._link.failure(keys=self._keys, args=args))
        if reply is None:
            self.local.failure_now(exc, False)
        else:
            self._transition(reply)

    async def end_trial(self, ticket: Ticket) -> None:
        if not ticket.shared:
            self.local.end_trial_now()
        elif ticket.token:
            token = ticket.token
            await self._link.run(lambda: self._link.release(keys=self._keys[1:], args=[token]))

    # -- the local copy ------------------------------------------------------------------

    def _maybe_refresh(self, now: float) -> None:
        if now - self._fetched_at < self._cache_ttl_s or not self._link.usable:
            return
        if self._refresh is None or self._refresh.done():
            self._fetched_at = now  # one refresh per period, however many callers
            self._refresh = asyncio.get_running_loop().create_task(self._do_refresh())

    async def _do_refresh(self) -> None:
        self._fetched_at = self._link.clock.monotonic()
        reply = await self._link.run(
            lambda: self._link.read(keys=self._keys, args=[self._reset_ms])
        )
        self._synced = True
        if reply is not None:
            self._apply(reply)

    def _apply(self, reply: list[Any]) -> None:
        self._state = _text(reply[1])
        self.fail_counter = int(reply[2])
        now = self._link.clock.monotonic()
        self._fetched_at = now
        if self._state == OPEN:
            self._retry_at = now + max(0, int(reply[3])) / 1000
        if self._state != HALF_OPEN:
            self._busy_until = 0.0

    def _transition(self, reply: list[Any]) -> None:
        self._apply(reply)
        self._notify(_text(reply[0]), self._state)

    def _notify(self, old: str, new: str) -> None:
        if old != new and self._hook is not None:
            self._hook(self.model, old, new)


class SharedBreakerRegistry:
    """One :class:`SharedBreaker` per provider model over one Redis client (owned)."""

    def __init__(
        self,
        redis: Redis,
        *,
        fail_max: int,
        reset_timeout_s: float,
        trial_ttl_s: float = 30.0,
        prefix: str = DEFAULT_PREFIX,
        cache_ttl_s: float = CACHE_TTL_S,
        op_timeout_s: float = OP_TIMEOUT_S,
        retry_s: float = RETRY_S,
        on_transition: TransitionHook | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.fail_max = fail_max
        self.reset_timeout_s = reset_timeout_s
        self._link = RedisLink(redis, op_timeout_s, retry_s, clock)
        self._prefix = prefix
        self._trial_ttl_s = trial_ttl_s
        # Long enough to outlive an open period several times; stale counts then vanish.
        self._key_ttl_s = max(60.0, 4 * reset_timeout_s)
        self._cache_ttl_s = cache_ttl_s
        self._on_transition = on_transition
        self._breakers: dict[str, SharedBreaker] = {}

    @classmethod
    def from_url(
        cls, url: str, *, redis_timeout_s: float = 2.0, **options: Any
    ) -> SharedBreakerRegistry:
        return cls(make_redis_client(url, redis_timeout_s), **options)

    @property
    def shared(self) -> bool:
        """False while Redis is unreachable (the breakers then use local state)."""
        return self._link.usable

    def get(self, model: str) -> SharedBreaker:
        breaker = self._breakers.get(model)
        if breaker is None:
            breaker = SharedBreaker(
                model,
                self._link,
                key=f"{self._prefix}{model}",
                fail_max=self.fail_max,
                reset_timeout_s=self.reset_timeout_s,
                trial_ttl_s=self._trial_ttl_s,
                key_ttl_s=self._key_ttl_s,
                cache_ttl_s=self._cache_ttl_s,
                on_transition=self._on_transition,
            )
            self._breakers[model] = breaker
        return breaker

    def states(self) -> dict[str, str]:
        return {model: breaker.current_state for model, breaker in self._breakers.items()}

    def is_open(self, model: str) -> bool:
        breaker = self._breakers.get(model)
        return breaker is not None and breaker.refuses_calls()

    async def sync(self) -> None:
        """Refresh every breaker's local copy now (tests)."""
        for breaker in list(self._breakers.values()):
            await breaker.sync()

    async def close(self) -> None:
        for breaker in self._breakers.values():
            task = breaker._refresh
            if task is not None and not task.done():
                task.cancel()
        await self._link.redis.aclose()


def build_breakers(
    policy: BreakerPolicy,
    redis_url: str | None,
    *,
    redis_timeout_s: float = 2.0,
    trial_ttl_s: float = 30.0,
    on_transition: TransitionHook | None = None,
) -> Breakers:
    """Breakers shared through Redis when ``redis_url`` is set, else per process (warned)."""
    if not redis_url:
        logger.warning(
            "AGENT_REDIS_URL is not set: circuit breakers are kept per router replica, so "
            "each replica trips its own. Set AGENT_REDIS_URL to share them."
        )
        return BreakerRegistry(policy.fail_max, policy.reset_timeout_s, on_transition=on_transition)
    return SharedBreakerRegistry.from_url(
        redis_url,
        fail_max=policy.fail_max,
        reset_timeout_s=policy.reset_timeout_s,
        redis_timeout_s=redis_timeout_s,
        trial_ttl_s=trial_ttl_s,
        on_transition=on_transition,
    )
