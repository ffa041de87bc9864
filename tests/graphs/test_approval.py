"""The approval graph: every tool call waits for a human's answer."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command

from agent_runtime.execution.graph_registry import ModelFactory
from graphs import approval


@pytest.fixture
def graph(models: ModelFactory, checkpointer: InMemorySaver) -> CompiledStateGraph[Any]:
    return approval.build(models).compile(checkpointer=checkpointer)


async def _ask(graph: CompiledStateGraph[Any], thread: RunnableConfig) -> Any:
    return await graph.ainvoke({"messages": [HumanMessage("what is 6 * 7?")]}, thread)


async def test_a_tool_call_waits_for_approval(
    graph: CompiledStateGraph[Any], thread: RunnableConfig
) -> None:
    paused = await _ask(graph, thread)
    [pending] = paused["__interrupt__"]
    assert pending.value["question"] == "Approve these tool calls?"
    [call] = pending.value["tool_calls"]
    assert (call["name"], call["args"]) == ("calculator", {"expression": "6 * 7"})
    state = await graph.aget_state(thread)
    assert state.next == ("review",)
    # Nothing ran yet: no tool message.
    assert [m.type for m in state.values["messages"]] == ["human", "ai"]


async def test_approved_calls_run(graph: CompiledStateGraph[Any], thread: RunnableConfig) -> None:
    await _ask(graph, thread)
    done = await graph.ainvoke(Command(resume={"approved": True}), thread)
    assert [m.type for m in done["messages"]] == ["human", "ai", "tool", "ai"]
    assert done["messages"][2].content == "42"
    assert "42" in done["messages"][-1].text
    assert done["decisions"] == ["approved: calculator"]
    assert done["tool_calls"] == 1


async def test_refused_calls_do_not_run(
    graph: CompiledStateGraph[Any], thread: RunnableConfig
) -> None:
    await _ask(graph, thread)
    done = await graph.ainvoke(
        Command(resume={"approved": False, "reason": "no maths today"}), thread
    )
    refusal = done["messages"][2]
    assert isinstance(refusal, ToolMessage)
    assert refusal.content == "The reviewer refused this tool call: no maths today"
    assert isinstance(done["messages"][-1], AIMessage)
    assert done["decisions"] == ["refused: calculator (no maths today)"]
    assert done.get("tool_calls", 0) == 0


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (True, (True, "")),
        ("Yes", (True, "")),
        ("no", (False, "")),
        ({"approved": True}, (True, "")),
        ({"approved": "true"}, (False, "")),
        ({"approved": False, "reason": "x"}, (False, "x")),
        (None, (False, "")),
    ],
)
def test_what_counts_as_approval(answer: Any, expected: tuple[bool, str]) -> None:
    assert approval.approved(answer) == expected
