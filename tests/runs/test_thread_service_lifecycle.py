"""ThreadService on both storage backends: copy, delete, prune, the TTL sweep."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from agent_runtime.config.settings import StorageSettings
from agent_runtime.core.errors import NotFound
from agent_runtime.core.records import RunRecord
from agent_runtime.db.tables import RUN_EVENTS, RUNS, THREADS, utcnow
from agent_runtime.execution.tenant_context import tenant_scope
from agent_runtime.protocol.agent_protocol import Command as ResumeCommand
from agent_runtime.protocol.agent_protocol import RunCreate, ThreadCreate
from agent_runtime.runs.run_queue import NewRun, RunEnd
from agent_runtime.runs.thread_service import ThreadService
from tests.runs import run_harness
from tests.runs.run_harness import GRAPH, OTHER, TENANT, Replica, body, new_thread
from tests.runs.thread_harness import NO_GRAPHS, ids, ran


@pytest.fixture
async def one(storage_settings: StorageSettings) -> AsyncIterator[Replica]:
    async with run_harness.replica(storage_settings) as r:
        yield r


def resume(value: str) -> RunCreate:
    return body().model_copy(update={"input": None, "command": ResumeCommand(resume=value)})


async def set_times(r: Replica, thread_id: str, **columns: Any) -> None:
    query = update(THREADS).where(THREADS.c.thread_id == thread_id).values(**columns)
    async with r.store.transaction() as conn:
        await conn.execute(query)


async def checkpoint_of(r: Replica, thread_id: str) -> Any:
    with tenant_scope(TENANT.tenant_id):
        config = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
        return await r.saver.aget_tuple(config)  # type: ignore[arg-type]


# -- copy ------------------------------------------------------------------------------
async def test_copy_keeps_state_and_history_but_not_runs(one: Replica) -> None:
    source = await ran(one)
    await one.store.update_thread(TENANT.tenant_id, source, metadata={"tag": {"a": 1}})
    copy = await one.threads.copy(TENANT, source)
    copy_id = copy["thread_id"]
    assert copy_id != source
    source_row = await one.store.get_thread(TENANT.tenant_id, source)
    assert copy["metadata"] == source_row.metadata
    assert copy["metadata"]["tag"] == {"a": 1}
    assert (copy["status"], copy["values"]["steps"]) == ("idle", ["first", "second"])
    copied, original = [await one.threads.get_state(TENANT, t) for t in (copy_id, source)]
    assert copied["checkpoint"]["thread_id"] == copy_id
    for key in ("values", "next", "metadata", "checkpoint_id", "parent_checkpoint_id"):
        assert copied[key] == original[key]
    assert ids(await one.threads.history(TENANT, copy_id)) == ids(
        await one.threads.history(TENANT, source)
    )
    assert await one.runs.runs.search(TENANT.tenant_id, copy_id) == []
    # The copy goes its own way.
    await one.runs.wait(TENANT, copy_id, body())
    assert len(await one.threads.history(TENANT, copy_id)) == 8
    assert len(await one.threads.history(TENANT, source)) == 4
    for principal, thread in ((TENANT, "no-such-thread"), (OTHER, source)):
        with pytest.raises(NotFound):
            await one.threads.copy(principal, thread)


async def test_copy_of_an_interrupted_thread_can_be_resumed(one: Replica) -> None:
    source = await ran(one, "ask")
    copy_id = (await one.threads.copy(TENANT, source))["thread_id"]
    state = await one.threads.get_state(TENANT, copy_id)
    assert state["interrupts"][0]["value"] == {"question": "approve?"}
    outcome = await one.runs.wait(TENANT, copy_id, resume("copy"))
    assert json.loads(outcome.body)["steps"] == ["first", "approved:copy"]
    assert (await one.threads.get_state(TENANT, source))["next"] == ["second"]


# -- delete ----------------------------------------------------------------------------
async def _rows(r: Replica, table: Any, where: Any) -> int:
    query = select(func.count()).select_from(table).where(where)
    async with r.store.transaction() as conn:
        return int((await conn.execute(query)).scalar_one())


async def test_delete_cascades_and_stops_runs_in_flight(one: Replica) -> None:
    thread_id, keep = await ran(one, background=True), await ran(one, background=True)
    [run] = await one.runs.runs.search(TENANT.tenant_id, thread_id)
    assert await _rows(one, RUN_EVENTS, RUN_EVENTS.c.run_id == run.run_id) > 0
    mine, theirs = one.items.for_tenant(TENANT.tenant_id), one.items.for_tenant(OTHER.tenant_id)
    await mine.aput(("threads", thread_id), "a", {"v": 1})
    await mine.aput(("threads", thread_id, "notes"), "b", {"v": 2})
    await mine.aput(("threads", keep), "a", {"v": 3})
    await mine.aput(("users", "u1"), "a", {"v": 4})
    await theirs.aput(("threads", thread_id), "a", {"v": 5})

    await one.threads.delete(TENANT, thread_id)
    with pytest.raises(NotFound):
        await one.store.get_thread(TENANT.tenant_id, thread_id)
    assert await _rows(one, RUNS, RUNS.c.thread_id == thread_id) == 0
    assert await _rows(one, RUN_EVENTS, RUN_EVENTS.c.run_id == run.run_id) == 0
    assert await checkpoint_of(one, thread_id) is None
    assert await mine.asearch(("threads", thread_id)) == []
    assert [i.key for i in await mine.asearch(("threads", keep))] == ["a"]
    assert await mine.aget(("users", "u1"), "a") is not None
    assert await theirs.aget(("threads", thread_id), "a") is not None
    # The other thread is untouched.
    assert await checkpoint_of(one, keep) is not None
    assert await _rows(one, RUNS, RUNS.c.thread_id == keep) == 1
    with pytest.raises(NotFound):
        await one.threads.delete(TENANT, thread_id)
    with pytest.raises(NotFound):
        await one.threads.delete(OTHER, keep)
    assert (await one.threads.get_state(TENANT, keep))["values"]["steps"] == ["first", "second"]
    # Runs still in flight are told to stop.
    stopped: list[str] = []
    service = ThreadService(
        one.store, one.thread_rows, NO_GRAPHS, one.saver, stop_runs=stopped.extend, items=one.items
    )
    thread_id = await new_thread(one)
    runs = one.runs.runs

    async def create() -> RunRecord:  # by another worker, which runs nothing here
        new = NewRun(
            tenant_id=TENANT.tenant_id,
            thread_id=thread_id,
            graph_id=GRAPH,
            assistant_id=GRAPH,
            kwargs={},
        )
        return (await runs.create(new, "elsewhere")).run

    finished = await create()
    await runs.finish(finished, RunEnd(status="success", thread_status="idle"), "elsewhere")
    running, pending = await create(), await create()
    assert (running.status, pending.status) == ("running", "pending")
    await service.delete(TENANT, thread_id)
    assert sorted(stopped) == sorted([running.run_id, pending.run_id])


async def test_forget_run_restores_the_earlier_state(one: Replica) -> None:
    thread_id = await ran(one)
    before = await one.threads.get_state(TENANT, thread_id)
    second = await one.runs.wait(TENANT, thread_id, body())
    with pytest.raises(NotFound):
        await one.threads.forget_run(OTHER, thread_id, second.run_id)
    assert len(await one.threads.history(TENANT, thread_id)) == 8  # nothing went
    await one.threads.forget_run(TENANT, thread_id, second.run_id)
    assert await one.threads.get_state(TENANT, thread_id) == before
    row = await one.store.get_thread(TENANT.tenant_id, thread_id)
    assert (row.status, row.state_values) == ("idle", before["values"])


# -- prune -----------------------------------------------------------------------------
async def test_prune_keep_latest_and_delete(one: Replica) -> None:
    thread_id = await ran(one)
    asked = await ran(one, "ask")
    states = {t: await one.threads.get_state(TENANT, t) for t in (thread_id, asked)}
    other = await ran(one)
    pruned = await one.threads.prune(TENANT, [thread_id, asked, "no-such-thread"], "keep_latest")
    assert pruned == 2
    for t, state in states.items():
        [latest] = await one.threads.history(TENANT, t)
        assert latest["checkpoint_id"] == state["checkpoint_id"]
        assert latest["values"] == state["values"]
        assert (await one.threads.get_state(TENANT, t))["interrupts"] == state["interrupts"]
    assert len(await one.threads.history(TENANT, other)) == 4
    assert await one.threads.prune(OTHER, [other], "keep_latest") == 0
    assert len(await one.threads.history(TENANT, other)) == 4
    # Both threads go on from their kept state.
    again = await one.runs.wait(TENANT, thread_id, body())
    assert json.loads(again.body)["steps"] == ["first", "second"] * 2
    resumed = await one.runs.wait(TENANT, asked, resume("ok"))
    assert json.loads(resumed.body)["steps"] == ["first", "approved:ok"]
    # "delete" removes the threads; unknown and other tenants' ids are skipped.
    mine = other
    theirs = await new_thread(one, OTHER)
    assert await one.threads.prune(TENANT, [mine, "no-such-thread", theirs], "delete") == 1
    with pytest.raises(NotFound):
        await one.store.get_thread(TENANT.tenant_id, mine)
    assert await checkpoint_of(one, mine) is None
    await one.store.get_thread(OTHER.tenant_id, theirs)
    assert await one.threads.prune(TENANT, [], "delete") == 0


# -- TTL sweep -------------------------------------------------------------------------
async def _ttl_thread(r: Replica, strategy: str) -> str:
    made = await r.threads.create(TENANT, ThreadCreate(ttl={"ttl": 1, "strategy": strategy}))
    await r.runs.wait(TENANT, made["thread_id"], body())
    return str(made["thread_id"])


async def test_sweep_deletes_expired_threads_and_spares_the_rest(one: Replica) -> None:
    old = utcnow() - timedelta(minutes=10)
    expired = await _ttl_thread(one, "delete")
    await one.items.for_tenant(TENANT.tenant_id).aput(("threads", expired), "k", {"v": 1})
    await set_times(one, expired, expires_at=old, updated_at=old)
    busy = await _ttl_thread(one, "delete")
    await set_times(one, busy, expires_at=old, updated_at=old, status="busy")
    no_ttl = await ran(one)
    await set_times(one, no_ttl, updated_at=old)
    fresh = await _ttl_thread(one, "delete")
    used = await _ttl_thread(one, "delete")  # past expires_at, but used since: lazy rule
    await set_times(one, used, expires_at=utcnow() - timedelta(seconds=1))

    assert await one.threads.sweep() == 1
    with pytest.raises(NotFound):
        await one.store.get_thread(TENANT.tenant_id, expired)
    assert await checkpoint_of(one, expired) is None
    assert await one.items.for_tenant(TENANT.tenant_id).asearch(("threads", expired)) == []
    for kept in (busy, no_ttl, fresh, used):
        await one.store.get_thread(TENANT.tenant_id, kept)
    row = await one.store.get_thread(TENANT.tenant_id, used)
    assert row.expires_at == row.updated_at + timedelta(minutes=1)
    assert len(await one.threads.history(TENANT, used)) == 4
    assert await one.threads.sweep() == 0


async def test_sweep_keep_latest_prunes_and_keeps_the_thread(one: Replica) -> None:
    thread_id = await _ttl_thread(one, "keep_latest")
    await one.runs.wait(TENANT, thread_id, body())
    state = await one.threads.get_state(TENANT, thread_id)
    old = utcnow() - timedelta(minutes=10)
    await set_times(one, thread_id, expires_at=old, updated_at=old)
    started = utcnow()
    assert await one.threads.sweep() == 1
    [latest] = await one.threads.history(TENANT, thread_id)
    assert (latest["checkpoint_id"], latest["values"]) == (state["checkpoint_id"], state["values"])
    row = await one.store.get_thread(TENANT.tenant_id, thread_id)
    assert row.expires_at is not None and row.expires_at >= started + timedelta(minutes=1)
    # Pruning is bookkeeping: the thread does not jump to the top of "recently updated".
    assert row.updated_at == old
    assert await one.threads.sweep() == 0


async def test_concurrent_sweeps_share_the_work(
    one: Replica, storage_settings: StorageSettings
) -> None:
    """Every replica sweeps: a thread the other sweep took first is skipped, not an error."""
    old = utcnow() - timedelta(minutes=10)
    for _ in range(3):
        await set_times(one, await _ttl_thread(one, "delete"), expires_at=old, updated_at=old)
    async with run_harness.replica(storage_settings) as other:
        swept = await asyncio.gather(one.threads.sweep(), other.threads.sweep())
    assert sum(swept) == 3
    assert await one.thread_rows.count(TENANT.tenant_id) == 0
