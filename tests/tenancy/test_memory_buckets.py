"""In-process token buckets: full buckets are forgotten, a clock going back drains nothing."""

from __future__ import annotations

from agent_runtime.tenancy.memory_buckets import InMemoryTokenBucket
from tests.tenancy.redis_helpers import FakeClock


async def test_memory_forgets_full_buckets() -> None:
    clock = FakeClock()
    bucket = InMemoryTokenBucket(10.0, 5, clock)  # full again 0.5 s after any hit
    for i in range(20):
        await bucket.hit(f"k{i}")
    assert bucket.tracked_keys == 20
    clock.now += 0.5
    await bucket.hit("fresh")
    assert bucket.tracked_keys == 1


async def test_memory_clock_going_back_does_not_drain() -> None:
    clock = FakeClock()
    bucket = InMemoryTokenBucket(1.0, 3, clock)
    await bucket.hit("k")
    clock.now -= 10
    decision = await bucket.hit("k")
    assert (decision.allowed, decision.remaining) == (True, 1)
