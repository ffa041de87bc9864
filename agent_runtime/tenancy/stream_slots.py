"""Each tenant's slots of open streams: in Redis, shared by every ingress replica, or in
this process.

A slot is taken when a stream, join or wait is accepted and given back when it ends
(:mod:`agent_runtime.tenancy.open_streams` holds them). In Redis a tenant's slots are one
sorted set, ``<prefix><tenant>``: each member a slot, scored by the end of its lease (the
server's clock, so every replica reads one time). One Lua script drops lapsed slots, counts
the rest and takes one if there is room. The replica holding slots renews their leases
(:meth:`StreamSlots.renew`, every third of a lease); a replica that dies stops renewing, so
its slots lapse and free themselves within one lease. A slot given back while Redis is away
lapses the same way.

Without Redis each replica counts its own slots (a tenant may hold the limit on every
replica). With Redis unreachable, ``AGENT_RATE_LIMIT_FAILURE_MODE`` applies as it does to
the other limits: ``fail_open`` counts in this process until Redis answers again (logged
once each way, reported to ``on_unavailable``), ``fail_closed`` refuses with 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from redis import exceptions as redis_errors
from redis.asyncio import Redis

from agent_runtime.config.settings import LimitSettings
from agent_runtime.core.errors import DependencyUnavailable
from agent_runtime.db.redis_client import make_redis_client
from agent_runtime.tenancy.rate_limiter import FailureMode, UnavailableHook

logger = logging.getLogger(__name__)

DEFAULT_PREFIX = "agent:streams:"
OPEN_STREAMS = "open_streams"
_REDIS_ERRORS = (redis_errors.ConnectionError, redis_errors.TimeoutError, TimeoutError, OSError)

_NOW_MS = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""
# KEYS[1]: the tenant's set. ARGV: maximum, lease (ms), slot id. Returns {taken (0/1), held}.
_TAKE_LUA = (
    _NOW_MS
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = redis.call('ZCARD', KEYS[1])
if held >= tonumber(ARGV[1]) then return {0, held} end
local lease = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + lease, ARGV[3])
redis.call('PEXPIRE', KEYS[1], lease)
return {1, held + 1}
"""
)
# KEYS[1]: the tenant's set. ARGV: lease (ms), then the slots held. A slot that lapsed
# while Redis was away comes back: its stream is open, so it counts.
_RENEW_LUA = (
    _NOW_MS
    + """
local lease = tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], now + lease, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], lease)
return #ARGV - 1
"""
)


@dataclass(frozen=True, slots=True)
class Slot:
    tenant_id: str
    slot_id: str
    shared: bool  # kept in Redis; False: in this process's count


