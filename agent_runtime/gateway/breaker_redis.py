"""The breakers' shared state in Redis: the Lua scripts that read and change it (one round
trip per transition, times from Redis's own clock) and :class:`RedisLink`, the connection
that runs them and notes when Redis cannot be reached.

:class:`~agent_runtime.gateway.shared_breakers.SharedBreaker` is their user; see its module
for the state machine.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis import exceptions as redis_errors
from redis.asyncio import Redis

from agent_runtime.core.clock import Clock

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Every script: KEYS[1] the model's hash {state, fails, opened_at}, KEYS[2] its trial lock.
# An absent hash is a closed breaker with no failures. Replies: {old state, new state,
# fails, ms until an open breaker may try again (<= 0: now)}.
_PRELUDE = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local h = redis.call('HMGET', KEYS[1], 'state', 'fails', 'opened_at')
local state = h[1] or 'closed'
local fails = tonumber(h[2]) or 0
local opened_at = tonumber(h[3]) or 0
local reset_ms = tonumber(ARGV[1])
"""
# ARGV: reset_ms. Read only.
_READ_LUA = (
    _PRELUDE
    + """
return {state, state, fails, opened_at + reset_ms - now}
"""
)
# ARGV: reset_ms, fail_max, key ttl ms.
_FAILURE_LUA = (
    _PRELUDE
    + """
fails = fails + 1
local new = state
if state == 'half-open' or (state == 'closed' and fails >= tonumber(ARGV[2])) then
  new = 'open'
  opened_at = now
  redis.call('DEL', KEYS[2])
end
redis.call('HSET', KEYS[1], 'state', new, 'fails', fails, 'opened_at', opened_at)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {state, new, fails, opened_at + reset_ms - now}
"""
)
# ARGV: reset_ms. A success closes a half-open breaker and resets the counter; a late
# success of a call admitted before the breaker opened changes nothing.
_SUCCESS_LUA = (
    _PRELUDE
    + """
if state == 'open' then
  return {state, state, fails, opened_at + reset_ms - now}
end
redis.call('DEL', KEYS[1], KEYS[2])
return {state, 'closed', 0, 0}
"""
)
# ARGV: reset_ms, lock token, lock ttl ms, key ttl ms. Reply [5]: 0 refused, 1 admitted,
# 2 admitted as the trial call.
_TRIAL_LUA = (
    _PRELUDE
    + """
if state == 'closed' then
  return {state, state, fails, 0, 1}
end
if state == 'open' and opened_at + reset_ms > now then
  return {state, state, fails, opened_at + reset_ms - now, 0}
end
if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then
  redis.call('HSET', KEYS[1], 'state', 'half-open')
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  return {state, 'half-open', fails, 0, 2}
end
return {state, 'half-open', fails, 0, 0}
"""
)
# KEYS[1] the trial lock; ARGV: its token. The trial ended with an uncounted outcome.
_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisLink:
    """The registry's Redis connection, scripts and outage state, shared by its breakers."""

    def __init__(self, redis: Redis, op_timeout_s: float, retry_s: float, clock: Clock) -> None:
        self.redis = redis
        self.clock = clock
        self.op_timeout_s = op_timeout_s
        self.retry_s = retry_s
        self.down_until = 0.0  # monotonic; while in the future, Redis is not tried
        self.down = False
        self.read = redis.register_script(_READ_LUA)
        self.failure = redis.register_script(_FAILURE_LUA)
        self.success = redis.register_script(_SUCCESS_LUA)
        self.trial = redis.register_script(_TRIAL_LUA)
        self.release = redis.register_script(_RELEASE_LUA)

    @property
    def usable(self) -> bool:
        return not self.down or self.clock.monotonic() >= self.down_until

    async def run(self, op: Callable[[], Awaitable[T]]) -> T | None:
        """``op()`` within the op timeout, or None (and the outage noted) if Redis fails."""
        try:
            async with asyncio.timeout(self.op_timeout_s):
                result = await op()
        except (redis_errors.RedisError, OSError, TimeoutError) as exc:
            if not self.down:
                logger.warning(
                    "circuit breaker state in Redis is unreachable (%s): breakers use this "
                    "replica's own state until it is back",
                    type(exc).__name__,
                )
            self.down = True
            self.down_until = self.clock.monotonic() + self.retry_s
            return None
        if self.down:
            logger.warning("circuit breaker state in Redis is reachable again: shared again")
            self.down = False
        return result
