"""Three steps, each taking a while (CHAOS_STEP_S seconds) and logging its name once.

A run cut short by a crash resumes from its last checkpoint: the finished steps stay in the
log once, and the interrupted step runs again, so a run that ended has exactly a, b, c.
"""

import asyncio
import operator
import os
from collections.abc import Awaitable, Callable
from typing import Annotated

from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

STEP_S = float(os.environ.get("CHAOS_STEP_S", "0.4"))


class State(TypedDict):
    log: Annotated[list[str], operator.add]


def step(name: str) -> Callable[[State], Awaitable[dict[str, list[str]]]]:
    async def run(state: State) -> dict[str, list[str]]:
        await asyncio.sleep(STEP_S)
        return {"log": [name]}

    return run


builder = StateGraph(State)
for name in ("a", "b", "c"):
    builder.add_node(name, step(name))
builder.add_edge(START, "a")
builder.add_edge("a", "b")
builder.add_edge("b", "c")
builder.add_edge("c", END)
graph = builder.compile(name="steps")
