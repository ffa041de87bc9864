"""The assistants API over HTTP: the official langgraph-sdk client and raw requests.

The app is the ingress's own pieces (error handlers, middleware, the system and assistant
routers) over a real database of each backend, real keys and the in-process limiter; no
Ray, and no orchestrator or router (assistant routes never call them). Expected statuses,
bodies and headers are the ones langgraph-api gives for the same calls.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from langgraph_sdk import get_client
from langgraph_sdk.errors import (
    BadRequestError,
    ConflictError,
    NotFoundError,
    UnprocessableEntityError,
)

from agent_runtime.api.deps import Services
from agent_runtime.api.graph_info import assistant_store
from agent_runtime.api.middleware import install_error_handlers, install_middleware
from agent_runtime.api.routes.assistant_routes import assistants, system
from agent_runtime.config.settings import (
    LimitSettings,
)
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.protocol.agent_protocol import default_assistant_id
from agent_runtime.tenancy.auth import generate_key
from tests.api.app_services import runtime_settings
from tests.api.app_services import services as app_services
from tests.backends import BACKENDS, backend_settings
from tests.example_graphs import example_graphs
from tests.servers import served

REACT = default_assistant_id("react")
MULTI = default_assistant_id("multi_agent")


@dataclass
class Api:
    app: FastAPI
    store: MetadataStore
    keys: dict[str, str]

    def client(self, tenant: str = "acme") -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url="http://test",
            headers={"x-api-key": self.keys[tenant]},
        )


def build_app(services: Services) -> FastAPI:
    app = FastAPI()
    app.state.services = services
    install_error_handlers(app)
    install_middleware(app, services)
    app.include_router(system)
    app.include_router(assistants)
    return app


@pytest.fixture(params=BACKENDS)
async def api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Api]:
    async with backend_settings(request.param, tmp_path) as storage:
        settings = runtime_settings(
            storage, limits=LimitSettings(redis_url=None, rate_limit_burst=10_000)
        )
        store = MetadataStore(storage)
        await store.setup()
        keys = {}
        for tenant in ("acme", "globex"):
            await store.ensure_tenant(tenant, tenant)
            raw, record = generate_key(tenant)
            await store.add_key(record)
            keys[tenant] = raw
        # Two graphs, so lists and messages stay short and fixed as graphs get added.
        graphs = example_graphs("multi_agent", "react")
        services = app_services(
            store, settings, graphs=graphs, assistants=assistant_store(store, graphs)
        )
        yield Api(build_app(services), store, keys)
        await services.limiter.close()
        await store.close()


async def test_the_sdk_drives_the_whole_lifecycle(api: Api) -> None:
    async with served(api.app) as v1_url:
        client = get_client(url=v1_url.removesuffix("/v1"), api_key=api.keys["acme"])
        try:
            await _lifecycle(client)
        finally:
            await client.aclose()


async def _lifecycle(client: Any) -> None:
    defaults = await client.assistants.search()
    # Newest first: the graph registered last (react) comes first, as on Platform.
    assert [a["assistant_id"] for a in defaults] == [REACT, MULTI]
    assert defaults[0]["metadata"] == {"created_by": "system"} and defaults[0]["name"] == "react"
    assert await client.assistants.get("react") == defaults[0]

    created = await client.assistants.create(
        "react",
        config={"tags": ["t1"], "recursion_limit": 30},
        context={"user": "u1"},
        metadata={"team": "a"},
        name="mine",
        description="first",
    )
    aid = created["assistant_id"]
    assert created["config"] == {
        "tags": ["t1"],
        "recursion_limit": 30,
        "configurable": {"user": "u1"},
    }
    assert (created["version"], created["name"], created["description"]) == (1, "mine", "first")
    with pytest.raises(ConflictError):
        await client.assistants.create("react", assistant_id=aid)
    same = await client.assistants.create("react", assistant_id=aid, if_exists="do_nothing")
    assert same == created
    with pytest.raises(BadRequestError, match="Cannot specify both configurable and context"):
        await client.assistants.create("react", config={"configurable": {"a": 1}}, context={"b": 2})

    updated = await client.assistants.update(aid, metadata={"team": "b"}, name="renamed")
    assert (updated["version"], updated["metadata"]) == (2, {"team": "b"})
    versions = await client.assistants.get_versions(aid)
    assert [(v["version"], v["name"]) for v in versions] == [(2, "renamed"), (1, "mine")]
    assert "updated_at" not in versions[0]
    [v1] = await client.assistants.get_versions(aid, metadata={"team": "a"})
    assert v1["version"] == 1
    back = await client.assistants.set_latest(aid, 1)
    assert (back["version"], back["name"], back["metadata"]) == (1, "mine", {"team": "a"})
    assert (await client.assistants.get(aid))["version"] == 1

    page = await client.assistants.search(limit=1, response_format="object")
    assert [a["assistant_id"] for a in page["assistants"]] == [aid] and page["next"] == "1"
    selected = await client.assistants.search(
        graph_id="react", sort_by="name", sort_order="asc", select=["assistant_id", "name"]
    )
    assert selected == [
        {"assistant_id": aid, "name": "mine"},
        {"assistant_id": REACT, "name": "react"},
    ]
    assert await client.assistants.count(graph_id="react") == 2
    assert await client.assistants.count(metadata={"team": "a"}) == 1

    drawing = await client.assistants.get_graph(aid)
    assert {n["id"] for n in drawing["nodes"]} == {"__start__", "agent", "tools", "__end__"}
    assert all("id" not in n.get("data", {}) for n in drawing["nodes"])
    assert {"source": "__start__", "target": "agent"} in drawing["edges"]
    assert (await client.assistants.get_graph("multi_agent", xray=True))["nodes"]
    schemas = await client.assistants.get_schemas(aid)
    assert schemas["graph_id"] == "react"
    assert set(schemas) == {
        "graph_id", "input_schema", "output_schema", "state_schema", "config_schema",
        "context_schema",
    }  # fmt: skip
    assert "messages" in schemas["state_schema"]["properties"]
    assert schemas["config_schema"] == {} and schemas["context_schema"] is None
    assert await client.assistants.get_subgraphs(aid) == {}
    assert await client.assistants.get_subgraphs(aid, namespace="x", recurse=True) == {}

    # delete_threads also goes through the orchestrator: tests/e2e covers it.
    await client.assistants.delete(aid)
    with pytest.raises(NotFoundError):
        await client.assistants.get(aid)
    with pytest.raises(NotFoundError):
        await client.assistants.update(str(uuid.uuid4()), name="x")
    with pytest.raises(UnprocessableEntityError, match="must be a UUID"):
        await client.assistants.get("not-a-uuid")


async def test_statuses_bodies_and_headers_match_platform(api: Api) -> None:
    async with api.client() as http:
        bad_id = await http.get("/assistants/not-a-uuid")
        assert bad_id.status_code == 422
        assert bad_id.json() == {
            "detail": "Invalid assistant ID: must be a UUID",
            "error": "invalid_request",
        }
        unknown = await http.get(f"/assistants/{uuid.uuid4()}")
        assert unknown.status_code == 404 and set(unknown.json()) == {"detail", "error"}

        for body, field in (
            ({}, "graph_id"),
            ({"graph_id": 5}, "graph_id"),
            ({"graph_id": "react", "metadata": "x"}, "metadata"),
            ({"graph_id": "react", "if_exists": "bogus"}, "if_exists"),
            ({"graph_id": "react", "config": {"tags": "t"}}, "config.tags"),
            ({"graph_id": "react", "config": {"recursion_limit": "5"}}, "config.recursion_limit"),
        ):
            invalid = await http.post("/assistants", json=body)
            assert invalid.status_code == 422, body
            assert [e["field"] for e in invalid.json()["errors"]] == [field]
        not_json = await http.post(
            "/assistants", content=b"not json", headers={"content-type": "application/json"}
        )
        assert not_json.status_code == 422
        no_graph = await http.post("/assistants", json={"graph_id": "nope"})
        assert no_graph.status_code == 404
        assert no_graph.json()["detail"] == (
            "Graph 'nope' not found. Expected one of: ['multi_agent', 'react']"
        )
        both = await http.post(
            "/assistants",
            json={"graph_id": "react", "config": {"configurable": {"a": 1}}, "context": {"b": 1}},
        )
        assert both.status_code == 400 and both.json()["detail"].startswith("Cannot specify")

        for body in ({"limit": 0}, {"limit": 10_000}, {"sort_by": "bogus"}, {"select": ["x"]}):
            assert (await http.post("/assistants/search", json=body)).status_code == 422
        assert (await http.post("/assistants/search", json={"graph_id": "x"})).status_code == 404
        first = await http.post("/assistants/search", json={"limit": 1})
        assert first.headers["x-pagination-total"] == "2"
        assert first.headers["x-pagination-next"] == "1"
        whole = await http.post("/assistants/search", json={"limit": 10})
        assert whole.headers["x-pagination-total"] == "2"
        assert "x-pagination-next" not in whole.headers
        assert (await http.post("/assistants/search")).json() == whole.json()
        assert (await http.post("/assistants/count")).json() == 2

        created = (await http.post("/assistants", json={"graph_id": "react"})).json()
        aid = created["assistant_id"]
        assert list(created) == [
            "assistant_id", "graph_id", "config", "context", "metadata", "name",
            "created_at", "updated_at", "version", "description",
        ]  # fmt: skip
        assert created["created_at"].endswith("+00:00")
        missing_version = await http.post(f"/assistants/{aid}/latest", json={})
        assert missing_version.status_code == 404
        assert missing_version.json()["detail"] == f"Version None not found for assistant {aid}"
        past_the_end = await http.post(f"/assistants/{aid}/versions", json={"offset": 5})
        assert past_the_end.status_code == 404
        assert (await http.patch(f"/assistants/{aid}", json={})).json()["version"] == 2

        for xray in ("bogus", "0", "-1"):
            drawn = await http.get(f"/assistants/{aid}/graph", params={"xray": xray})
            assert drawn.status_code == 422 and drawn.json()["detail"] == "Invalid xray value"
        assert (await http.get("/assistants/react/graph", params={"xray": "1"})).status_code == 200
        assert (await http.get(f"/assistants/{uuid.uuid4()}/schemas")).status_code == 404

        deleted = await http.delete(f"/assistants/{aid}")
        assert (deleted.status_code, deleted.content) == (204, b"")
        again = await http.delete(f"/assistants/{aid}")
        assert again.status_code == 404
        assert again.json()["detail"] == f"Assistant with ID {aid} not found"
        gone = await http.patch(f"/assistants/{aid}", json={"name": "x"})
        assert (gone.status_code, gone.json()["detail"]) == (404, f"Assistant {aid} not found")

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api.app), base_url="http://test"
    ) as anonymous:
        assert (await anonymous.post("/assistants/search", json={})).status_code == 401
        assert (await anonymous.get("/ok")).json() == {"ok": True}


async def test_tenants_never_see_each_others_assistants(api: Api) -> None:
    async with api.client("acme") as acme, api.client("globex") as globex:
        mine = (await acme.post("/assistants", json={"graph_id": "react", "name": "acme's"})).json()
        aid = mine["assistant_id"]
        thread = await api.store.create_thread("globex", metadata={"assistant_id": aid})
        for method, path, body in (
            ("GET", f"/assistants/{aid}", None),
            ("PATCH", f"/assistants/{aid}", {"name": "stolen"}),
            ("POST", f"/assistants/{aid}/versions", {}),
            ("POST", f"/assistants/{aid}/latest", {"version": 1}),
            ("GET", f"/assistants/{aid}/graph", None),
            ("GET", f"/assistants/{aid}/schemas", None),
            ("GET", f"/assistants/{aid}/subgraphs", None),
            ("DELETE", f"/assistants/{aid}?delete_threads=true", None),
        ):
            response = await globex.request(method, path, json=body)
            assert response.status_code == 404, (method, path)
        listed = (await globex.post("/assistants/search", json={"limit": 100})).json()
        assert [a["assistant_id"] for a in listed] == [REACT, MULTI]
        assert (await globex.post("/assistants/count", json={"graph_id": "react"})).json() == 1
        # globex's thread survived the refused delete; acme's assistant is untouched.
        assert (await api.store.get_thread("globex", thread.thread_id)).thread_id
        assert (await acme.get(f"/assistants/{aid}")).json() == mine

        await globex.patch("/assistants/react", json={"metadata": {"who": "globex"}})
        acme_default = (await acme.get(f"/assistants/{REACT}")).json()
        assert (acme_default["version"], acme_default["metadata"]) == (1, {"created_by": "system"})


async def test_services_without_an_assistant_store_get_one(api: Api) -> None:
    given: Services = api.app.state.services
    services = app_services(given.store, given.settings, graphs=given.graphs)
    assert services.assistants is not None
    api.app.state.services = services
    async with api.client() as http:
        found = (await http.post("/assistants/search", json={})).json()
    assert [a["graph_id"] for a in found] == ["react", "multi_agent"]
