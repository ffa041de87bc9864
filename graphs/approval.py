"""A tool-calling agent that asks a human before every tool call (human-in-the-loop).

``agent`` calls the "smart" model with the tools bound. When the reply asks for tools,
``review`` pauses the run with :func:`langgraph.types.interrupt`: the thread becomes
``interrupted`` and its state carries the pending calls. The client resumes it with
``command={"resume": ...}``:

- ``True``, ``"yes"``/``"approve"`` or ``{"approved": true}``: the calls run, and the agent
  answers with their results;
- anything else (``False``, ``{"approved": false, "reason": "..."}``): every call gets a
  tool message saying it was refused, and the agent answers without them.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any

from langchain_core.messages import AIMessage, AnyMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import interrupt
from typing_extensions import TypedDict

from agent_runtime.execution.graph_registry import ModelFactory, runtime_model
from graphs.react import (
    DEFAULT_MAX_TOOL_ROUNDS,
    REACT_PROMPT,
    respond_with_tools,
    tools_node,
    wants_tools,
)
from graphs.tools import default_tools

APPROVALS = {"yes", "y", "approve", "approved", "ok"}


class ApprovalState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    tool_calls: Annotated[int, operator.add]
    # One line per review: "approved: calculator" or "refused: calculator (too risky)".
    decisions: Annotated[list[str], operator.add]


def approved(answer: Any) -> tuple[bool, str]:
    """(whether the reviewer approved, their reason if they gave one)."""
    if isinstance(answer, bool):
        return answer, ""
    if isinstance(answer, str):
        return answer.strip().lower() in APPROVALS, ""
    if isinstance(answer, dict):
        reason = str(answer.get("reason") or "")
        return answer.get("approved") is True, reason
    return False, ""


def build(models: ModelFactory) -> StateGraph[ApprovalState]:
    """The approval graph, uncompiled (the caller compiles it with its checkpointer)."""
    model = models("smart")
    tools = default_tools()
    run_tools = tools_node(tools)

    async def agent(state: ApprovalState, config: RunnableConfig) -> dict[str, Any]:
        reply = await respond_with_tools(
            model, tools, REACT_PROMPT, state["messages"], DEFAULT_MAX_TOOL_ROUNDS, config
        )
        return {"messages": [reply]}

    async def review(state: ApprovalState, config: RunnableConfig) -> dict[str, Any]:
        last = state["messages"][-1]
        assert isinstance(last, AIMessage)
        calls = [{"name": c["name"], "args": c["args"], "id": c["id"]} for c in last.tool_calls]
        answer = interrupt({"question": "Approve these tool calls?", "tool_calls": calls})
        ok, reason = approved(answer)
        names = ", ".join(str(c["name"]) for c in calls)
        if ok:
            done = await run_tools(state, config)
            return {**done, "decisions": [f"approved: {names}"]}
        refusal = "The reviewer refused this tool call" + (f": {reason}" if reason else ".")
        return {
            "messages": [
                ToolMessage(refusal, tool_call_id=str(c["id"]), name=c["name"]) for c in calls
            ],
            "decisions": [f"refused: {names}" + (f" ({reason})" if reason else "")],
        }

    def route(state: ApprovalState) -> str:
        return "review" if wants_tools(state["messages"]) else END

    graph = StateGraph(ApprovalState)
    graph.add_node("agent", agent)
    graph.add_node("review", review)
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", route, ["review", END])
    graph.add_edge("review", "agent")
    return graph


graph = build(runtime_model)
"""What ``langgraph.json`` serves: the graph over the runtime's model router."""
