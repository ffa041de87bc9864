"""Conformance suite of the checkpointer factory on SQLite and a real Postgres.

Real compiled LangGraph graphs (no LLM) run on the factory's saver.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypedDict

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver, empty_checkpoint
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, interrupt
from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

from agent_runtime.config.settings import StorageSettings
from agent_runtime.core import timing
from agent_runtime.core.errors import DependencyUnavailable
from agent_runtime.execution.checkpointers import Checkpointers, PooledPostgresSaver, TimedSaver
from tests.backends import backend_settings

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


# -- Postgres without the saver-wide lock -------------------------------------------------

Pool = AsyncConnectionPool[AsyncConnection[DictRow]]


@pytest.fixture
async def postgres_checkpointers(tmp_path: Path) -> AsyncIterator[Checkpointers]:
    async with backend_settings("postgres", tmp_path) as settings:
        factory = Checkpointers(settings)
        await factory.setup()
        try:
            yield factory
        finally:
            await factory.close()


def _pool(checkpointers: Checkpointers) -> Pool:
    inner = checkpointers.saver.inner
    assert isinstance(inner, PooledPostgresSaver)
    assert isinstance(inner.conn, AsyncConnectionPool)
    return inner.conn


class CheckedOut:
    """Counts the pool's connections checked out at once.

    Each checkout holds its connection until ``expected`` are out together (or for at most
    ``hold_s``), so calls that can overlap are made to, and the peak shows whether they did.
    """

    def __init__(self, pool: Pool, monkeypatch: pytest.MonkeyPatch, expected: int, hold_s: float):
        self.now = 0
        self.peak = 0
        self._all_out = asyncio.Event()
        original = pool.connection

        @contextlib.asynccontextmanager
        async def connection(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            async with original(*args, **kwargs) as conn:
                self.now += 1
                self.peak = max(self.peak, self.now)
                if self.now >= expected:
                    self._all_out.set()
                try:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._all_out.wait(), hold_s)
                    yield conn
                finally:
                    self.now -= 1

        monkeypatch.setattr(pool, "connection", connection)


async def _put_on_threads(saver: BaseCheckpointSaver[Any], count: int) -> list[RunnableConfig]:
    """One checkpoint on each of ``count`` new threads, all at once; their configs."""
    configs = [_thread() for _ in range(count)]
    for config in configs:
        config["configurable"]["checkpoint_ns"] = ""

    async def put(config: RunnableConfig) -> RunnableConfig:
        return await saver.aput(config, empty_checkpoint(), {"source": "input", "step": -1}, {})

    return list(await asyncio.gather(*(put(config) for config in configs)))


async def test_postgres_factory_uses_the_lock_free_saver(
    postgres_checkpointers: Checkpointers,
) -> None:
    assert isinstance(postgres_checkpointers.saver.inner, PooledPostgresSaver)


async def test_pooled_saver_refuses_a_single_connection(postgres_url: str) -> None:
    async with await AsyncConnection.connect(postgres_url, autocommit=True) as conn:
        with pytest.raises(TypeError, match="AsyncConnectionPool"):
            PooledPostgresSaver(conn)  # type: ignore[arg-type]


async def test_concurrent_puts_on_different_threads_overlap(
    postgres_checkpointers: Checkpointers, monkeypatch: pytest.MonkeyPatch
) -> None:
    writers = 4  # within the pool's minimum size: no write waits for a connection
    pool = _pool(postgres_checkpointers)
    # hold_s only bounds a failing test: the writes go on once all four are in flight.
    checked_out = CheckedOut(pool, monkeypatch, expected=writers, hold_s=30.0)
    saver = postgres_checkpointers.saver
    written = await _put_on_threads(saver, writers)
    assert checked_out.peak == writers
    for config in written:
        stored = await saver.aget_tuple(config)
        assert stored is not None
        assert stored.config["configurable"] == config["configurable"]


async def test_stock_saver_serialises_the_same_puts(
    postgres_checkpointers: Checkpointers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The contrast: the stock saver over the same pool lets one call in at a time."""
    pool = _pool(postgres_checkpointers)
    checked_out = CheckedOut(pool, monkeypatch, expected=3, hold_s=0.2)
    written = await _put_on_threads(AsyncPostgresSaver(pool), 3)
    assert checked_out.peak == 1
    assert len(written) == 3


async def test_concurrent_threads_all_read_back(postgres_checkpointers: Checkpointers) -> None:
    """50 threads run 3 invocations each, all at once, over a pool of 10 connections."""
    graph = counter_graph(postgres_checkpointers.saver)
    threads, invocations = 50, 3

    async def run_thread(index: int) -> RunnableConfig:
        config = _thread()
        for invocation in range(invocations):
            start = index * 1000 + invocation * 100
            result = await graph.ainvoke({"count": start}, config)
            assert result == {"count": start + len(COUNTER_NODES)}
        return config

    configs = await asyncio.gather(*(run_thread(i) for i in range(threads)))
    last_start = (invocations - 1) * 100
    for index, config in enumerate(configs):
        state = await graph.aget_state(config)
        assert state.values == {"count": index * 1000 + last_start + len(COUNTER_NODES)}
        assert state.next == ()
        history = [snapshot async for snapshot in graph.aget_state_history(config)]
        assert len(history) == invocations * (len(COUNTER_NODES) + 2)
        assert all(
            s.config["configurable"]["thread_id"] == config["configurable"]["thread_id"]
            for s in history
        )
