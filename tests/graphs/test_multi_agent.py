from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph.state import CompiledStateGraph

from agent_runtime.execution.graph_registry import ModelFactory
from graphs import multi_agent


@pytest.fixture
def graph(models: ModelFactory, checkpointer: InMemorySaver) -> CompiledStateGraph[Any]:
    return multi_agent.build(models).compile(checkpointer=checkpointer)


async def ask(graph: CompiledStateGraph[Any], text: str, thread: RunnableConfig) -> Any:
    return await graph.ainvoke({"messages": [HumanMessage(text)]}, thread)


async def test_code_question_goes_to_the_code_specialist(
    graph: CompiledStateGraph[Any], thread: RunnableConfig
) -> None:
    state = await ask(graph, "write a python function", thread)

    assert state["agent"] == "code"
    final = state["messages"][-1]
    assert isinstance(final, AIMessage)
    # The fake echoes "[<model>] You said: <text>"; the specialist uses the smart model.
    assert final.content == "[fake-smart] You said: write a python function"
    assert state["reasoning"] == [
        "router: classified as code by fake-fast",
        "code: answered by fake-smart",
    ]
    assert state["tool_calls"] == 0
    # The router's classification is not part of the conversation.
    assert [m.type for m in state["messages"]] == ["human", "ai"]


async def test_analysis_question_uses_the_calculator(
    graph: CompiledStateGraph[Any], thread: RunnableConfig
) -> None:
    state = await ask(graph, "analyze this data: what is 12 * 7?", thread)

    assert state["agent"] == "analysis"
    messages = state["messages"]
    assert [m.type for m in messages] == ["human", "ai", "tool", "ai"]
    call_message = messages[1]
    assert isinstance(call_message, AIMessage)
    assert len(call_message.tool_calls) == 1
    call = call_message.tool_calls[0]
    assert call["name"] == "calculator"
    assert call["args"] == {"expression": "12 * 7"}
    tool_message = messages[2]
    assert isinstance(tool_message, ToolMessage)
    assert tool_message.content == "84"
    assert tool_message.tool_call_id == call["id"]
    assert state["tool_calls"] == 1
    final = messages[-1]
    assert isinstance(final, AIMessage)
    assert not final.tool_calls
    assert "84" in final.text
    assert state["reasoning"][0] == "router: classified as analysis by fake-fast"
    assert state["reasoning"][1].startswith("analysis: fake-smart requested calculator(")
    assert state["reasoning"][-1] == "analysis: answered by fake-smart"


async def test_other_messages_go_to_the_general_specialist(
    graph: CompiledStateGraph[Any], thread: RunnableConfig
) -> None:
    state = await ask(graph, "hello there", thread)

    assert state["agent"] == "general"
    assert state["messages"][-1].content == "[fake-smart] You said: hello there"
    assert state["reasoning"] == [
        "router: classified as general by fake-fast",
        "general: answered by fake-smart",
    ]


async def test_state_persists_across_turns_on_a_thread(
    graph: CompiledStateGraph[Any], thread: RunnableConfig
) -> None:
    await ask(graph, "hello there", thread)
    state = await ask(graph, "analyze this data: what is 12 * 7?", thread)

    assert [m.type for m in state["messages"]] == ["human", "ai", "human", "ai", "tool", "ai"]
    assert state["messages"][0].content == "hello there"
    assert state["agent"] == "analysis"  # the latest turn's choice
    assert state["tool_calls"] == 1
    assert state["reasoning"][0] == "router: classified as general by fake-fast"
    assert len(state["reasoning"]) == 5

    # A different thread starts empty.
    other: RunnableConfig = {
        "configurable": {"thread_id": thread["configurable"]["thread_id"] + "-2"}
    }
    fresh = await ask(graph, "hello there", other)
    assert [m.type for m in fresh["messages"]] == ["human", "ai"]


async def test_streamed_tokens_come_from_the_specialist_not_the_router(
    graph: CompiledStateGraph[Any], thread: RunnableConfig
) -> None:
    nodes: set[str] = set()
    text = ""
    # (message chunk, metadata) pairs; astream's declared type covers every stream mode.
    stream: Any = graph.astream(
        {"messages": [HumanMessage("hello there")]}, thread, stream_mode="messages"
    )
    async for chunk, metadata in stream:
        nodes.add(metadata["langgraph_node"])
        if isinstance(chunk, AIMessage):
            text += chunk.text

    assert nodes == {"general"}
    assert text == "[fake-smart] You said: hello there"


async def test_tool_rounds_are_capped(models: ModelFactory, thread: RunnableConfig) -> None:
    graph = multi_agent.build(models, max_tool_rounds=0).compile(checkpointer=InMemorySaver())

    state = await ask(graph, "analyze this data: what is 12 * 7?", thread)

    assert state["agent"] == "analysis"
    assert [m.type for m in state["messages"]] == ["human", "ai"]
    assert state["tool_calls"] == 0
    assert state["messages"][-1].content == (
        "[fake-smart] You said: analyze this data: what is 12 * 7?"
    )
    assert state["reasoning"][-1] == (
        "analysis: tool limit (0 rounds) reached; answered by fake-smart"
    )


def test_negative_tool_cap_is_refused(models: ModelFactory) -> None:
    with pytest.raises(ValueError, match="max_tool_rounds"):
        multi_agent.build(models, max_tool_rounds=-1)


@pytest.mark.parametrize(
    ("answer", "label"),
    [
        ("code", "code"),
        ("Analysis.", "analysis"),
        ("**GENERAL**", "general"),
        ("Category: code", "code"),
        ("I think analysis, or maybe code", "analysis"),
        ("coding", None),
        ("", None),
    ],
)
def test_parse_label(answer: str, label: str | None) -> None:
    assert multi_agent.parse_label(answer) == label


async def test_the_analyst_streams_as_a_subgraph_and_the_router_reports_progress(
    graph: CompiledStateGraph[Any], thread: RunnableConfig
) -> None:
    parts = [
        part
        async for part in graph.astream(
            {"messages": [HumanMessage("analyze this data: what is 6 * 7?")]},
            thread,
            stream_mode=["updates", "custom"],
            subgraphs=True,
        )
    ]
    custom = [chunk for _, mode, chunk in parts if mode == "custom"]
    assert custom == [
        {
            "step": "router",
            "specialist": "analysis",
            "reason": "router: classified as analysis by fake-fast",
        }
    ]
    inner = [(ns, chunk) for ns, mode, chunk in parts if mode == "updates" and ns]
    assert inner and all(ns[0].startswith("analysis:") for ns, _ in inner)
    assert [next(iter(chunk)) for _, chunk in inner] == ["analyze", "tools", "analyze"]
    outer = [next(iter(chunk)) for ns, mode, chunk in parts if mode == "updates" and not ns]
    assert outer == ["router", "analysis"]
    state = await graph.aget_state(thread)
    assert state.values["tool_calls"] == 1
    assert state.values["messages"][2].content == "42"
