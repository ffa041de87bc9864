"""One step that says who is asking: the user the app's auth found, as LangGraph Platform
hands it to a run (``config["configurable"]["langgraph_auth_user"]``)."""

from typing import TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.graph import START, StateGraph


class State(TypedDict, total=False):
    text: str
    user: str
    display_name: str
    permissions: list[str]


def whoami(state: State, config: RunnableConfig) -> State:
    configurable = config["configurable"]
    user = configurable["langgraph_auth_user"]
    return {
        "user": configurable["langgraph_auth_user_id"],
        "display_name": user["display_name"],
        "permissions": configurable["langgraph_auth_permissions"],
    }


builder = StateGraph(State)
builder.add_node("whoami", whoami)
builder.add_edge(START, "whoami")
graph = builder.compile()
