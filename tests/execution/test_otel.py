"""OTLP export of run traces: the real OTLP/HTTP exporter posts to a real HTTP receiver,
which decodes the protobuf request the way a collector does."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from pydantic import SecretStr

from agent_runtime.config.trace_settings import TraceSettings
from agent_runtime.execution.chat_model import RouterChatModel
from agent_runtime.execution.otel import OtlpTraceExporter
from agent_runtime.execution.run_trace import TraceRecorder
from agent_runtime.gateway.model_router import ModelRouter
from tests.execution.test_chat_model import agent_graph
from tests.execution.test_run_trace import router  # noqa: F401  (fixture)
from tests.otlp import OtlpReceiver, attributes, otlp_receiver


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with otlp_receiver() as receiver:
        yield receiver


async def test_a_run_is_one_trace_with_its_id_and_a_span_per_step(
    router: ModelRouter,  # noqa: F811
    receiver: OtlpReceiver,
) -> None:
    run_id = str(uuid.uuid4())
    recorder = TraceRecorder(run_id)
    graph = agent_graph(RouterChatModel(alias="smart", call=router.chat))
    await graph.ainvoke(
        {"messages": [HumanMessage("what is 6 * 7? use the calculator")]}, {"callbacks": [recorder]}
    )
    trace = recorder.finish(thread_id="thread-1", graph_id="react", attempt=1, status="success")
    settings = TraceSettings(
        otlp_endpoint=receiver.endpoint,
        otlp_headers={"authorization": SecretStr("Bearer otlp-secret")},
    )
    exporter = OtlpTraceExporter(settings)
    exporter.export(trace, tenant_id="tenant-a")
    exporter.close()  # flushes
    assert receiver.headers[0]["authorization"] == "Bearer otlp-secret"
    assert receiver.headers[0]["content-type"] == "application/x-protobuf"
    spans = receiver.spans()
    resource = receiver.requests[0].resource_spans[0].resource
    service = attributes(resource.attributes)["service.name"]
    assert service == "agent-runtime"
    assert {span.trace_id for span in spans} == {uuid.UUID(run_id).bytes}
    by_id = {span.span_id: span for span in spans}
    (root,) = [span for span in spans if not span.parent_span_id]
    root_attributes = attributes(root.attributes)
    assert root.name == "run react"
    assert root_attributes["agent.run_id"] == run_id
    assert root_attributes["agent.tenant_id"] == "tenant-a"
    assert root_attributes["agent.thread_id"] == "thread-1"
    assert root_attributes["gen_ai.usage.input_tokens"] == trace.totals.input_tokens

    def parent_name(span: Any) -> str:
        return by_id[span.parent_span_id].name

    children = sorted(
        (span for span in spans if span.parent_span_id), key=lambda s: s.start_time_unix_nano
    )
    assert [(span.name, parent_name(span)) for span in children] == [
        ("agent", "run react"),
        ("chat smart", "agent"),
        ("tools", "run react"),
        ("execute_tool calculator", "tools"),
        ("agent", "run react"),
        ("chat smart", "agent"),
    ]
    chat = attributes(children[1].attributes)
    assert chat["gen_ai.request.model"] == "smart"
    assert chat["gen_ai.response.model"] == "fake-smart"
    assert chat["gen_ai.usage.output_tokens"] > 0
    assert chat["agent.attempts"] == ["fake-smart:ok"]
    for span in spans:
        assert root.start_time_unix_nano <= span.start_time_unix_nano
        assert span.start_time_unix_nano <= span.end_time_unix_nano <= root.end_time_unix_nano


def test_export_is_off_unless_an_endpoint_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    assert TraceSettings().otlp_endpoint is None
    monkeypatch.setenv("AGENT_TRACE_OTLP_ENDPOINT", "")
    assert TraceSettings().otlp_endpoint is None
    monkeypatch.setenv("AGENT_TRACE_OTLP_ENDPOINT", "http://collector:4318/v1/traces")
    monkeypatch.setenv("AGENT_TRACE_OTLP_HEADERS", '{"x-token": "tok-123"}')
    settings = TraceSettings()
    assert settings.otlp_endpoint == "http://collector:4318/v1/traces"
    assert settings.otlp_headers["x-token"].get_secret_value() == "tok-123"
    assert "tok-123" not in repr(settings)
