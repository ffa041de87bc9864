"""The store routes with the app's ``store.index``, driven by the official SDK: items put
are embedded (through the model router, by the fake provider), a search's ``query`` ranks
them with scores, per tenant, and embedding failures are clear JSON errors, never a 500.

The app is the ingress's own (``create_api``) with real services and a real item store on
each backend; the router is in process, as the ingress's handle would reach it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from langgraph.store.base.embed import ensure_embeddings
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from agent_runtime.api.app_factory import create_api
from agent_runtime.config.fake_provider_settings import FakeProviderSettings
from agent_runtime.config.provider_settings import ProviderSettings
from agent_runtime.core.types import EmbeddingRequest, EmbeddingResult
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.execution.item_store import ItemStores
from agent_runtime.execution.store_index import StoreIndex
from agent_runtime.fake.provider_app import create_fake_provider_app
from agent_runtime.gateway.model_router import ModelRouter
from tests.api.app_services import runtime_settings
from tests.api.app_services import services as app_services
from tests.api.test_store_routes import issue_key
from tests.backends import BACKENDS, backend_settings
from tests.servers import served

INDEX = StoreIndex(embed="openai:fake-embed", dims=64, fields=("text",))


@dataclass
class Api:
    url: str
    alice: str
    bob: str
    embedded: list[EmbeddingRequest] = field(default_factory=list)

    def sdk(self, key: str) -> LangGraphClient:
        return get_client(url=self.url, api_key=key)

    def http(self, key: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers={"x-api-key": key}, timeout=10)


@asynccontextmanager
async def serve(backend: str, folder: Path, index: StoreIndex) -> AsyncIterator[Api]:
    fake = create_fake_provider_app(FakeProviderSettings(_env_file=None, latency_ms=0))
    async with (
        backend_settings(backend, folder) as storage,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=fake)) as http,
    ):
        router = ModelRouter(ProviderSettings(_env_file=None), "http://fake/v1", http_client=http)
        embedded: list[EmbeddingRequest] = []

        async def embed(request: EmbeddingRequest) -> EmbeddingResult:
            embedded.append(request)
            return await router.embed(request)

        store = MetadataStore(storage)
        await store.setup()
        items = ItemStores(storage, index=index, embed=embed)
        await items.setup()
        services = app_services(store, runtime_settings(storage), items=items)
        try:
            alice, bob = await issue_key(store, "alice"), await issue_key(store, "bob")
            async with served(create_api(services)) as base:
                yield Api(base.removesuffix("/v1"), alice, bob, embedded)
        finally:
            await items.close()
            await services.limiter.close()
            await store.close()
            await router.close()


@pytest.fixture(params=BACKENDS)
async def api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Api]:
    async with serve(request.param, tmp_path, INDEX) as served_api:
        yield served_api


def keys(found: dict[str, list[dict[str, object]]]) -> list[object]:
    return [item["key"] for item in found["items"]]


async def test_a_query_ranks_the_tenants_items_with_scores(api: Api) -> None:
    alice = api.sdk(api.alice)
    await alice.store.put_item(["memories"], "tea", {"text": "I like green tea", "kind": "a"})
    await alice.store.put_item(["memories"], "cat", {"text": "my cat is called Bo", "kind": "b"})
    await alice.store.put_item(["memories"], "hidden", {"text": "green tea"}, index=False)
    await api.sdk(api.bob).store.put_item(["memories"], "bobs", {"text": "I like green tea"})

    found = await alice.store.search_items(["memories"], query="green tea")
    assert keys(found) == ["tea", "cat"]
    scores = [item["score"] for item in found["items"]]
    assert isinstance(scores[0], float) and isinstance(scores[1], float)
    assert 1.0 >= scores[0] > scores[1]
    assert set(found["items"][0]) == {
        "namespace", "key", "value", "created_at", "updated_at", "score",
    }  # fmt: skip
    filtered = await alice.store.search_items(["memories"], query="green tea", filter={"kind": "b"})
    assert keys(filtered) == ["cat"]
    assert keys(await alice.store.search_items(["memories"], query="tea", limit=1)) == ["tea"]
    # Bob's twin item, and Alice's, stay with their tenant.
    assert keys(await api.sdk(api.bob).store.search_items([], query="green tea")) == ["bobs"]
    # Each embedding is the caller's: its tenant and key (budgets, usage ledger).
    assert {request.tenant_id for request in api.embedded} == {"alice", "bob"}
    assert all(request.key_id for request in api.embedded)
    assert api.embedded[-1].texts == ["green tea"]


async def test_a_model_the_router_does_not_serve_is_its_json_404(tmp_path: Path) -> None:
    index = StoreIndex(embed="openai:text-embedding-9", dims=8)
    async with serve("sqlite", tmp_path, index) as api, api.http(api.alice) as http:
        put = await http.put(
            "/store/items", json={"namespace": ["m"], "key": "k", "value": {"a": "b"}}
        )
        searched = await http.post("/store/items/search", json={"query": "anything"})
    for response in (put, searched):
        assert response.status_code == 404, response.text
        assert response.json()["error"] == "model_not_found"
        assert "text-embedding-9" in response.json()["detail"]


def broken(texts: Sequence[str]) -> list[list[float]]:
    raise RuntimeError("the embedding service said no")


async def test_an_app_function_that_fails_is_a_json_502_naming_it(tmp_path: Path) -> None:
    index = StoreIndex(embed="./embed.py:broken", dims=8, embeddings=ensure_embeddings(broken))
    async with serve("sqlite", tmp_path, index) as api, api.http(api.alice) as http:
        put = await http.put(
            "/store/items", json={"namespace": ["m"], "key": "k", "value": {"a": "b"}}
        )
        got = await http.get("/store/items", params={"namespace": "m", "key": "k"})
    assert put.status_code == 502
    assert put.json() == {
        "detail": "store.index.embed './embed.py:broken' failed: RuntimeError: the embedding "
        "service said no",
        "error": "embedding_failed",
    }
    assert got.status_code == 200 and got.json() is None  # nothing was written
