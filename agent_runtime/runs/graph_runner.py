"""Executes one run's graph: input or resume, stream translation, limits, and its end.

:class:`GraphRunner` is the executor's ``Runner``: given a claimed run it builds the
LangGraph call from the run's stored ``kwargs``, streams the graph (``astream``, or
``astream_events`` when the ``events`` mode was asked for), publishes the Agent Protocol
events to the run's stream, and works out how the run ended: its status, the thread's
status and the state values to keep on the thread row, all without an extra state read
except after an interrupt, a cancel or an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.errors import GraphRecursionError
from langgraph.pregel import Pregel
from langgraph.types import StateSnapshot

from agent_runtime.core import timing
from agent_runtime.core.errors import AgentRuntimeError, DependencyUnavailable
from agent_runtime.core.identity import RunIdentity, run_identity
from agent_runtime.core.records import RunRecord, RunStatus, ThreadStatus
from agent_runtime.db.driver_errors import driver_error
from agent_runtime.execution.checkpoint_ops import delete_run_checkpoints
from agent_runtime.execution.run_trace import TraceRecorder
from agent_runtime.execution.tenant_context import tenant_scope
from agent_runtime.protocol.agent_protocol import Command
from agent_runtime.protocol.agent_responses import thread_interrupts
from agent_runtime.protocol.sse import (
    StreamTranslator,
    error_payload,
    metadata_payload,
    to_jsonable,
)
from agent_runtime.runs.local_run import LocalRun, RunResult
from agent_runtime.runs.run_queue import RunEnd
from agent_runtime.user_app.served_graphs import ServedGraphs
from agent_runtime.user_app.server_runtime import GraphUse

logger = logging.getLogger(__name__)

# (graph_id, status, duration_ms, timings) once a run has ended, e.g. for metrics.
RunListener = Callable[[str, RunStatus, float, timing.RunTimings], None]
TIMEOUT_MESSAGE = "run timed out; raise AGENT_RUN_TIMEOUT_S"
DRIVER_FAILED = (
    "a service the runtime depends on (its database or cache) failed during the run; "
    "try again, and tell the operator if it persists"
)


@dataclass
class _Progress:
    """What the stream told us about the run's final state."""

    values: Any = None
    next: list[str] | None = None
    interrupted: bool = False


