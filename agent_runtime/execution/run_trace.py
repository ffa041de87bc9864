"""A run's path, kept with the run: nodes visited, model calls and tool calls.

:class:`TraceRecorder` is a LangChain callback handler the graph runner puts in a run's
config. LangGraph reports every node execution, chat model call and tool call to it with
the node it ran in, so it builds a tree of spans without touching the graphs: a node span
(subgraph nodes under the subgraph's node), the model calls (alias asked for, the model
that answered, tokens, latency, the router's attempts and fallbacks, cost) and tool calls
(name, outcome) under the node that made them. :meth:`TraceRecorder.finish` gives the
:class:`RunTrace` that is stored with the run (``agent_runtime.runs.trace_rows``), read through
``GET /threads/{thread_id}/runs/{run_id}/trace`` and optionally exported as
OpenTelemetry spans (``agent_runtime.execution.otel``).

No arguments, messages or outputs are kept: a trace answers "where did the time and the
money go", and holds no user text.
"""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage, ToolMessage
from langchain_core.outputs import LLMResult
from langgraph.errors import GraphBubbleUp, GraphInterrupt
from pydantic import BaseModel, Field

from agent_runtime.core.types import Attempt

SpanStatus = Literal["ok", "error", "interrupted", "cancelled"]


class _Span(BaseModel):
    id: int = Field(description="Index in the trace's spans.")
    parent_id: int | None = Field(description="The enclosing node's span (None: the run).")
    name: str
    start_ms: float = Field(description="Since the run started.")
    duration_ms: float | None = Field(default=None, description="None while it runs.")
    status: SpanStatus = "ok"
    error: str | None = Field(default=None, description="The error's class, when it failed.")


class NodeSpan(_Span):
    kind: Literal["node"] = "node"
    step: int | None = Field(default=None, description="LangGraph superstep.")
    path: list[str] = Field(
        default_factory=list, description="Enclosing nodes, outermost first (subgraphs)."
    )


class ModelSpan(_Span):
    kind: Literal["model"] = "model"
    alias: str | None = Field(default=None, description="The alias or model asked for.")
    model: str | None = Field(default=None, description="The model that answered.")
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = Field(default=None, description="At the model's price.")
    attempts: list[Attempt] = Field(
        default_factory=list, description="Every model the router tried, in order."
    )
    fallback: bool = Field(default=False, description="Answered by a later model of the chain.")
    partial: bool = Field(default=False, description="A stream that broke off.")


class ToolSpan(_Span):
    kind: Literal["tool"] = "tool"
    tool_call_id: str | None = None


Span = Annotated[NodeSpan | ModelSpan | ToolSpan, Field(discriminator="kind")]


class TraceTotals(BaseModel):
    nodes: int = 0
    model_calls: int = 0
    tool_calls: int = 0
    tool_errors: int = 0
    fallbacks: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0


class RunTrace(BaseModel):
    """What a run did, in the order it started doing it."""

    run_id: str
    thread_id: str | None = None
    graph_id: str | None = None
    attempt: int = 1
    status: str | None = Field(default=None, description="The run's status when it ended.")
    started_at: datetime
    duration_ms: float | None = None
    spans: list[Span] = Field(default_factory=list)
    totals: TraceTotals = Field(default_factory=TraceTotals)
    truncated: bool = Field(default=False, description="More spans than the recorder keeps.")


def _totals(spans: list[NodeSpan | ModelSpan | ToolSpan]) -> TraceTotals:
    totals = TraceTotals()
    for span in spans:
        if isinstance(span, NodeSpan):
            totals.nodes += 1
        elif isinstance(span, ModelSpan):
            totals.model_calls += 1
            totals.fallbacks += int(span.fallback)
            totals.input_tokens += span.input_tokens
            totals.output_tokens += span.output_tokens
            totals.cost_usd += span.cost_usd or 0.0
        else:
            totals.tool_calls += 1
            totals.tool_errors += int(span.status == "error")
    totals.cost_usd = round(totals.cost_usd, 8)
    return totals


def _error_status(error: BaseException) -> tuple[SpanStatus, str | None]:
    if isinstance(error, GraphInterrupt):
        return "interrupted", None
    if isinstance(error, GraphBubbleUp):
        return "ok", None  # control flow (a Command to the parent graph), not a failure
    if isinstance(error, asyncio.CancelledError):
        return "cancelled", None
    return "error", type(error).__name__


