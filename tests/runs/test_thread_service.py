"""ThreadService on both storage backends: state, updates, history, copy, delete, prune, TTL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from langgraph.graph import START, StateGraph
from langgraph.types import Command, interrupt
from sqlalchemy import func, select, update

from agent_runtime.config.settings import StorageSettings
from agent_runtime.core.errors import BadRequest, Conflict, InvalidRequest, NotFound
from agent_runtime.core.records import RunRecord
from agent_runtime.db.tables import RUN_EVENTS, RUNS, THREADS, utcnow
from agent_runtime.protocol.agent_protocol import (
    CheckpointConfig,
    RunCreate,
    ThreadCreate,
    ThreadStateUpdate,
)
from agent_runtime.protocol.agent_protocol import Command as ResumeCommand
from agent_runtime.runs.run_queue import NewRun, RunEnd
from agent_runtime.runs.thread_service import NO_GRAPH, ThreadService, empty_state
from agent_runtime.user_app.graph_loader import LoadedGraph
from agent_runtime.user_app.served_graphs import ServedGraphs
from tests.runs import run_harness
from tests.runs.run_harness import GRAPH, OTHER, TENANT, Replica, State, body, new_thread

NO_GRAPHS = ServedGraphs([], checkpointer=None, store=None)


@pytest.fixture
async def one(storage_settings: StorageSettings) -> AsyncIterator[Replica]:
    async with run_harness.replica(storage_settings) as r:
        yield r


async def ran(r: Replica, mode: str = "ok", *, background: bool = False) -> str:
    """A thread with one finished run (a background one stores its stream events)."""
    thread_id = await new_thread(r)
    if background:
        started = await r.runs.start(TENANT, thread_id, body(mode), "background")
        await r.runs.join(TENANT, thread_id, started.run.run_id)
    else:
        await r.runs.wait(TENANT, thread_id, body(mode))
    return thread_id


def resume(value: str) -> RunCreate:
    return body().model_copy(update={"input": None, "command": ResumeCommand(resume=value)})


def ids(history: list[dict[str, Any]]) -> list[str]:
    return [state["checkpoint_id"] for state in history]


async def set_times(r: Replica, thread_id: str, **columns: Any) -> None:
    query = update(THREADS).where(THREADS.c.thread_id == thread_id).values(**columns)
    async with r.store.transaction() as conn:
        await conn.execute(query)


async def checkpoint_of(r: Replica, thread_id: str) -> Any:
    return await r.saver.aget_tuple({"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}})


# -- create ----------------------------------------------------------------------------
async def test_create_with_ttl_default_ttl_and_bad_ttl(one: Replica) -> None:
    made = await one.threads.create(TENANT, ThreadCreate(ttl={"ttl": 5, "strategy": "keep_latest"}))
    record = await one.store.get_thread(TENANT.tenant_id, made["thread_id"])
    assert (record.ttl_strategy, record.ttl_minutes) == ("keep_latest", 5.0)
    assert record.expires_at == record.created_at + timedelta(minutes=5)
    for bad in ({"ttl": 0}, {"ttl": "5"}, {"ttl": True}, {"ttl": 5, "strategy": "archive"}):
        with pytest.raises(InvalidRequest):
            await one.threads.create(TENANT, ThreadCreate(ttl=bad))
    defaulted = ThreadService(
        one.store, one.thread_rows, NO_GRAPHS, one.saver, default_ttl_minutes=2
    )
    made = await defaulted.create(TENANT, ThreadCreate())
    record = await one.store.get_thread(TENANT.tenant_id, made["thread_id"])
    assert (record.ttl_strategy, record.ttl_minutes) == ("delete", 2.0)


async def test_create_with_supersteps_applies_them(one: Replica) -> None:
    step = {"values": {"steps": ["a"], "mode": "ok"}, "as_node": "first"}
    made = await one.threads.create(
        TENANT, ThreadCreate(metadata={"graph_id": GRAPH}, supersteps=[{"updates": [step]}])
    )
    # as_node "first" leaves "second" to run: the thread waits, as on the Platform.
    assert (made["status"], made["values"]) == ("interrupted", {"steps": ["a"], "mode": "ok"})
    state = await one.threads.get_state(TENANT, made["thread_id"])
    assert state["next"] == ["second"]
    assert state["metadata"]["source"] == "update"

    bad = {"values": {"steps": ["a"]}, "as_node": "nope"}
    with pytest.raises(BadRequest, match=r"was created, but .*Node nope does not exist"):
        await one.threads.create(
            TENANT,
            ThreadCreate(
                thread_id="00000000-0000-4000-8000-000000000001",
                metadata={"graph_id": GRAPH},
                supersteps=[{"updates": [bad]}],
            ),
        )
    await one.store.get_thread(TENANT.tenant_id, "00000000-0000-4000-8000-000000000001")


# -- state -----------------------------------------------------------------------------
async def test_get_state_fresh_after_a_run_and_at_a_checkpoint(one: Replica) -> None:
    fresh = await new_thread(one)
    assert await one.threads.get_state(TENANT, fresh) == empty_state(fresh)
    await one.store.update_thread(TENANT.tenant_id, fresh, metadata={"graph_id": GRAPH})
    assert await one.threads.get_state(TENANT, fresh) == empty_state(fresh)

    thread_id = await ran(one)
    state = await one.threads.get_state(TENANT, thread_id)
    assert state["values"] == {"steps": ["first", "second"], "mode": "ok"}
    assert (state["next"], state["tasks"], state["interrupts"]) == ([], [], [])
    older = state["parent_checkpoint"]["checkpoint_id"]
    assert state["parent_checkpoint_id"] == older
    at = await one.threads.get_state(
        TENANT, thread_id, checkpoint=CheckpointConfig(checkpoint_id=older)
    )
    assert (at["values"]["steps"], at["next"]) == (["first"], ["second"])
    assert at["checkpoint_id"] == older
    unknown = "1ef00000-0000-6000-8000-000000000000"
    at = await one.threads.get_state(
        TENANT, thread_id, checkpoint=CheckpointConfig(checkpoint_id=unknown)
    )
    assert (at["values"], at["metadata"], at["checkpoint_id"]) == ({}, None, unknown)
    for principal, thread in ((TENANT, "no-such-thread"), (OTHER, thread_id)):
        with pytest.raises(NotFound):
            await one.threads.get_state(principal, thread)


def child_ask(state: State) -> dict[str, Any]:
    return {"steps": [f"child:{interrupt('child?')}"]}


def nested_graph(saver: Any) -> Any:
    """A parent whose only node is a subgraph that interrupts."""
    child = StateGraph(State).add_sequence([child_ask])
    child.add_edge(START, "child_ask")
    parent = StateGraph(State).add_node("child", child.compile())
    parent.add_edge(START, "child")
    return parent.compile(checkpointer=saver)


async def test_state_and_history_of_a_subgraph(one: Replica) -> None:
    graph = nested_graph(one.saver)
    nested = LoadedGraph.static("nested", None, "test", graph)
    served = ServedGraphs([nested], checkpointer=one.saver, store=None)
    service = ThreadService(one.store, one.thread_rows, served, one.saver)
    thread = await one.store.create_thread(TENANT.tenant_id, metadata={"graph_id": "nested"})
    config = {"configurable": {"thread_id": thread.thread_id}}
    await graph.ainvoke({"steps": [], "mode": "ok"}, config)

    flat = await service.get_state(TENANT, thread.thread_id)
    [task] = flat["tasks"]
    assert task["state"] is None and task["interrupts"][0]["value"] == "child?"
    namespace = task["checkpoint"]["checkpoint_ns"]
    assert namespace.startswith("child:")
    deep = await service.get_state(TENANT, thread.thread_id, subgraphs=True)
    assert deep["tasks"][0]["state"]["next"] == ["child_ask"]
    inner = await service.get_state(
        TENANT, thread.thread_id, checkpoint=CheckpointConfig(checkpoint_ns=namespace)
    )
    assert inner["next"] == ["child_ask"]
    history = await service.history(
        TENANT, thread.thread_id, checkpoint={"checkpoint_ns": namespace}
    )
    assert history and all(s["checkpoint"]["checkpoint_ns"] == namespace for s in history)

    await graph.ainvoke(Command(resume="yes"), config)
    done = await service.get_state(TENANT, thread.thread_id, subgraphs=True)
    assert (done["values"]["steps"], done["tasks"]) == (["child:yes"], [])


# -- update_state ----------------------------------------------------------------------
async def test_update_state_recomputes_status_and_row(one: Replica) -> None:
    thread_id = await ran(one)
    update_body = ThreadStateUpdate(values={"steps": ["u"]}, as_node="first")
    written = await one.threads.update_state(TENANT, thread_id, update_body)
    checkpoint_id = written["checkpoint_id"]
    expected = {"thread_id": thread_id, "checkpoint_ns": "", "checkpoint_id": checkpoint_id}
    assert written["checkpoint"] == written["configurable"] == expected
    row = await one.store.get_thread(TENANT.tenant_id, thread_id)
    assert (row.status, row.state_values["steps"]) == ("interrupted", ["first", "second", "u"])
    state = await one.threads.get_state(TENANT, thread_id)
    assert (state["checkpoint_id"], state["next"]) == (checkpoint_id, ["second"])

    # An interrupted thread updated as the waiting node: done, its interrupts gone.
    asked = await ran(one, "ask")
    assert (await one.store.get_thread(TENANT.tenant_id, asked)).interrupts
    await one.threads.update_state(TENANT, asked, ThreadStateUpdate(values=None, as_node="second"))
    row = await one.store.get_thread(TENANT.tenant_id, asked)
    assert (row.status, row.interrupts, row.state_values["steps"]) == ("idle", {}, ["first"])


async def test_update_state_forks_from_a_checkpoint(one: Replica) -> None:
    thread_id = await ran(one)
    history = await one.threads.history(TENANT, thread_id)
    after_first = history[1]["checkpoint_id"]
    written = await one.threads.update_state(
        TENANT,
        thread_id,
        ThreadStateUpdate(values={"steps": ["fork"]}, as_node="first", checkpoint_id=after_first),
    )
    state = await one.threads.get_state(TENANT, thread_id)
    assert state["checkpoint_id"] == written["checkpoint_id"]
    assert state["parent_checkpoint_id"] == after_first
    assert state["values"]["steps"] == ["first", "fork"]
    again = ThreadStateUpdate(
        values={"steps": ["x"]},
        as_node="first",
        checkpoint=CheckpointConfig(checkpoint_id=after_first),
    )
    written = await one.threads.update_state(TENANT, thread_id, again)
    state = await one.threads.get_state(TENANT, thread_id)
    assert state["parent_checkpoint_id"] == after_first
    assert state["values"]["steps"] == ["first", "x"]


async def test_update_state_errors(one: Replica) -> None:
    thread_id = await ran(one)
    values = ThreadStateUpdate(values={"steps": ["u"]})
    with pytest.raises(BadRequest, match="Node nope does not exist"):
        await one.threads.update_state(
            TENANT, thread_id, ThreadStateUpdate(values={"steps": ["u"]}, as_node="nope")
        )
    no_graph = await new_thread(one)
    with pytest.raises(BadRequest) as raised:
        await one.threads.update_state(TENANT, no_graph, values)
    assert raised.value.message == NO_GRAPH.format(thread_id=no_graph)
    assert raised.value.message.startswith(f"Thread '{no_graph}' has no assigned graph ID.")
    for principal, thread in ((TENANT, "no-such-thread"), (OTHER, thread_id)):
        with pytest.raises(NotFound):
            await one.threads.update_state(principal, thread, values)
    await one.store.update_thread(TENANT.tenant_id, thread_id, status="busy")
    with pytest.raises(Conflict, match="in-flight runs") as conflict:
        await one.threads.update_state(TENANT, thread_id, values)
    assert conflict.value.code == "conflict"
    assert len(await one.threads.history(TENANT, thread_id)) == 4  # nothing was written


# -- history ---------------------------------------------------------------------------
async def test_history_limit_before_metadata_and_namespace(one: Replica) -> None:
    thread_id = await ran(one)
    history = await one.threads.history(TENANT, thread_id)
    assert [s["metadata"]["step"] for s in history] == [2, 1, 0, -1]
    assert history[-1]["metadata"]["source"] == "input"
    assert ids(await one.threads.history(TENANT, thread_id, limit=2)) == ids(history)[:2]
    newest = history[0]["checkpoint_id"]
    for before in (newest, {"checkpoint_id": newest}, {"configurable": {"checkpoint_id": newest}}):
        older = await one.threads.history(TENANT, thread_id, before=before)
        assert ids(older) == ids(history)[1:]
    loops = await one.threads.history(TENANT, thread_id, metadata={"source": "loop"})
    assert [s["metadata"]["step"] for s in loops] == [2, 1, 0]
    step1 = await one.threads.history(TENANT, thread_id, metadata={"step": 1})
    assert ids(step1) == [history[1]["checkpoint_id"]]
    root = await one.threads.history(TENANT, thread_id, checkpoint={"checkpoint_ns": ""})
    assert ids(root) == ids(history)
    assert await one.threads.history(TENANT, await new_thread(one)) == []
    for principal, thread in ((TENANT, "no-such-thread"), (OTHER, thread_id)):
        with pytest.raises(NotFound):
            await one.threads.history(principal, thread)


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