class GraphRunner:
    def __init__(
        self,
        graphs: ServedGraphs,
        saver: Any,
        *,
        run_timeout_s: float,
        scope: Callable[[RunRecord], contextlib.AbstractContextManager[Any]] | None = None,
        on_run_finished: RunListener | None = None,
        trace_max_spans: int | None = 2000,
    ) -> None:
        self._graphs = graphs
        self._saver = saver
        self._run_timeout_s = run_timeout_s
        self._scope = scope
        self._on_run_finished = on_run_finished
        self._trace_max_spans = trace_max_spans  # None: runs keep no trace

    async def __call__(self, local: LocalRun) -> tuple[RunEnd, RunResult]:
        run = local.run
        started = time.perf_counter()
        identity = RunIdentity(
            tenant_id=run.tenant_id,
            key_id=run.kwargs.get("key_id"),
            thread_id=None if run.temporary else run.thread_id,
            run_id=run.run_id,
        )
        recorder = None
        if self._trace_max_spans is not None:
            recorder = TraceRecorder(run.run_id, self._trace_max_spans)
        # The run's tenant scope: its checkpoints and store items are that tenant's.
        with (
            timing.track_run() as timings,
            tenant_scope(run.tenant_id),
            self._scope_for(run),
            run_identity(identity),
        ):
            end, result = await self._run(local, recorder)
        end.input_tokens, end.output_tokens = timings.input_tokens, timings.output_tokens
        result.timings, result.graph_ms = timings, (time.perf_counter() - started) * 1000
        if recorder is not None and end.status is not None:
            end.trace = recorder.finish(
                thread_id=run.thread_id,
                graph_id=run.graph_id,
                attempt=run.attempt,
                status=end.status,
            )
            result.trace = end.trace
        if self._on_run_finished is not None and run.graph_id and end.status is not None:
            duration_ms = (time.perf_counter() - started) * 1000
            self._on_run_finished(run.graph_id, end.status, duration_ms, timings)
        return end, result

    def _scope_for(self, run: RunRecord) -> contextlib.AbstractContextManager[Any]:
        return self._scope(run) if self._scope is not None else contextlib.nullcontext()

    async def _run(
        self, local: LocalRun, recorder: TraceRecorder | None
    ) -> tuple[RunEnd, RunResult]:
        run = local.run
        config = self._config(run, recorder)
        use = GraphUse("threads.create_run", run.kwargs.get("context"))
        async with self._graphs.open(run.graph_id or "", config, use) as graph:
            return await self._run_graph(local, graph, config)

    async def _run_graph(
        self, local: LocalRun, graph: Pregel[Any, Any], config: RunnableConfig
    ) -> tuple[RunEnd, RunResult]:
        run = local.run
        kwargs = run.kwargs
        progress = _Progress()
        local.stream.publish("metadata", metadata_payload(run.run_id, run.attempt))
        graph_input = await self._input(graph, run, config)
        work = asyncio.ensure_future(
            self._consume(graph, graph_input, config, kwargs, local, progress)
        )
        local.work = work
        error: BaseException | None = None
        try:
            done, _ = await asyncio.wait({work}, timeout=self._run_timeout_s)
        finally:
            if not work.done():
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await work
        if not done:
            error = TimeoutError(TIMEOUT_MESSAGE)
        elif work.cancelled():
            return await self._cancelled(local, graph, config)
        else:
            error = work.exception()
        if error is not None:
            return await self._failed(local, graph, config, error)
        if progress.interrupted or progress.next is None or progress.next:
            snapshot = await graph.aget_state(config)
            return self._ended(local, snapshot, "success")
        values = to_jsonable(progress.values)
        end = RunEnd(status="success", thread_status="idle", values=values, interrupts={})
        return end, RunResult(status="success", output=values)

    def _config(self, run: RunRecord, recorder: TraceRecorder | None = None) -> RunnableConfig:
        config: dict[str, Any] = dict(run.kwargs.get("config") or {})
        if recorder is not None:
            config["callbacks"] = [recorder]
        configurable = dict(config.get("configurable") or {})
        configurable.update(thread_id=run.thread_id, run_id=run.run_id)
        config["configurable"] = configurable
        metadata = dict(config.get("metadata") or {})
        metadata["run_attempt"] = run.attempt
        config["metadata"] = metadata
        if run.attempt == 1:
            # LangChain's run id of the root call: ``events`` are told apart by it.
            config["run_id"] = uuid.UUID(run.run_id)
        return config  # type: ignore[return-value]

    async def _input(self, graph: Pregel[Any, Any], run: RunRecord, config: RunnableConfig) -> Any:
        """The graph input; a resumed attempt continues from its own last checkpoint."""
        if run.attempt > 1:
            checkpoint = await self._saver.aget_tuple(
                {"configurable": {"thread_id": run.thread_id, "checkpoint_ns": ""}}
            )
            if checkpoint is not None and checkpoint.metadata.get("run_id") == run.run_id:
                return None
        command = run.kwargs.get("command")
        if command:
            return Command.model_validate(command).to_langgraph()
        return run.kwargs.get("input")

    async def _consume(
        self,
        graph: Pregel[Any, Any],
        graph_input: Any,
        config: RunnableConfig,
        kwargs: dict[str, Any],
        local: LocalRun,
        progress: _Progress,
    ) -> None:
        modes = list(kwargs.get("stream_mode") or ["values"])
        translator = StreamTranslator(modes, subgraphs=bool(kwargs.get("subgraphs")))
        graph_modes = sorted({*translator.graph_stream_modes(), "checkpoints", "updates"})
        call: dict[str, Any] = {
            "stream_mode": graph_modes,
            "subgraphs": True,
            "durability": kwargs.get("durability") or "async",
        }
        for name in ("interrupt_before", "interrupt_after"):
            if kwargs.get(name) is not None:
                call[name] = kwargs[name]
        if kwargs.get("context") is not None:
            # Even empty, as the Platform passes it: a graph's context_schema then gets
            # its defaults (a dataclass built from {}), not None.
            call["context"] = kwargs["context"]
        stream = local.stream
        if "events" in modes:
            root = str(config.get("run_id") or "")
            async for event in graph.astream_events(graph_input, config, version="v2", **call):
                if event["event"] == "on_chain_stream" and str(event["run_id"]) == root:
                    namespace, mode, chunk = event["data"]["chunk"]
                    self._observe(namespace, mode, chunk, progress)
                    if stream.wanted:
                        for name, data in translator.translate(mode, chunk, namespace):
                            stream.publish(name, data)
                elif stream.wanted and "langsmith:hidden" not in (event.get("tags") or []):
                    stream.publish("events", event)
            return
        async for namespace, mode, chunk in graph.astream(graph_input, config, **call):
            self._observe(namespace, mode, chunk, progress)
            if stream.wanted:
                for name, data in translator.translate(mode, chunk, namespace):
                    stream.publish(name, data)

    @staticmethod
    def _observe(namespace: Any, mode: str, chunk: Any, progress: _Progress) -> None:
        if mode == "updates":
            timing.count_updates(chunk)  # steps and tool calls, subgraphs' included
        if namespace:
            return
        if mode == "checkpoints" and isinstance(chunk, dict):
            progress.values = chunk.get("values")
            progress.next = list(chunk.get("next") or [])
        elif mode == "updates" and isinstance(chunk, dict) and chunk.get("__interrupt__"):
            progress.interrupted = True

    def _ended(
        self, local: LocalRun, snapshot: StateSnapshot, status: RunStatus
    ) -> tuple[RunEnd, RunResult]:
        """The end of a run from the thread's state (interrupts, ``next``)."""
        values = to_jsonable(snapshot.values)
        interrupts = thread_interrupts(snapshot)
        thread_status: ThreadStatus = "interrupted" if snapshot.next or interrupts else "idle"
        output = values
        if interrupts and isinstance(values, dict):
            pending = [i for task in snapshot.tasks for i in task.interrupts]
            output = {**values, "__interrupt__": to_jsonable(pending)}
        end = RunEnd(
            status=status, thread_status=thread_status, values=values, interrupts=interrupts
        )
        return end, RunResult(status=status, output=output)

    async def _cancelled(
        self, local: LocalRun, graph: Pregel[Any, Any], config: RunnableConfig
    ) -> tuple[RunEnd, RunResult]:
        run = local.run
        if local.lost:
            return RunEnd(status="error", thread_status="error"), RunResult(status=None)
        if local.cancel_action == "rollback":
            await delete_run_checkpoints(
                self._saver, run.tenant_id, run.thread_id or "", run.run_id
            )
            snapshot = await graph.aget_state(_thread_config(run))
            end, _ = self._ended(local, snapshot, "interrupted")
            end.status = None
            return end, RunResult(status=None, output=end.values)
        snapshot = await graph.aget_state(_thread_config(run))
        return self._ended(local, snapshot, "interrupted")

    async def _failed(
        self,
        local: LocalRun,
        graph: Pregel[Any, Any],
        config: RunnableConfig,
        error: BaseException,
    ) -> tuple[RunEnd, RunResult]:
        run = local.run
        status: RunStatus = "timeout" if isinstance(error, TimeoutError) else "error"
        payload = _error_payload(error)
        if not isinstance(error, AgentRuntimeError):
            cause = driver_error(error)
            if cause is not None:
                logger.warning("run %s failed: %s: %s", run.run_id, type(cause).__name__, cause)
            else:
                logger.warning("run %s failed: %s", run.run_id, payload["error"])
        local.stream.publish("error", payload)
        try:
            snapshot = await graph.aget_state(_thread_config(run))
            values: Any = to_jsonable(snapshot.values)
        except Exception:  # the state read failing must not hide the run's own error
            values = None
        end = RunEnd(
            status=status,
            thread_status="error",
            values=values if values is not None else {},
            error=json.dumps(payload),
        )
        return end, RunResult(status=status, output={"__error__": payload}, error=error)


def _thread_config(run: RunRecord) -> RunnableConfig:
    return {"configurable": {"thread_id": run.thread_id}}


def _error_payload(error: BaseException) -> dict[str, str]:
    """``{"error": class, "message": ...}`` as the Platform names a failed run's error."""
    if isinstance(error, AgentRuntimeError):
        return {"error": type(error).__name__, "message": error.message}
    if isinstance(error, TimeoutError):
        return {"error": "TimeoutError", "message": TIMEOUT_MESSAGE}
    if isinstance(error, GraphRecursionError):
        return {"error": "GraphRecursionError", "message": str(error)[:500]}
    if driver_error(error) is not None:
        # A driver's text names hosts and users: the operator's log has it, not the tenant.
        return {"error": DependencyUnavailable.__name__, "message": DRIVER_FAILED}
    payload = error_payload(error)
    payload["message"] = payload["message"][:500]
    return payload
