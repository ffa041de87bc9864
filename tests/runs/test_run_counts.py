"""Reasoning steps and tool calls per run, counted from the graph's ``updates`` stream the
way the graph runner does it (subgraphs included, each tool call once)."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langchain_core.tools import tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode

from agent_runtime.core import timing


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@tool
def explode(reason: str) -> str:
    """Always fails."""
    raise RuntimeError(reason)


def ask_tools(state: MessagesState) -> dict[str, Any]:
    calls = [
        {"name": "add", "args": {"a": 1, "b": 2}, "id": "call-add"},
        {"name": "explode", "args": {"reason": "no"}, "id": "call-explode"},
        {"name": "missing", "args": {}, "id": "call-missing"},
    ]
    return {"messages": [AIMessage(content="", tool_calls=calls)]}


def inner_graph() -> Any:
    graph = StateGraph(MessagesState)
    graph.add_node("ask", ask_tools)
    graph.add_node("tools", ToolNode([add, explode], handle_tool_errors=True))
    graph.add_edge(START, "ask")
    graph.add_edge("ask", "tools")
    graph.add_edge("tools", END)
    return graph.compile()


class Outer(TypedDict):
    messages: Annotated[list[AnyMessage], operator.add]


def outer_graph() -> Any:
    graph = StateGraph(Outer)
    graph.add_node("first", lambda state: {"messages": []})
    graph.add_node("analyst", inner_graph())  # returns the tool results again
    graph.add_edge(START, "first")
    graph.add_edge("first", "analyst")
    graph.add_edge("analyst", END)
    return graph.compile()


async def test_steps_and_tool_calls_of_a_run_with_a_subgraph() -> None:
    graph = outer_graph()
    with timing.track_run() as timings:
        async for _namespace, mode, chunk in graph.astream(
            {"messages": [HumanMessage("hi")]},
            stream_mode=["updates", "values"],
            subgraphs=True,
        ):
            if mode == "updates":
                timing.count_updates(chunk)
    # first, analyst, and the subgraph's ask and tools
    assert timings.steps == 4
    assert timings.tool_calls == {("add", True): 1, ("explode", False): 1, ("missing", False): 1}


def test_updates_outside_a_run_and_odd_chunks_are_ignored() -> None:
    timing.count_updates({"node": None})  # no run: nothing to count into
    with timing.track_run() as timings:
        timing.count_updates({"__interrupt__": ({"value": "?"},)})
        timing.count_updates("not a dict")
        timing.count_updates({"a": None, "b": [{"x": 1}, {"x": 2}], "__metadata__": {}})
    assert timings.steps == 3
    assert timings.tool_calls == {}