class TraceRecorder(BaseCallbackHandler):
    """Builds one run's spans from LangChain's callbacks (see the module's docstring)."""

    # Called in line, on the thread that makes the call: no executor hop per event.
    run_inline = True

    def __init__(self, run_id: str, max_spans: int = 2000) -> None:
        self._run_id = run_id
        self._max_spans = max_spans
        self._started_at = datetime.now(UTC)
        self._started = time.perf_counter()
        self._spans: list[NodeSpan | ModelSpan | ToolSpan] = []
        # LangChain run id -> the span it is or runs inside (None: the run itself).
        self._owner: dict[UUID, int | None] = {}
        self._truncated = False
        self._lock = threading.Lock()  # sync tools call back from executor threads

    # -- helpers -----------------------------------------------------------------------

    def _now_ms(self) -> float:
        return (time.perf_counter() - self._started) * 1000

    def _parent(self, parent_run_id: UUID | None) -> int | None:
        return self._owner.get(parent_run_id) if parent_run_id is not None else None

    def _add(self, run_id: UUID, span: NodeSpan | ModelSpan | ToolSpan) -> None:
        if len(self._spans) >= self._max_spans:
            self._truncated = True
            self._owner[run_id] = span.parent_id
            return
        self._spans.append(span)
        self._owner[run_id] = span.id

    def _own(self, run_id: UUID) -> NodeSpan | ModelSpan | ToolSpan | None:
        """The span ``run_id`` opened (not one it merely runs inside)."""
        index = self._owner.pop(run_id, None)
        if index is None:
            return None
        span = self._spans[index]
        return span if span.duration_ms is None else None

    def _close(
        self, run_id: UUID, status: SpanStatus = "ok", error: str | None = None
    ) -> NodeSpan | ModelSpan | ToolSpan | None:
        span = self._own(run_id)
        if span is not None:
            span.duration_ms = round(self._now_ms() - span.start_ms, 3)
            span.status, span.error = status, error
        return span

    # -- nodes -------------------------------------------------------------------------

    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        with self._lock:
            parent = self._parent(parent_run_id)
            node = (metadata or {}).get("langgraph_node")
            name = kwargs.get("name")
            enclosing = self._spans[parent] if parent is not None else None
            # A node's own runnable inside its task reports the same name: one span.
            inner = (
                isinstance(enclosing, NodeSpan)
                and enclosing.name == name
                and enclosing.duration_ms is None
            )
            if node is None or name != node or inner:
                self._owner[run_id] = parent
                return
            path = [*enclosing.path, enclosing.name] if isinstance(enclosing, NodeSpan) else []
            step = (metadata or {}).get("langgraph_step")
            span = NodeSpan(
                id=len(self._spans),
                parent_id=parent,
                name=str(node),
                start_ms=round(self._now_ms(), 3),
                step=step if isinstance(step, int) else None,
                path=path,
            )
            self._add(run_id, span)

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            self._close(run_id)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            self._close(run_id, *_error_status(error))

    # -- model calls -------------------------------------------------------------------

    def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        params = kwargs.get("invocation_params") or {}
        alias = params.get("alias") or params.get("model_name") or params.get("model")
        if alias is None:
            alias = (metadata or {}).get("ls_model_name")
        with self._lock:
            parent = self._parent(parent_run_id)
            span = ModelSpan(
                id=len(self._spans),
                parent_id=parent,
                name=str(alias or "model"),
                alias=None if alias is None else str(alias),
                start_ms=round(self._now_ms(), 3),
            )
            self._add(run_id, span)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            span = self._close(run_id)
            if isinstance(span, ModelSpan):
                _fill_model_span(span, response)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            span = self._close(run_id, *_error_status(error))
            if isinstance(span, ModelSpan):
                span.partial = bool(getattr(error, "partial", False))
                model = getattr(error, "model", None)
                span.model = model if isinstance(model, str) else None

    # -- tool calls --------------------------------------------------------------------

    def on_tool_start(
        self,
        serialized: dict[str, Any] | None,
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        name = kwargs.get("name") or (serialized or {}).get("name") or "tool"
        call_id = kwargs.get("tool_call_id")
        with self._lock:
            span = ToolSpan(
                id=len(self._spans),
                parent_id=self._parent(parent_run_id),
                name=str(name),
                start_ms=round(self._now_ms(), 3),
                tool_call_id=call_id if isinstance(call_id, str) else None,
            )
            self._add(run_id, span)

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            failed = isinstance(output, ToolMessage) and output.status == "error"
            span = self._close(run_id, "error" if failed else "ok")
            if isinstance(span, ToolSpan) and isinstance(output, ToolMessage):
                span.tool_call_id = span.tool_call_id or output.tool_call_id

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            self._close(run_id, *_error_status(error))

    # -- the end -----------------------------------------------------------------------

    def finish(
        self, *, thread_id: str | None, graph_id: str | None, attempt: int, status: str | None
    ) -> RunTrace:
        """The run's trace; spans still open (a timeout, a cancel) end as ``cancelled``."""
        with self._lock:
            now = self._now_ms()
            for span in self._spans:
                if span.duration_ms is None:
                    span.duration_ms = round(now - span.start_ms, 3)
                    span.status = "cancelled"
            spans = list(self._spans)
            return RunTrace(
                run_id=self._run_id,
                thread_id=thread_id,
                graph_id=graph_id,
                attempt=attempt,
                status=status,
                started_at=self._started_at,
                duration_ms=round(now, 3),
                spans=spans,
                totals=_totals(spans),
                truncated=self._truncated,
            )


def _fill_model_span(span: ModelSpan, response: LLMResult) -> None:
    generations = response.generations[0] if response.generations else []
    message = getattr(generations[0], "message", None) if generations else None
    metadata: dict[str, Any] = dict(getattr(message, "response_metadata", None) or {})
    output = response.llm_output or {}
    model = metadata.get("model_name") or output.get("model_name")
    span.model = str(model) if model is not None else span.alias
    if model is not None:
        span.name = str(model)
    usage = getattr(message, "usage_metadata", None)
    if usage:
        span.input_tokens = int(usage.get("input_tokens", 0))
        span.output_tokens = int(usage.get("output_tokens", 0))
    elif isinstance(output.get("token_usage"), dict):
        span.input_tokens = int(output["token_usage"].get("prompt_tokens", 0))
        span.output_tokens = int(output["token_usage"].get("completion_tokens", 0))
    cost = metadata.get("cost_usd")
    span.cost_usd = float(cost) if isinstance(cost, int | float) else None
    attempts = metadata.get("attempts")
    if isinstance(attempts, list):
        span.attempts = [Attempt.model_validate(attempt) for attempt in attempts]
    span.fallback = bool(span.attempts) and span.attempts[0].model != span.model
    span.partial = bool(metadata.get("partial"))
