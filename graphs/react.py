"""A classic ReAct agent: the model thinks, calls tools, reads their results, answers.

``agent`` calls the "smart" model with :func:`graphs.tools.default_tools` bound; while its
reply asks for tools, ``tools`` runs them and hands the results back to ``agent``. A guard
caps the tool rounds per user turn so a model that keeps asking for tools cannot loop
forever. The loop pieces here are shared with the multi-agent graph's analysis specialist.
"""

from __future__ import annotations

import operator
from collections.abc import Awaitable, Sequence
from typing import Annotated, Any, Protocol

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AnyMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
)
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import ToolNode
from typing_extensions import TypedDict  # pydantic builds schemas from this one on 3.11

from agent_runtime.execution.graph_registry import ModelFactory, runtime_model
from graphs.tools import default_tools

DEFAULT_MAX_TOOL_ROUNDS = 5

REACT_PROMPT = (
    "You are a helpful assistant. Use the calculator tool for any arithmetic and the "
    "current_time tool for the current date or time; never guess either. Otherwise answer "
    "directly and concisely."
)
TOOL_BUDGET_SPENT = (
    "You have used all the tool calls allowed for this question. Do not call tools; answer "
    "now with what you know, and say so if the answer is incomplete."
)


class ReactState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    # Tool calls executed on this thread, over all its turns.
    tool_calls: Annotated[int, operator.add]


def tool_rounds_this_turn(messages: Sequence[BaseMessage]) -> int:
    """How many times the model asked for tools since the user's last message."""
    rounds = 0
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            break
        if isinstance(message, AIMessage) and message.tool_calls:
            rounds += 1
    return rounds


def model_name(message: BaseMessage, fallback: str) -> str:
    """The concrete model that answered (e.g. after a fallback), else the alias asked for."""
    metadata = message.response_metadata
    name = metadata.get("model_name") or metadata.get("model")
    return str(name) if name else fallback


async def respond_with_tools(
    model: BaseChatModel,
    tools: Sequence[BaseTool],
    system_prompt: str,
    messages: Sequence[BaseMessage],
    max_tool_rounds: int,
    config: RunnableConfig,
) -> AIMessage:
    """One ReAct step: the model's reply, which may ask for tools while rounds are left.

    Past the cap the model is called without tools, and any tool calls it still makes are
    dropped, so the loop always ends with a plain answer.
    """
    if tool_rounds_this_turn(messages) < max_tool_rounds:
        reply = await model.bind_tools(list(tools)).ainvoke(
            [SystemMessage(system_prompt), *messages], config
        )
        return _as_ai_message(reply)
    reply = _as_ai_message(
        await model.ainvoke(
            [SystemMessage(system_prompt), *messages, SystemMessage(TOOL_BUDGET_SPENT)], config
        )
    )
    if not reply.tool_calls:
        return reply
    return AIMessage(
        content=reply.content,
        id=reply.id,
        response_metadata=reply.response_metadata,
        usage_metadata=reply.usage_metadata,
    )


def _as_ai_message(message: BaseMessage) -> AIMessage:
    if not isinstance(message, AIMessage):
        raise TypeError(f"expected the chat model to return an AIMessage, got {message.type}")
    return message


def wants_tools(messages: Sequence[BaseMessage]) -> bool:
    last = messages[-1] if messages else None
    return isinstance(last, AIMessage) and bool(last.tool_calls)


class AsyncNode(Protocol):
    """A graph node taking the state and the run's config (LangGraph passes it by name)."""

    def __call__(self, state: Any, config: RunnableConfig) -> Awaitable[dict[str, Any]]: ...


def tools_node(tools: Sequence[BaseTool]) -> AsyncNode:
    """A node that runs the last AI message's tool calls (via ``ToolNode``) and counts them."""
    runner = ToolNode(list(tools))

    async def run_tools(state: Any, config: RunnableConfig) -> dict[str, Any]:
        calls = len(state["messages"][-1].tool_calls)
        result = await runner.ainvoke({"messages": state["messages"]}, config)
        return {"messages": result["messages"], "tool_calls": calls}

    return run_tools


def build(
    models: ModelFactory, max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS
) -> StateGraph[ReactState]:
    """The ReAct graph, uncompiled (the caller compiles it with its checkpointer)."""
    if max_tool_rounds < 0:
        raise ValueError("max_tool_rounds must be >= 0")
    model = models("smart")
    tools = default_tools()

    async def agent(state: ReactState, config: RunnableConfig) -> dict[str, Any]:
        reply = await respond_with_tools(
            model, tools, REACT_PROMPT, state["messages"], max_tool_rounds, config
        )
        return {"messages": [reply]}

    def route(state: ReactState) -> str:
        return "tools" if wants_tools(state["messages"]) else END

    graph = StateGraph(ReactState)
    graph.add_node("agent", agent)
    graph.add_node("tools", tools_node(tools))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", route, ["tools", END])
    graph.add_edge("tools", "agent")
    return graph


graph = build(runtime_model)
"""What ``langgraph.json`` serves: the graph over the runtime's model router."""
