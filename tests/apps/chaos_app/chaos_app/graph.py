"""Three steps, each taking a while (CHAOS_STEP_S seconds) and logging its name once.

A run cut short by a crash resumes from its last checkpoint: the finished steps stay in the
log once, and the interrupted step runs again, so a run that ended has exactly a, b, c.
``model_graph`` is the same with a model call (the runtime's ``fast`` alias) in step b, for
the faults of the router, Redis and the provider.
"""

import asyncio
import operator
import os
from collections.abc import Awaitable, Callable
from typing import Annotated

from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from agent_runtime.execution.graph_registry import runtime_model

STEP_S = float(os.environ.get("CHAOS_STEP_S", "0.4"))


class State(TypedDict):
    log: Annotated[list[str], operator.add]


def step(name: str) -> Callable[[State], Awaitable[dict[str, list[str]]]]:
    async def run(state: State) -> dict[str, list[str]]:
        await asyncio.sleep(STEP_S)
        return {"log": [name]}

    return run


async def ask(state: State) -> dict[str, list[str]]:
    await runtime_model("fast").ainvoke("one short answer, please")
    return {"log": ["b"]}


def build(name: str, b: Callable[[State], Awaitable[dict[str, list[str]]]]) -> object:
    builder = StateGraph(State)
    builder.add_node("a", step("a"))
    builder.add_node("b", b)
    builder.add_node("c", step("c"))
    builder.add_edge(START, "a")
    builder.add_edge("a", "b")
    builder.add_edge("b", "c")
    builder.add_edge("c", END)
    return builder.compile(name=name)


graph = build("steps", step("b"))
model_graph = build("model_steps", ask)
