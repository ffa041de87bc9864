"""RouterChatModel: LangChain's chat model interface over the model router.

The router calls the fake provider in-process (httpx's ASGI transport); the chat model
gets ``ModelRouter.chat`` / ``ModelRouter.stream`` where the service would pass functions
calling the router deployment through a Ray handle.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from agent_runtime.config.fake_provider_settings import FakeProviderSettings
from agent_runtime.config.provider_settings import ProviderSettings
from agent_runtime.core import timing
from agent_runtime.core.errors import ProviderChainExhausted
from agent_runtime.core.types import ChatRequest, ChatResult
from agent_runtime.execution.chat_model import RouterChatModel
from agent_runtime.fake.provider_app import create_fake_provider_app
from agent_runtime.gateway.breakers import BreakerRegistry
from agent_runtime.gateway.model_router import ModelRouter
from graphs.tools import calculator, current_time

BASE_URL = "http://fake/v1"
ALIASES = {"smart": ["fake-smart", "fake-fallback"]}


def make_router(http: httpx.AsyncClient) -> ModelRouter:
    settings = ProviderSettings(provider_timeout_s=2.0, model_aliases=ALIASES)
    return ModelRouter(settings, BASE_URL, BreakerRegistry(3, 30.0), http_client=http)


def fake_http(**overrides: Any) -> httpx.AsyncClient:
    app = create_fake_provider_app(FakeProviderSettings(**{"latency_ms": 0.0, **overrides}))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL)


@pytest.fixture
async def router() -> AsyncIterator[ModelRouter]:
    async with fake_http() as http:
        router = make_router(http)
        yield router
        await router.close()


def merge(chunks: Sequence[BaseMessage]) -> AIMessageChunk:
    merged = AIMessageChunk(content="")
    for chunk in chunks:
        assert isinstance(chunk, AIMessageChunk)
        merged += chunk
    return merged


class Recorder:
    """Passes requests on to the router, keeping a copy of each (what the model sent)."""

    def __init__(self, router: ModelRouter) -> None:
        self.router = router
        self.requests: list[ChatRequest] = []

    async def chat(self, request: ChatRequest) -> ChatResult:
        self.requests.append(request)
        return await self.router.chat(request)


def agent_graph(model: RouterChatModel) -> CompiledStateGraph[Any, Any, Any, Any]:
    tools = [calculator, current_time]
    bound = model.bind_tools(tools)

    async def agent(state: MessagesState) -> dict[str, list[BaseMessage]]:
        return {"messages": [await bound.ainvoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode(tools))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition, ["tools", END])
    graph.add_edge("tools", "agent")
    return graph.compile()


async def test_bind_tools_returns_tool_calls_and_records_timing(router: ModelRouter) -> None:
    recorder = Recorder(router)
    model = RouterChatModel(alias="smart", call=recorder.chat, tenant_id="t-1", temperature=0.1)
    with timing.track_run() as run:
        message = await model.bind_tools([calculator, current_time]).ainvoke(
            [HumanMessage("what is 2 + 3 * 4?")]
        )

    assert isinstance(message, AIMessage)
    assert [(c["name"], c["args"]) for c in message.tool_calls] == [
        ("calculator", {"expression": "2 + 3 * 4"})
    ]
    assert message.usage_metadata is not None
    assert message.response_metadata["model_name"] == "fake-smart"
    (attempt,) = message.response_metadata["attempts"]
    assert (attempt["model"], attempt["outcome"], attempt["error"]) == ("fake-smart", "ok", None)
    assert attempt["latency_ms"] > 0

    (request,) = recorder.requests
    assert request.alias == "smart"
    assert request.tenant_id == "t-1"
    assert request.temperature == 0.1
    assert [tool["function"]["name"] for tool in request.tools] == ["calculator", "current_time"]
    assert run.llm_calls == 1
    assert run.models == ["fake-smart"]
    assert run.input_tokens == message.usage_metadata["input_tokens"] > 0
    assert run.output_tokens == message.usage_metadata["output_tokens"] > 0
    assert 0 < run.provider_ms <= run.router_ms


async def test_tool_choice_forms_are_normalised(router: ModelRouter) -> None:
    recorder = Recorder(router)
    model = RouterChatModel(alias="smart", call=recorder.chat)
    question = [HumanMessage("what time is it?")]
    await model.bind_tools([calculator, current_time], tool_choice="current_time").ainvoke(question)
    await model.bind_tools([calculator], tool_choice="any").ainvoke(question)
    await model.bind_tools([calculator], tool_choice=True).ainvoke(question)
    await model.bind_tools([calculator], tool_choice="auto").ainvoke(question)
    assert [r.tool_choice for r in recorder.requests] == [
        {"type": "function", "function": {"name": "current_time"}},
        "required",
        "required",
        "auto",
    ]


async def test_agent_graph_round_trip_through_the_tool_node(router: ModelRouter) -> None:
    graph = agent_graph(RouterChatModel(alias="smart", call=router.chat))
    with timing.track_run() as run:
        state = await graph.ainvoke({"messages": [HumanMessage("what is 2 + 3 * 4?")]})

    kinds = [message.type for message in state["messages"]]
    assert kinds == ["human", "ai", "tool", "ai"]
    assert state["messages"][2].content == "14"
    assert state["messages"][-1].content == "Tool result: 14"
    assert run.llm_calls == 2
    assert run.models == ["fake-smart", "fake-smart"]


async def test_astream_with_stream_call_yields_tokens_as_they_come(router: ModelRouter) -> None:
    model = RouterChatModel(alias="smart", call=router.chat, stream_call=router.stream)
    with timing.track_run() as run:
        chunks = [chunk async for chunk in model.astream([HumanMessage("hello stream world")])]

    assert all(isinstance(chunk, AIMessageChunk) for chunk in chunks)
    assert sum(1 for chunk in chunks if chunk.text) > 1
    assert "".join(chunk.text for chunk in chunks) == "[fake-smart] You said: hello stream world"
    assert len({chunk.id for chunk in chunks}) == 1, "every chunk belongs to one message"
    merged = merge(chunks)
    assert merged.usage_metadata is not None
    assert merged.response_metadata["model_name"] == "fake-smart"
    assert [a["outcome"] for a in merged.response_metadata["attempts"]] == ["ok"]
    assert run.llm_calls == 1
    assert run.models == ["fake-smart"]
    assert run.output_tokens == merged.usage_metadata["output_tokens"] > 0
    assert 0 < run.provider_ms <= run.router_ms


async def test_astream_without_stream_call_gives_the_whole_answer(router: ModelRouter) -> None:
    model = RouterChatModel(alias="smart", call=router.chat)
    with timing.track_run() as run:
        chunks = [chunk async for chunk in model.astream([HumanMessage("hi")])]
        tool_chunks = [
            chunk
            async for chunk in model.bind_tools([calculator]).astream(
                [HumanMessage("what is 7 * 6?")]
            )
        ]
    assert [chunk.text for chunk in chunks if chunk.text] == ["[fake-smart] You said: hi"]
    merged = merge(tool_chunks)
    assert [(c["name"], c["args"]) for c in merged.tool_calls] == [
        ("calculator", {"expression": "7 * 6"})
    ]
    assert run.llm_calls == 2


async def test_graph_messages_stream_mode_sees_each_token_once(router: ModelRouter) -> None:
    graph = agent_graph(RouterChatModel(alias="smart", call=router.chat, stream_call=router.stream))
    with timing.track_run() as run:
        tokens = [
            message.text
            async for message, _meta in graph.astream(
                {"messages": [HumanMessage("hello graph")]}, stream_mode="messages"
            )
            if isinstance(message, AIMessageChunk)
        ]
    assert "".join(tokens) == "[fake-smart] You said: hello graph"
    assert sum(1 for token in tokens if token) > 1
    assert run.llm_calls == 1


async def test_fallback_is_visible_in_metadata() -> None:
    async with fake_http(failing_models=["fake-smart"]) as http:
        router = make_router(http)
        model = RouterChatModel(alias="smart", call=router.chat)
        with timing.track_run() as run:
            message = await model.ainvoke([HumanMessage("hello")])
    assert message.response_metadata["model_name"] == "fake-fallback"
    assert [a["outcome"] for a in message.response_metadata["attempts"]] == ["error", "ok"]
    assert run.models == ["fake-fallback"]


async def test_router_errors_reach_the_caller_and_record_nothing() -> None:
    async with fake_http(failing_models=["fake-smart", "fake-fallback"]) as http:
        router = make_router(http)
        model = RouterChatModel(alias="smart", call=router.chat, stream_call=router.stream)
        with timing.track_run() as run:
            with pytest.raises(ProviderChainExhausted):
                await model.ainvoke([HumanMessage("hello")])
            with pytest.raises(ProviderChainExhausted):
                _ = [chunk async for chunk in model.astream([HumanMessage("hello")])]
    assert run.llm_calls == 0


async def test_unsupported_options_are_refused(router: ModelRouter) -> None:
    model = RouterChatModel(alias="smart", call=router.chat)
    with pytest.raises(TypeError, match="logprobs"):
        await model.ainvoke([HumanMessage("hi")], logprobs=True)


async def test_sync_invoke_inside_an_event_loop_points_to_the_async_api(
    router: ModelRouter,
) -> None:
    model = RouterChatModel(alias="smart", call=router.chat)
    with pytest.raises(TypeError, match="ainvoke"):
        model.invoke([HumanMessage("hi")])


def test_sync_invoke_without_a_loop_runs_the_async_path() -> None:
    async def call(request: ChatRequest) -> ChatResult:
        # Built inside the call: the loop asyncio.run creates is the one it must use.
        async with fake_http() as http:
            return await make_router(http).chat(request)

    model = RouterChatModel(alias="smart", call=call)
    # A thread of its own, as a script would be: asyncio.run here would reset the main
    # thread's event loop under the test session's.
    with ThreadPoolExecutor(max_workers=1) as pool:
        message = pool.submit(model.invoke, [HumanMessage("from a script")]).result(timeout=30)
    assert message.content == "[fake-smart] You said: from a script"


def test_model_identity_and_serialisation_leave_out_the_callables() -> None:
    async def call(request: ChatRequest) -> ChatResult:
        raise AssertionError("not called")

    model = RouterChatModel(alias="smart", call=call, max_tokens=64)
    assert model._llm_type == "agent-runtime-router"
    dumped = model.model_dump()
    assert "call" not in dumped
    assert "stream_call" not in dumped
    assert dumped["alias"] == "smart"
    assert dumped["max_tokens"] == 64
