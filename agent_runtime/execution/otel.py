"""Run traces as OpenTelemetry spans over OTLP/HTTP (off unless an endpoint is set).

:class:`OtlpTraceExporter` turns a finished run's
:class:`~agent_runtime.execution.run_trace.RunTrace` into one OpenTelemetry trace: a root span for
the run and a child span per node, model
call and tool call, with their real start and end times. The trace id is the run id (a
UUID is 128 bits, as a trace id is), so a run found in the API is found in the tracing
backend by the same id. Attributes follow OpenTelemetry's GenAI conventions where there is
one (``gen_ai.request.model``, ``gen_ai.usage.input_tokens`` ...). Spans are sent in the
background by the SDK's batch processor; a collector that is down costs the run nothing.
"""

from __future__ import annotations

import contextvars
import uuid
from typing import TYPE_CHECKING, Any

from opentelemetry import trace as otel_trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import SpanKind, Status, StatusCode

from agent_runtime.execution.run_trace import ModelSpan, NodeSpan, RunTrace, ToolSpan

if TYPE_CHECKING:
    from agent_runtime.config.trace_settings import TraceSettings

_NS_PER_MS = 1_000_000
# The trace id the next root span takes (the run id); one export at a time sets it.
_next_trace_id: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "agent_otel_trace_id", default=None
)


class _RunTraceIds(RandomIdGenerator):
    def generate_trace_id(self) -> int:
        trace_id = _next_trace_id.get()
        return trace_id if trace_id is not None else super().generate_trace_id()


def _trace_id(run_id: str) -> int | None:
    try:
        return uuid.UUID(run_id).int or None
    except ValueError:
        return None


def _attributes(span: NodeSpan | ModelSpan | ToolSpan) -> dict[str, Any]:
    if isinstance(span, NodeSpan):
        attributes: dict[str, Any] = {"langgraph.node": span.name}
        if span.step is not None:
            attributes["langgraph.step"] = span.step
        if span.path:
            attributes["langgraph.path"] = span.path
        return attributes
    if isinstance(span, ToolSpan):
        attributes = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": span.name}
        if span.tool_call_id:
            attributes["gen_ai.tool.call.id"] = span.tool_call_id
        return attributes
    attributes = {
        "gen_ai.operation.name": "chat",
        "gen_ai.usage.input_tokens": span.input_tokens,
        "gen_ai.usage.output_tokens": span.output_tokens,
        "agent.fallback": span.fallback,
        "agent.partial": span.partial,
        "agent.attempts": [f"{a.model}:{a.outcome}" for a in span.attempts],
    }
    if span.alias:
        attributes["gen_ai.request.model"] = span.alias
    if span.model:
        attributes["gen_ai.response.model"] = span.model
    if span.cost_usd is not None:
        attributes["agent.cost_usd"] = span.cost_usd
    return attributes


def _span_name(span: NodeSpan | ModelSpan | ToolSpan) -> str:
    if isinstance(span, ModelSpan):
        return f"chat {span.alias or span.name}"
    if isinstance(span, ToolSpan):
        return f"execute_tool {span.name}"
    return span.name


class OtlpTraceExporter:
    def __init__(self, settings: TraceSettings, exporter: SpanExporter | None = None) -> None:
        if exporter is None:
            headers = {
                name: value.get_secret_value() for name, value in settings.otlp_headers.items()
            }
            exporter = OTLPSpanExporter(
                endpoint=settings.otlp_endpoint,
                headers=headers,
                timeout=settings.otlp_timeout_s,
            )
        # A provider of our own: the process's global one (Ray's, a user's) is left alone.
        self._provider = TracerProvider(
            resource=Resource.create({"service.name": settings.service_name}),
            id_generator=_RunTraceIds(),
        )
        self._provider.add_span_processor(BatchSpanProcessor(exporter))
        self._tracer = self._provider.get_tracer("agent_runtime.runs")

    def export(self, trace: RunTrace, tenant_id: str) -> None:
        """Queue ``trace``'s spans for export (returns at once)."""
        base_ns = int(trace.started_at.timestamp() * 1e9)
        end_ns = base_ns + int((trace.duration_ms or 0.0) * _NS_PER_MS)
        attributes: dict[str, Any] = {
            "agent.run_id": trace.run_id,
            "agent.tenant_id": tenant_id,
            "agent.attempt": trace.attempt,
            "agent.status": trace.status or "",
            "agent.cost_usd": trace.totals.cost_usd,
            "gen_ai.usage.input_tokens": trace.totals.input_tokens,
            "gen_ai.usage.output_tokens": trace.totals.output_tokens,
        }
        if trace.thread_id:
            attributes["agent.thread_id"] = trace.thread_id
        if trace.graph_id:
            attributes["agent.graph_id"] = trace.graph_id
        token = _next_trace_id.set(_trace_id(trace.run_id))
        try:
            root = self._tracer.start_span(
                f"run {trace.graph_id or ''}".strip(),
                context=otel_trace.set_span_in_context(otel_trace.INVALID_SPAN),
                kind=SpanKind.INTERNAL,
                attributes=attributes,
                start_time=base_ns,
            )
        finally:
            _next_trace_id.reset(token)
        if trace.status in ("error", "timeout"):
            root.set_status(Status(StatusCode.ERROR, trace.status))
        opened: dict[int, otel_trace.Span] = {}
        for span in trace.spans:  # a parent starts, so is listed, before its children
            parent = opened.get(span.parent_id) if span.parent_id is not None else None
            child = self._tracer.start_span(
                _span_name(span),
                context=otel_trace.set_span_in_context(parent or root),
                attributes={**_attributes(span), "agent.status": span.status},
                start_time=base_ns + int(span.start_ms * _NS_PER_MS),
            )
            if span.status == "error":
                child.set_status(Status(StatusCode.ERROR, span.error or "error"))
            opened[span.id] = child
        for span in trace.spans:
            finished = span.start_ms + (span.duration_ms or 0.0)
            opened[span.id].end(end_time=base_ns + int(finished * _NS_PER_MS))
        root.end(end_time=end_ns)

    def close(self) -> None:
        """Send what is queued and stop (blocking up to the export timeout)."""
        self._provider.shutdown()
