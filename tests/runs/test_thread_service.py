"""ThreadService on both storage backends: create, state, state updates, history."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from langgraph.graph import START, StateGraph
from langgraph.types import Command, interrupt

from agent_runtime.config.settings import StorageSettings
from agent_runtime.core.errors import BadRequest, Conflict, InvalidRequest, NotFound
from agent_runtime.execution.tenant_context import tenant_scope
from agent_runtime.protocol.agent_protocol import CheckpointConfig, ThreadCreate, ThreadStateUpdate
from agent_runtime.runs.thread_service import NO_GRAPH, ThreadService, empty_state
from agent_runtime.user_app.graph_loader import LoadedGraph
from agent_runtime.user_app.served_graphs import ServedGraphs
from tests.runs import run_harness
from tests.runs.run_harness import GRAPH, OTHER, TENANT, Replica, State, new_thread
from tests.runs.thread_harness import NO_GRAPHS, ids, ran


@pytest.fixture
async def one(storage_settings: StorageSettings) -> AsyncIterator[Replica]:
    async with run_harness.replica(storage_settings) as r:
        yield r


# -- create ----------------------------------------------------------------------------
async def test_create_with_ttl_default_ttl_and_bad_ttl(one: Replica) -> None:
    made = await one.threads.create(TENANT, ThreadCreate(ttl={"ttl": 5, "strategy": "keep_latest"}))
    record = await one.store.get_thread(TENANT.tenant_id, made["thread_id"])
    assert (record.ttl_strategy, record.ttl_minutes) == ("keep_latest", 5.0)
    assert record.expires_at == record.created_at + timedelta(minutes=5)
    for bad in ({"ttl": 0}, {"ttl": "5"}, {"ttl": True}, {"ttl": 5, "strategy": "archive"}):
        with pytest.raises(InvalidRequest):
            await one.threads.create(TENANT, ThreadCreate(ttl=bad))
    for default in (("delete", 2.0), ("keep_latest", 3.0)):
        defaulted = ThreadService(
            one.store, one.thread_rows, NO_GRAPHS, one.saver, default_ttl=default
        )
        made = await defaulted.create(TENANT, ThreadCreate())
        record = await one.store.get_thread(TENANT.tenant_id, made["thread_id"])
        assert (record.ttl_strategy, record.ttl_minutes) == default


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
    with tenant_scope(TENANT.tenant_id):
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

    with tenant_scope(TENANT.tenant_id):
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
