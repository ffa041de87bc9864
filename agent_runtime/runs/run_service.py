"""Runs as the Agent Protocol sees them: create, wait, stream, join, cancel.

:class:`RunService` is the orchestrator's run logic, free of Ray. A run is recorded (and,
when its thread is free, claimed) in one transaction before anything else happens; the
executor then runs it in a task of its own. ``wait`` and ``stream`` follow that task on
this replica, or, when the run is queued or runs elsewhere, the database (its status and
its stored events), so double-texting and joins work across replicas. They read the
database when told that something changed (:mod:`agent_runtime.runs.run_signals`: the
run's events stored, its end, a change on its thread), and every fallback interval
otherwise, for a message that was lost.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent_runtime.core import timing
from agent_runtime.core.errors import AgentRuntimeError, BadRequest, InvalidRequest, NotFound
from agent_runtime.core.records import AssistantRecord, CancelAction, Principal, RunRecord
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.protocol.agent_protocol import RunCreate
from agent_runtime.protocol.agent_responses import dumps, run_to_wire
from agent_runtime.protocol.sse import encode_event, event_number
from agent_runtime.runs.event_rows import FINAL_STATUSES
from agent_runtime.runs.event_stream import with_gaps
from agent_runtime.runs.executor import RunExecutor
from agent_runtime.runs.local_run import LocalRun, RunResult
from agent_runtime.runs.run_queue import CreatedRun, RunStore
from agent_runtime.runs.run_request import RunKind, new_run
from agent_runtime.runs.run_signals import (
    QUEUE,
    RunSignals,
    events_topic,
    run_topic,
    thread_topic,
)
from agent_runtime.runs.webhooks import WebhookSender
from agent_runtime.tenancy.audit import record_run_end
from agent_runtime.tenancy.usage import UsageLedger

logger = logging.getLogger(__name__)

DUE_MARGIN_S = 0.05


class AssistantResolver(Protocol):
    async def resolve(self, tenant_id: str, assistant_id: str) -> AssistantRecord: ...


@dataclass
class RunOutcome:
    """What a finished ``wait`` hands back to the ingress."""

    run_id: str
    thread_id: str
    status: str | None
    body: bytes
    timings: timing.RunTimings = field(default_factory=timing.RunTimings)
    graph_ms: float = 0.0


@dataclass
class StartedRun:
    created: CreatedRun
    local: LocalRun | None

    @property
    def run(self) -> RunRecord:
        return self.created.run


class RunService:
    def __init__(
        self,
        store: MetadataStore,
        runs: RunStore,
        assistants: AssistantResolver,
        executor_factory: Callable[[RunStore], RunExecutor],
        *,
        max_steps: int,
        signals: RunSignals | None = None,
        on_temporary_done: Callable[[RunRecord], Awaitable[None]] | None = None,
        webhooks: WebhookSender | None = None,
    ) -> None:
        self._store = store
        self.runs = runs
        self._assistants = assistants
        self.executor = executor_factory(runs)
        # The replica's notifier: waiters here hear what the executor announces.
        self.signals = signals or self.executor.signals
        if self.signals is not self.executor.signals:
            raise ValueError("the run service and its executor must share one RunSignals")
        self._max_steps = max_steps
        self._on_temporary_done = on_temporary_done
        self._webhooks = webhooks
        self._deliveries: set[asyncio.Task[bool]] = set()

    # -- creation -----------------------------------------------------------------------
    async def start(
        self, principal: Principal, thread_id: str | None, body: RunCreate, kind: RunKind
    ) -> StartedRun:
        """Validate, record and (when the thread is free) start a run."""
        problem = body.semantic_error(thread_id)
        if problem is not None:
            raise BadRequest(problem)
        if body.webhook is not None:
            if self._webhooks is None:
                raise InvalidRequest("webhook: webhooks are disabled on this server")
            await self._webhooks.check(body.webhook)
        assistant = await self._assistants.resolve(principal.tenant_id, body.assistant_id)
        new = new_run(principal, thread_id, body, assistant, kind, self._max_steps)
        created = await self.runs.create(new, self.executor.worker_id)
        self._announce(created, new.after_seconds)
        for run_id in created.superseded:
            self.executor.cancel(run_id, new.multitask_strategy)  # type: ignore[arg-type]
        local = None
        if created.started:
            local = self.executor.submit(created.run, subscriber=kind == "stream", at_creation=True)
        return StartedRun(created, local)

    def _announce(self, created: CreatedRun, after_seconds: float) -> None:
        """A new run on its thread (streams, and waiters on runs it interrupted) and, when
        it waits in the queue, the queue: now, and again when a delayed one is due."""
        run = created.run
        topics = [] if run.thread_id is None else [thread_topic(run.thread_id)]
        if not created.started:
            topics.append(QUEUE)
            if after_seconds > 0:
                # A little late: a timer may fire early, and a claim before the run is due
                # finds nothing (the next chance would be the fallback poll).
                self.signals.publish_later(after_seconds + DUE_MARGIN_S, QUEUE)
        self.signals.publish(*topics)

    @staticmethod
    def persist_events(run: RunRecord, at_creation: bool) -> bool:
        """Store a run's events unless it is a ``wait`` its own request runs: a stream's
        client may reconnect (the SDK does, with ``Last-Event-ID``) through any replica,
        and background or queued runs are joined from anywhere."""
        return not (run.kwargs.get("kind") == "wait" and at_creation)

    # -- wait ---------------------------------------------------------------------------
    async def wait(
        self, principal: Principal, thread_id: str | None, body: RunCreate
    ) -> RunOutcome:
        started = await self.start(principal, thread_id, body, "wait")
        run = started.run
        try:
            if started.local is not None:
                result = await asyncio.shield(started.local.done)
                return _outcome(run, result)
            return await self._await_outcome(run)
        except asyncio.CancelledError:
            if body.on_disconnect == "cancel":
                await self._cancel_quietly(principal, run)
            raise

    async def join(self, principal: Principal, thread_id: str, run_id: str) -> RunOutcome:
        run = await self.runs.get(principal.tenant_id, run_id, thread_id)
        return await self._await_outcome(run)

    async def _await_outcome(self, run: RunRecord) -> RunOutcome:
        """Wait for ``run`` to end, here or on another replica; its wait body."""
        # Its thread too: a pending run interrupted by a double-text ends without a worker.
        thread = () if run.thread_id is None else (thread_topic(run.thread_id),)
        with self.signals.watch(run_topic(run.run_id), *thread) as watch:
            while True:
                local = self.executor.local(run.run_id)
                if local is not None:
                    return _outcome(run, await asyncio.shield(local.done))
                # The whole row, not only its status: an ended run's error is in it, so
                # the answer costs one read less after the wake-up.
                try:
                    current: RunRecord | None = await self.runs.get(run.tenant_id, run.run_id)
                except NotFound:
                    current = None
                if current is None or current.status in FINAL_STATUSES:
                    status = None if current is None else current.status
                    return await self._stored_outcome(current or run, status)
                await watch.wait()

    async def _stored_outcome(self, run: RunRecord, status: str | None) -> RunOutcome:
        """The wait body of ``run`` (as read when it ended; gone when ``status`` is None)."""
        output: Any = None
        if status == "error" and run.error:
            output = {"__error__": _error_json(run.error)}
        elif run.thread_id is not None:
            try:
                thread = await self._store.get_thread(run.tenant_id, run.thread_id)
            except NotFound:
                thread = None
            if thread is not None:
                output = thread.state_values
                flat = [i for task in (thread.interrupts or {}).values() for i in task]
                if flat and isinstance(output, dict):
                    output = {**output, "__interrupt__": flat}
        return RunOutcome(run.run_id, run.thread_id or "", status, dumps(output))

    # -- streams ------------------------------------------------------------------------
    async def stream(
        self, principal: Principal, thread_id: str | None, body: RunCreate
    ) -> AsyncIterator[bytes]:
        """SSE frames: ``metadata`` first, then the run's events until it ends."""
        started = await self.start(principal, thread_id, body, "stream")
        async for frame in self.follow(
            principal, started.run, 0, cancel_on_disconnect=body.on_disconnect == "cancel"
        ):
            yield frame

    async def join_stream(
        self,
        principal: Principal,
        thread_id: str,
        run_id: str,
        *,
        last_event_id: str | None,
        cancel_on_disconnect: bool,
    ) -> AsyncIterator[bytes]:
        run = await self.runs.get(principal.tenant_id, run_id, thread_id)
        after = (event_number(last_event_id) if last_event_id else None) or 0
        async for frame in self.follow(
            principal, run, after, cancel_on_disconnect=cancel_on_disconnect
        ):
            yield frame

    async def follow(
        self, principal: Principal, run: RunRecord, after: int, *, cancel_on_disconnect: bool
    ) -> AsyncIterator[bytes]:
        """A run's events after number ``after``, as SSE frames numbered by the run."""
        try:
            async with aclosing(self.events(run.run_id, after)) as events:
                async for seq, name, data in events:
                    yield encode_event(name, data, str(seq))
        except (asyncio.CancelledError, GeneratorExit):
            if cancel_on_disconnect:
                await asyncio.shield(self._cancel_quietly(principal, run))
            raise

    async def events(
        self, run_id: str, after: int = 0
    ) -> AsyncGenerator[tuple[int, str, bytes], None]:
        """A run's (number, name, data) events after ``after`` until it ends: live from
        this replica's stream, or polled from the database while the run is queued or runs
        elsewhere (events that could not be stored: an ``error`` event naming them)."""
        with self.signals.watch(run_topic(run_id), events_topic(run_id)) as watch:
            while True:
                local = self.executor.local(run_id)
                if local is not None:
                    async with aclosing(local.stream.subscribe(after)) as live:
                        async for seq, name, data in live:
                            yield seq, name, data
                    return
                events = await self.runs.events.read(run_id, after)
                for seq, name, data in with_gaps(events, after):
                    after = seq
                    yield seq, name, data
                if events:
                    continue
                status = await self.runs.status(run_id)
                if status is None or status in FINAL_STATUSES:
                    rest = await self.runs.events.read(run_id, after)
                    for seq, name, data in with_gaps(rest, after):
                        yield seq, name, data
                    return
                await watch.wait()

    # -- cancel -------------------------------------------------------------------------
    async def cancel(
        self,
        principal: Principal,
        thread_id: str | None,
        run_ids: list[str] | None,
        *,
        action: CancelAction,
        status: str | None = None,
        wait: bool = False,
    ) -> list[RunRecord]:
        runs = await self.runs.cancel(
            principal.tenant_id, run_ids, action, thread_id=thread_id, status=status
        )
        if not runs and status is None:
            raise NotFound(
                "No matching runs to cancel. Please verify the thread ID and run IDs are "
                "correct, and the runs haven't been deleted or completed."
            )
        for run in runs:
            self.executor.cancel(run.run_id, action)
        # Pending ones ended (or went) just now; running ones end on their replica.
        self.signals.publish(
            *(run_topic(r.run_id) for r in runs if r.status == "pending"),
            *{thread_topic(r.thread_id) for r in runs if r.thread_id is not None},
        )
        if wait:
            for run in runs:
                await self._await_outcome(run)
        return runs

    async def _cancel_quietly(self, principal: Principal, run: RunRecord) -> None:
        """The client went away and asked for its run to stop with it."""
        try:
            await self.runs.cancel(principal.tenant_id, [run.run_id], "interrupt")
        except AgentRuntimeError as exc:
            logger.warning("run %s: cancel on disconnect failed: %s", run.run_id, exc.message)
        self.executor.cancel(run.run_id, "interrupt")
        self.signals.publish(run_topic(run.run_id))

    # -- after a run --------------------------------------------------------------------
    async def after_run(self, run: RunRecord, result: RunResult) -> None:
        """Audit the run's end; call its webhook (in the background); stateless runs drop
        their temporary thread unless asked to keep it."""
        await self._audit(run, result)
        kwargs = run.kwargs
        webhook = kwargs.get("webhook")
        if webhook and self._webhooks is not None and result.status is not None:
            payload = {
                **run_to_wire(run),
                "status": result.status,
                "values": result.output if result.status != "error" else None,
            }
            if result.status == "error" and isinstance(result.output, dict):
                payload["error"] = result.output.get("__error__")
            task = asyncio.get_running_loop().create_task(self._webhooks.send(webhook, payload))
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)
        dropped = kwargs.get("temporary") and kwargs.get("on_completion", "delete") == "delete"
        if dropped and self._on_temporary_done is not None:
            try:
                await self._on_temporary_done(run)
            except AgentRuntimeError as exc:
                logger.warning("run %s: temporary thread kept: %s", run.run_id, exc.message)

    async def _audit(self, run: RunRecord, result: RunResult) -> None:
        tokens = result.timings or timing.RunTimings()
        try:
            cost = await UsageLedger(self._store).run_cost(run.tenant_id, run.run_id)
            await record_run_end(
                self._store,
                run,
                result.status,
                tokens.input_tokens,
                tokens.output_tokens,
                float(cost),
            )
        except AgentRuntimeError as exc:
            logger.warning("run %s: audit entry not written: %s", run.run_id, exc.message)


def _outcome(run: RunRecord, result: RunResult) -> RunOutcome:
    timings = result.timings or timing.RunTimings()
    error = result.error
    if isinstance(error, AgentRuntimeError):
        # Runtime failures (provider chain exhausted, a dependency down) keep their
        # HTTP status; graph code failures answer 200 with ``__error__`` as the Platform
        # does, which the SDK raises unless ``raise_error=False``.
        error.details.setdefault("run_id", run.run_id)
        raise error
    return RunOutcome(
        run.run_id,
        run.thread_id or "",
        result.status,
        dumps(result.output),
        timings,
        result.graph_ms,
    )


def _error_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return {"error": "RunError", "message": text}
