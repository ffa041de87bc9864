"""Push, not poll, across replicas: two orchestrator replicas (two ``Orchestration`` stacks
in this process) share one Postgres and, through Redis, their run signals.

Each replica's fallback poll is set far longer than any answer a test waits for, so an
answer in time can only have been pushed; where the fallback is what is tested, it is
short and the push is taken away (no Redis, or Redis cut).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent_runtime.config.settings import StorageSettings
from agent_runtime.core.records import Principal
from agent_runtime.runs.executor import ExecutorSettings
from agent_runtime.runs.run_service import RunOutcome
from agent_runtime.runs.thread_stream import ThreadStreams
from tests.backends import backend_settings
from tests.runs.run_harness import TENANT, Replica, Signals, body, new_thread, replica
from tests.runs.test_thread_stream import Reader
from tests.tcp_proxy import TcpProxy, proxied_url
from tests.time_control import wait_for

LONG_S = 60.0  # a fallback no test waits out
PUSHED_S = 2.0  # an answer this soon after the run's end was pushed


def timing(fallback_s: float) -> ExecutorSettings:
    return ExecutorSettings(heartbeat_s=0.2, lease_s=5.0, poll_s=fallback_s)


@pytest.fixture
async def pg(tmp_path: Path) -> AsyncIterator[StorageSettings]:
    async with backend_settings("postgres", tmp_path) as settings:
        yield settings


async def join_after_end(waiter: Replica, runner: Replica) -> float:
    """Start a run on ``runner``, join it from ``waiter``; seconds from the end of the run
    on ``runner`` (its future resolved) to the join's answer (negative: before it)."""
    thread_id = await new_thread(runner)
    started = await runner.runs.start(TENANT, thread_id, body("slow"), "background")
    assert started.local is not None
    loop = asyncio.get_running_loop()
    answered: list[float] = []

    async def join() -> RunOutcome:
        outcome = await waiter.runs.join(TENANT, thread_id, started.run.run_id)
        answered.append(loop.time())
        return outcome

    joining = asyncio.ensure_future(join())
    await asyncio.wait_for(asyncio.shield(started.local.done), 30)
    ended = loop.time()
    outcome = await asyncio.wait_for(joining, LONG_S / 2)
    assert outcome.status == "success"
    return answered[0] - ended


async def test_a_wait_answers_promptly_after_the_run_ends_on_another_replica(
    pg: StorageSettings, redis_url: str
) -> None:
    shared = Signals.shared(redis_url)
    async with (
        replica(pg, executor=timing(LONG_S), signals=shared) as a,
        replica(pg, executor=timing(LONG_S), signals=shared) as b,
    ):
        assert a.orchestration.signals.subscribed.is_set()
        assert await join_after_end(a, b) < PUSHED_S


async def test_within_a_replica_a_wait_needs_no_redis(pg: StorageSettings) -> None:
    async with replica(pg, executor=timing(LONG_S)) as a:
        thread_id = await new_thread(a)
        # Queued behind a slow run: the wait follows the database until this replica
        # claims it (told in memory), then the run itself.
        await a.runs.start(TENANT, thread_id, body("slow"), "background")
        queued = body(multitask_strategy="enqueue")
        outcome = await asyncio.wait_for(a.runs.wait(TENANT, thread_id, queued), LONG_S / 2)
        assert outcome.status == "success"


async def test_a_missed_message_is_caught_by_the_fallback(
    pg: StorageSettings, redis_url: str
) -> None:
    # b tells no one outside itself (no Redis): a hears nothing and must poll.
    async with (
        replica(pg, executor=timing(0.3), signals=Signals.shared(redis_url)) as a,
        replica(pg, executor=timing(LONG_S)) as b,
    ):
        late = await join_after_end(a, b)
        assert late < 0.3 + PUSHED_S


async def test_with_notifications_off_waits_poll_as_before(pg: StorageSettings) -> None:
    off = Signals(notify=False)
    async with (
        replica(pg, executor=timing(0.2), signals=off) as a,
        replica(pg, executor=timing(0.2), signals=off) as b,
    ):
        assert a.orchestration.signals.watching == 0  # nothing registers
        assert await join_after_end(a, b) < 0.2 + PUSHED_S


