"""Store what the user asks to remember under ("memories", <user>), then answer with all
that user's memories: the store outlives threads; users never see each other's."""

import uuid
from dataclasses import dataclass

from langchain_core.messages import AIMessage
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.runtime import Runtime


@dataclass(kw_only=True)
class Context:
    user_id: str = "anonymous"


async def remember(state: MessagesState, runtime: Runtime[Context]) -> dict:
    text = str(state["messages"][-1].content)
    if text.lower().startswith("remember "):
        assert runtime.store is not None, "served without a store"
        namespace = ("memories", runtime.context.user_id)
        await runtime.store.aput(namespace, str(uuid.uuid4()), {"fact": text[9:].strip()})
    return {}


async def answer(state: MessagesState, runtime: Runtime[Context]) -> MessagesState:
    assert runtime.store is not None, "served without a store"
    found = await runtime.store.asearch(("memories", runtime.context.user_id), limit=50)
    facts = sorted(item.value["fact"] for item in found)
    reply = f"I remember: {'; '.join(facts)}" if facts else "I remember nothing yet."
    return {"messages": [AIMessage(reply)]}


builder = StateGraph(MessagesState, context_schema=Context)
builder.add_node("remember", remember)
builder.add_node("answer", answer)
builder.add_edge(START, "remember")
builder.add_edge("remember", "answer")
graph = builder.compile()