class StreamSlots:
    """Slots per tenant (see the module). Owns ``redis`` (None: in process only)."""

    def __init__(
        self,
        redis: Redis | None,
        *,
        lease_s: float,
        mode: FailureMode = "fail_open",
        retry_s: float = 1.0,
        prefix: str = DEFAULT_PREFIX,
        on_unavailable: UnavailableHook | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = redis
        self.lease_s = lease_s
        self._mode: FailureMode = mode
        self._retry_s = retry_s
        self._prefix = prefix
        self._on_unavailable = on_unavailable
        self._clock = clock
        self._down_until: float | None = None
        self._local: dict[str, set[str]] = {}
        self._removals: set[asyncio.Task[None]] = set()
        self._take = redis.register_script(_TAKE_LUA) if redis is not None else None
        self._renew = redis.register_script(_RENEW_LUA) if redis is not None else None

    @classmethod
    def from_settings(
        cls,
        limits: LimitSettings,
        *,
        prefix: str = DEFAULT_PREFIX,
        on_unavailable: UnavailableHook | None = None,
    ) -> StreamSlots:
        url = limits.redis_url.get_secret_value() if limits.redis_url is not None else ""
        return cls(
            make_redis_client(url, limits.redis_timeout_s) if url else None,
            lease_s=limits.open_streams_lease_s,
            mode=limits.rate_limit_failure_mode,
            retry_s=limits.rate_limit_redis_retry_s,
            prefix=prefix,
            on_unavailable=on_unavailable,
        )

    async def take(self, tenant_id: str, maximum: int) -> Slot | None:
        """A slot of ``tenant_id``'s, or None when it holds ``maximum`` already."""
        slot_id = uuid.uuid4().hex
        if self._take is not None and not self._skip_redis():
            try:
                taken, _ = await self._take(
                    keys=[self._prefix + tenant_id],
                    args=[maximum, int(self.lease_s * 1000), slot_id],
                )
            except _REDIS_ERRORS as exc:
                self._failed(exc)
            else:
                self._answered()
                return Slot(tenant_id, slot_id, shared=True) if int(taken) else None
        if self._take is not None:
            self._unavailable()
        held = self._local.setdefault(tenant_id, set())
        if len(held) >= maximum:
            return None
        held.add(slot_id)
        return Slot(tenant_id, slot_id, shared=False)

    def give_back(self, slot: Slot) -> asyncio.Task[None] | None:
        """Free ``slot``: at once in process; in Redis, by the task returned (a slot Redis
        does not hear about lapses with its lease)."""
        if not slot.shared:
            held = self._local.get(slot.tenant_id)
            if held is not None:
                held.discard(slot.slot_id)
                if not held:
                    del self._local[slot.tenant_id]
            return None
        task = asyncio.get_running_loop().create_task(self._remove(slot))
        self._removals.add(task)
        task.add_done_callback(self._removals.discard)
        return task

    async def _remove(self, slot: Slot) -> None:
        assert self._redis is not None
        try:
            await self._redis.zrem(self._prefix + slot.tenant_id, slot.slot_id)
        except _REDIS_ERRORS as exc:
            logger.debug("stream slot not given back (%s); it lapses", type(exc).__name__)

    async def renew(self, slots: Iterable[Slot]) -> None:
        """Extend the leases of the shared ``slots`` (all this replica holds)."""
        by_tenant: dict[str, list[str]] = {}
        for slot in slots:
            if slot.shared:
                by_tenant.setdefault(slot.tenant_id, []).append(slot.slot_id)
        if self._renew is None or not by_tenant:
            return
        lease_ms = int(self.lease_s * 1000)
        try:
            for tenant_id, slot_ids in by_tenant.items():
                await self._renew(keys=[self._prefix + tenant_id], args=[lease_ms, *slot_ids])
        except _REDIS_ERRORS as exc:
            logger.warning("stream slots not renewed (%s); they lapse", type(exc).__name__)

    async def close(self) -> None:
        for task in list(self._removals):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._redis is not None:
            await self._redis.aclose()

    def _skip_redis(self) -> bool:
        return self._down_until is not None and self._clock() < self._down_until

    def _failed(self, exc: BaseException) -> None:
        if self._down_until is None:
            what = "counted per replica" if self._mode == "fail_open" else "refused with 503"
            logger.warning(
                "open streams limiter: Redis unreachable (%s); %s: streams are %s until it answers",
                type(exc).__name__,
                self._mode,
                what,
            )
        self._down_until = self._clock() + self._retry_s

    def _answered(self) -> None:
        if self._down_until is not None:
            logger.warning("open streams limiter: Redis answers again; slots are shared again")
            self._down_until = None

    def _unavailable(self) -> None:
        if self._on_unavailable is not None:
            self._on_unavailable(OPEN_STREAMS, self._mode)
        if self._mode == "fail_closed":
            raise DependencyUnavailable(
                "rate limiter backend (Redis) unreachable: the open_streams limit cannot be "
                "checked (AGENT_RATE_LIMIT_FAILURE_MODE=fail_closed)",
                limit=OPEN_STREAMS,
                retry_after=max(1.0, self._retry_s),
            )
