from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph.state import CompiledStateGraph

from agent_runtime.execution.graph_registry import ModelFactory
from graphs import react


@pytest.fixture
def graph(models: ModelFactory, checkpointer: InMemorySaver) -> CompiledStateGraph[Any]:
    return react.build(models).compile(checkpointer=checkpointer)


async def ask(graph: CompiledStateGraph[Any], text: str, thread: RunnableConfig) -> Any:
    return await graph.ainvoke({"messages": [HumanMessage(text)]}, thread)


def only_tool_call(state: Any) -> dict[str, Any]:
    calls = [dict(c) for m in state["messages"] if isinstance(m, AIMessage) for c in m.tool_calls]
    assert len(calls) == 1
    return calls[0]


async def test_arithmetic_uses_the_calculator(
    graph: CompiledStateGraph[Any], thread: RunnableConfig
) -> None:
    state = await ask(graph, "what is (2 + 3) * 4?", thread)

    assert [m.type for m in state["messages"]] == ["human", "ai", "tool", "ai"]
    call = only_tool_call(state)
    assert call["name"] == "calculator"
    assert call["args"] == {"expression": "(2 + 3) * 4"}
    result = state["messages"][2]
    assert isinstance(result, ToolMessage)
    assert result.content == "20"
    assert result.tool_call_id == call["id"]
    final = state["messages"][-1]
    assert isinstance(final, AIMessage)
    assert not final.tool_calls
    assert "20" in final.text
    assert state["tool_calls"] == 1


async def test_time_question_uses_the_clock(
    graph: CompiledStateGraph[Any], thread: RunnableConfig
) -> None:
    state = await ask(graph, "what time is it?", thread)

    call = only_tool_call(state)
    assert call["name"] == "current_time"
    result = state["messages"][2]
    assert isinstance(result, ToolMessage)
    now = datetime.fromisoformat(str(result.content))
    assert abs(now - datetime.now(UTC)) < timedelta(seconds=5)
    assert str(result.content) in state["messages"][-1].text
    assert state["tool_calls"] == 1


async def test_plain_message_calls_no_tool(
    graph: CompiledStateGraph[Any], thread: RunnableConfig
) -> None:
    state = await ask(graph, "hi", thread)

    assert [m.type for m in state["messages"]] == ["human", "ai"]
    assert state["messages"][-1].content == "[fake-smart] You said: hi"
    assert state["tool_calls"] == 0


async def test_turns_accumulate_on_a_thread(
    graph: CompiledStateGraph[Any], thread: RunnableConfig
) -> None:
    await ask(graph, "what is (2 + 3) * 4?", thread)
    state = await ask(graph, "what is 6 * 7?", thread)

    types = [m.type for m in state["messages"]]
    assert types == ["human", "ai", "tool", "ai", "human", "ai", "tool", "ai"]
    assert state["messages"][6].content == "42"
    assert state["tool_calls"] == 2


async def test_tool_rounds_are_capped(models: ModelFactory, thread: RunnableConfig) -> None:
    graph = react.build(models, max_tool_rounds=0).compile(checkpointer=InMemorySaver())

    state = await ask(graph, "what is (2 + 3) * 4?", thread)

    assert [m.type for m in state["messages"]] == ["human", "ai"]
    assert state["messages"][-1].content == "[fake-smart] You said: what is (2 + 3) * 4?"
    assert state["tool_calls"] == 0


def test_tool_rounds_this_turn_counts_since_the_last_user_message() -> None:
    call = {"name": "calculator", "args": {"expression": "1 + 1"}, "id": "call_1"}
    messages = [
        HumanMessage("first"),
        AIMessage("", tool_calls=[call]),
        ToolMessage("2", tool_call_id="call_1"),
        AIMessage("done"),
        HumanMessage("second"),
        AIMessage("", tool_calls=[call]),
        ToolMessage("2", tool_call_id="call_1"),
        AIMessage("", tool_calls=[call]),
        ToolMessage("2", tool_call_id="call_1"),
    ]
    assert react.tool_rounds_this_turn(messages) == 2
    assert react.tool_rounds_this_turn(messages[:4]) == 1
    assert react.tool_rounds_this_turn(messages[:5]) == 0
