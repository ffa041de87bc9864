"""Run leases on a clock the test moves: a claimed run holds its thread while its worker
heartbeats, and lapses (back to the queue, resumable elsewhere) once it stops."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import update

from agent_runtime.config.settings import StorageSettings
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.db.tables import THREADS
from agent_runtime.runs.run_queue import NewRun, RunEnd, RunStore
from tests.time_control import ManualClock

TENANT = "lease-tenant"
LEASE_S = 10.0


@pytest.fixture
async def store(storage_settings: StorageSettings) -> AsyncIterator[MetadataStore]:
    store = MetadataStore(storage_settings)
    await store.setup()
    await store.ensure_tenant(TENANT, "leases")
    yield store
    await store.close()


async def _claimed(runs: RunStore, store: MetadataStore, worker_id: str) -> str:
    thread = await store.create_thread(TENANT)
    new = NewRun(
        tenant_id=TENANT, thread_id=thread.thread_id, graph_id="g", assistant_id="g", kwargs={}
    )
    created = await runs.create(new, worker_id=worker_id)
    assert created.started
    return new.run_id


async def test_a_heartbeating_run_keeps_its_lease_and_a_silent_one_lapses(
    store: MetadataStore,
) -> None:
    clock = ManualClock()
    runs = RunStore(store, clock=clock)
    run_id = await _claimed(runs, store, "w1")

    clock.advance(LEASE_S - 1)
    assert await runs.reap(LEASE_S, max_attempts=3) == [], "the lease still holds"
    beat = await runs.heartbeat([run_id], "w1")
    assert (beat.lost, beat.cancel) == (set(), {})

    clock.advance(LEASE_S - 1)
    assert await runs.reap(LEASE_S, max_attempts=3) == [], "the heartbeat renewed it"

    clock.advance(2)  # w1 went silent: its last heartbeat is now past the lease
    assert await runs.reap(LEASE_S, max_attempts=3) == [run_id]
    assert (await runs.heartbeat([run_id], "w1")).lost == {run_id}

    [resumed] = await runs.claim_due("w2", limit=10)
    assert (resumed.run_id, resumed.worker_id, resumed.attempt) == (run_id, "w2", 2)
    # The first worker finishing late changes nothing: the run is w2's now.
    end = RunEnd(status="success", thread_status="idle")
    late = await runs.finish(resumed, end, "w1")
    assert (late.next_run, late.gone) == (None, False)
    assert await runs.status(run_id) == "running"


async def test_a_run_out_of_attempts_fails_when_its_lease_lapses(store: MetadataStore) -> None:
    clock = ManualClock()
    runs = RunStore(store, clock=clock)
    run_id = await _claimed(runs, store, "w1")
    clock.advance(LEASE_S + 1)
    assert await runs.reap(LEASE_S, max_attempts=1) == [run_id]
    assert await runs.status(run_id) == "error"
    assert await runs.claim_due("w2", limit=10) == []


async def test_a_run_started_on_a_thread_left_busy_belongs_to_its_creator(
    store: MetadataStore,
) -> None:
    """A thread left busy with nothing in flight (its holder died between statements) is
    claimed by the next run, which must have an owner: an ownerless running run was
    cancelled by the first heartbeat, or run again by the reaper."""
    runs = RunStore(store)
    thread = await store.create_thread(TENANT)
    async with store.transaction() as conn:
        await conn.execute(
            update(THREADS).where(THREADS.c.thread_id == thread.thread_id).values(status="busy")
        )
    new = NewRun(
        tenant_id=TENANT, thread_id=thread.thread_id, graph_id="g", assistant_id="g", kwargs={}
    )
    created = await runs.create(new, worker_id="w1")
    assert created.started and created.run.worker_id == "w1"
    stored = await runs.get(TENANT, new.run_id)
    assert (stored.status, stored.worker_id) == ("running", "w1")
    beat = await runs.heartbeat([new.run_id], "w1")
    assert (beat.lost, beat.cancel) == (set(), {})


async def test_a_replica_claims_only_runs_of_the_graphs_it_serves(store: MetadataStore) -> None:
    """Two apps on one database: a run whose replica died is resumed by a replica of its
    own app, never by one that does not serve its graph (that one would fail it)."""
    clock = ManualClock()
    runs = RunStore(store, clock=clock)
    run_id = await _claimed(runs, store, "w1")  # a run of graph "g"
    clock.advance(LEASE_S + 1)
    assert await runs.reap(LEASE_S, max_attempts=3) == [run_id]

    assert await runs.claim_due("other-app", limit=10, graph_ids=["steps", "words"]) == []
    [resumed] = await runs.claim_due("same-app", limit=10, graph_ids=["g"])
    assert (resumed.run_id, resumed.worker_id) == (run_id, "same-app")
