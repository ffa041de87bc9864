"""The agent: call the model with the tools bound; run the tools it asks for; repeat."""

from typing import Literal

from langchain_core.messages import AIMessage, SystemMessage
from langchain_openai import ChatOpenAI
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode
from langgraph.runtime import Runtime

from tool_agent.context import Context
from tool_agent.tools import TOOLS


async def call_model(state: MessagesState, runtime: Runtime[Context]) -> MessagesState:
    # The client reads OPENAI_BASE_URL and OPENAI_API_KEY from the app's .env.
    model = ChatOpenAI(model=runtime.context.model).bind_tools(TOOLS)
    prompt = SystemMessage(runtime.context.system_prompt)
    reply = await model.ainvoke([prompt, *state["messages"]])
    return {"messages": [reply]}


def route(state: MessagesState) -> Literal["tools", "__end__"]:
    last = state["messages"][-1]
    return "tools" if isinstance(last, AIMessage) and last.tool_calls else END


builder = StateGraph(MessagesState, context_schema=Context)
builder.add_node("call_model", call_model)
builder.add_node("tools", ToolNode(TOOLS))
builder.add_edge(START, "call_model")
builder.add_conditional_edges("call_model", route)
builder.add_edge("tools", "call_model")
graph = builder.compile(name="Tool Agent")
