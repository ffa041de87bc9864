"""Runs on one orchestrator replica: a task per run, leases, cancels, the queue loop.

Every run executes in a task of its own, apart from the request that started it, so a
client that disconnects does not kill a run it asked to continue, and any request (on any
replica) can wait for it or join its stream. The executor:

- starts runs it claimed (at creation, at the end of the thread's previous run, or from
  the queue) and keeps them in a registry by id, with their :class:`RunStream`;
- heartbeats its runs' leases in one statement every ``heartbeat_s`` and, from the same
  answer, cancels runs that someone asked to stop (possibly from another replica) or that
  it no longer holds;
- claims due queued runs while it has capacity when told that some are claimable
  (:mod:`agent_runtime.runs.run_signals`: queued, given back, reaped, a slot freed, a
  delayed run due), at most once per ``claim_min_interval_s``; and every ``poll_s``
  reaps runs whose replica died (lease older than ``lease_s``) and claims anyway, for a
  message that was lost;
- tells waiters when a run's events are stored and when it ends (after the commit);
- on close, hands its runs back to the queue so another replica resumes them.

Each run executes inside a log context (:mod:`agent_runtime.core.logs`) naming its tenant,
thread, run and request; after each claim the executor reports its :class:`QueueStats`
(runs in flight here, and every ``stats_interval_s`` the queue's depth from ``queue_depth``,
e.g. :func:`agent_runtime.runs.run_leases.pending_runs`) to ``on_stats``, e.g. for gauges.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence

from agent_runtime.core import logs
from agent_runtime.core.errors import AgentRuntimeError
from agent_runtime.core.records import CancelAction, RunRecord
from agent_runtime.db.driver_errors import driver_error
from agent_runtime.protocol.sse import metadata_payload
from agent_runtime.runs.event_stream import Event, RunStream
from agent_runtime.runs.local_run import ExecutorSettings, LocalRun, QueueStats, RunResult
from agent_runtime.runs.run_queue import Finished, RunEnd, RunStore
from agent_runtime.runs.run_signals import QUEUE, RunSignals, events_topic, run_topic, thread_topic

logger = logging.getLogger(__name__)

# Re-exported: they lived here before agent_runtime.runs.local_run.
__all__ = ["ExecutorSettings", "LocalRun", "QueueStats", "RunExecutor", "RunResult"]


Runner = Callable[[LocalRun], Awaitable[tuple[RunEnd, RunResult]]]
"""Executes a run's graph, publishing to its stream; says how it ended."""
Refusal = Callable[[RunRecord], Awaitable[str | None]]
"""Why a run taken from the queue may not start (its key revoked...); None: it may."""
REFUSED = "RunRefused"


