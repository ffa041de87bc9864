"""An assistant with long-term memory: facts a user tells it outlive the thread.

``memorize`` looks at the user's last message: "remember (that) X" stores X, "forget
(that) X" deletes it, both under ``("memories", <user>)`` in the store the graph was
compiled with. ``respond`` reads that user's memories back and hands them to the "fast"
model as context, and records in ``recalled`` which ones it used, so a client (or a test)
can see what the answer was based on.

The user is ``user_id`` from the run's context or ``config["configurable"]``, else
"anonymous". In the runtime the store is a ``ContextualStore``
(``agent_runtime.execution.item_store``): on top of this per-user namespace, every item is
confined to the run's tenant.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Annotated, Any

from langchain_core.messages import AnyMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langgraph.config import get_config
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.runtime import Runtime
from langgraph.store.base import BaseStore
from typing_extensions import TypedDict  # pydantic builds schemas from this one on 3.11

from agent_runtime.execution.graph_registry import ModelFactory, runtime_model

MEMORY_ROOT = "memories"
ANONYMOUS = "anonymous"
MAX_RECALLED = 20

MEMORY_PROMPT = (
    "You are a helpful assistant with a long-term memory of this user. Use what you "
    "remember when it is relevant; never invent memories. You remember:\n"
)
NOTHING_REMEMBERED = "(nothing yet)"

_COMMAND = re.compile(
    r"^\s*(?P<verb>remember|forget)\b(?:\s+that\b)?\s*[:,]?\s*(?P<fact>.*?)[\s.!]*$",
    re.IGNORECASE | re.DOTALL,
)


class MemoryState(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    # The memories the last answer was given, newest first.
    recalled: list[str]


def user_id(config: RunnableConfig, runtime: Runtime[Any]) -> str:
    """The user whose memories a run reads: run context first, then the config."""
    for source in (runtime.context, config.get("configurable")):
        if isinstance(source, Mapping):
            value = source.get("user_id")
            if isinstance(value, str) and value:
                return value
    return ANONYMOUS


def user_namespace(user: str) -> tuple[str, str]:
    """``("memories", user)``; a "." would split the label in storage, so it is escaped."""
    return (MEMORY_ROOT, user.replace("%", "%25").replace(".", "%2E"))


def fact_key(fact: str) -> str:
    """One key per fact, whatever its case or spacing, so saying it twice stores it once."""
    normal = " ".join(fact.lower().split())
    return hashlib.sha256(normal.encode()).hexdigest()[:24]


def parse_command(text: str) -> tuple[str, str] | None:
    """("remember" | "forget", fact) when the message asks for either, else None."""
    match = _COMMAND.match(text)
    if match is None or not match["fact"].strip():
        return None
    return match["verb"].lower(), match["fact"].strip()


def _store(runtime: Runtime[Any]) -> BaseStore:
    if runtime.store is None:
        raise RuntimeError("the memory graph needs a store: compile it with store=...")
    return runtime.store


def _last_user_text(messages: list[AnyMessage]) -> str:
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            return message.text
    return ""


def build(models: ModelFactory) -> StateGraph[MemoryState]:
    """The memory graph, uncompiled (the caller compiles it with a checkpointer and store)."""
    model = models("fast")
    # Nodes take the runtime (for the store) and read the config with get_config():
    # StateGraph.add_node's typed overloads have no node taking both.

    async def memorize(state: MemoryState, runtime: Runtime[Any]) -> dict[str, Any]:
        config = get_config()
        command = parse_command(_last_user_text(state.get("messages", [])))
        if command is not None:
            verb, fact = command
            namespace = user_namespace(user_id(config, runtime))
            if verb == "remember":
                await _store(runtime).aput(namespace, fact_key(fact), {"fact": fact})
            else:
                await _store(runtime).adelete(namespace, fact_key(fact))
        return {}

    async def respond(state: MemoryState, runtime: Runtime[Any]) -> dict[str, Any]:
        config = get_config()
        namespace = user_namespace(user_id(config, runtime))
        items = await _store(runtime).asearch(namespace, limit=MAX_RECALLED)
        facts = [str(item.value["fact"]) for item in items if "fact" in item.value]
        known = "\n".join(f"- {fact}" for fact in facts) or NOTHING_REMEMBERED
        reply = await model.ainvoke(
            [SystemMessage(MEMORY_PROMPT + known), *state.get("messages", [])], config
        )
        return {"messages": [reply], "recalled": facts}

    graph = StateGraph(MemoryState)
    graph.add_node("memorize", memorize)
    graph.add_node("respond", respond)
    graph.add_edge(START, "memorize")
    graph.add_edge("memorize", "respond")
    graph.add_edge("respond", END)
    return graph


graph = build(runtime_model)
"""What ``langgraph.json`` serves: the graph over the runtime's model router."""
