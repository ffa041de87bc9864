"""What the limiters do when Redis is unreachable: ``fail_open`` keeps limiting in process,
``fail_closed`` refuses with 503; both log it once, report every such decision (the
metric's hook), leave Redis alone for ``retry_s`` and log the recovery.

Uses a real Redis (``AGENT_TEST_REDIS_URL``) for the healthy side and a closed port for
the dead one; fails if the real Redis is down.
"""

from __future__ import annotations

import logging
import os
import uuid

import pytest
from pydantic import SecretStr

from agent_runtime.config.settings import LimitSettings
from agent_runtime.core.errors import DependencyUnavailable
from agent_runtime.db.redis_client import make_redis_client
from agent_runtime.tenancy.memory_buckets import InMemoryTokenBucket
from agent_runtime.tenancy.rate_limiter import LimitDecision
from agent_runtime.tenancy.redis_buckets import RedisTokenBucket
from agent_runtime.tenancy.token_buckets import FailoverLimiter, build_limiter

REDIS_URL = os.environ.get("AGENT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
DEAD_URL = "redis://:pw-that-must-not-leak@127.0.0.1:1/0"


def dead(mode: str, **overrides: object) -> LimitSettings:
    return LimitSettings(
        redis_url=SecretStr(DEAD_URL),
        redis_timeout_s=0.5,
        rate_limit_failure_mode=mode,
        rate_limit_burst=2,
        rate_limit_per_second=0.001,
        **overrides,
    )


class Reports:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __call__(self, name: str, mode: str) -> None:
        self.calls.append((name, mode))


async def test_fail_open_limits_per_replica_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    reports = Reports()
    limiter = build_limiter(dead("fail_open"), on_unavailable=reports)
    try:
        with caplog.at_level(logging.INFO, logger="agent_runtime.tenancy.token_buckets"):
            decisions = [await limiter.hit("key:k") for _ in range(3)]
        # The in-process bucket of the same size decides: the burst of 2, then refused.
        assert [d.allowed for d in decisions] == [True, True, False]
        assert reports.calls == [("requests_per_key", "fail_open")] * 3
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1, caplog.text  # once, not once per request
        assert "Redis unreachable" in warnings[0].getMessage()
        assert "fail_open" in warnings[0].getMessage()
        assert "pw-that-must-not-leak" not in caplog.text and "127.0.0.1:1" not in caplog.text
        await limiter.adjust("key:k", 1)  # settling never raises either
        with pytest.raises(DependencyUnavailable):
            await limiter.ping()  # /health still says Redis is down
    finally:
        await limiter.close()


async def test_fail_closed_refuses_with_503(caplog: pytest.LogCaptureFixture) -> None:
    reports = Reports()
    limiter = build_limiter(dead("fail_closed"), name="tokens_per_minute", on_unavailable=reports)
    try:
        with caplog.at_level(logging.WARNING, logger="agent_runtime.tenancy.token_buckets"):
            for _ in range(2):
                with pytest.raises(DependencyUnavailable) as refused:
                    await limiter.hit("tenant:t", 1)
        error = refused.value
        assert error.details["limit"] == "tokens_per_minute"
        assert error.details["retry_after"] >= 1
        assert "fail_closed" in error.message
        assert "pw-that-must-not-leak" not in error.message
        assert reports.calls == [("tokens_per_minute", "fail_closed")] * 2
        assert caplog.text.count("Redis unreachable") == 1
        await limiter.adjust("tenant:t", 5)  # nothing to settle against; no error
    finally:
        await limiter.close()


class Flaky:
    """A primary limiter that fails while ``down`` and counts its calls."""

    def __init__(self) -> None:
        self.down = True
        self.calls = 0

    async def hit(
        self,
        key: str,
        cost: int = 1,
        *,
        rate_per_s: float | None = None,
        burst: int | None = None,
    ) -> LimitDecision:
        self.calls += 1
        if self.down:
            raise DependencyUnavailable("rate limiter backend (Redis) unreachable")
        return LimitDecision(allowed=True, limit=9, remaining=8, retry_after_s=0, reset_after_s=1)

    async def adjust(
        self, key: str, tokens: int, *, rate_per_s: float | None = None, burst: int | None = None
    ) -> None:
        self.calls += 1

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None


async def test_redis_is_skipped_for_retry_s_then_tried_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    primary = Flaky()
    limiter = FailoverLimiter(
        primary,
        InMemoryTokenBucket(1.0, 5, clock=lambda: now[0]),
        "fail_open",
        name="requests_per_key",
        retry_s=2.0,
        clock=lambda: now[0],
    )
    with caplog.at_level(logging.WARNING, logger="agent_runtime.tenancy.token_buckets"):
        await limiter.hit("k")
        await limiter.hit("k")
        assert primary.calls == 1  # the second decision did not wait on a dead Redis
        assert limiter.degraded
        now[0] += 2.5
        primary.down = False
        decision = await limiter.hit("k")
    assert decision.limit == 9  # Redis's answer again
    assert primary.calls == 2 and not limiter.degraded
    assert "answers again" in caplog.text


async def test_healthy_redis_reports_nothing() -> None:
    reports = Reports()
    settings = LimitSettings(redis_url=SecretStr(REDIS_URL), rate_limit_failure_mode="fail_closed")
    prefix = f"test:failover:{uuid.uuid4().hex}:"
    limiter = build_limiter(settings, prefix=prefix, on_unavailable=reports)
    client = make_redis_client(REDIS_URL, 2.0)
    try:
        assert isinstance(limiter, FailoverLimiter)
        assert isinstance(limiter.primary, RedisTokenBucket)
        assert (await limiter.hit("k")).allowed
        assert await client.exists(prefix + "k") == 1
        assert reports.calls == []
    finally:
        await client.delete(prefix + "k")
        await client.aclose()
        await limiter.close()
