"""Orchestrator replicas without Ray: the real run services over one real database.

Each :class:`Replica` is what an orchestrator replica holds (metadata store, checkpointer,
item store, executor with its own worker id, run and thread services). Two replicas on
the same database behave as two Serve replicas do: that is how the tests show that
double-texting, cancels, joins and crash recovery hold across replicas.
"""

from __future__ import annotations

import asyncio
import operator
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, TypedDict

from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt

from agent_runtime.config.settings import StorageSettings
from agent_runtime.core.clock import SYSTEM_CLOCK, Clock
from agent_runtime.core.errors import ProviderChainExhausted
from agent_runtime.core.records import Principal, RunRecord
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.execution.checkpointers import Checkpointers, TimedSaver
from agent_runtime.execution.item_store import ItemStores
from agent_runtime.protocol.agent_protocol import RunCreate
from agent_runtime.runs.assistants import AssistantStore
from agent_runtime.runs.executor import ExecutorSettings, RunExecutor
from agent_runtime.runs.graph_runner import GraphRunner
from agent_runtime.runs.run_queue import RunStore
from agent_runtime.runs.run_service import RunService
from agent_runtime.runs.thread_rows import ThreadStore
from agent_runtime.runs.thread_service import ThreadService
from agent_runtime.tenancy.run_limits import RunLimits

TENANT = Principal(tenant_id="runs-tenant", key_id="k1")
OTHER = Principal(tenant_id="other-tenant", key_id="k2")
GRAPH = "steps"
# How long a "slow" step sleeps: long enough to double-text it, short for the suite.
SLOW_S = 1.5


class State(TypedDict):
    steps: Annotated[list[str], operator.add]
    mode: str


async def first(state: State) -> dict[str, Any]:
    return {"steps": ["first"]}


async def second(state: State) -> dict[str, Any]:
    mode = state["mode"]
    if mode == "crash":
        raise ValueError("second step broke")
    if mode == "provider":
        raise ProviderChainExhausted("smart", ["fake-smart: HTTP 500"])
    if mode == "ask":
        answer = interrupt({"question": "approve?"})
        return {"steps": [f"approved:{answer}"]}
    if mode in ("slow", "hang"):
        get_stream_writer()({"progress": "working"})
        await asyncio.sleep(SLOW_S if mode == "slow" else 3600)
    return {"steps": ["second"]}


def build() -> StateGraph[State]:
    graph = StateGraph(State)
    graph.add_node("first", first)
    graph.add_node("second", second)
    graph.add_edge(START, "first")
    graph.add_edge("first", "second")
    graph.add_edge("second", END)
    return graph


@dataclass
class Replica:
    store: MetadataStore
    runs: RunService
    threads: ThreadService
    thread_rows: ThreadStore
    finished: list[tuple[str, str]]
    items: ItemStores
    saver: TimedSaver

    @property
    def executor(self) -> RunExecutor:
        return self.runs.executor


@asynccontextmanager
async def replica(
    settings: StorageSettings,
    *,
    run_timeout_s: float = 30.0,
    executor: ExecutorSettings | None = None,
    start_loops: bool = True,
    run_limits: RunLimits | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> AsyncIterator[Replica]:
    store = MetadataStore(settings)
    await store.setup()
    for principal in (TENANT, OTHER):
        await store.ensure_tenant(principal.tenant_id, "runs")
    checkpointers = Checkpointers(settings)
    saver = await checkpointers.setup()
    items = ItemStores(settings)
    await items.setup()
    graphs = {GRAPH: build().compile(checkpointer=saver)}
    finished: list[tuple[str, str]] = []
    runner = GraphRunner(
        graphs,
        saver,
        run_timeout_s=run_timeout_s,
        on_run_finished=lambda graph, status, ms, timings: finished.append((graph, status)),
    )
    thread_rows = ThreadStore(store)
    threads = ThreadService(store, thread_rows, graphs, saver, items=items)
    loop_settings = executor or ExecutorSettings(heartbeat_s=0.2, lease_s=2.0, poll_s=0.2)

    def make_executor(runs: RunStore) -> RunExecutor:
        return RunExecutor(
            runs,
            runner,
            loop_settings,
            persist_events=RunService.persist_events,
            after_finish=lambda run, result: service.after_run(run, result),
        )

    async def drop(run: RunRecord) -> None:
        await threads.delete(Principal(tenant_id=run.tenant_id, key_id="t"), run.thread_id or "")

    service = RunService(
        store,
        RunStore(store, run_limits, clock),
        AssistantStore(store, [GRAPH]),
        make_executor,
        max_steps=50,
        poll_s=0.05,
        on_temporary_done=drop,
    )
    if start_loops:
        service.executor.start()
    try:
        yield Replica(store, service, threads, thread_rows, finished, items, saver)
    finally:
        await service.executor.close()
        await items.close()
        await checkpointers.close()
        await store.close()


def body(mode: str = "ok", **extra: Any) -> RunCreate:
    return RunCreate.model_validate(
        {"assistant_id": GRAPH, "input": {"steps": [], "mode": mode}, **extra}
    )


async def new_thread(replica: Replica, principal: Principal = TENANT) -> str:
    record = await replica.store.create_thread(principal.tenant_id)
    return record.thread_id
