"""Orchestrator replicas without Ray: the real run services over one real database.

Each :class:`Replica` is what an orchestrator replica holds, built by the deployment's own
:class:`Orchestration` (metadata store, checkpointer, item store, executor with its own
worker id, run and thread services), with the model router in process. Two replicas on
the same database behave as two Serve replicas do: that is how the tests show that
double-texting, cancels, joins and crash recovery hold across replicas.
"""

from __future__ import annotations

import asyncio
import operator
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, TypedDict

import psycopg
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt
from pydantic import SecretStr

from agent_runtime.config.fake_provider_settings import FakeProviderSettings
from agent_runtime.config.provider_settings import ProviderSettings
from agent_runtime.config.run_settings import RunSettings
from agent_runtime.config.serve_settings import ServeSettings
from agent_runtime.config.settings import (
    ItemStoreSettings,
    LimitSettings,
    RuntimeSettings,
    StorageSettings,
)
from agent_runtime.core.clock import SYSTEM_CLOCK, Clock
from agent_runtime.core.errors import ProviderChainExhausted
from agent_runtime.core.records import Principal, RunStatus
from agent_runtime.core.timing import RunTimings
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.evals.local import local_router
from agent_runtime.evals.schema import Judgement
from agent_runtime.execution.graph_registry import GraphRegistry, GraphSpec, ModelFactory
from agent_runtime.execution.item_store import ItemStores
from agent_runtime.execution.tenant_checkpoints import TenantScopedSaver
from agent_runtime.protocol.agent_protocol import RunCreate
from agent_runtime.replica.orchestration import Orchestration
from agent_runtime.runs.executor import ExecutorSettings, QueueStats, RunExecutor
from agent_runtime.runs.run_service import RunService
from agent_runtime.runs.thread_rows import ThreadStore
from agent_runtime.runs.thread_service import ThreadService
from agent_runtime.tenancy.run_limits import RunLimits
from tests.example_graphs import registry_graphs

TENANT = Principal(tenant_id="runs-tenant", key_id="k1")
OTHER = Principal(tenant_id="other-tenant", key_id="k2")
GRAPH = "steps"
# How long a "slow" step sleeps: long enough to double-text it, short for the suite.
SLOW_S = 1.5


class State(TypedDict):
    steps: Annotated[list[str], operator.add]
    mode: str


# What a Postgres driver says: hosts and users no tenant may read.
DRIVER_TEXT = (
    'connection to server at "10.9.8.7", port 5432 failed: FATAL: password authentication '
    'failed for user "ops_admin"'
)


async def first(state: State) -> dict[str, Any]:
    return {"steps": ["first"]}


async def second(state: State) -> dict[str, Any]:
    mode = state["mode"]
    if mode == "crash":
        raise ValueError("second step broke")
    if mode == "provider":
        raise ProviderChainExhausted("smart", ["fake-smart: HTTP 500"])
    if mode == "driver":  # as a checkpoint write failing mid-run would
        raise psycopg.OperationalError(DRIVER_TEXT)
    if mode == "ask":
        answer = interrupt({"question": "approve?"})
        return {"steps": [f"approved:{answer}"]}
    if mode in ("slow", "hang"):
        get_stream_writer()({"progress": "working"})
        await asyncio.sleep(SLOW_S if mode == "slow" else 3600)
    return {"steps": ["second"]}


def build(models: ModelFactory) -> StateGraph[State]:
    graph = StateGraph(State)
    graph.add_node("first", first)
    graph.add_node("second", second)
    graph.add_edge(START, "first")
    graph.add_edge("first", "second")
    graph.add_edge("second", END)
    return graph


# The replica's only graph; it calls no model.
REGISTRY = GraphRegistry(
    [GraphSpec(GRAPH, "two steps; the input's mode says how the second ends", build)]
)


@dataclass
class Finished:
    """The replica's observer: the runs it finished, as (graph, status)."""

    runs: list[tuple[str, str]] = field(default_factory=list)

    def record_run(
        self, graph_id: str, status: RunStatus, duration_ms: float, timings: RunTimings
    ) -> None:
        self.runs.append((graph_id, status))

    def record_queue(self, stats: QueueStats) -> None:
        return None

    def record_judgement(self, graph_id: str, judgement: Judgement) -> None:
        return None

    def record_cron_failure(self, disabled: bool) -> None:
        return None

    def record_webhook(self, outcome: str) -> None:
        return None


