"""RunSignals on its own: watches woken in memory, released when their waiter leaves, and
bounded (watches, the outbox, timers); through Redis between two notifiers; off, it polls."""

from __future__ import annotations

import asyncio
import uuid

from agent_runtime.db.redis_pubsub import RedisPubSub
from agent_runtime.runs.run_signals import QUEUE, RunSignals, run_topic, thread_topic
from tests.time_control import wait_for

LONG_S = 30.0  # a fallback no test may wait out: an answer before it was pushed


def bus(redis_url: str, channel: str) -> RedisPubSub:
    return RedisPubSub(
        redis_url, channel, timeout_s=2.0, retry_min_s=0.05, retry_max_s=0.5, ping_s=5.0
    )


async def test_a_publish_wakes_the_watches_of_its_topics_only() -> None:
    signals = RunSignals(fallback_s=LONG_S)
    with signals.watch(run_topic("r1")) as mine, signals.watch(run_topic("r2")) as other:
        signals.publish(run_topic("r1"))
        async with asyncio.timeout(5):
            assert await mine.wait()
        assert not await other.wait(timeout_s=0.01)


async def test_signals_before_the_wait_are_kept_and_coalesce_into_one_wake_up() -> None:
    signals = RunSignals(fallback_s=LONG_S)
    with signals.watch(run_topic("r1"), thread_topic("t1")) as watch:
        for _ in range(5):
            signals.publish(run_topic("r1"), thread_topic("t1"))
        assert await watch.wait(timeout_s=1)  # raised before the wait began: not lost
        assert not await watch.wait(timeout_s=0.01)  # one flag, not five messages


async def test_watches_are_released_when_their_waiters_leave() -> None:
    signals = RunSignals(fallback_s=LONG_S)

    async def waiter() -> None:
        with signals.watch(run_topic("r1")) as watch:
            await watch.wait()

    tasks = [asyncio.ensure_future(waiter()) for _ in range(20)]
    await wait_for(lambda: signals.watching == 20)
    for task in tasks[:10]:
        task.cancel()
    await asyncio.gather(*tasks[:10], return_exceptions=True)
    assert signals.watching == 10
    signals.publish(run_topic("r1"))
    async with asyncio.timeout(5):
        await asyncio.gather(*tasks[10:])
    assert signals.watching == 0


async def test_watches_past_the_bound_are_not_registered_and_fall_back_to_polling() -> None:
    signals = RunSignals(fallback_s=0.05, max_watchers=2)
    with signals.watch("a") as first, signals.watch("a"), signals.watch("a") as third:
        assert signals.watching == 2
        signals.publish("a")
        assert await first.wait()
        assert not await third.wait()  # it only polls: the fallback interval passed
    assert signals.watching == 0


async def test_off_nothing_is_signalled_and_waiters_poll() -> None:
    signals = RunSignals(fallback_s=0.05, enabled=False)
    with signals.watch(QUEUE) as watch:
        signals.publish(QUEUE)
        signals.publish_later(0.0, QUEUE)
        assert signals.watching == 0
        assert not await watch.wait()
    assert signals.pending == 0


async def test_a_delayed_publish_fires_when_due_and_timers_are_bounded() -> None:
    signals = RunSignals(fallback_s=LONG_S, max_pending=2)
    with signals.watch(QUEUE) as watch:
        signals.publish_later(0.05, QUEUE)
        signals.publish_later(LONG_S, QUEUE)
        signals.publish_later(LONG_S, QUEUE)  # past the bound: dropped
        assert signals.pending == 2
        async with asyncio.timeout(5):
            assert await watch.wait()
    assert signals.pending == 1
    await signals.close()
    assert signals.pending == 0


async def test_the_outbox_is_bounded_while_redis_has_not_taken_it(redis_url: str) -> None:
    channel = f"test:runs:{uuid.uuid4().hex}"
    signals = RunSignals(fallback_s=LONG_S, bus=bus(redis_url, channel), max_pending=3)
    # Not started: nothing drains the outbox, as while Redis is slow.
    signals.publish(*(run_topic(str(n)) for n in range(5)))
    signals.publish(run_topic("0"))  # already waiting: coalesced, not dropped
    assert signals.pending == 3
    assert signals.dropped == 2
    await signals.close()


async def test_signals_reach_another_notifier_through_redis_but_not_back(redis_url: str) -> None:
    channel = f"test:runs:{uuid.uuid4().hex}"
    a = RunSignals(fallback_s=LONG_S, bus=bus(redis_url, channel))
    b = RunSignals(fallback_s=LONG_S, bus=bus(redis_url, channel))
    try:
        await a.start()
        await b.start()
        assert a.subscribed.is_set() and b.subscribed.is_set()
        with a.watch(run_topic("r1")) as on_a, b.watch(run_topic("r1")) as on_b:
            b.publish(run_topic("r1"), QUEUE)
            async with asyncio.timeout(5):
                assert await on_a.wait()
            assert await on_b.wait(timeout_s=0)  # its own: in memory, at once
            # Its own message came back from Redis (before a's next one, which Redis sent
            # after) and was skipped: no second wake-up.
            with b.watch(run_topic("sync")) as synced:
                a.publish(run_topic("sync"))
                async with asyncio.timeout(5):
                    assert await synced.wait()
            assert not await on_b.wait(timeout_s=0)
    finally:
        await a.close()
        await b.close()
    assert a.loops() == [] and b.loops() == []
