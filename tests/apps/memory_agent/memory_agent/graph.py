"""Store what the user asks to remember under ("memories", <user>), then answer with that
user's memories closest to the message (the store's semantic search, ``store.index`` in
langgraph.json): the store outlives threads; users never see each other's.

"recall <topic>" answers with the single closest memory."""

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
    text = str(state["messages"][-1].content)
    namespace = ("memories", runtime.context.user_id)
    # Ranked by similarity to the message, best first, each with its score.
    found = await runtime.store.asearch(namespace, query=text, limit=50)
    if text.lower().startswith("recall ") and found:
        return {"messages": [AIMessage(f"Closest memory: {found[0].value['fact']}")]}
    facts = sorted(item.value["fact"] for item in found)
    reply = f"I remember: {'; '.join(facts)}" if facts else "I remember nothing yet."
    return {"messages": [AIMessage(reply)]}


builder = StateGraph(MessagesState, context_schema=Context)
builder.add_node("remember", remember)
builder.add_node("answer", answer)
builder.add_edge(START, "remember")
builder.add_edge("remember", "answer")
graph = builder.compile()
