"""Thread and run execution: the orchestrator's logic, free of Ray.

A run is recorded before any graph code runs; the thread is marked busy with one atomic
UPDATE (so two replicas cannot run the same thread at once) and released whatever happens.
A failed run leaves the checkpoint where LangGraph left it: the last superstep that
completed, never a half-written one.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.pregel import Pregel
from langgraph.types import StateSnapshot

from runtime import timing
from runtime.errors import AgentRuntimeError, Conflict, NotFound, RunFailed
from runtime.protocol import (
    RunCreate,
    ThreadCreate,
    default_assistant_id,
    dumps,
    state_to_wire,
    thread_interrupts,
    thread_to_wire,
)
from runtime.records import Principal, RunRecord, RunStatus, ThreadStatus
from runtime.sse import StreamTranslator, encode_event, metadata_payload, to_jsonable
from runtime.storage import MetadataStore

logger = logging.getLogger(__name__)

# A thread claimed longer than the run timeout plus this was left by a dead replica.
STALE_CLAIM_MARGIN_S = 60.0

# (graph_id, status, duration_ms, timings) once a run has ended, e.g. for metrics.
RunListener = Callable[[str, RunStatus, float, timing.RunTimings], None]


@dataclass
class RunOutcome:
    """What a finished run hands back to the ingress."""

    run_id: str
    thread_id: str
    status: RunStatus
    body: bytes
    timings: timing.RunTimings
    graph_ms: float


class RunService:
    """Creates threads, runs graphs on them and reads their state back."""

    def __init__(
        self,
        store: MetadataStore,
        graphs: Mapping[str, Pregel[Any, Any]],
        *,
        run_timeout_s: float,
        recursion_limit: int = 25,
        on_run_finished: RunListener | None = None,
    ) -> None:
        self._store = store
        self._graphs = dict(graphs)
        self._assistants = {default_assistant_id(g): g for g in self._graphs}
        self._run_timeout_s = run_timeout_s
        self._recursion_limit = recursion_limit
        self._on_run_finished = on_run_finished

    # -- assistants -------------------------------------------------------------------
    def graph_id_for(self, assistant_id: str) -> str:
        if assistant_id in self._graphs:
            return assistant_id
        if assistant_id in self._assistants:
            return self._assistants[assistant_id]
        raise NotFound(
            f"assistant {assistant_id!r} not found; use a graph id ({', '.join(self._graphs)})"
        )

    # -- threads ----------------------------------------------------------------------
    async def create_thread(self, principal: Principal, body: ThreadCreate) -> dict[str, Any]:
        record = await self._store.create_thread(
            principal.tenant_id,
            thread_id=body.thread_id,
            metadata=body.metadata,
            graph_id=body.graph_id,
            if_exists=body.if_exists,
        )
        return thread_to_wire(record, values=None, interrupts={})

    async def get_thread(self, principal: Principal, thread_id: str) -> dict[str, Any]:
        record = await self._store.get_thread(principal.tenant_id, thread_id)
        snapshot = await self._snapshot(record.graph_id, thread_id)
        if snapshot is None or snapshot.created_at is None:
            return thread_to_wire(record, values=None, interrupts={})
        return thread_to_wire(
            record, values=to_jsonable(snapshot.values), interrupts=thread_interrupts(snapshot)
        )

    async def get_state(self, principal: Principal, thread_id: str) -> dict[str, Any]:
        record = await self._store.get_thread(principal.tenant_id, thread_id)
        snapshot = await self._snapshot(record.graph_id, thread_id)
        if snapshot is None or snapshot.created_at is None:
            return empty_state(thread_id)
        return state_to_wire(snapshot)

    async def _snapshot(self, graph_id: str | None, thread_id: str) -> StateSnapshot | None:
        if graph_id is None or graph_id not in self._graphs:
            return None
        config: RunnableConfig = {"configurable": {"thread_id": thread_id}}
        return await self._graphs[graph_id].aget_state(config)

    # -- runs -------------------------------------------------------------------------
    async def _begin(
        self, principal: Principal, thread_id: str | None, body: RunCreate
    ) -> tuple[str, str, RunRecord, bool]:
        """Resolve the graph, claim the thread and record the run (one transaction)."""
        graph_id = self.graph_id_for(body.assistant_id)
        temporary = thread_id is None
        if thread_id is None:
            thread = await self._store.create_thread(principal.tenant_id, graph_id=graph_id)
            thread_id = thread.thread_id
        start = functools.partial(
            self._store.start_run,
            principal.tenant_id,
            thread_id,
            graph_id=graph_id,
            assistant_id=body.assistant_id,
            metadata=body.metadata or {},
            stale_after_s=self._run_timeout_s + STALE_CLAIM_MARGIN_S,
        )
        try:
            run = await start()
        except NotFound:
            if body.if_not_exists != "create":
                raise
            await self._store.create_thread(
                principal.tenant_id, thread_id=thread_id, graph_id=graph_id, if_exists="do_nothing"
            )
            run = await start()
        if run is None:
            raise Conflict(
                f"thread {thread_id} already has a run in progress; wait for it to finish "
                "(multitask strategies other than reject come with the full Agent Protocol)"
            )
        return graph_id, thread_id, run, temporary

    def _invoke_args(
        self, principal: Principal, thread_id: str, run_id: str, body: RunCreate
    ) -> tuple[Any, RunnableConfig, dict[str, Any]]:
        config: dict[str, Any] = dict(body.config or {})
        configurable = dict(config.get("configurable") or {})
        configurable.update(thread_id=thread_id, run_id=run_id, tenant_id=principal.tenant_id)
        config["configurable"] = configurable
        config.setdefault("recursion_limit", self._recursion_limit)
        config["metadata"] = {**(config.get("metadata") or {}), **(body.metadata or {})}
        if body.command is not None:
            graph_input: Any = body.command.to_langgraph()
        else:
            graph_input = body.input
        kwargs: dict[str, Any] = {}
        if body.interrupt_before is not None:
            kwargs["interrupt_before"] = body.interrupt_before
        if body.interrupt_after is not None:
            kwargs["interrupt_after"] = body.interrupt_after
        if body.context is not None:
            kwargs["context"] = body.context
        return graph_input, RunnableConfig(**config), kwargs  # type: ignore[typeddict-item]

    async def _finish(
        self,
        principal: Principal,
        graph_id: str,
        thread_id: str,
        run: RunRecord,
        timings: timing.RunTimings,
        error: BaseException | None,
        temporary: bool,
        started: float,
        interrupted: bool | None = None,
    ) -> RunStatus:
        """Record the outcome and release the thread. ``interrupted=None``: read the state."""
        status: RunStatus
        thread_status: ThreadStatus
        if error is None:
            if interrupted is None:
                snapshot = await self._snapshot(graph_id, thread_id)
                interrupted = bool(snapshot and (snapshot.interrupts or snapshot.next))
            status, thread_status = (
                ("interrupted", "interrupted") if interrupted else ("success", "idle")
            )
        elif isinstance(error, TimeoutError):
            status, thread_status = "timeout", "idle"
        else:
            status, thread_status = "error", "error"
        await self._store.finish_run(
            principal.tenant_id,
            thread_id,
            run.run_id,
            status=status,
            thread_status=thread_status,
            error=_describe(error) if error is not None else None,
            input_tokens=timings.input_tokens,
            output_tokens=timings.output_tokens,
        )
        if temporary:
            await self._store.delete_thread(principal.tenant_id, thread_id)
        if self._on_run_finished is not None:
            duration_ms = (time.perf_counter() - started) * 1000
            self._on_run_finished(graph_id, status, duration_ms, timings)
        return status

    async def wait(
        self, principal: Principal, thread_id: str | None, body: RunCreate
    ) -> RunOutcome:
        graph_id, thread_id, run, temporary = await self._begin(principal, thread_id, body)
        graph = self._graphs[graph_id]
        graph_input, config, kwargs = self._invoke_args(principal, thread_id, run.run_id, body)
        error: BaseException | None = None
        values: Any = None
        start = time.perf_counter()
        with timing.track_run() as timings:
            try:
                async with asyncio.timeout(self._run_timeout_s):
                    values = await graph.ainvoke(graph_input, config, **kwargs)
            except (Exception, asyncio.CancelledError) as exc:
                error = exc
            graph_ms = (time.perf_counter() - start) * 1000
            status = await self._finish(
                principal,
                graph_id,
                thread_id,
                run,
                timings,
                error,
                temporary,
                start,
                interrupted=_interrupted(values, body),
            )
        if isinstance(error, asyncio.CancelledError):
            raise error
        if isinstance(error, AgentRuntimeError):
            # Runtime failures (provider chain exhausted, a dependency down) keep their
            # HTTP status; graph code failures answer 200 with ``__error__`` as the
            # Platform does, which the SDK raises unless ``raise_error=False``.
            raise _as_runtime_error(error, run.run_id)
        if error is not None:
            _as_runtime_error(error, run.run_id)  # logs it
            values = {"__error__": _error_payload(error)}
        return RunOutcome(run.run_id, thread_id, status, dumps(values), timings, graph_ms)

    async def stream(
        self, principal: Principal, thread_id: str | None, body: RunCreate
    ) -> AsyncIterator[bytes]:
        """SSE bytes: ``metadata`` first, then one event per chunk, ``error`` on failure."""
        translator = StreamTranslator(body.stream_modes, subgraphs=bool(body.stream_subgraphs))
        graph_id, thread_id, run, temporary = await self._begin(principal, thread_id, body)
        graph = self._graphs[graph_id]
        graph_input, config, kwargs = self._invoke_args(principal, thread_id, run.run_id, body)
        error: BaseException | None = None
        seq = 0
        start = time.perf_counter()
        yield encode_event("metadata", metadata_payload(run.run_id), str(seq))
        with timing.track_run() as timings:
            try:
                async with asyncio.timeout(self._run_timeout_s):
                    async for namespace, mode, chunk in graph.astream(
                        graph_input,
                        config,
                        stream_mode=translator.graph_stream_modes(),
                        subgraphs=True,
                        **kwargs,
                    ):
                        for name, data in translator.translate(mode, chunk, namespace):
                            seq += 1
                            yield encode_event(name, data, str(seq))
            except (Exception, asyncio.CancelledError) as exc:
                error = exc
            finally:
                await asyncio.shield(
                    self._finish(
                        principal, graph_id, thread_id, run, timings, error, temporary, start
                    )
                )
        if isinstance(error, asyncio.CancelledError):
            raise error
        if error is not None:
            _as_runtime_error(error, run.run_id)  # logs it
            seq += 1
            yield encode_event("error", _error_payload(error), str(seq))


def _interrupted(values: Any, body: RunCreate) -> bool | None:
    """Whether a finished ``ainvoke`` stopped at an interrupt, when its output tells.

    ``interrupt()`` shows as ``__interrupt__`` in the output; static breakpoints
    (``interrupt_before/after``) may not, so then the state is read instead.
    """
    if body.interrupt_before or body.interrupt_after or not isinstance(values, dict):
        return None
    return bool(values.get("__interrupt__"))


def empty_state(thread_id: str) -> dict[str, Any]:
    """The state of a thread no run has touched yet."""
    return {
        "values": {},
        "next": [],
        "tasks": [],
        "metadata": {},
        "created_at": None,
        "checkpoint": {"thread_id": thread_id, "checkpoint_ns": "", "checkpoint_id": None},
        "parent_checkpoint": None,
        "interrupts": [],
        "checkpoint_id": None,
        "parent_checkpoint_id": None,
    }


def _error_payload(error: BaseException) -> dict[str, str]:
    """``{"error": class, "message": ...}`` as the Platform names a failed run's error."""
    if isinstance(error, AgentRuntimeError):
        return {"error": type(error).__name__, "message": error.message}
    if isinstance(error, TimeoutError):
        return {"error": "TimeoutError", "message": "run timed out; raise AGENT_RUN_TIMEOUT_S"}
    return {"error": type(error).__name__, "message": str(error)[:500]}


def _describe(error: BaseException) -> str:
    if isinstance(error, AgentRuntimeError):
        return error.message
    if isinstance(error, TimeoutError):
        return "run timed out"
    return f"{type(error).__name__}: {str(error)[:500]}"


def _as_runtime_error(error: BaseException, run_id: str) -> AgentRuntimeError:
    if isinstance(error, AgentRuntimeError):
        error.details.setdefault("run_id", run_id)
        return error
    if isinstance(error, TimeoutError):
        return RunFailed("run timed out; raise AGENT_RUN_TIMEOUT_S", run_id=run_id)
    logger.warning("run %s failed: %s", run_id, _describe(error))
    return RunFailed(f"run failed: {_describe(error)}", run_id=run_id)
