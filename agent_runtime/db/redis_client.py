"""Redis connections: one bounded, timed client per URL for the limiters, budgets and breakers."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from agent_runtime.core.telemetry import TimedRedis

# Per replica: one EVALSHA takes well under a millisecond, so this serves thousands of hits/s.
REDIS_MAX_CONNECTIONS = 64


def make_redis_client(url: str, timeout_s: float) -> Redis:
    """A Redis client whose every wait (connect, reply, free connection) is bounded."""
    pool = BlockingConnectionPool.from_url(
        url,
        # Bounded, and a burst of requests queues for a free connection (up to timeout_s)
        # instead of failing as the default pool does past its limit.
        max_connections=REDIS_MAX_CONNECTIONS,
        timeout=timeout_s,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        # One quick retry covers a pooled connection the server closed; more would hold
        # every request for seconds while Redis is down.
        retry=Retry(NoBackoff(), retries=1),
    )
    # Every command's latency and failure go to the telemetry sink (agent_runtime.core.telemetry).
    return TimedRedis.from_pool(pool)
