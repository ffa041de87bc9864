"""The memory graph on a real item store (SQLite and Postgres), inside tenant scopes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph.state import CompiledStateGraph

from agent_runtime.execution.graph_registry import ModelFactory
from agent_runtime.execution.item_store import ItemStores
from agent_runtime.execution.tenant_context import NoTenantScope, tenant_scope
from graphs import memory
from tests.backends import BACKENDS, backend_settings


class Prompts(AsyncCallbackHandler):
    """Records the messages each chat model call was given."""

    def __init__(self) -> None:
        self.calls: list[list[BaseMessage]] = []

    async def on_chat_model_start(
        self, serialized: dict[str, Any], messages: list[list[BaseMessage]], **kwargs: Any
    ) -> None:
        self.calls.extend(messages)


@pytest.fixture(params=BACKENDS)
async def items(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ItemStores]:
    async with backend_settings(request.param, tmp_path) as storage:
        stores = ItemStores(storage)
        await stores.setup()
        try:
            yield stores
        finally:
            await stores.close()


@pytest.fixture
def graph(models: ModelFactory, items: ItemStores) -> CompiledStateGraph[Any]:
    return memory.build(models).compile(checkpointer=InMemorySaver(), store=items.contextual)


def run_config(user: str | None, callbacks: list[Any] | None = None) -> RunnableConfig:
    configurable: dict[str, Any] = {"thread_id": uuid.uuid4().hex}
    if user is not None:
        configurable["user_id"] = user
    return {"configurable": configurable, "callbacks": callbacks or []}


async def ask(graph: CompiledStateGraph[Any], text: str, config: RunnableConfig) -> Any:
    return await graph.ainvoke({"messages": [HumanMessage(text)]}, config)


async def test_a_fact_told_in_one_thread_is_recalled_in_another(
    graph: CompiledStateGraph[Any], items: ItemStores
) -> None:
    with tenant_scope("acme"):
        told = await ask(graph, "Remember that my cat is called Tom.", run_config("u1"))
        prompts = Prompts()
        state = await ask(graph, "What is my cat called?", run_config("u1", [prompts]))

    assert told["recalled"] == ["my cat is called Tom"]
    assert state["recalled"] == ["my cat is called Tom"]
    reply = state["messages"][-1]
    assert isinstance(reply, AIMessage)
    assert reply.text == "[fake-fast] You said: What is my cat called?"
    # The model was given the memory as context, ahead of the conversation.
    (messages,) = prompts.calls
    assert messages[0].type == "system"
    assert "- my cat is called Tom" in messages[0].text
    assert messages[-1].text == "What is my cat called?"
    # Filed under the user, under the tenant.
    stored = await items.raw.asearch(("tenant", "acme", "memories", "u1"))
    assert [i.value for i in stored] == [{"fact": "my cat is called Tom"}]


async def test_memories_belong_to_one_user_of_one_tenant(graph: CompiledStateGraph[Any]) -> None:
    with tenant_scope("acme"):
        await ask(graph, "remember: I like tea", run_config("u1"))
        other_user = await ask(graph, "what do I like?", run_config("u2"))
    with tenant_scope("globex"):
        other_tenant = await ask(graph, "what do I like?", run_config("u1"))
    assert other_user["recalled"] == []
    assert other_tenant["recalled"] == []


async def test_saying_a_fact_twice_stores_it_once_and_forget_removes_it(
    graph: CompiledStateGraph[Any],
) -> None:
    with tenant_scope("acme"):
        await ask(graph, "Remember that I live in Paris", run_config("u1"))
        twice = await ask(graph, "remember that i  live in paris!", run_config("u1"))
        await ask(graph, "Remember the meeting is at noon", run_config("u1"))
        forgot = await ask(graph, "Forget that I live in Paris.", run_config("u1"))
    assert twice["recalled"] == ["i  live in paris"]
    assert forgot["recalled"] == ["the meeting is at noon"]


async def test_the_user_comes_from_the_run_context_or_defaults_to_anonymous(
    graph: CompiledStateGraph[Any], items: ItemStores
) -> None:
    with tenant_scope("acme"):
        await graph.ainvoke(
            {"messages": [HumanMessage("remember my id is 7")]},
            run_config(None),
            context={"user_id": "a.b"},
        )
        await ask(graph, "remember I am nobody", run_config(None))
    assert sorted(await items.for_tenant("acme").alist_namespaces()) == [
        ("memories", "a%2Eb"),
        ("memories", "anonymous"),
    ]


async def test_a_run_outside_a_tenant_scope_fails_without_touching_the_store(
    graph: CompiledStateGraph[Any], items: ItemStores
) -> None:
    with pytest.raises(NoTenantScope):
        await ask(graph, "remember that I like tea", run_config("u1"))
    assert await items.raw.alist_namespaces() == []


async def test_the_graph_needs_a_store(models: ModelFactory) -> None:
    graph = memory.build(models).compile(checkpointer=InMemorySaver())
    with pytest.raises(RuntimeError, match="needs a store"):
        await ask(graph, "hello", run_config("u1"))


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("Remember that I like tea.", ("remember", "I like tea")),
        ("remember: my cat is Tom!", ("remember", "my cat is Tom")),
        ("FORGET that I like tea", ("forget", "I like tea")),
        ("remember thatcher was prime minister", ("remember", "thatcher was prime minister")),
        ("remembering is hard", None),
        ("remember", None),
        ("what do you remember?", None),
    ],
)
def test_commands_are_parsed_from_the_start_of_the_message(
    text: str, command: tuple[str, str] | None
) -> None:
    assert memory.parse_command(text) == command
