"""Open-stream slots per tenant, in process and in a real Redis: each tenant's maximum,
slots shared by replicas, a dead replica's slots lapsing after their lease while a live
one's are renewed, and both failure modes of an unreachable Redis."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis

from agent_runtime.core.errors import DependencyUnavailable
from agent_runtime.db.redis_client import make_redis_client
from agent_runtime.tenancy.stream_slots import Slot, StreamSlots
from tests.tenancy.redis_helpers import new_client

DEAD_REDIS = "redis://127.0.0.1:1/0"


async def test_in_process_each_tenant_holds_its_maximum() -> None:
    slots = StreamSlots(None, lease_s=30)
    taken = [await slots.take("acme", 2) for _ in range(3)]
    assert [t is not None for t in taken] == [True, True, False]
    assert await slots.take("other", 2) is not None  # another tenant's count
    first = taken[0]
    assert first is not None and not first.shared
    assert slots.give_back(first) is None  # nothing to wait for
    slots.give_back(first)  # twice: still one slot back, not two
    assert await slots.take("acme", 2) is not None
    assert await slots.take("acme", 2) is None
    await slots.close()


async def test_replicas_share_slots_and_a_dead_ones_lapse(redis_client: Redis, prefix: str) -> None:
    live = StreamSlots(new_client(), lease_s=1.0, prefix=prefix)
    dead = StreamSlots(new_client(), lease_s=1.0, prefix=prefix)
    mine = await live.take("acme", 2)
    theirs = await dead.take("acme", 2)
    assert mine is not None and theirs is not None and mine.shared
    taken_at = time.monotonic()
    assert await live.take("acme", 2) is None
    assert await dead.take("acme", 2) is None
    await dead.close()  # the replica is gone: it neither renews nor gives back
    # Its slot lapses after its lease; the live replica keeps its own by renewing it.
    async with asyncio.timeout(5):
        while (again := await live.take("acme", 2)) is None:
            await live.renew([mine])
            await asyncio.sleep(0.05)
    assert time.monotonic() - taken_at >= 0.9
    members = await redis_client.zrange(prefix + "acme", 0, -1)
    assert sorted(m.decode() for m in members) == sorted([mine.slot_id, again.slot_id])
    removal = live.give_back(mine)
    assert removal is not None
    await removal
    assert await redis_client.zcard(prefix + "acme") == 1
    assert 0 < await redis_client.pttl(prefix + "acme") <= 1000  # idle sets expire
    await live.close()


async def test_a_renewed_slot_that_lapsed_counts_again(redis_client: Redis, prefix: str) -> None:
    """Redis away longer than a lease: the open stream's slot comes back with it."""
    slots = StreamSlots(new_client(), lease_s=5.0, prefix=prefix)
    slot = await slots.take("acme", 1)
    assert slot is not None
    await redis_client.delete(prefix + "acme")  # as if it had lapsed
    await slots.renew([slot, Slot("acme", "local", shared=False)])
    assert await redis_client.zrange(prefix + "acme", 0, -1) == [slot.slot_id.encode()]
    assert await slots.take("acme", 1) is None
    await slots.close()


@pytest.mark.parametrize("mode", ["fail_open", "fail_closed"])
async def test_unreachable_redis_follows_the_failure_mode(mode: str) -> None:
    seen: list[tuple[str, str]] = []
    slots = StreamSlots(
        make_redis_client(DEAD_REDIS, 0.5),
        lease_s=30,
        mode=mode,  # type: ignore[arg-type]
        on_unavailable=lambda limit, how: seen.append((limit, how)),
    )
    if mode == "fail_open":
        first = await slots.take("acme", 1)
        assert first is not None and not first.shared  # counted in this process
        assert await slots.take("acme", 1) is None
        assert slots.give_back(first) is None
        assert await slots.take("acme", 1) is not None
    else:
        with pytest.raises(DependencyUnavailable) as refused:
            await slots.take("acme", 1)
        assert refused.value.details["limit"] == "open_streams"
        assert refused.value.details["retry_after"] >= 1
        assert "127.0.0.1" not in refused.value.message
    assert seen and set(seen) == {("open_streams", mode)}
    await slots.renew([])  # nothing held: no Redis call, no error
    await slots.close()
