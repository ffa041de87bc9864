"""tests/apps/memory_agent, loaded from its langgraph.json as the runtime serves it and run
in process on a real item store with its ``store.index`` (``openai:fake-embed``, embedded by
the fake provider through the model router): memories are ranked by the message.

(tests/e2e/test_apps_e2e.py drives the same app deployed, through langgraph-sdk.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph.checkpoint.memory import InMemorySaver

from agent_runtime.config.fake_provider_settings import FakeProviderSettings
from agent_runtime.config.provider_settings import ProviderSettings
from agent_runtime.config.settings import StorageSettings
from agent_runtime.execution.item_store import ItemStores
from agent_runtime.execution.tenant_context import tenant_scope
from agent_runtime.fake.provider_app import create_fake_provider_app
from agent_runtime.gateway.model_router import ModelRouter
from agent_runtime.user_app.app_store_index import unserved_index_model
from agent_runtime.user_app.graph_loader import Graph, load_app

APP = Path(__file__).resolve().parents[1] / "apps" / "memory_agent" / "langgraph.json"


@pytest.fixture
async def memory_graph(storage_settings: StorageSettings) -> AsyncIterator[Graph]:
    app = load_app(APP)
    assert app.store_index is not None and app.store_index.model == "fake-embed"
    fake = create_fake_provider_app(FakeProviderSettings(_env_file=None, latency_ms=0))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake)) as http:
        router = ModelRouter(ProviderSettings(_env_file=None), "http://fake/v1", http_client=http)
        # The runtime's own models configuration serves the model the app names.
        assert unserved_index_model(app.config_file.config, router.config) is None
        items = ItemStores(storage_settings, index=app.store_index, embed=router.embed)
        await items.setup()
        try:
            yield app.graphs["memory"].bind(checkpointer=InMemorySaver(), store=items.contextual)
        finally:
            await items.close()
            await router.close()


async def say(graph: Graph, user: str, text: str, tenant: str = "acme") -> str:
    config: Any = {"configurable": {"thread_id": f"{user}-{text}"}}
    with tenant_scope(tenant):
        values = await graph.ainvoke(
            {"messages": [{"role": "user", "content": text}]}, config, context={"user_id": user}
        )
    return str(values["messages"][-1].content)


async def test_memories_are_recalled_by_meaning_per_user_and_tenant(memory_graph: Graph) -> None:
    assert await say(memory_graph, "ada", "remember I like tea") == "I remember: I like tea"
    assert (
        await say(memory_graph, "ada", "remember my cat is Bo")
        == "I remember: I like tea; my cat is Bo"
    )
    assert await say(memory_graph, "ada", "recall my cat") == "Closest memory: my cat is Bo"
    assert await say(memory_graph, "ada", "recall tea please") == "Closest memory: I like tea"
    assert await say(memory_graph, "bob", "recall my cat") == "I remember nothing yet."
    assert await say(memory_graph, "ada", "hi", tenant="globex") == "I remember nothing yet."
