"""Concurrent and queued background runs per tenant, counted in the creation transaction,
on both storage backends: refusals name the limit and write nothing, racing creations
never pass a limit, finished runs free their slot, tenant limits beat the defaults; a
background run that finds its tenant at capacity waits in the queue, and no queued run
starts past the limit (issue 13, defect 4)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select

from agent_runtime.config.settings import StorageSettings
from agent_runtime.core.errors import RateLimited
from agent_runtime.core.records import TenantLimits
from agent_runtime.db.tables import RUNS
from agent_runtime.runs.run_service import StartedRun
from agent_runtime.tenancy.run_limits import RunLimits
from agent_runtime.tenancy.tenants import TenantStore
from tests.runs.run_harness import OTHER, TENANT, Replica, body, new_thread, replica
from tests.time_control import ManualClock, wait_for


async def _running(r: Replica) -> int:
    """The tenant's runs running now, on every thread."""
    query = (
        select(func.count())
        .select_from(RUNS)
        .where(RUNS.c.tenant_id == TENANT.tenant_id, RUNS.c.status == "running")
    )
    async with r.store.transaction() as conn:
        return int((await conn.execute(query)).scalar_one())


@pytest.fixture
async def limited(storage_settings: StorageSettings) -> AsyncIterator[Replica]:
    # Defaults of 2 running and 1 queued; the loops stay off so nothing starts by itself.
    async with replica(
        storage_settings, run_limits=RunLimits(max_concurrent_runs=2, max_queued_runs=1)
    ) as r:
        yield r


async def test_concurrent_runs_limit_refuses_and_names_it(limited: Replica) -> None:
    # A wait or stream run cannot wait in the queue for a slot: its caller holds a
    # connection (background runs do wait, see below).
    threads = [await new_thread(limited) for _ in range(3)]
    for thread_id in threads[:2]:
        await limited.runs.start(TENANT, thread_id, body("hang"), "background")
    with pytest.raises(RateLimited) as refused:
        await limited.runs.start(TENANT, threads[2], body("hang"), "wait")
    error = refused.value
    assert error.details["limit"] == "concurrent_runs"
    assert error.details["maximum"] == 2
    assert error.retry_after >= 1
    assert "concurrent runs limit of 2" in error.message
    # Nothing was written: the thread is still free and has no run.
    thread = await limited.store.get_thread(TENANT.tenant_id, threads[2])
    assert thread.status == "idle"
    assert await limited.runs.runs.search(TENANT.tenant_id, threads[2]) == []
    # Stateless runs count too; another tenant is not affected.
    with pytest.raises(RateLimited):
        await limited.runs.start(TENANT, None, body("hang"), "wait")
    other = await new_thread(limited, OTHER)
    await limited.runs.start(OTHER, other, body("hang"), "background")


async def test_a_finished_run_frees_its_slot(limited: Replica) -> None:
    threads = [await new_thread(limited) for _ in range(3)]
    first = await limited.runs.start(TENANT, threads[0], body("slow"), "background")
    await limited.runs.start(TENANT, threads[1], body("hang"), "background")
    with pytest.raises(RateLimited):
        await limited.runs.start(TENANT, threads[2], body(), "stream")

    async def done() -> bool:
        return await limited.runs.runs.status(first.run.run_id) == "success"

    await wait_for(done, 15)
    started = await limited.runs.start(TENANT, threads[2], body(), "background")
    assert started.created.started


async def test_queued_background_runs_limit(limited: Replica) -> None:
    thread_id = await new_thread(limited)
    await limited.runs.start(TENANT, thread_id, body("hang"), "background")
    queued = await limited.runs.start(TENANT, thread_id, body(), "background")
    assert queued.run.status == "pending"
    with pytest.raises(RateLimited) as refused:
        await limited.runs.start(TENANT, thread_id, body(), "background")
    assert refused.value.details["limit"] == "queued_runs"
    assert "queued background runs limit of 1" in refused.value.message
    # A wait run queued behind the thread is not a queued background run.
    waiting = asyncio.ensure_future(limited.runs.wait(TENANT, thread_id, body()))
    try:

        async def pending_runs() -> bool:
            rows = await limited.runs.runs.search(TENANT.tenant_id, thread_id, status="pending")
            return len(rows) == 2

        await wait_for(pending_runs)
        # Delayed background runs are queued runs too.
        other = await new_thread(limited)
        with pytest.raises(RateLimited):
            await limited.runs.start(TENANT, other, body(after_seconds=30), "background")
    finally:
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)


