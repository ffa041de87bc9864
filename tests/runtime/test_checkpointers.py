"""Conformance suite of the checkpointer factory on SQLite and a real Postgres.

Real compiled LangGraph graphs (no LLM) run on the factory's saver.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any, TypedDict

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, interrupt

from runtime import timing
from runtime.checkpointers import Checkpointers, TimedSaver
from runtime.errors import DependencyUnavailable
from runtime.settings import StorageSettings

COUNTER_NODES = ("first", "second")


class Counter(TypedDict):
    count: int


class Approval(TypedDict, total=False):
    request: str
    answer: str


def _increment(state: Counter) -> dict[str, int]:
    return {"count": state["count"] + 1}


def counter_graph(saver: BaseCheckpointSaver[Any]) -> CompiledStateGraph[Any, Any, Any, Any]:
    builder = StateGraph(Counter)
    builder.add_node("first", _increment)
    builder.add_node("second", _increment)
    builder.add_edge(START, "first")
    builder.add_edge("first", "second")
    builder.add_edge("second", END)
    return builder.compile(checkpointer=saver)


def _ask(state: Approval) -> dict[str, str]:
    answer = interrupt({"question": f"approve {state['request']}?"})
    return {"answer": str(answer)}


def approval_graph(saver: BaseCheckpointSaver[Any]) -> CompiledStateGraph[Any, Any, Any, Any]:
    builder = StateGraph(Approval)
    builder.add_node("ask", _ask)
    builder.add_edge(START, "ask")
    builder.add_edge("ask", END)
    return builder.compile(checkpointer=saver)


def _thread() -> RunnableConfig:
    return {"configurable": {"thread_id": f"ckpt-test-{uuid.uuid4().hex}"}}


@pytest.fixture
async def checkpointers(storage_settings: StorageSettings) -> AsyncIterator[Checkpointers]:
    factory = Checkpointers(storage_settings)
    await factory.setup()
    try:
        yield factory
    finally:
        await factory.close()


async def test_setup_returns_the_timed_saver(checkpointers: Checkpointers) -> None:
    saver = checkpointers.saver
    assert isinstance(saver, TimedSaver)
    assert await checkpointers.setup() is saver
    assert saver.serde is saver.inner.serde


async def test_graph_state_and_history(checkpointers: Checkpointers) -> None:
    graph = counter_graph(checkpointers.saver)
    config = _thread()
    await graph.ainvoke({"count": 0}, config)
    result = await graph.ainvoke({"count": 10}, config)
    assert result == {"count": 12}

    state = await graph.aget_state(config)
    assert state.values == {"count": 12}
    assert state.next == ()
    history = [snapshot async for snapshot in graph.aget_state_history(config)]
    # Per invocation: the input checkpoint, the START step, then one per node.
    assert len(history) == 2 * (len(COUNTER_NODES) + 2)
    assert history[0].values == {"count": 12}

    await checkpointers.saver.adelete_thread(config["configurable"]["thread_id"])
    assert (await graph.aget_state(config)).values == {}


async def test_checkpoint_time_is_recorded(checkpointers: Checkpointers) -> None:
    graph = counter_graph(checkpointers.saver)
    with timing.track_run() as timings:
        await graph.ainvoke({"count": 0}, _thread())
    assert timings.checkpoint_ms > 0
    assert timings.provider_ms == 0


async def test_interrupt_survives_a_restart(storage_settings: StorageSettings) -> None:
    config = _thread()
    before = Checkpointers(storage_settings)
    try:
        paused = await approval_graph(await before.setup()).ainvoke({"request": "refund"}, config)
        assert [i.value for i in paused["__interrupt__"]] == [{"question": "approve refund?"}]
    finally:
        await before.close()

    after = Checkpointers(storage_settings)
    try:
        graph = approval_graph(await after.setup())
        pending = await graph.aget_state(config)
        assert pending.next == ("ask",)
        result = await graph.ainvoke(Command(resume="yes"), config)
        assert result == {"request": "refund", "answer": "yes"}
        assert (await graph.aget_state(config)).next == ()
    finally:
        await after.close()


async def test_concurrent_setup_of_fresh_database(storage_settings: StorageSettings) -> None:
    factories = [Checkpointers(storage_settings) for _ in range(3)]
    try:
        savers = await asyncio.gather(*(f.setup() for f in factories))
        config = _thread()
        await counter_graph(savers[0]).ainvoke({"count": 0}, config)
        assert (await counter_graph(savers[2]).aget_state(config)).values == {"count": 2}
    finally:
        await asyncio.gather(*(f.close() for f in factories))


async def test_unreachable_postgres_is_dependency_unavailable() -> None:
    password = "s3cret-pw"
    settings = StorageSettings(
        database_url=f"postgresql://postgres:{password}@127.0.0.1:1/test", db_timeout_s=0.5
    )
    factory = Checkpointers(settings)
    with pytest.raises(DependencyUnavailable) as error:
        await factory.setup()
    assert password not in str(error.value)
    with pytest.raises(RuntimeError):
        _ = factory.saver
