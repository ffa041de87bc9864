"""Orchestrator deployment: runs LangGraph graphs on checkpointed threads.

A thin Serve wrapper. The logic lives in ``runtime``: :class:`RunService` (runs, their
queue and streams), :class:`ThreadService` (state, history, copies, deletes, TTL) and
the executor that runs each run in a task of its own with a lease in the database. Graph
code reaches models only through ``RouterChatModel``, whose calls go to the router.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

from langchain_core.messages import AIMessageChunk
from ray import serve
from ray.serve.handle import DeploymentHandle

from agent_runtime.config.settings import RuntimeSettings
from agent_runtime.core.errors import AgentRuntimeError
from agent_runtime.core.identity import stamp
from agent_runtime.core.records import CancelAction, Principal, RunRecord, RunStatus
from agent_runtime.core.timing import RunTimings
from agent_runtime.core.types import ChatRequest, ChatResult
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.db.tables import utcnow
from agent_runtime.evals.judge import Judge
from agent_runtime.evals.online import OnlineJudge
from agent_runtime.evals.schema import Judgement
from agent_runtime.execution.chat_model import RouterChatModel
from agent_runtime.execution.checkpointers import Checkpointers
from agent_runtime.execution.item_store import ItemStores, tenant_scope
from agent_runtime.execution.otel import OtlpTraceExporter
from agent_runtime.execution.run_trace import RunTrace
from agent_runtime.protocol.agent_protocol import (
    CheckpointConfig,
    RunCreate,
    ThreadCreate,
    ThreadStateUpdate,
)
from agent_runtime.replica.handles import call, iterate
from agent_runtime.replica.metrics import OrchestratorMetrics
from agent_runtime.replica.replica_logs import install as install_logs
from agent_runtime.replica.replica_logs import logged
from agent_runtime.runs.assistants import AssistantStore
from agent_runtime.runs.cron_scheduler import CronScheduler
from agent_runtime.runs.crons import CronRecord
from agent_runtime.runs.executor import ExecutorSettings, RunExecutor, RunResult, pending_runs
from agent_runtime.runs.graph_runner import GraphRunner
from agent_runtime.runs.run_queue import RunStore
from agent_runtime.runs.run_service import RunOutcome, RunService
from agent_runtime.runs.thread_rows import ThreadStore
from agent_runtime.runs.thread_service import ThreadService
from agent_runtime.runs.thread_stream import ThreadStreamMode, ThreadStreams
from agent_runtime.runs.webhooks import WebhookSender
from agent_runtime.tenancy.run_limits import RunLimits
from graphs.registry import default_registry

logger = logging.getLogger(__name__)


@serve.deployment(name="Orchestrator")
class OrchestratorDeployment:
    # Serve awaits async constructors (replica start-up waits for the store and saver).
    async def __init__(  # type: ignore[misc]
        self, router: DeploymentHandle, settings: RuntimeSettings
    ) -> None:
        install_logs(settings.serve.log_level)
        self._router = router
        self._stream_router = router.options(stream=True)
        self._metrics = OrchestratorMetrics()
        self._store = MetadataStore(settings.storage)
        await self._store.setup()
        self._checkpointers = Checkpointers(settings.storage)
        saver = await self._checkpointers.setup()
        self._items = ItemStores(settings.storage, settings.items)
        await self._items.setup()
        registry = default_registry()
        graphs = {
            spec.graph_id: spec.build(self._model).compile(
                checkpointer=saver, store=self._items.contextual
            )
            for spec in registry.specs()
        }
        limits = settings.runs
        runner = GraphRunner(
            graphs,
            saver,
            run_timeout_s=limits.run_timeout_s,
            scope=_tenant_scope,
            on_run_finished=self._record_run,
            trace_max_spans=settings.trace.max_spans if settings.trace.enabled else None,
        )
        self._traces = (
            OtlpTraceExporter(settings.trace) if settings.trace.otlp_endpoint is not None else None
        )
        self._online_judge = OnlineJudge(
            Judge(self._model(settings.evals.judge_model)),
            settings.evals,
            on_judgement=self._record_judgement,
        )
        executor_settings = ExecutorSettings(
            heartbeat_s=limits.run_heartbeat_s,
            lease_s=limits.run_lease_s,
            poll_s=limits.run_poll_s,
            max_attempts=limits.run_max_attempts,
            max_concurrent_runs=limits.run_max_concurrent,
        )
        thread_store = ThreadStore(self._store)
        self._threads = ThreadService(
            self._store,
            thread_store,
            graphs,
            saver,
            default_ttl_minutes=limits.thread_ttl_minutes,
            stop_runs=self._stop_runs,
            items=self._items,
        )

        def executor(runs: RunStore) -> RunExecutor:
            return RunExecutor(
                runs,
                runner,
                executor_settings,
                persist_events=RunService.persist_events,
                after_finish=self._after_run,
                on_stats=self._metrics.record_queue,
                queue_depth=self._queue_depth,
            )

        self._runs = RunService(
            self._store,
            RunStore(self._store, RunLimits.from_settings(settings.limits)),
            AssistantStore(self._store, registry.ids()),
            executor,
            max_steps=limits.run_max_steps,
            on_temporary_done=self._drop_temporary,
            webhooks=WebhookSender(
                timeout_s=limits.webhook_timeout_s,
                allow_private=limits.webhook_allow_private,
                enabled=limits.webhooks_enabled,
            ),
        )
        self._runs.executor.start()
        self._crons = CronScheduler(self._store, self._start_cron_run, poll_s=limits.cron_poll_s)
        self._crons.start()
        self._thread_streams = ThreadStreams(
            self._store, self._runs, self._thread_state, poll_s=limits.run_poll_s
        )
        self._sweep_interval_s = limits.thread_sweep_interval_s
        self._events_ttl_minutes = limits.run_events_ttl_minutes
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_loop())

    # -- wiring -------------------------------------------------------------------------
    def _model(self, alias: str) -> RouterChatModel:
        return RouterChatModel(alias=alias, call=self._chat, stream_call=self._stream)

    async def _chat(self, request: ChatRequest) -> ChatResult:
        result: ChatResult = await call(self._router.chat.remote(stamp(request)))
        return result

    async def _stream(self, request: ChatRequest) -> AsyncIterator[AIMessageChunk]:
        async for chunk in iterate(self._stream_router.stream.remote(stamp(request))):
            yield chunk

    def _record_run(
        self, graph_id: str, status: RunStatus, duration_ms: float, timings: RunTimings
    ) -> None:
        self._metrics.record_run(graph_id, status, duration_ms, timings)

    async def _queue_depth(self) -> int:
        return await pending_runs(self._store)

    def _stop_runs(self, run_ids: Any) -> None:
        for run_id in run_ids:
            self._runs.executor.cancel(run_id, "interrupt")

    async def _start_cron_run(self, cron: CronRecord) -> str:
        principal = Principal(tenant_id=cron.tenant_id, key_id=cron.key_id or "cron")
        started = await self._runs.start(principal, cron.thread_id, cron.run_body(), "background")
        return started.run.run_id

    async def _thread_state(self, principal: Principal, thread_id: str) -> dict[str, Any]:
        return await self._threads.get_state(principal, thread_id)

    def _record_judgement(self, run: RunRecord, judgement: Judgement) -> None:
        self._metrics.record_judgement(run.graph_id or "", judgement)

    async def _after_run(self, run: RunRecord, result: RunResult) -> None:
        await self._runs.after_run(run, result)
        trace = result.extra.get("trace")
        if self._traces is not None and isinstance(trace, RunTrace):
            try:
                self._traces.export(trace, run.tenant_id)
            except Exception as exc:  # tracing must never fail a run that already ended
                logger.warning("run %s: trace export failed: %s", run.run_id, type(exc).__name__)
        self._online_judge.submit(run, result.status, result.output)

    async def _drop_temporary(self, run: RunRecord) -> None:
        principal = Principal(tenant_id=run.tenant_id, key_id="stateless-run")
        await self._threads.delete(principal, run.thread_id or "")

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_interval_s)
            try:
                swept = await self._threads.sweep()
                if swept:
                    logger.info("TTL sweeper removed or pruned %d threads", swept)
                cutoff = utcnow() - timedelta(minutes=self._events_ttl_minutes)
                await self._runs.runs.events.purge(cutoff)
            except AgentRuntimeError as exc:
                logger.warning("TTL sweep failed: %s", exc.message)

    # -- threads ------------------------------------------------------------------------
    @logged
    async def create_thread(self, principal: Principal, body: ThreadCreate) -> dict[str, Any]:
        return await self._threads.create(principal, body)

    @logged
    async def get_state(
        self,
        principal: Principal,
        thread_id: str,
        subgraphs: bool = False,
        checkpoint: CheckpointConfig | None = None,
    ) -> dict[str, Any]:
        return await self._threads.get_state(
            principal, thread_id, subgraphs=subgraphs, checkpoint=checkpoint
        )

    @logged
    async def update_state(
        self, principal: Principal, thread_id: str, body: ThreadStateUpdate
    ) -> dict[str, Any]:
        return await self._threads.update_state(principal, thread_id, body)

    @logged
    async def history(
        self, principal: Principal, thread_id: str, query: dict[str, Any]
    ) -> list[dict[str, Any]]:
        return await self._threads.history(principal, thread_id, **query)

    @logged
    async def copy_thread(self, principal: Principal, thread_id: str) -> dict[str, Any]:
        return await self._threads.copy(principal, thread_id)

    @logged
    async def delete_thread(self, principal: Principal, thread_id: str) -> None:
        await self._threads.delete(principal, thread_id)

    @logged
    async def prune_threads(
        self, principal: Principal, thread_ids: list[str], strategy: str
    ) -> int:
        return await self._threads.prune(principal, thread_ids, strategy)

    async def sweep_threads(self) -> int:
        return await self._threads.sweep()

    # -- runs ---------------------------------------------------------------------------
    @logged
    async def create_run(
        self, principal: Principal, thread_id: str | None, body: RunCreate
    ) -> RunRecord:
        started = await self._runs.start(principal, thread_id, body, "background")
        return started.run

    @logged
    async def wait(
        self, principal: Principal, thread_id: str | None, body: RunCreate
    ) -> RunOutcome:
        return await self._runs.wait(principal, thread_id, body)

    @logged
    async def join(self, principal: Principal, thread_id: str, run_id: str) -> RunOutcome:
        return await self._runs.join(principal, thread_id, run_id)

    @logged
    async def stream(
        self, principal: Principal, thread_id: str | None, body: RunCreate
    ) -> AsyncIterator[bytes]:
        async for event in self._runs.stream(principal, thread_id, body):
            yield event

    @logged
    async def join_stream(
        self,
        principal: Principal,
        thread_id: str,
        run_id: str,
        last_event_id: str | None,
        cancel_on_disconnect: bool,
    ) -> AsyncIterator[bytes]:
        async for event in self._runs.join_stream(
            principal,
            thread_id,
            run_id,
            last_event_id=last_event_id,
            cancel_on_disconnect=cancel_on_disconnect,
        ):
            yield event

    @logged
    async def join_thread_stream(
        self,
        principal: Principal,
        thread_id: str,
        last_event_id: str | None,
        modes: list[ThreadStreamMode],
    ) -> AsyncIterator[bytes]:
        async for event in self._thread_streams.join(
            principal, thread_id, last_event_id=last_event_id, modes=modes
        ):
            yield event

    @logged
    async def cancel(
        self,
        principal: Principal,
        thread_id: str | None,
        run_ids: list[str] | None,
        action: CancelAction,
        status: str | None = None,
        wait: bool = False,
    ) -> list[RunRecord]:
        return await self._runs.cancel(
            principal, thread_id, run_ids, action=action, status=status, wait=wait
        )

    @logged
    async def delete_run(self, principal: Principal, thread_id: str, run_id: str) -> None:
        """A run in flight is rolled back (so it goes with what it wrote); a finished one
        is deleted with its checkpoints."""
        run = await self._runs.runs.get(principal.tenant_id, run_id, thread_id)
        if run.status in ("pending", "running"):
            await self._runs.cancel(principal, thread_id, [run_id], action="rollback")
            return
        await self._runs.runs.delete(principal.tenant_id, thread_id, run_id)
        await self._threads.forget_run(principal, thread_id, run_id)

    async def ping(self) -> None:
        await self._store.ping()

    async def __del__(self) -> None:
        await self._crons.close()
        self._sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._sweeper
        await self._runs.executor.close()
        await self._online_judge.aclose()
        if self._traces is not None:
            await asyncio.to_thread(self._traces.close)
        await self._items.close()
        await self._checkpointers.close()
        await self._store.close()


@contextlib.contextmanager
def _tenant_scope(run: RunRecord) -> Iterator[None]:
    """Graph code's store calls see only the run's tenant."""
    with tenant_scope(run.tenant_id):
        yield