async def test_a_thread_stream_sees_a_new_run_without_waiting_for_its_poll(
    pg: StorageSettings, redis_url: str
) -> None:
    shared = Signals.shared(redis_url)
    async with (
        replica(pg, executor=timing(LONG_S), signals=shared) as a,
        replica(pg, executor=timing(LONG_S), signals=shared) as b,
    ):

        async def state(principal: Principal, thread_id: str) -> dict[str, Any]:
            return await a.threads.get_state(principal, thread_id)

        thread_id = await new_thread(a)
        streams = ThreadStreams(a.store, a.runs, state, poll_s=LONG_S)
        reader = Reader(streams.join(TENANT, thread_id))
        await wait_for(lambda: a.orchestration.signals.watching == 2)  # queue loop + stream
        # Slow: still running when the stream starts, so the stream counts it as to come.
        here = await a.runs.start(TENANT, thread_id, body("slow"), "background")  # in memory
        await reader.until(1, timeout_s=PUSHED_S * 5)
        there = await b.runs.start(TENANT, thread_id, body(), "background")  # through Redis
        await reader.until(2, timeout_s=PUSHED_S * 5)
        await a.threads.delete(TENANT, thread_id)  # the stream ends: told, not polled
        async with asyncio.timeout(PUSHED_S * 5):
            await reader.ended()
        done = [data["run_id"] for _, data, _ in reader.frames if data.get("status")]
        assert done == [here.run.run_id, there.run.run_id]


async def test_runs_given_back_are_claimed_by_another_replica_at_once(
    pg: StorageSettings, redis_url: str
) -> None:
    shared = Signals.shared(redis_url)
    async with replica(pg, executor=timing(LONG_S), signals=shared) as b:
        async with replica(pg, executor=timing(LONG_S), signals=shared) as a:
            thread_id = await new_thread(a)
            started = await a.runs.start(TENANT, thread_id, body("slow"), "background")
        # a closed: the run went back to the queue and b was told (not its poll, a minute).
        async with asyncio.timeout(PUSHED_S * 5):
            outcome = await b.runs.join(TENANT, thread_id, started.run.run_id)
        assert outcome.status == "success"
        assert (await b.runs.runs.get(TENANT.tenant_id, started.run.run_id)).attempt == 2


async def test_a_delayed_run_starts_when_due_not_at_the_next_poll(
    pg: StorageSettings, redis_url: str
) -> None:
    shared = Signals.shared(redis_url)
    async with (
        replica(pg, executor=timing(LONG_S), signals=shared, start_loops=False) as a,
        replica(pg, executor=timing(LONG_S), signals=shared) as b,
    ):
        thread_id = await new_thread(a)
        started = await a.runs.start(TENANT, thread_id, body(after_seconds=0.5), "background")
        assert started.local is None
        # a runs no queue loop: b claims it, told by a's timer through Redis.
        async with asyncio.timeout(PUSHED_S * 5):
            outcome = await b.runs.join(TENANT, thread_id, started.run.run_id)
        assert outcome.status == "success"


async def test_waiting_survives_redis_dropping_and_push_comes_back(
    pg: StorageSettings, redis_url: str
) -> None:
    proxy = TcpProxy.to_url(redis_url, default_port=6379)
    fallback_s = 3.0
    shared = Signals.shared(proxied_url(redis_url, proxy))
    try:
        async with (
            replica(pg, executor=timing(fallback_s), signals=shared) as a,
            replica(pg, executor=timing(fallback_s), signals=shared) as b,
        ):
            before = a.orchestration.signals.subscriptions
            proxy.down()
            assert await join_after_end(a, b) < fallback_s + PUSHED_S  # the fallback
            proxy.up()
            await wait_for(lambda: a.orchestration.signals.subscriptions > before)
            await wait_for(lambda: b.orchestration.signals.subscriptions > before)
            assert await join_after_end(a, b) < fallback_s / 2  # pushed again
    finally:
        proxy.close()


async def test_watches_are_released_when_waiters_leave(pg: StorageSettings, redis_url: str) -> None:
    shared = Signals.shared(redis_url)
    async with (
        replica(pg, executor=timing(LONG_S), signals=shared) as a,
        replica(pg, executor=timing(LONG_S), signals=shared) as b,
    ):
        signals = a.orchestration.signals
        idle = signals.watching  # the queue loop's
        thread_id = await new_thread(b)
        started = await b.runs.start(TENANT, thread_id, body("slow"), "background")
        run_id = started.run.run_id
        joins = [asyncio.ensure_future(a.runs.join(TENANT, thread_id, run_id)) for _ in range(6)]
        followers = [a.runs.events(run_id) for _ in range(3)]
        for follower in followers:
            await asyncio.wait_for(anext(follower), PUSHED_S * 5)  # its metadata event
        await wait_for(lambda: signals.watching == idle + 9)
        for task in joins[:3]:
            task.cancel()
        for follower in followers:
            await follower.aclose()
        await wait_for(lambda: signals.watching == idle + 3)
        async with asyncio.timeout(PUSHED_S * 5):
            outcomes = await asyncio.gather(*joins[3:])
        assert {o.status for o in outcomes} == {"success"}
        assert signals.watching == idle
        assert signals.pending == 0
