"""Key scopes: every route declares exactly its intended scope (walking the app's route
table, so a new route without one fails here), and a key without it gets a 403 naming
the missing scope, on a representative route of each group, over real databases."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from agent_runtime.api.app_factory import create_api
from agent_runtime.api.deps import RequireAdmin, RequireScope, authenticate
from agent_runtime.config.settings import StorageSettings
from agent_runtime.db.metadata import MetadataStore
from tests.api.admin_app import App, admin_app, admin_settings
from tests.api.app_services import services
from tests.backends import BACKENDS

READ, RUN, ADMIN = "read", "run", "admin"
PUBLIC = None
T, R, A = "/threads/{thread_id}", "/threads/{thread_id}/runs/{run_id}", "/assistants/{assistant_id}"
EXPECTED: dict[tuple[str, str], str | None] = {
    ("GET", "/ok"): PUBLIC,
    ("GET", "/health"): PUBLIC,
    ("GET", "/info"): PUBLIC,
    # assistants
    ("POST", "/assistants"): RUN,
    ("POST", "/assistants/search"): READ,
    ("POST", "/assistants/count"): READ,
    ("GET", A): READ,
    ("PATCH", A): RUN,
    ("DELETE", A): RUN,
    ("POST", f"{A}/versions"): READ,
    ("POST", f"{A}/latest"): RUN,
    ("GET", f"{A}/graph"): READ,
    ("GET", f"{A}/schemas"): READ,
    ("GET", f"{A}/subgraphs"): READ,
    ("GET", f"{A}/subgraphs/{{namespace}}"): READ,
    # threads
    ("POST", "/threads"): RUN,
    ("POST", "/threads/search"): READ,
    ("POST", "/threads/count"): READ,
    ("POST", "/threads/prune"): RUN,
    ("GET", T): READ,
    ("PATCH", T): RUN,
    ("DELETE", T): RUN,
    ("POST", f"{T}/copy"): RUN,
    ("GET", f"{T}/state"): READ,
    ("GET", f"{T}/state/{{checkpoint_id}}"): READ,
    ("POST", f"{T}/state/checkpoint"): READ,
    ("POST", f"{T}/state"): RUN,
    ("GET", f"{T}/history"): READ,
    ("POST", f"{T}/history"): READ,
    # runs
    ("POST", f"{T}/runs"): RUN,
    ("POST", "/runs"): RUN,
    ("POST", "/runs/batch"): RUN,
    ("POST", f"{T}/runs/wait"): RUN,
    ("POST", "/runs/wait"): RUN,
    ("POST", f"{T}/runs/stream"): RUN,
    ("POST", "/runs/stream"): RUN,
    ("GET", f"{R}/join"): READ,
    ("GET", f"{R}/trace"): READ,
    ("GET", f"{T}/stream"): READ,
    ("GET", f"{R}/stream"): RUN,  # it may cancel the run on disconnect
    ("GET", f"{T}/runs"): READ,
    ("GET", R): READ,
    ("DELETE", R): RUN,
    ("POST", f"{R}/cancel"): RUN,
    ("POST", "/runs/cancel"): RUN,
    # crons
    ("POST", "/runs/crons"): RUN,
    ("POST", f"{T}/runs/crons"): RUN,
    ("POST", "/runs/crons/search"): READ,
    ("POST", "/runs/crons/count"): READ,
    ("GET", "/runs/crons/{cron_id}"): READ,
    ("PATCH", "/runs/crons/{cron_id}"): RUN,
    ("DELETE", "/runs/crons/{cron_id}"): RUN,
    # store
    ("PUT", "/store/items"): RUN,
    ("GET", "/store/items"): READ,
    ("DELETE", "/store/items"): RUN,
    ("POST", "/store/items/search"): READ,
    ("POST", "/store/namespaces"): READ,
    # OpenAI gateway, usage
    ("GET", "/v1/models"): READ,
    ("POST", "/v1/chat/completions"): RUN,
    ("POST", "/v1/embeddings"): RUN,
    ("GET", "/usage"): READ,
    ("GET", "/budgets"): READ,
}
DOCS = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


def _calls(dependant: Dependant) -> Iterator[Any]:
    for dependency in dependant.dependencies:
        yield dependency.call
        yield from _calls(dependency)


def _scopes(route: APIRoute) -> list[str]:
    return [c.scope for c in _calls(route.dependant) if isinstance(c, RequireScope | RequireAdmin)]


def test_every_route_has_exactly_its_intended_scope(tmp_path: Path) -> None:
    settings = admin_settings(StorageSettings(data_dir=tmp_path))
    app = create_api(services(MetadataStore(settings.storage), settings))
    seen: set[tuple[str, str]] = set()
    # FastAPI includes routers lazily: walk the effective routes, prefixes applied.
    for context in iter_route_contexts(app.routes):
        route, path = context.route, context.path or ""
        if not isinstance(route, APIRoute):
            assert path in DOCS, f"unexpected route {path}"
            continue
        for method in context.methods or ():
            where = (method, path)
            seen.add(where)
            wanted = ADMIN if path.startswith("/admin/") else EXPECTED.get(where, "?")
            assert wanted != "?", f"{where}: new route; give it a scope and list it here"
            found = _scopes(route)
            assert found == ([] if wanted is None else [wanted]), f"{where}: {found}"
            direct = [d.call for d in route.dependant.dependencies]
            assert authenticate not in direct, f"{where}: authenticates with no scope"
    assert set(EXPECTED) <= seen  # the table names no route that is gone
    assert sum(path.startswith("/admin/") for _, path in seen) >= 15


@pytest.fixture(params=BACKENDS)
async def api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[App]:
    async with admin_app(request.param, tmp_path) as app:
        yield app


def _forbidden(response: Any, scope: str) -> None:
    assert response.status_code == 403, response.text
    assert response.json() == {
        "detail": f"this API key lacks the '{scope}' scope",
        "error": "forbidden",
        "missing_scope": scope,
    }


def _forbidden_openai(response: Any, scope: str) -> None:
    """/v1 errors keep OpenAI's shape, so OpenAI clients show them."""
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert (error["message"], error["code"]) == (
        f"this API key lacks the '{scope}' scope",
        "forbidden",
    )


