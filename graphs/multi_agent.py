"""A router that hands each user message to one of three specialists.

``router`` asks the "fast" model to classify the user's last message as code, analysis
or general, then the matching specialist answers with the "smart" model. ``analysis`` is
a subgraph of its own: a small tool loop with the calculator (capped per turn), so its
steps stream as ``analysis:<task>`` events with ``stream_subgraphs``. Every decision adds
one line to ``reasoning`` so a client can show why the run went the way it did, and the
router reports its choice as a ``custom`` stream event (``{"step": "router", ...}``).
"""

from __future__ import annotations

import operator
import re
from typing import Annotated, Any, Literal

from langchain_core.messages import AnyMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langgraph.config import get_stream_writer
from langgraph.constants import TAG_NOSTREAM
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict  # pydantic builds schemas from this one on 3.11

from agent_runtime.execution.graph_registry import ModelFactory, runtime_model
from graphs.react import (
    DEFAULT_MAX_TOOL_ROUNDS,
    model_name,
    respond_with_tools,
    tool_rounds_this_turn,
    tools_node,
    wants_tools,
)
from graphs.tools import calculator

Specialist = Literal["code", "analysis", "general"]
SPECIALISTS: tuple[Specialist, ...] = ("code", "analysis", "general")
DEFAULT_SPECIALIST: Specialist = "general"

ROUTER_PROMPT = (
    "You are a router. Classify the user's last message into exactly one of these "
    "categories: code (programming, debugging, scripts, SQL), analysis (data, numbers, "
    "statistics, comparisons, calculations) or general (anything else). Answer with one "
    "word: code, analysis or general."
)
CODE_PROMPT = (
    "You are a senior software engineer. Answer programming questions with correct, "
    "idiomatic code and a short explanation."
)
ANALYSIS_PROMPT = (
    "You are a careful data analyst. Use the calculator tool for every computation instead "
    "of doing arithmetic yourself, then explain the result briefly."
)
GENERAL_PROMPT = "You are a friendly, concise assistant."

_NON_LETTERS = re.compile(r"[^a-z]+")


class MultiAgentState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    # The specialist chosen for the latest user message.
    agent: str
    # One human-readable line per decision, over all the thread's turns.
    reasoning: Annotated[list[str], operator.add]
    # Tool calls executed on this thread, over all its turns.
    tool_calls: Annotated[int, operator.add]


def parse_label(answer: str) -> Specialist | None:
    """The first specialist named in the router model's answer, if any.

    Models pad one-word answers ("Analysis.", "**code**", "Category: general"), so the text
    is lowercased and split on anything but letters before matching.
    """
    for word in _NON_LETTERS.split(answer.lower()):
        for label in SPECIALISTS:
            if word == label:
                return label
    return None


def last_user_message(messages: list[AnyMessage]) -> HumanMessage | None:
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            return message
    return None


def build(
    models: ModelFactory, max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS
) -> StateGraph[MultiAgentState]:
    """The multi-agent graph, uncompiled (the caller compiles it with its checkpointer)."""
    if max_tool_rounds < 0:
        raise ValueError("max_tool_rounds must be >= 0")
    # The classification is internal: keep its token out of clients' message streams.
    classifier = models("fast").with_config(tags=[TAG_NOSTREAM])
    smart = models("smart")
    analysis_tools = [calculator]

    async def router(state: MultiAgentState, config: RunnableConfig) -> dict[str, Any]:
        user = last_user_message(state["messages"])
        if user is None:
            return {
                "agent": DEFAULT_SPECIALIST,
                "reasoning": [f"router: no user message; defaulting to {DEFAULT_SPECIALIST}"],
            }
        # Only the last user message: classification needs no history and stays cheap.
        reply = await classifier.ainvoke([SystemMessage(ROUTER_PROMPT), user], config)
        label = parse_label(reply.text)
        by = model_name(reply, "fast")
        if label is None:
            answer = reply.text[:40]
            line = f"router: unclear answer {answer!r} from {by}; defaulting to general"
            chosen: Specialist = DEFAULT_SPECIALIST
        else:
            line, chosen = f"router: classified as {label} by {by}", label
        # Progress for streaming clients (stream_mode="custom"): who answers, and why.
        get_stream_writer()({"step": "router", "specialist": chosen, "reason": line})
        return {"agent": chosen, "reasoning": [line]}

    def route(state: MultiAgentState) -> Specialist:
        chosen = state.get("agent")
        return next((label for label in SPECIALISTS if label == chosen), DEFAULT_SPECIALIST)

    async def answer(
        name: str, prompt: str, state: MultiAgentState, config: RunnableConfig
    ) -> dict[str, Any]:
        reply = await smart.ainvoke([SystemMessage(prompt), *state["messages"]], config)
        return {
            "messages": [reply],
            "reasoning": [f"{name}: answered by {model_name(reply, 'smart')}"],
        }

    async def code(state: MultiAgentState, config: RunnableConfig) -> dict[str, Any]:
        return await answer("code", CODE_PROMPT, state, config)

    async def general(state: MultiAgentState, config: RunnableConfig) -> dict[str, Any]:
        return await answer("general", GENERAL_PROMPT, state, config)

    async def analysis(state: MultiAgentState, config: RunnableConfig) -> dict[str, Any]:
        reply = await respond_with_tools(
            smart, analysis_tools, ANALYSIS_PROMPT, state["messages"], max_tool_rounds, config
        )
        by = model_name(reply, "smart")
        if reply.tool_calls:
            calls = ", ".join(f"{call['name']}({call['args']})" for call in reply.tool_calls)
            line = f"analysis: {by} requested {calls}"
        elif tool_rounds_this_turn(state["messages"]) >= max_tool_rounds:
            line = f"analysis: tool limit ({max_tool_rounds} rounds) reached; answered by {by}"
        else:
            line = f"analysis: answered by {by}"
        return {"messages": [reply], "reasoning": [line]}

    def after_analysis(state: MultiAgentState) -> str:
        return "tools" if wants_tools(state["messages"]) else END

    # The analyst's tool loop is a graph of its own: it checkpoints under its own
    # namespace and streams as a subgraph. It starts from the conversation only and hands
    # back just what it added, so the outer graph's reducers do not count anything twice.
    analyst = StateGraph(MultiAgentState)
    analyst.add_node("analyze", analysis)
    analyst.add_node("tools", tools_node(analysis_tools))
    analyst.add_edge(START, "analyze")
    analyst.add_conditional_edges("analyze", after_analysis, ["tools", END])
    analyst.add_edge("tools", "analyze")
    analyst_graph = analyst.compile()

    async def analysis_team(state: MultiAgentState, config: RunnableConfig) -> dict[str, Any]:
        seen = len(state["messages"])
        start = MultiAgentState(
            messages=state["messages"], agent="analysis", reasoning=[], tool_calls=0
        )
        out = await analyst_graph.ainvoke(start, config)
        return {
            "messages": out["messages"][seen:],
            "reasoning": out.get("reasoning", []),
            "tool_calls": out.get("tool_calls", 0),
        }

    graph = StateGraph(MultiAgentState)
    graph.add_node("router", router)
    graph.add_node("code", code)
    graph.add_node("analysis", analysis_team)
    graph.add_node("general", general)
    graph.add_edge(START, "router")
    graph.add_conditional_edges("router", route, list(SPECIALISTS))
    graph.add_edge("analysis", END)
    graph.add_edge("code", END)
    graph.add_edge("general", END)
    return graph


graph = build(runtime_model)
"""What ``langgraph.json`` serves: the graph over the runtime's model router."""
