"""split -> count -> check: the text's words, their count, and a failure when the text
asks for one (after the first two steps are checkpointed)."""

from typing import TypedDict

from langgraph.graph import START, StateGraph


class State(TypedDict, total=False):
    text: str
    words: list[str]
    count: int


def split(state: State) -> State:
    return {"words": state["text"].split()}


def count(state: State) -> State:
    return {"count": len(state["words"])}


def check(state: State) -> State:
    if "fail" in state["words"]:
        raise ValueError(f"asked to fail after {state['count']} words")
    return {}


builder = StateGraph(State)
builder.add_node("split", split)
builder.add_node("count", count)
builder.add_node("check", check)
builder.add_edge(START, "split")
builder.add_edge("split", "count")
builder.add_edge("count", "check")
graph = builder.compile()
