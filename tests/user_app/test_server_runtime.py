"""Factories taking a ``langgraph_sdk.runtime.ServerRuntime``, as LangGraph's server calls
them: why the graph is opened, the store, the end user, and a run's context made an instance
of the type the annotation names."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.store.memory import InMemoryStore

from agent_runtime.user_app.graph_loader import load_app
from agent_runtime.user_app.server_runtime import THREADS_READ, GraphUse
from tests.user_app.apps import write_app

FACTORY = """
import contextlib
from dataclasses import dataclass
from typing_extensions import TypedDict

from langgraph.graph import START, StateGraph
from langgraph_sdk.runtime import ServerRuntime

SEEN = []


class State(TypedDict):
    said: str


@dataclass
class Ctx:
    greeting: str = "hello"


def _graph(word):
    async def say(state: State) -> State:
        return {"said": word}

    return StateGraph(State).add_node(say).add_edge(START, "say").compile()


@contextlib.asynccontextmanager
async def make(runtime: ServerRuntime[Ctx]):
    SEEN.append(runtime)
    if ert := runtime.execution_runtime:
        user = runtime.user.identity if runtime.user is not None else "nobody"
        yield _graph(f"{ert.context.greeting} {user}")
    else:
        yield _graph("read-only")
"""


def app_module(folder: Path) -> Any:
    """The app's module, as the loader imported it (under a name of its choosing)."""
    path = str(folder / "factory.py")
    return next(m for m in list(sys.modules.values()) if getattr(m, "__file__", None) == path)


async def test_a_run_gets_the_execution_runtime_with_typed_context_and_user(
    tmp_path: Path,
) -> None:
    loaded = load_app(
        write_app(tmp_path, {"graphs": {"made": "./factory.py:make"}}, {"factory.py": FACTORY})
    )
    graph = loaded.graphs["made"]
    assert graph.is_factory
    store = InMemoryStore()
    user = {"identity": "ada", "permissions": ["read"]}
    config: RunnableConfig = {"configurable": {"thread_id": "t1", "langgraph_auth_user": user}}
    use = GraphUse("threads.create_run", {"greeting": "hi", "unknown": 1})
    async with graph.open(config, checkpointer=InMemorySaver(), store=store, use=use) as made:
        result = await made.ainvoke({"said": ""}, config)
    assert result == {"said": "hi ada"}
    (runtime,) = app_module(tmp_path).SEEN
    assert runtime.access_context == "threads.create_run"
    assert runtime.store is store
    assert type(runtime.execution_runtime.context).__name__ == "Ctx"
    assert runtime.ensure_user().permissions == ["read"]
    assert "identity" in runtime.user and runtime.user["identity"] == "ada"


async def test_reads_and_schemas_get_the_read_runtime_without_context(tmp_path: Path) -> None:
    loaded = load_app(
        write_app(tmp_path, {"graphs": {"made": "./factory.py:make"}}, {"factory.py": FACTORY})
    )
    graph = loaded.graphs["made"]
    config: RunnableConfig = {"configurable": {"thread_id": "t1"}}
    saver = InMemorySaver()
    async with graph.open(config, checkpointer=saver, store=None) as made:
        schema = made.get_input_jsonschema()
    async with graph.open(config, checkpointer=saver, store=None, use=THREADS_READ) as made:
        result = await made.ainvoke({"said": ""}, config)
    schemas, reads = app_module(tmp_path).SEEN
    assert schema["properties"] == {"said": {"title": "Said", "type": "string"}}
    assert result == {"said": "read-only"}
    assert (schemas.access_context, reads.access_context) == ("assistants.read", "threads.read")
    assert schemas.execution_runtime is None and reads.user is None
    try:
        reads.ensure_user()
    except PermissionError as error:
        assert "custom auth" in str(error)
    else:
        raise AssertionError("ensure_user without custom auth must raise")
