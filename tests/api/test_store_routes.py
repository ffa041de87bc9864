"""The store routes over real databases, driven by the official SDK and by raw HTTP.

The app is the ingress's own (``create_api``) with real services (metadata store, API
keys, in-process limiter, item store), served by uvicorn; only the deployment handles,
which store routes never use, are absent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from agent_runtime.api.app_factory import create_api
from agent_runtime.config.settings import (
    StorageSettings,
)
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.execution.item_store import ItemStores
from agent_runtime.tenancy.auth import generate_key
from tests.api.app_services import runtime_settings
from tests.api.app_services import services as app_services
from tests.backends import BACKENDS, backend_settings
from tests.servers import served


@dataclass
class Api:
    url: str
    alice: str  # API keys of two tenants
    bob: str
    items: ItemStores

    def sdk(self, key: str) -> LangGraphClient:
        return get_client(url=self.url, api_key=key)

    def http(self, key: str | None) -> httpx.AsyncClient:
        headers = {"x-api-key": key} if key else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=10)


async def issue_key(store: MetadataStore, tenant_id: str) -> str:
    await store.ensure_tenant(tenant_id, tenant_id)
    raw, record = generate_key(tenant_id)
    await store.add_key(record)
    return raw


@pytest.fixture(params=BACKENDS)
async def api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Api]:
    async with backend_settings(request.param, tmp_path) as storage:
        settings = runtime_settings(storage)
        store = MetadataStore(storage)
        await store.setup()
        items = ItemStores(storage)
        await items.setup()
        services = app_services(store, settings, items=items)
        try:
            alice, bob = await issue_key(store, "alice"), await issue_key(store, "bob")
            async with served(create_api(services)) as base:
                yield Api(base.removesuffix("/v1"), alice, bob, items)
        finally:
            await items.close()
            await services.limiter.close()
            await store.close()


async def test_sdk_puts_gets_searches_lists_and_deletes(api: Api) -> None:
    client = api.sdk(api.alice)
    await client.store.put_item(["docs", "u1"], "a", {"kind": "note", "n": 1})
    await client.store.put_item(["docs", "u1", "deep"], "b", {"kind": "report"})
    await client.store.put_item(["docs", "u2"], "c", {"kind": "note"}, ttl=60)

    item = await client.store.get_item(["docs", "u1"], "a")
    assert set(item) == {"namespace", "key", "value", "created_at", "updated_at"}
    assert (item["namespace"], item["key"], item["value"]) == (
        ["docs", "u1"],
        "a",
        {"kind": "note", "n": 1},
    )
    assert item["created_at"].endswith("+00:00")

    found = await client.store.search_items(["docs"], filter={"kind": "note"})
    assert sorted(i["key"] for i in found["items"]) == ["a", "c"]
    assert all(i["score"] is None for i in found["items"])
    page = await client.store.search_items(["docs"], limit=1, offset=1)
    assert len(page["items"]) == 1
    assert (await client.store.search_items(["docs", "u2"]))["items"][0]["key"] == "c"

    listed = await client.store.list_namespaces()
    assert listed == {"namespaces": [["docs", "u1"], ["docs", "u1", "deep"], ["docs", "u2"]]}
    assert await client.store.list_namespaces(prefix=["docs"], max_depth=2) == {
        "namespaces": [["docs", "u1"], ["docs", "u2"]]
    }
    assert await client.store.list_namespaces(suffix=["deep"]) == {
        "namespaces": [["docs", "u1", "deep"]]
    }
    assert await client.store.list_namespaces(limit=1, offset=2) == {"namespaces": [["docs", "u2"]]}

    await client.store.delete_item(["docs", "u1"], "a")
    assert await client.store.get_item(["docs", "u1"], "a") is None


async def test_statuses_and_bodies_match_the_platform(api: Api) -> None:
    async with api.http(api.alice) as http:
        put = await http.put("/store/items", json={"namespace": ["m"], "key": "k", "value": {}})
        assert (put.status_code, put.content) == (204, b"")
        missing = await http.get("/store/items", params={"namespace": "m", "key": "nope"})
        assert (missing.status_code, missing.json()) == (200, None)
        refreshed = await http.get(
            "/store/items", params={"namespace": "m", "key": "k", "refresh_ttl": "true"}
        )
        assert refreshed.status_code == 200 and refreshed.json()["key"] == "k"
        no_key = await http.get("/store/items", params={"namespace": "m"})
        assert no_key.status_code == 400 and no_key.json()["detail"] == "Key is required"
        deleted = await http.request(
            "DELETE", "/store/items", json={"namespace": ["m"], "key": "k"}
        )
        assert (deleted.status_code, deleted.content) == (204, b"")
        again = await http.request("DELETE", "/store/items", json={"namespace": ["m"], "key": "k"})
        assert again.status_code == 204
        search = await http.post("/store/items/search", json={})
        assert search.status_code == 200 and search.json() == {"items": []}
        listed = await http.post("/store/namespaces", json={})
        assert listed.status_code == 200 and listed.json() == {"namespaces": []}


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("PUT", "/store/items", {"namespace": ["a.b"], "key": "k", "value": {}}, "namespace.0"),
        ("PUT", "/store/items", {"namespace": ["a", ""], "key": "k", "value": {}}, "namespace.1"),
        ("PUT", "/store/items", {"namespace": "a", "key": "k", "value": {}}, "namespace"),
        ("PUT", "/store/items", {"namespace": ["a"], "key": "k"}, "value"),
        ("PUT", "/store/items", {"namespace": ["a"], "key": "k", "value": [1]}, "value"),
        ("PUT", "/store/items", {"namespace": ["a"], "key": 1, "value": {}}, "key"),
        ("PUT", "/store/items", {"namespace": ["a"], "key": "k", "value": {}, "ttl": "5"}, "ttl"),
        (
            "PUT",
            "/store/items",
            {"namespace": ["a"], "key": "k", "value": {}, "index": True},
            "index",
        ),
        ("DELETE", "/store/items", {"namespace": ["a"]}, "key"),
        ("DELETE", "/store/items", {"namespace": ["a.b"], "key": "k"}, "namespace.0"),
        ("POST", "/store/items/search", {"namespace_prefix": ["a.b"]}, "namespace_prefix.0"),
        ("POST", "/store/items/search", {"limit": "2"}, "limit"),
        ("POST", "/store/items/search", {"offset": -1}, "offset"),
        ("POST", "/store/items/search", {"filter": [1]}, "filter"),
        ("POST", "/store/items/search", {"filter": {"n": {"$near": 1}}}, "filter"),
        ("POST", "/store/namespaces", {"prefix": ["a.b"]}, "prefix.0"),
        ("POST", "/store/namespaces", {"max_depth": -1}, "max_depth"),
        ("POST", "/store/namespaces", {"limit": "5"}, "limit"),
    ],
)
async def test_bad_input_is_422_naming_the_field(
    api: Api, method: str, path: str, body: dict[str, Any], field: str
) -> None:
    async with api.http(api.alice) as http:
        response = await http.request(method, path, json=body)
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert field in [e["field"] for e in errors], errors
    assert await api.items.raw.alist_namespaces() == []


async def test_bad_get_namespace_is_422_and_bad_put_namespaces_are_400(api: Api) -> None:
    async with api.http(api.alice) as http:
        dotted = await http.get("/store/items", params={"namespace": "a..b", "key": "k"})
        assert dotted.status_code == 422
        assert [e["field"] for e in dotted.json()["errors"]] == ["namespace.1"]
        absent = await http.get("/store/items", params={"key": "k"})
        assert absent.status_code == 422
        empty = await http.put("/store/items", json={"namespace": [], "key": "k", "value": {}})
        assert (empty.status_code, empty.json()["detail"]) == (400, "Namespace cannot be empty.")
        reserved = await http.put(
            "/store/items", json={"namespace": ["langgraph", "x"], "key": "k", "value": {}}
        )
        assert reserved.status_code == 400 and "langgraph" in reserved.json()["detail"]
        broken = await http.put(
            "/store/items", content=b"{", headers={"content-type": "application/json"}
        )
        assert broken.status_code == 422
    assert await api.items.raw.alist_namespaces() == []


async def test_every_route_needs_a_key(api: Api) -> None:
    async with api.http(None) as http:
        responses = [
            await http.put("/store/items", json={"namespace": ["m"], "key": "k", "value": {}}),
            await http.get("/store/items", params={"namespace": "m", "key": "k"}),
            await http.request("DELETE", "/store/items", json={"namespace": ["m"], "key": "k"}),
            await http.post("/store/items/search", json={"namespace_prefix": []}),
            await http.post("/store/namespaces", json={}),
        ]
    assert [r.status_code for r in responses] == [401] * 5
    assert await api.items.raw.alist_namespaces() == []


async def test_a_tenant_cannot_read_list_or_delete_another_tenants_items(api: Api) -> None:
    alice, bob = api.sdk(api.alice), api.sdk(api.bob)
    await alice.store.put_item(["memories", "u1"], "fact", {"text": "alice's secret"})

    assert await bob.store.get_item(["memories", "u1"], "fact") is None
    assert await bob.store.search_items([]) == {"items": []}
    assert await bob.store.search_items(["memories"], filter={"text": "alice's secret"}) == {
        "items": []
    }
    assert await bob.store.list_namespaces() == {"namespaces": []}
    assert await bob.store.list_namespaces(prefix=["*"]) == {"namespaces": []}
    await bob.store.delete_item(["memories", "u1"], "fact")
    await bob.store.put_item(["memories", "u1"], "fact", {"text": "bob's"})

    kept = await alice.store.get_item(["memories", "u1"], "fact")
    assert kept["value"] == {"text": "alice's secret"}
    assert [i["value"] for i in (await alice.store.search_items([]))["items"]] == [
        {"text": "alice's secret"}
    ]
    assert (await bob.store.get_item(["memories", "u1"], "fact"))["value"] == {"text": "bob's"}


async def test_a_replica_without_an_item_store_answers_503(tmp_path: Path) -> None:
    storage = StorageSettings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'm.db'}")
    settings = runtime_settings(storage)
    store = MetadataStore(storage)
    await store.setup()
    services = app_services(store, settings)
    try:
        key = await issue_key(store, "alice")
        transport = httpx.ASGITransport(app=create_api(services))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            response = await http.post("/store/namespaces", json={}, headers={"x-api-key": key})
    finally:
        await services.limiter.close()
        await store.close()
    assert response.status_code == 503
    assert response.json()["error"] == "service_unavailable"


async def test_ttls_the_database_cannot_take_are_422(api: Api) -> None:
    # Found by fuzzing: these reached the database's interval parser and failed as 500s.
    async with api.http(api.alice) as http:
        for ttl in (1.0548682940401819e-263, 0.00001, 1e17, -5.0):
            body = {"namespace": ["docs"], "key": "k", "value": {}, "ttl": ttl}
            response = await http.put("/store/items", json=body)
            assert response.status_code == 422, (ttl, response.text)
            assert response.json()["errors"][0]["field"] == "ttl"
        for ttl in (0.0001, 60.0, 0):
            body = {"namespace": ["docs"], "key": "k", "value": {}, "ttl": ttl}
            assert (await http.put("/store/items", json=body)).status_code == 204, ttl