class RunExecutor:
    def __init__(
        self,
        runs: RunStore,
        runner: Runner,
        settings: ExecutorSettings,
        *,
        persist_events: Callable[[RunRecord, bool], bool],
        worker_id: str | None = None,
        after_finish: Callable[[RunRecord, RunResult], Awaitable[None]] | None = None,
        on_stats: Callable[[QueueStats], None] | None = None,
        queue_depth: Callable[[], Awaitable[int]] | None = None,
        on_vanished: Callable[[RunRecord], Awaitable[None]] | None = None,
        graph_ids: Sequence[str] | None = None,
        refusal: Refusal | None = None,
        signals: RunSignals | None = None,
    ) -> None:
        """``refusal``: asked before a run that was queued, delayed or resumed starts (one
        its creating request starts has just been authenticated). ``signals``: the
        replica's notifier, shared with the run service (in memory only when None)."""
        self.runs = runs
        self.signals = signals or RunSignals(fallback_s=settings.poll_s)
        # The graphs this replica serves: it claims queued runs of those only.
        self._graph_ids = list(graph_ids) if graph_ids is not None else None
        self._refusal = refusal
        self._runner = runner
        self.settings = settings
        self._persist_events = persist_events
        self._after_finish = after_finish
        # A run whose row was deleted while it ran has ended (see _vanished).
        self._on_vanished = on_vanished
        self._on_stats = on_stats
        self._queue_depth = queue_depth
        self._stats_due = 0.0
        self.worker_id = worker_id or f"worker-{uuid.uuid4().hex[:12]}"
        self._local: dict[str, LocalRun] = {}
        self._loops: list[asyncio.Task[None]] = []
        self._closing = False

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        if not self._loops:
            loop = asyncio.get_running_loop()
            self._loops = [
                loop.create_task(self._heartbeat_loop(), name="run lease heartbeats"),
                loop.create_task(self._queue_loop(), name="run queue"),
            ]

    def loops(self) -> list[asyncio.Task[None]]:
        return list(self._loops)

    async def close(self) -> None:
        """Stop the loops and hand unfinished runs back to the queue."""
        self._closing = True
        for loop in self._loops:
            loop.cancel()
        for loop in self._loops:
            with contextlib.suppress(asyncio.CancelledError):
                await loop
        self._loops = []
        unfinished = list(self._local.values())
        for local in unfinished:
            if local.task is not None:
                local.task.cancel()
        for local in unfinished:
            if local.task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await local.task
        try:
            await self.runs.release([local.run.run_id for local in unfinished], self.worker_id)
        except AgentRuntimeError as exc:
            logger.warning("could not hand %d runs back: %s", len(unfinished), exc.message)
            return
        if unfinished:
            self.signals.publish(QUEUE)  # other replicas take them now, not at their poll

    # -- runs ---------------------------------------------------------------------------
    def local(self, run_id: str) -> LocalRun | None:
        return self._local.get(run_id)

    def running(self) -> list[str]:
        return list(self._local)

    def submit(
        self, run: RunRecord, *, subscriber: bool = False, at_creation: bool = False
    ) -> LocalRun:
        """Start a run this worker has claimed (``at_creation``: by the request creating it,
        which may be its only reader; any other run may be joined from anywhere)."""
        existing = self._local.get(run.run_id)
        if existing is not None:
            return existing
        sink = self._store_events if self._persist_events(run, at_creation) else None
        stream = RunStream(
            run.run_id,
            sink=sink,
            flush_attempts=self.settings.events_flush_attempts,
            flush_backoff_s=self.settings.events_flush_backoff_s,
        )
        if subscriber:
            stream.expect_subscriber()
        loop = asyncio.get_running_loop()
        context = logs.current()
        local = LocalRun(
            run=run,
            stream=stream,
            done=loop.create_future(),
            request_id=context.request_id if context is not None else None,
            at_creation=at_creation,
        )
        self._local[run.run_id] = local
        # A fresh context: the run must not inherit the request that started it, or what
        # is tied to that request (Serve cancels a request's downstream calls when its
        # client leaves) would reach a run asked to continue without it.
        local.task = loop.create_task(
            self._execute(local), name=f"run-{run.run_id}", context=contextvars.Context()
        )
        # This replica's waiters on the run follow it in memory from now on.
        self.signals.notify(run_topic(run.run_id))
        return local

    async def _store_events(self, run_id: str, events: Sequence[Event]) -> None:
        await self.runs.events.append(run_id, events)
        self.signals.publish(events_topic(run_id))

    def cancel(self, run_id: str, action: CancelAction | None) -> bool:
        local = self._local.get(run_id)
        if local is None:
            return False
        local.stop(action)
        return True

    async def _execute(self, local: LocalRun) -> None:
        run = local.run
        with logs.bind(
            request_id=local.request_id,
            tenant_id=run.tenant_id,
            thread_id=run.thread_id,
            run_id=run.run_id,
        ):
            await self._execute_logged(local)

    async def _execute_logged(self, local: LocalRun) -> None:
        run = local.run
        started = time.perf_counter()
        logger.info("run started: graph %s, attempt %d", run.graph_id, run.attempt)
        try:
            if run.attempt > 1 and local.stream.persisted:
                local.stream.resume_after(await self.runs.events.last_seq(run.run_id))
            refusal = await self._refused(local)
            try:
                if refusal is not None:
                    end, result = _refuse(local, refusal)
                else:
                    end, result = await self._runner(local)
            except Exception as exc:  # the runner maps graph errors; this is a runtime bug
                logger.error("run %s: runner failed (%s)", run.run_id, type(exc).__name__)
                end = RunEnd(status="error", thread_status="error", error=type(exc).__name__)
                result = RunResult(status="error", output={"__error__": {"error": "internal"}})
            # Events first, then the status: whoever sees the run ended has all its events.
            await local.stream.close()
            finished = Finished() if local.lost else await self._finish(run, end)
            if not local.lost:
                self._announce_end(run, finished)
            if finished.next_run is not None and not self._closing:
                self.submit(finished.next_run)
            if finished.gone or local.lost:
                await self._vanished(run, known_gone=finished.gone)
            if self._after_finish is not None and not local.lost:
                await self._after_finish(run, result)
            logger.info(
                "run ended: graph %s, status %s, %.1f ms",
                run.graph_id,
                end.status or "rolled back",
                (time.perf_counter() - started) * 1000,
            )
            if not local.done.done():
                local.done.set_result(result)
        except asyncio.CancelledError:
            # Shutting down: close() gives the run back to the queue.
            await local.stream.close()
            if not local.done.done():
                local.done.cancel()
            raise
        finally:
            self._local.pop(run.run_id, None)

    def _announce_end(self, run: RunRecord, finished: Finished) -> None:
        """After the end is committed: its waiters, the thread's streams and, when a
        slot of its tenant freed for a queued run, the queue."""
        topics = [run_topic(run.run_id)]
        if run.thread_id is not None:
            topics.append(thread_topic(run.thread_id))
        if finished.queue_waiting:
            topics.append(QUEUE)
        self.signals.publish(*topics)

    async def _refused(self, local: LocalRun) -> str | None:
        if local.at_creation or self._refusal is None:
            return None
        try:
            return await self._refusal(local.run)
        except AgentRuntimeError as exc:
            # The key was valid when the run was created; a check that cannot be made
            # does not fail the run (its graph would meet the same database anyway).
            logger.warning(
                "run %s: its key could not be checked: %s", local.run.run_id, exc.message
            )
            return None

    async def _finish(self, run: RunRecord, end: RunEnd) -> Finished:
        for attempt in range(3):
            try:
                return await self.runs.finish(run, end, self.worker_id)
            except AgentRuntimeError as exc:
                # The database blinked: try again; if it stays down, the lease lapses and
                # another replica's reaper resumes the run from its checkpoint.
                logger.warning("run %s: finish failed (%s), retrying", run.run_id, exc.message)
                await asyncio.sleep(0.2 * (attempt + 1))
        return Finished()

    async def _vanished(self, run: RunRecord, *, known_gone: bool) -> None:
        """A run that ended without its row (its thread was deleted while it ran, or it
        was rolled back) may have written checkpoints after the delete removed the
        thread's: ``on_vanished`` removes them. A run that merely lost its lease (resumed
        elsewhere) still has its row and keeps what it wrote."""
        if self._on_vanished is None:
            return
        try:
            if known_gone or await self.runs.status(run.run_id) is None:
                await self._on_vanished(run)
        except AgentRuntimeError as exc:
            logger.warning("run %s: its late checkpoints stay (%s)", run.run_id, exc.message)
        except Exception as exc:
            if driver_error(exc) is None:
                raise
            logger.warning("run %s: its late checkpoints stay (%s)", run.run_id, type(exc).__name__)

    # -- loops --------------------------------------------------------------------------
    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_s)
            await self.heartbeat()

    async def heartbeat(self) -> None:
        ids = list(self._local)
        if not ids:
            return
        try:
            beat = await self.runs.heartbeat(ids, self.worker_id)
        except AgentRuntimeError as exc:
            logger.warning("heartbeat of %d runs failed: %s", len(ids), exc.message)
            return
        for run_id, action in beat.cancel.items():
            self.cancel(run_id, action)
        for run_id in beat.lost:
            local = self._local.get(run_id)
            # A run that just finished is no longer "running"; only stop live ones.
            if local is not None and local.work is not None and not local.work.done():
                logger.warning("run %s: lease lost, stopping it here", run_id)
                self.cancel(run_id, None)

    async def _queue_loop(self) -> None:
        """Claim when told that runs are claimable; reap, and claim anyway, every
        ``poll_s`` (what a lost message would have said)."""
        loop = asyncio.get_running_loop()
        with self.signals.watch(QUEUE) as watch:
            next_reap = loop.time() + self.settings.poll_s
            while True:
                await watch.wait(max(0.0, next_reap - loop.time()))
                reap = loop.time() >= next_reap
                if reap:
                    next_reap = loop.time() + self.settings.poll_s
                try:
                    await (self.poll() if reap else self.claim())
                except AgentRuntimeError as exc:
                    logger.warning("run queue poll failed: %s", exc.message)
                # A burst of notifications costs one claim per interval, not one each.
                await asyncio.sleep(self.settings.claim_min_interval_s)

    async def poll(self) -> list[RunRecord]:
        """Reap dead replicas' runs, then claim due queued runs up to capacity."""
        reaped = await self.runs.reap(self.settings.lease_s, self.settings.max_attempts)
        if reaped:
            logger.warning("put back %d runs whose replica stopped: %s", len(reaped), reaped)
            # Some ended for good (out of attempts); the others wait for a replica.
            self.signals.publish(QUEUE, *(run_topic(run_id) for run_id in reaped))
        return await self.claim()

    async def claim(self) -> list[RunRecord]:
        """Claim due queued runs up to capacity."""
        room = self.settings.max_concurrent_runs - len(self._local)
        claimed: list[RunRecord] = []
        if room > 0 and not self._closing:
            claimed = await self.runs.claim_due(self.worker_id, room, self._graph_ids)
            for run in claimed:
                self.submit(run)
        await self._report_stats()
        return claimed

    async def _report_stats(self) -> None:
        if self._on_stats is None:
            return
        queued = None
        now = time.monotonic()
        if self._queue_depth is not None and now >= self._stats_due:
            self._stats_due = now + self.settings.stats_interval_s
            queued = await self._queue_depth()
        self._on_stats(QueueStats(in_flight=len(self._local), queued=queued))


def _refuse(local: LocalRun, reason: str) -> tuple[RunEnd, RunResult]:
    """A run that may not start ends as an error saying why; its stream, as any failed
    run's, has its ``metadata`` and that ``error``."""
    run = local.run
    logger.warning("run not started: %s", reason)
    payload = {"error": REFUSED, "message": f"the run was not started: {reason}"}
    local.stream.publish("metadata", metadata_payload(run.run_id, run.attempt))
    local.stream.publish("error", payload)
    end = RunEnd(status="error", thread_status="error", error=json.dumps(payload))
    return end, RunResult(status="error", output={"__error__": payload})
