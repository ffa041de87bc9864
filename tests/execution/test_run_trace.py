"""TraceRecorder: a run's path from LangChain's callbacks, as the graph runner records it.

Graphs run with the recorder in their config, as ``GraphRunner`` puts it there; model
calls go through the real ``ModelRouter`` over the fake provider (in process), so the
model spans carry what the router really did (attempts, fallbacks, tokens, cost).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.types import interrupt

from agent_runtime.config.builtin_models import builtin_config
from agent_runtime.config.fake_provider_settings import FakeProviderSettings
from agent_runtime.config.pricing import ModelPrice
from agent_runtime.config.provider_settings import ProviderSettings
from agent_runtime.execution.chat_model import RouterChatModel
from agent_runtime.execution.run_trace import ModelSpan, NodeSpan, RunTrace, ToolSpan, TraceRecorder
from agent_runtime.fake.provider_app import create_fake_provider_app
from agent_runtime.gateway.breakers import BreakerRegistry
from agent_runtime.gateway.model_router import ModelRouter
from tests.execution.test_chat_model import agent_graph
from tests.runs.test_run_counts import outer_graph

BASE_URL = "http://fake/v1"
PRICES = {
    "fake-smart": ModelPrice(2.5, 10),
    "fake-fallback": ModelPrice(0.15, 0.6),
}


async def _router(**faults: Any) -> tuple[ModelRouter, httpx.AsyncClient]:
    app = create_fake_provider_app(FakeProviderSettings(latency_ms=0.0, **faults))
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL)
    settings = ProviderSettings(
        provider_timeout_s=2.0, model_aliases={"smart": ["fake-smart", "fake-fallback"]}
    )
    config = builtin_config(settings, PRICES, base_url=BASE_URL)
    return ModelRouter(config, BASE_URL, BreakerRegistry(3, 30.0), http_client=http), http


@pytest.fixture
async def router() -> AsyncIterator[ModelRouter]:
    router, http = await _router()
    yield router
    await router.close()
    await http.aclose()


def _trace(recorder: TraceRecorder, status: str = "success") -> RunTrace:
    trace = recorder.finish(thread_id="t", graph_id="g", attempt=1, status=status)
    # What is stored is what is read back.
    return RunTrace.model_validate(trace.model_dump(mode="json"))


def _summary(trace: RunTrace) -> list[tuple[str, str, str, list[str] | None]]:
    parents = {span.id: span.name for span in trace.spans}
    return [
        (
            span.kind,
            span.name,
            parents.get(span.parent_id, "-") if span.parent_id is not None else "-",
            span.path if isinstance(span, NodeSpan) else None,
        )
        for span in trace.spans
    ]


async def test_nodes_subgraph_nodes_and_tool_calls_form_a_tree() -> None:
    recorder = TraceRecorder("run-1")
    await outer_graph().ainvoke({"messages": [HumanMessage("go")]}, {"callbacks": [recorder]})
    trace = _trace(recorder)
    assert _summary(trace) == [
        ("node", "first", "-", []),
        ("node", "analyst", "-", []),
        ("node", "ask", "analyst", ["analyst"]),
        ("node", "tools", "analyst", ["analyst"]),
        ("tool", "add", "tools", None),
        ("tool", "explode", "tools", None),
    ]
    tools = [span for span in trace.spans if isinstance(span, ToolSpan)]
    assert [(tool.status, tool.error) for tool in tools] == [
        ("ok", None),
        ("error", "RuntimeError"),
    ]
    assert [tool.tool_call_id for tool in tools] == ["call-add", "call-explode"]
    steps = [span.step for span in trace.spans if isinstance(span, NodeSpan)]
    assert steps == [1, 2, 1, 2]
    assert trace.totals.nodes == 4
    assert (trace.totals.tool_calls, trace.totals.tool_errors) == (2, 1)
    for span in trace.spans:
        assert span.duration_ms is not None and span.duration_ms >= 0
        assert span.start_ms >= 0
    assert trace.duration_ms is not None
    assert trace.duration_ms >= max(s.start_ms + (s.duration_ms or 0) for s in trace.spans)


async def test_model_calls_carry_model_tokens_cost_and_the_node_that_made_them(
    router: ModelRouter,
) -> None:
    recorder = TraceRecorder("run-2")
    graph = agent_graph(RouterChatModel(alias="smart", call=router.chat))
    await graph.ainvoke(
        {"messages": [HumanMessage("what is 6 * 7? use the calculator")]}, {"callbacks": [recorder]}
    )
    trace = _trace(recorder)
    kinds = [(span.kind, span.name) for span in trace.spans]
    assert kinds == [
        ("node", "agent"),
        ("model", "fake-smart"),
        ("node", "tools"),
        ("tool", "calculator"),
        ("node", "agent"),
        ("model", "fake-smart"),
    ]
    models = [span for span in trace.spans if isinstance(span, ModelSpan)]
    for span in models:
        assert span.alias == "smart" and span.model == "fake-smart"
        assert span.input_tokens > 0 and span.output_tokens > 0
        expected = (span.input_tokens * 2.5 + span.output_tokens * 10) / 1_000_000
        assert span.cost_usd == pytest.approx(expected)
        assert [a.outcome for a in span.attempts] == ["ok"] and not span.fallback
        parent = trace.spans[span.parent_id or 0]
        assert isinstance(parent, NodeSpan) and parent.name == "agent"
    totals = trace.totals
    assert totals.model_calls == 2 and totals.fallbacks == 0
    assert totals.input_tokens == sum(span.input_tokens for span in models)
    assert totals.cost_usd == pytest.approx(sum(span.cost_usd or 0 for span in models))


async def test_a_fallback_is_visible_streamed_or_not() -> None:
    router, http = await _router(failing_models=["fake-smart"])
    try:
        for stream_call in (None, router.stream):
            recorder = TraceRecorder("run-3")
            model = RouterChatModel(alias="smart", call=router.chat, stream_call=stream_call)
            if stream_call is None:
                await model.ainvoke([HumanMessage("hello")], {"callbacks": [recorder]})
            else:
                async for _ in model.astream([HumanMessage("hello")], {"callbacks": [recorder]}):
                    pass
            (span,) = _trace(recorder).spans
            assert isinstance(span, ModelSpan)
            assert span.model == "fake-fallback" and span.fallback
            assert [(a.model, a.outcome) for a in span.attempts] == [
                ("fake-smart", "error"),
                ("fake-fallback", "ok"),
            ]
            assert span.cost_usd is not None and span.cost_usd > 0
            assert span.parent_id is None
    finally:
        await router.close()
        await http.aclose()


async def test_failed_interrupted_and_unfinished_spans_say_so() -> None:
    router, http = await _router(failing_models=["fake-smart", "fake-fallback"])
    started = asyncio.Event()

    async def ask(state: MessagesState) -> dict[str, list[BaseMessage]]:
        model = RouterChatModel(alias="smart", call=router.chat)
        with contextlib.suppress(Exception):
            await model.ainvoke(state["messages"])
        approved = interrupt("approve?")
        return {"messages": [AIMessage(str(approved))]}

    async def stall(state: MessagesState) -> dict[str, list[BaseMessage]]:
        started.set()
        await asyncio.sleep(30)
        return {}

    graph = StateGraph(MessagesState)
    graph.add_node("ask", ask)
    graph.add_edge(START, "ask")
    graph.add_edge("ask", END)
    try:
        recorder = TraceRecorder("run-4")
        await graph.compile().ainvoke({"messages": [HumanMessage("x")]}, {"callbacks": [recorder]})
        node, model = _trace(recorder, "success").spans
        assert (node.kind, node.status) == ("node", "interrupted")
        assert isinstance(model, ModelSpan)
        assert (model.status, model.error) == ("error", "ProviderChainExhausted")
        assert model.model is None and model.cost_usd is None
    finally:
        await router.close()
        await http.aclose()

    stalled = StateGraph(MessagesState)
    stalled.add_node("stall", stall)
    stalled.add_edge(START, "stall")
    recorder = TraceRecorder("run-5")
    task = asyncio.ensure_future(
        stalled.compile().ainvoke({"messages": []}, {"callbacks": [recorder]})
    )
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (span,) = _trace(recorder, "interrupted").spans
    assert span.status == "cancelled" and span.duration_ms is not None


async def test_a_trace_keeps_at_most_max_spans() -> None:
    recorder = TraceRecorder("run-6", max_spans=3)
    await outer_graph().ainvoke({"messages": [HumanMessage("go")]}, {"callbacks": [recorder]})
    trace = _trace(recorder)
    assert len(trace.spans) == 3 and trace.truncated
    assert [span.id for span in trace.spans] == [0, 1, 2]