async def test_racing_creations_never_pass_the_limit(storage_settings: StorageSettings) -> None:
    limits = RunLimits(max_concurrent_runs=3, max_queued_runs=10)
    async with replica(storage_settings, run_limits=limits, start_loops=False) as r:
        threads = [await new_thread(r) for _ in range(40)]
        results = await asyncio.gather(
            *(r.runs.start(TENANT, t, body("hang"), "wait") for t in threads),
            return_exceptions=True,
        )
        started = [x for x in results if not isinstance(x, BaseException)]
        refused = [x for x in results if isinstance(x, RateLimited)]
        assert (len(started), len(refused)) == (3, 37), results
        assert {x.details["limit"] for x in refused} == {"concurrent_runs"}
        # Background runs: the slots are taken, 10 wait in the queue, the rest are refused.
        more = [await new_thread(r) for _ in range(20)]
        results = await asyncio.gather(
            *(r.runs.start(TENANT, t, body("hang"), "background") for t in more),
            return_exceptions=True,
        )
        queued = [x for x in results if isinstance(x, StartedRun)]
        refused = [x for x in results if isinstance(x, RateLimited)]
        assert (len(queued), len(refused)) == (10, 10), results
        assert not any(x.created.started for x in queued)
        assert {x.details["limit"] for x in refused} == {"queued_runs"}
        assert await _running(r) == 3


async def test_tenant_limits_beat_the_defaults(limited: Replica) -> None:
    tenants = TenantStore(limited.store)
    await tenants.set_limits(TENANT.tenant_id, TenantLimits(max_concurrent_runs=1))
    threads = [await new_thread(limited) for _ in range(2)]
    await limited.runs.start(TENANT, threads[0], body("hang"), "background")
    with pytest.raises(RateLimited) as refused:
        await limited.runs.start(TENANT, threads[1], body("hang"), "wait")
    assert refused.value.details["maximum"] == 1
    # A queue limit of 0 means no background run may wait; null goes back to the default.
    await tenants.set_limits(TENANT.tenant_id, TenantLimits(max_queued_runs=0))
    with pytest.raises(RateLimited) as no_queue:
        await limited.runs.start(TENANT, threads[0], body(), "background")
    assert no_queue.value.details["limit"] == "queued_runs"


async def test_no_limits_no_refusals(storage_settings: StorageSettings) -> None:
    async with replica(storage_settings) as r:
        threads = [await new_thread(r) for _ in range(4)]
        for thread_id in threads:
            await r.runs.start(TENANT, thread_id, body("hang"), "background")
        for _ in range(3):
            await r.runs.start(TENANT, threads[0], body(), "background")


async def test_a_background_run_past_capacity_waits_for_a_slot(limited: Replica) -> None:
    # Regression (issue 13, defect 4): it was refused (429) instead of queued.
    threads = [await new_thread(limited) for _ in range(4)]
    first = await limited.runs.start(TENANT, threads[0], body("slow"), "background")
    await limited.runs.start(TENANT, threads[1], body("hang"), "background")
    queued = await limited.runs.start(TENANT, threads[2], body(), "background")
    assert not queued.created.started and queued.run.status == "pending"
    # It counts as queued: the queue of 1 is full now.
    with pytest.raises(RateLimited) as refused:
        await limited.runs.start(TENANT, threads[3], body(), "background")
    assert refused.value.details["limit"] == "queued_runs"

    async def ended(run_id: str) -> bool:
        return await limited.runs.runs.status(run_id) == "success"

    # The executor's queue loop starts it once the slow run has freed its slot.
    await wait_for(lambda: ended(first.run.run_id), 15)
    await wait_for(lambda: ended(queued.run.run_id), 15)
    assert await _running(limited) == 1  # the hanging run alone


async def test_queued_runs_start_only_within_the_limit(storage_settings: StorageSettings) -> None:
    # Regression (issue 13, defect 4): a queued run (delayed, behind its thread, or put
    # back by the reaper) was claimed whatever its tenant had running.
    clock = ManualClock()
    limits = RunLimits(max_concurrent_runs=1, max_queued_runs=5)
    async with replica(storage_settings, run_limits=limits, start_loops=False, clock=clock) as r:
        worker = r.executor.worker_id
        busy = await new_thread(r)
        hanging = await r.runs.start(TENANT, busy, body("hang"), "background")
        delayed = await r.runs.start(
            TENANT, await new_thread(r), body(after_seconds=1), "background"
        )
        theirs = await r.runs.start(
            OTHER, await new_thread(r, OTHER), body(after_seconds=1), "background"
        )
        clock.advance(2)
        # Both are due; the tenant at capacity is passed over, the other tenant is not
        # starved behind its older run.
        claimed = await r.runs.runs.claim_due(worker, 1)
        assert [run.run_id for run in claimed] == [theirs.run.run_id]
        assert await r.runs.runs.claim_due(worker, 10) == []
        assert await r.runs.runs.status(delayed.run.run_id) == "pending"
        # Its slot frees: now it is claimed.
        await r.runs.cancel(TENANT, busy, [hanging.run.run_id], action="interrupt")

        async def stopped() -> bool:
            return await r.runs.runs.status(hanging.run.run_id) == "interrupted"

        await wait_for(stopped, 15)
        claimed = await r.runs.runs.claim_due(worker, 10)
        assert [run.run_id for run in claimed] == [delayed.run.run_id]
