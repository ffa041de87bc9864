"""Run traces kept with their runs, on both backends: written with the run's end, read
by the run's tenant only, deleted with the run or its thread."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select

from agent_runtime.config.settings import StorageSettings
from agent_runtime.core.errors import NotFound
from agent_runtime.db.tables import RUN_TRACES
from agent_runtime.execution.run_trace import NodeSpan
from agent_runtime.runs.trace_rows import TraceReader
from tests.runs.run_harness import GRAPH, OTHER, TENANT, Replica, body, new_thread, replica


@pytest.fixture
async def one(storage_settings: StorageSettings) -> AsyncIterator[Replica]:
    async with replica(storage_settings) as r:
        yield r


def _nodes(spans: list[object]) -> list[tuple[str, str, str | None]]:
    return [(s.name, s.status, s.error) for s in spans if isinstance(s, NodeSpan)]


async def _stored(replica: Replica) -> int:
    async with replica.store.transaction() as conn:
        return int((await conn.execute(select(func.count()).select_from(RUN_TRACES))).scalar_one())


async def test_an_ended_run_has_its_trace_for_its_tenant_only(one: Replica) -> None:
    traces = TraceReader(one.store)
    thread_id = await new_thread(one)
    outcome = await one.runs.wait(TENANT, thread_id, body())
    trace = await traces.get(TENANT.tenant_id, thread_id, outcome.run_id)
    assert (trace.run_id, trace.thread_id, trace.graph_id) == (outcome.run_id, thread_id, GRAPH)
    assert trace.status == "success" and trace.attempt == 1
    assert _nodes(trace.spans) == [("first", "ok", None), ("second", "ok", None)]
    assert trace.totals.nodes == 2 and trace.duration_ms is not None
    with pytest.raises(NotFound):
        await traces.get(OTHER.tenant_id, thread_id, outcome.run_id)
    with pytest.raises(NotFound):
        await traces.get(TENANT.tenant_id, await new_thread(one), outcome.run_id)


async def test_failed_and_interrupted_runs_say_where(one: Replica) -> None:
    traces = TraceReader(one.store)
    thread_id = await new_thread(one)
    crashed = await one.runs.wait(TENANT, thread_id, body("crash"))
    trace = await traces.get(TENANT.tenant_id, thread_id, crashed.run_id)
    assert trace.status == "error"
    assert _nodes(trace.spans) == [("first", "ok", None), ("second", "error", "ValueError")]

    asked = await one.runs.wait(TENANT, thread_id, body("ask"))
    trace = await traces.get(TENANT.tenant_id, thread_id, asked.run_id)
    assert _nodes(trace.spans) == [("first", "ok", None), ("second", "interrupted", None)]
    resumed = await one.runs.wait(TENANT, thread_id, body(input=None, command={"resume": "yes"}))
    trace = await traces.get(TENANT.tenant_id, thread_id, resumed.run_id)
    assert _nodes(trace.spans) == [("second", "ok", None)]


async def test_a_run_not_ended_has_no_spans_yet(storage_settings: StorageSettings) -> None:
    async with replica(storage_settings) as busy:
        thread_id = await new_thread(busy)
        started = await busy.runs.start(TENANT, thread_id, body("hang"), "background")
        queued = await busy.runs.start(
            TENANT, thread_id, body(multitask_strategy="enqueue"), "background"
        )
        traces = TraceReader(busy.store)
        for run, status in ((started.run, "running"), (queued.run, "pending")):
            trace = await traces.get(TENANT.tenant_id, thread_id, run.run_id)
            assert trace.status in (status, "pending")
            assert trace.spans == [] and trace.duration_ms is None


async def test_traces_go_with_their_run_and_their_thread(one: Replica) -> None:
    thread_id = await new_thread(one)
    first = await one.runs.wait(TENANT, thread_id, body())
    await one.runs.wait(TENANT, thread_id, body())
    assert await _stored(one) == 2
    await one.runs.runs.delete(TENANT.tenant_id, thread_id, first.run_id)
    assert await _stored(one) == 1
    await one.threads.delete(TENANT, thread_id)
    assert await _stored(one) == 0