async def test_a_key_without_the_scope_gets_403_naming_it(api: App) -> None:
    reader = await api.key("acme", "read")
    runner = await api.key("acme", "run")
    admin_only = await api.key("ops", "admin")
    thread, run = str(uuid.uuid4()), str(uuid.uuid4())
    run_body = {"assistant_id": "react", "input": {}}
    chat = {"model": "fast", "messages": [{"role": "user", "content": "hi"}]}
    item = {"namespace": ["n"], "key": "k", "value": {"v": 1}}
    async with api.http(reader) as client:
        _forbidden(await client.post("/assistants", json={"graph_id": "react"}), RUN)
        _forbidden(await client.post("/threads", json={}), RUN)
        _forbidden(await client.post(f"/threads/{thread}/state", json={"values": {}}), RUN)
        _forbidden(await client.post(f"/threads/{thread}/runs/wait", json=run_body), RUN)
        _forbidden(await client.post(f"/threads/{thread}/runs/{run}/cancel"), RUN)
        _forbidden(await client.put("/store/items", json=item), RUN)
        _forbidden_openai(await client.post("/v1/chat/completions", json=chat), RUN)
        embed = {"model": "fake-embed", "input": "hi"}
        _forbidden_openai(await client.post("/v1/embeddings", json=embed), RUN)
        _forbidden(await client.get("/admin/tenants"), ADMIN)
        _forbidden(await client.get("/admin/usage"), ADMIN)
        searched = await client.post("/threads/search", json={})
        assert searched.status_code == 200, searched.text
    async with api.http(runner) as client:
        _forbidden(await client.get("/assistants/react"), READ)
        _forbidden(await client.post("/threads/search", json={}), READ)
        _forbidden(await client.get(f"/threads/{thread}/history"), READ)
        _forbidden(await client.get(f"/threads/{thread}/runs"), READ)
        _forbidden(await client.get("/store/items", params={"namespace": "n", "key": "k"}), READ)
        _forbidden_openai(await client.get("/v1/models"), READ)
        _forbidden(await client.get("/usage"), READ)
        created = await client.post("/threads", json={})
        assert created.status_code == 200, created.text
    async with api.http(admin_only) as client:
        _forbidden(await client.post("/threads/search", json={}), READ)
        _forbidden(await client.post("/threads", json={}), RUN)
        assert (await client.get("/admin/tenants")).status_code == 200
    async with api.http("ar_0123456789ab_" + "x" * 43) as client:
        assert (await client.post("/threads/search", json={})).status_code == 401


async def test_keys_made_without_scopes_read_and_run(api: App) -> None:
    default = await api.key("acme")
    async with api.http(default) as client:
        assert (await client.post("/threads", json={})).status_code == 200
        assert (await client.post("/threads/search", json={})).status_code == 200
        _forbidden(await client.get("/admin/tenants"), ADMIN)