@dataclass(frozen=True)
class Signals:
    """How a test replica hears of changes: ``notify`` off polls; ``redis_url`` shares
    them with the replicas on the same ``channel`` (a test's own, so tests stay apart)."""

    notify: bool = True
    redis_url: SecretStr | None = None
    channel: str = field(default_factory=lambda: f"test:runs:{uuid.uuid4().hex}")
    ping_s: float = 5.0

    @classmethod
    def shared(cls, redis_url: str, **options: Any) -> Signals:
        return cls(redis_url=SecretStr(redis_url), **options)


@dataclass
class Replica:
    """An orchestrator replica as the deployment builds it, its parts named for tests."""

    orchestration: Orchestration
    observer: Finished

    @property
    def store(self) -> MetadataStore:
        return self.orchestration.store

    @property
    def runs(self) -> RunService:
        return self.orchestration.runs

    @property
    def threads(self) -> ThreadService:
        return self.orchestration.threads

    @property
    def thread_rows(self) -> ThreadStore:
        return self.orchestration.thread_rows

    @property
    def items(self) -> ItemStores:
        return self.orchestration.items

    @property
    def saver(self) -> TenantScopedSaver:
        return self.orchestration.saver

    @property
    def executor(self) -> RunExecutor:
        return self.orchestration.executor

    @property
    def finished(self) -> list[tuple[str, str]]:
        return self.observer.runs


def replica_settings(
    storage: StorageSettings,
    *,
    run_timeout_s: float,
    executor: ExecutorSettings,
    run_limits: RunLimits | None,
    items: ItemStoreSettings | None = None,
    signals: Signals | None = None,
) -> RuntimeSettings:
    """Short leases and polls, so tests see reaps and claims quickly; Redis only for the
    run signals, when ``signals`` names it."""
    limits = run_limits or RunLimits()
    signals = signals or Signals()
    return RuntimeSettings(
        storage=storage,
        limits=LimitSettings(
            _env_file=None,
            redis_url=signals.redis_url,
            max_concurrent_runs=limits.max_concurrent_runs,
            max_queued_runs=limits.max_queued_runs,
        ),
        provider=ProviderSettings(_env_file=None),
        fake=FakeProviderSettings(_env_file=None),
        serve=ServeSettings(_env_file=None),
        runs=RunSettings(
            _env_file=None,
            run_timeout_s=run_timeout_s,
            run_max_steps=50,
            run_heartbeat_s=executor.heartbeat_s,
            run_lease_s=executor.lease_s,
            run_fallback_poll_s=executor.poll_s,
            run_claim_min_interval_s=executor.claim_min_interval_s,
            run_max_attempts=executor.max_attempts,
            run_max_concurrent=executor.max_concurrent_runs,
            run_events_flush_attempts=executor.events_flush_attempts,
            run_events_flush_backoff_s=executor.events_flush_backoff_s,
            run_notify=signals.notify,
            run_notify_channel=signals.channel,
            run_notify_retry_min_s=0.05,
            run_notify_retry_max_s=0.5,
            run_notify_ping_s=signals.ping_s,
        ),
        items=items if items is not None else ItemStoreSettings(),
    )


@asynccontextmanager
async def replica(
    settings: StorageSettings,
    *,
    run_timeout_s: float = 30.0,
    executor: ExecutorSettings | None = None,
    start_loops: bool = True,
    run_limits: RunLimits | None = None,
    clock: Clock = SYSTEM_CLOCK,
    items: ItemStoreSettings | None = None,
    signals: Signals | None = None,
) -> AsyncIterator[Replica]:
    """A replica running the ``steps`` graph; ``start_loops`` starts its executor's
    loops (the cron and TTL loops stay off: the cron tests run schedulers of their own)."""
    runtime = replica_settings(
        settings,
        run_timeout_s=run_timeout_s,
        executor=executor or ExecutorSettings(heartbeat_s=0.2, lease_s=2.0, poll_s=0.2),
        run_limits=run_limits,
        items=items,
        signals=signals,
    )
    observer = Finished()
    async with local_router() as router:
        orchestration = await Orchestration.build(
            runtime,
            registry_graphs(REGISTRY),
            router.chat,
            router.stream,
            observer=observer,
            clock=clock,
        )
        for principal in (TENANT, OTHER):
            await orchestration.store.ensure_tenant(principal.tenant_id, "runs")
        if start_loops:
            orchestration.executor.start()
        try:
            yield Replica(orchestration, observer)
        finally:
            await orchestration.close()


def body(mode: str = "ok", **extra: Any) -> RunCreate:
    return RunCreate.model_validate(
        {"assistant_id": GRAPH, "input": {"steps": [], "mode": mode}, **extra}
    )


async def new_thread(replica: Replica, principal: Principal = TENANT) -> str:
    record = await replica.store.create_thread(principal.tenant_id)
    return record.thread_id
