"""What one orchestrator replica holds, built in one place: the Serve deployment
(:mod:`agent_runtime.deployments.orchestrator`) and the tests' replicas both use it.

:class:`Orchestration` wires the metadata store, the checkpointer and the item store (on
Postgres, all three over the replica's one pool, :mod:`agent_runtime.db.pg_pool`), the
served graphs bound to them, the graph runner, the run queue and its executor,
:class:`RunService`, :class:`ThreadService`, thread streams, the cron scheduler, webhooks,
the online judge, the trace exporter and the TTL sweeper. It imports no Ray (a contract in
pyproject.toml says so): graph code reaches models through ``RouterChatModel``, whose calls
are the ``chat`` and ``stream`` callables given to :meth:`Orchestration.build` (through
the router's deployment handle in Serve, an in-process router's in tests), and the
replica's metrics are an :class:`OrchestrationObserver`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from datetime import timedelta
from typing import Protocol

from langchain_core.messages import AIMessageChunk

from agent_runtime.config.settings import RuntimeSettings
from agent_runtime.core.clock import SYSTEM_CLOCK, Clock
from agent_runtime.core.errors import AgentRuntimeError
from agent_runtime.core.records import Principal, RunRecord, RunStatus
from agent_runtime.core.timing import RunTimings
from agent_runtime.core.types import ChatRequest, ChatResult
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.db.pg_pool import Pool, open_replica_pool
from agent_runtime.db.tables import utcnow
from agent_runtime.evals.judge import Judge
from agent_runtime.evals.online import OnlineJudge
from agent_runtime.evals.schema import Judgement
from agent_runtime.execution.chat_model import RouterCalls, RouterChatModel, router_calls
from agent_runtime.execution.checkpoint_ops import adopt_unscoped
from agent_runtime.execution.checkpointers import Checkpointers
from agent_runtime.execution.item_store import ItemStores
from agent_runtime.execution.otel import OtlpTraceExporter
from agent_runtime.execution.store_index import EmbedCall, StoreIndex
from agent_runtime.execution.tenant_checkpoints import TenantScopedSaver
from agent_runtime.runs.assistants import AssistantStore
from agent_runtime.runs.cron_scheduler import CronScheduler
from agent_runtime.runs.crons import CronRecord
from agent_runtime.runs.executor import RunExecutor
from agent_runtime.runs.graph_runner import GraphRunner
from agent_runtime.runs.local_run import ExecutorSettings, QueueStats, RunResult
from agent_runtime.runs.run_leases import pending_runs
from agent_runtime.runs.run_queue import RunStore
from agent_runtime.runs.run_service import RunService
from agent_runtime.runs.run_signals import RunSignals, thread_topic
from agent_runtime.runs.thread_rows import ThreadStore
from agent_runtime.runs.thread_service import ThreadService
from agent_runtime.runs.thread_stream import ThreadStreams
from agent_runtime.runs.webhooks import WebhookOutcome, WebhookSender
from agent_runtime.tenancy.key_standing import Holder, refusals
from agent_runtime.tenancy.run_limits import RunLimits
from agent_runtime.user_app.graph_loader import LoadedGraph
from agent_runtime.user_app.served_graphs import ServedGraphs

logger = logging.getLogger(__name__)

ChatCall = Callable[[ChatRequest], Awaitable[ChatResult]]
StreamCall = Callable[[ChatRequest], AsyncIterator[AIMessageChunk]]
# Connections kept open when idle: enough for a few runs' checkpoint writes at once.
_POOL_MIN_SIZE = 4


class OrchestrationObserver(Protocol):
    """What the replica reports (``OrchestratorMetrics`` in Serve)."""

    def record_run(
        self, graph_id: str, status: RunStatus, duration_ms: float, timings: RunTimings
    ) -> None: ...

    def record_queue(self, stats: QueueStats) -> None: ...

    def record_judgement(self, graph_id: str, judgement: Judgement) -> None: ...

    def record_cron_failure(self, disabled: bool) -> None: ...

    def record_webhook(self, outcome: WebhookOutcome) -> None: ...


class Orchestration:
    """An orchestrator replica's services over its storage; :meth:`build` opens the
    storage, :meth:`start` starts the loops, :meth:`close` stops and closes everything."""

    @classmethod
    async def build(
        cls,
        settings: RuntimeSettings,
        graphs: Iterable[LoadedGraph],
        chat: ChatCall,
        stream: StreamCall,
        *,
        observer: OrchestrationObserver | None = None,
        clock: Clock = SYSTEM_CLOCK,
        store_index: StoreIndex | None = None,
        embed: EmbedCall | None = None,
    ) -> Orchestration:
        """``store_index`` (the app's ``store.index``) embeds through ``embed``, the
        router's, when it names a model."""
        storage = settings.storage
        async with contextlib.AsyncExitStack() as opened:
            # Closed in reverse if a part fails to set up; the pool last, after its users.
            pool = await open_replica_pool(storage, "orchestrator", _POOL_MIN_SIZE)
            if pool is not None:
                opened.push_async_callback(pool.close, storage.db_timeout_s)
            store = MetadataStore(storage, pool)
            opened.push_async_callback(store.close)
            await store.setup()
            checkpointers = Checkpointers(storage, pool)
            opened.push_async_callback(checkpointers.close)
            saver = TenantScopedSaver(await checkpointers.setup())
            # Before serving: checkpoints from before thread ids were per tenant move under
            # their owner (nothing to do once done).
            adopted = await adopt_unscoped(store, saver)
            if adopted:
                logger.info("moved the checkpoints of %d threads under their tenant", adopted)
            items = ItemStores(storage, settings.items, index=store_index, embed=embed, pool=pool)
            opened.push_async_callback(items.close)
            await items.setup()
            # Subscribed before the replica serves, so its first waiters hear other replicas.
            signals = RunSignals.from_settings(settings.runs, settings.limits)
            opened.push_async_callback(signals.close)
            await signals.start(ready_timeout_s=settings.limits.redis_timeout_s)
            orchestration = cls(
                settings,
                graphs,
                chat,
                stream,
                store=store,
                checkpointers=checkpointers,
                saver=saver,
                items=items,
                pool=pool,
                observer=observer,
                clock=clock,
                signals=signals,
            )
            opened.pop_all()  # set up: the replica's close() closes them now
        return orchestration

    def __init__(
        self,
        settings: RuntimeSettings,
        graphs: Iterable[LoadedGraph],
        chat: ChatCall,
        stream: StreamCall,
        *,
        store: MetadataStore,
        checkpointers: Checkpointers,
        saver: TenantScopedSaver,
        items: ItemStores,
        pool: Pool | None = None,
        observer: OrchestrationObserver | None,
        clock: Clock = SYSTEM_CLOCK,
        signals: RunSignals | None = None,
    ) -> None:
        self.pool = pool  # the one Postgres pool of the three above, or None (SQLite)
        self.store = store
        self.checkpointers = checkpointers
        self.saver = saver
        self.items = items
        self._chat = chat
        self._stream = stream
        self._observer = observer
        self.graphs = ServedGraphs(graphs, checkpointer=saver, store=items.contextual)
        limits = settings.runs
        # Push, not poll: in memory, and through Redis when configured (build starts it).
        self.signals = signals or RunSignals.from_settings(limits, settings.limits)
        runner = GraphRunner(
            self.graphs,
            saver,
            run_timeout_s=limits.run_timeout_s,
            scope=self._run_scope,
            on_run_finished=observer.record_run if observer is not None else None,
            trace_max_spans=settings.trace.max_spans if settings.trace.enabled else None,
        )
        self.traces = (
            OtlpTraceExporter(settings.trace) if settings.trace.otlp_endpoint is not None else None
        )
        self.online_judge = OnlineJudge(
            Judge(self.model(settings.evals.judge_model)),
            settings.evals,
            on_judgement=self._record_judgement,
        )
        executor_settings = ExecutorSettings(
            heartbeat_s=limits.run_heartbeat_s,
            lease_s=limits.run_lease_s,
            poll_s=limits.run_fallback_poll_s,
            claim_min_interval_s=limits.run_claim_min_interval_s,
            max_attempts=limits.run_max_attempts,
            max_concurrent_runs=limits.run_max_concurrent,
            events_flush_attempts=limits.run_events_flush_attempts,
            events_flush_backoff_s=limits.run_events_flush_backoff_s,
        )
        self.thread_rows = ThreadStore(store)
        self.threads = ThreadService(
            store,
            self.thread_rows,
            self.graphs,
            saver,
            default_ttl=limits.default_thread_ttl,
            stop_runs=self._stop_runs,
            items=items,
            checkpoint_timeout_s=settings.storage.db_timeout_s,
            on_change=lambda thread_id: self.signals.publish(thread_topic(thread_id)),
        )

        def executor(runs: RunStore) -> RunExecutor:
            return RunExecutor(
                runs,
                runner,
                executor_settings,
                persist_events=RunService.persist_events,
                after_finish=self._after_run,
                on_vanished=self.threads.discard_vanished_run,
                on_stats=observer.record_queue if observer is not None else None,
                queue_depth=self._queue_depth,
                graph_ids=self.graphs.ids(),
                refusal=self._run_refusal,
                signals=self.signals,
            )

        self.runs = RunService(
            store,
            # The clock leases are timed by: tests move it rather than wait a lease out.
            RunStore(store, RunLimits.from_settings(settings.limits), clock),
            AssistantStore(store, self.graphs.ids()),
            executor,
            max_steps=limits.run_max_steps,
            signals=self.signals,
            on_temporary_done=self._drop_temporary,
            webhooks=WebhookSender(
                timeout_s=limits.webhook_timeout_s,
                max_in_flight=limits.webhook_max_in_flight,
                allow_private=limits.webhook_allow_private,
                enabled=limits.webhooks_enabled,
                on_outcome=observer.record_webhook if observer is not None else None,
            ),
        )
        self.crons = CronScheduler(
            store,
            self._start_cron_run,
            poll_s=limits.cron_poll_s,
            max_failures=limits.cron_max_failures,
            on_failure=observer.record_cron_failure if observer is not None else None,
        )
        self.thread_streams = ThreadStreams(
            store, self.runs, self.threads.get_state, poll_s=limits.run_fallback_poll_s
        )
        self._sweep_interval_s = limits.thread_sweep_interval_s
        self._sweep_limit = limits.thread_sweep_limit
        self._events_ttl_minutes = limits.run_events_ttl_minutes
        self._db_timeout_s = settings.storage.db_timeout_s
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def executor(self) -> RunExecutor:
        return self.runs.executor

    def start(self) -> None:
        """The run executor's loops, the cron scheduler and the TTL sweeper."""
        self.executor.start()
        self.crons.start()
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(
                self._sweep_loop(), name="thread TTL sweeper"
            )

    def loops(self) -> list[asyncio.Task[None]]:
        """The replica's background loops (``check_health`` fails when one stopped)."""
        sweeper = [] if self._sweeper is None else [self._sweeper]
        return [*self.executor.loops(), *self.crons.loops(), *sweeper, *self.signals.loops()]

    async def close(self) -> None:
        await self.crons.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self.executor.close()
        await self.signals.close()  # after the executor: its runs handed back are announced
        await self.online_judge.aclose()
        if self.traces is not None:
            await asyncio.to_thread(self.traces.close)
        await self.items.close()
        await self.checkpointers.close()
        await self.store.close()
        if self.pool is not None:  # once, by its owner, after its users
            await self.pool.close(timeout=self._db_timeout_s)

    def model(self, alias: str) -> RouterChatModel:
        return RouterChatModel(alias=alias, call=self._chat, stream_call=self._stream)

    # -- callbacks between the parts ------------------------------------------------------
    @contextlib.contextmanager
    def _run_scope(self, run: RunRecord) -> Iterator[None]:
        """Graph code's ``runtime_model`` calls (and routed OpenAI clients' calls) go to
        this replica's router (the graph runner scopes the run to its tenant)."""
        calls = RouterCalls(self._chat, self._stream, asyncio.get_running_loop())
        with router_calls(calls):
            yield

    async def _run_refusal(self, run: RunRecord) -> str | None:
        """Why a queued run may not start: its key revoked, its tenant disabled."""
        key_id = run.kwargs.get("key_id")
        holder = Holder(run.tenant_id, key_id if isinstance(key_id, str) else None)
        return (await refusals(self.store, [holder])).get(holder)

    async def _queue_depth(self) -> int:
        return await pending_runs(self.store)

    def _stop_runs(self, run_ids: Sequence[str]) -> None:
        for run_id in run_ids:
            self.executor.cancel(run_id, "interrupt")

    async def _start_cron_run(self, cron: CronRecord) -> str:
        principal = Principal(tenant_id=cron.tenant_id, key_id=cron.key_id or "cron")
        started = await self.runs.start(principal, cron.thread_id, cron.run_body(), "background")
        return started.run.run_id

    def _record_judgement(self, run: RunRecord, judgement: Judgement) -> None:
        if self._observer is not None:
            self._observer.record_judgement(run.graph_id or "", judgement)

    async def _after_run(self, run: RunRecord, result: RunResult) -> None:
        await self.runs.after_run(run, result)
        if self.traces is not None and result.trace is not None:
            try:
                self.traces.export(result.trace, run.tenant_id)
            except Exception as exc:  # tracing must never fail a run that already ended
                logger.warning("run %s: trace export failed: %s", run.run_id, type(exc).__name__)
        self.online_judge.submit(run, result.status, result.output)

    async def _drop_temporary(self, run: RunRecord) -> None:
        principal = Principal(tenant_id=run.tenant_id, key_id="stateless-run")
        await self.threads.delete(principal, run.thread_id or "")

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_interval_s)
            try:
                swept = await self.threads.sweep(self._sweep_limit)
                if swept:
                    logger.info("TTL sweeper removed or pruned %d threads", swept)
                cutoff = utcnow() - timedelta(minutes=self._events_ttl_minutes)
                await self.runs.runs.events.purge(cutoff)
            except AgentRuntimeError as exc:
                logger.warning("TTL sweep failed: %s", exc.message)
