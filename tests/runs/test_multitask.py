"""Double-texting, cancels and crash recovery, with two replicas on one database.

Two :class:`Replica` objects share a database exactly as two orchestrator replicas do, so
each strategy is shown to hold when the second request lands on the other replica.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import update

from agent_runtime.config.settings import StorageSettings
from agent_runtime.core.errors import Conflict, NotFound
from agent_runtime.db.tables import RUNS, utcnow
from agent_runtime.protocol.agent_protocol import RunCreate
from agent_runtime.runs.executor import ExecutorSettings
from agent_runtime.runs.run_queue import NewRun
from tests.runs.run_harness import GRAPH, TENANT, Replica, body, new_thread, replica
from tests.time_control import ManualClock, wait_for


@pytest.fixture
async def pair(storage_settings: StorageSettings) -> AsyncIterator[tuple[Replica, Replica]]:
    async with replica(storage_settings) as a, replica(storage_settings) as b:
        yield a, b


async def _running(r: Replica, thread_id: str) -> str:
    """Start a slow background run on ``r`` and wait until it is running."""
    started = await r.runs.start(TENANT, thread_id, body("slow"), "background")
    await wait_for(lambda: r.executor.local(started.run.run_id))
    return started.run.run_id


async def _status(r: Replica, run_id: str) -> str | None:
    return await r.runs.runs.status(run_id)


async def test_reject_answers_conflict_from_the_other_replica(
    pair: tuple[Replica, Replica],
) -> None:
    a, b = pair
    thread_id = await new_thread(a)
    await _running(a, thread_id)
    with pytest.raises(Conflict, match="already running a task"):
        await b.runs.wait(TENANT, thread_id, body(multitask_strategy="reject"))


async def test_enqueue_runs_after_the_current_run(pair: tuple[Replica, Replica]) -> None:
    a, b = pair
    thread_id = await new_thread(a)
    first = await _running(a, thread_id)
    outcome = await b.runs.wait(TENANT, thread_id, body(multitask_strategy="enqueue"))
    # The queued run saw the first run's state: its steps follow the first run's.
    assert json.loads(outcome.body)["steps"] == ["first", "second", "first", "second"]
    assert await _status(a, first) == "success"
    runs = await a.runs.runs.search(TENANT.tenant_id, thread_id)
    assert [r.status for r in runs] == ["success", "success"]
    thread = await a.store.get_thread(TENANT.tenant_id, thread_id)
    assert (thread.status, thread.current_run_id) == ("idle", None)


async def test_default_strategy_is_enqueue(pair: tuple[Replica, Replica]) -> None:
    a, b = pair
    thread_id = await new_thread(a)
    await _running(a, thread_id)
    started = await b.runs.start(TENANT, thread_id, body(), "background")
    assert started.run.status == "pending"
    assert started.run.multitask_strategy == "enqueue"


async def test_interrupt_stops_the_current_run_and_keeps_its_progress(
    pair: tuple[Replica, Replica],
) -> None:
    a, b = pair
    thread_id = await new_thread(a)
    first = await _running(a, thread_id)
    outcome = await b.runs.wait(TENANT, thread_id, body(multitask_strategy="interrupt"))
    assert await _status(a, first) == "interrupted"
    # The interrupted run's "first" step stays; then the new run's two steps.
    assert json.loads(outcome.body)["steps"] == ["first", "first", "second"]


async def test_rollback_deletes_the_current_run_and_its_checkpoints(
    pair: tuple[Replica, Replica],
) -> None:
    a, b = pair
    thread_id = await new_thread(a)
    first = await _running(a, thread_id)
    outcome = await b.runs.wait(TENANT, thread_id, body(multitask_strategy="rollback"))
    assert await _status(a, first) is None
    with pytest.raises(NotFound):
        await a.runs.runs.get(TENANT.tenant_id, first)
    assert json.loads(outcome.body)["steps"] == ["first", "second"]
    history = await a.threads.history(TENANT, thread_id, limit=50)
    assert {h["metadata"]["run_id"] for h in history} == {outcome.run_id}


async def test_cancel_from_the_other_replica(pair: tuple[Replica, Replica]) -> None:
    a, b = pair
    thread_id = await new_thread(a)
    run_id = await _running(a, thread_id)
    await b.runs.cancel(TENANT, thread_id, [run_id], action="interrupt", wait=True)
    assert await _status(a, run_id) == "interrupted"
    thread = await a.store.get_thread(TENANT.tenant_id, thread_id)
    assert thread.status == "interrupted"  # stopped before "second": next is not empty


async def test_cancel_a_queued_run(pair: tuple[Replica, Replica]) -> None:
    a, b = pair
    thread_id = await new_thread(a)
    first = await _running(a, thread_id)
    queued = await b.runs.start(TENANT, thread_id, body(), "background")
    await b.runs.cancel(TENANT, thread_id, [queued.run.run_id], action="interrupt")
    assert await _status(b, queued.run.run_id) == "interrupted"
    await a.runs.join(TENANT, thread_id, first)
    thread = await a.store.get_thread(TENANT.tenant_id, thread_id)
    assert thread.status == "idle"


async def test_cancel_of_a_finished_run_is_not_found(pair: tuple[Replica, Replica]) -> None:
    a, _ = pair
    thread_id = await new_thread(a)
    outcome = await a.runs.wait(TENANT, thread_id, body())
    with pytest.raises(NotFound, match="No matching runs"):
        await a.runs.cancel(TENANT, thread_id, [outcome.run_id], action="interrupt")


async def test_join_stream_from_the_other_replica_follows_live_events(
    pair: tuple[Replica, Replica],
) -> None:
    a, b = pair
    thread_id = await new_thread(a)
    started = await a.runs.start(
        TENANT, thread_id, body("slow", stream_mode=["custom", "values"]), "background"
    )
    seen = [
        frame
        async for frame in b.runs.join_stream(
            TENANT, thread_id, started.run.run_id, last_event_id=None, cancel_on_disconnect=False
        )
    ]
    text = b"".join(seen)
    assert b"event: metadata" in text
    assert b'"progress":"working"' in text
    assert text.rstrip().endswith(b'"mode":"slow"}\r\nid: ' + str(len(seen)).encode())


async def test_a_run_whose_replica_died_is_resumed_elsewhere(
    storage_settings: StorageSettings,
) -> None:
    async with replica(storage_settings) as survivor:
        thread_id = await new_thread(survivor)
        # A run claimed by a replica that then died: its lease is long gone.
        new = NewRun(
            tenant_id=TENANT.tenant_id,
            thread_id=thread_id,
            graph_id=GRAPH,
            assistant_id=GRAPH,
            kwargs=_kwargs(body()),
        )
        created = await survivor.runs.runs.create(new, worker_id="dead-replica")
        assert created.started
        async with survivor.store.transaction() as conn:
            await conn.execute(
                update(RUNS)
                .where(RUNS.c.run_id == new.run_id)
                .values(heartbeat_at=utcnow() - timedelta(minutes=5))
            )
        outcome = await survivor.runs.join(TENANT, thread_id, new.run_id)
        assert json.loads(outcome.body)["steps"] == ["first", "second"]
        run = await survivor.runs.runs.get(TENANT.tenant_id, new.run_id)
        assert (run.status, run.attempt) == ("success", 2)


async def test_a_resumed_run_continues_from_its_checkpoint(
    storage_settings: StorageSettings,
) -> None:
    """Killed mid-run: the next attempt does not apply the input a second time."""
    settings = ExecutorSettings(heartbeat_s=0.2, lease_s=10.0, poll_s=0.2)
    async with replica(storage_settings, executor=settings) as doomed:
        thread_id = await new_thread(doomed)
        started = await doomed.runs.start(TENANT, thread_id, body("slow"), "background")
        await wait_for(lambda: doomed.executor.local(started.run.run_id))
        await wait_for(lambda: _checkpointed(doomed, thread_id, ["first"]))  # in "second"
        # The replica dies: its tasks stop and it never heartbeats again.
        local = doomed.executor.local(started.run.run_id)
        assert local is not None and local.task is not None
        doomed.executor._loops[0].cancel()
        local.task.cancel()
    # The survivor's clock is past the dead replica's lease: its reaper resumes the run.
    later = ManualClock()
    later.advance(settings.lease_s)
    async with replica(storage_settings, executor=settings, clock=later) as survivor:
        outcome = await survivor.runs.join(TENANT, thread_id, started.run.run_id)
        assert json.loads(outcome.body)["steps"] == ["first", "second"]


async def _checkpointed(r: Replica, thread_id: str, steps: list[str]) -> bool:
    state = await r.threads.get_state(TENANT, thread_id)
    return bool(state["values"].get("steps") == steps)


async def test_a_replica_shutting_down_hands_its_runs_back(
    storage_settings: StorageSettings,
) -> None:
    async with replica(storage_settings) as leaving:
        thread_id = await new_thread(leaving)
        started = await leaving.runs.start(TENANT, thread_id, body("slow"), "background")
        await wait_for(lambda: leaving.executor.local(started.run.run_id))
    async with replica(storage_settings) as survivor:
        outcome = await survivor.runs.join(TENANT, thread_id, started.run.run_id)
        assert json.loads(outcome.body)["steps"] == ["first", "second"]


async def test_delayed_run(pair: tuple[Replica, Replica]) -> None:
    a, _ = pair
    thread_id = await new_thread(a)
    started = await a.runs.start(TENANT, thread_id, body(after_seconds=0.5), "background")
    assert started.run.status == "pending"
    assert (await a.store.get_thread(TENANT.tenant_id, thread_id)).status == "busy"
    outcome = await a.runs.join(TENANT, thread_id, started.run.run_id)
    assert json.loads(outcome.body)["steps"] == ["first", "second"]


def _kwargs(request: RunCreate) -> dict[str, object]:
    return {
        "input": request.input,
        "config": {"configurable": {}},
        "context": {},
        "stream_mode": ["values"],
    }
