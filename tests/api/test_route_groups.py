"""An app's ``http.disable_*`` switch route groups off, and ``http.enable_custom_route_auth``
puts its own routes behind the API's key check (``AGENT_DISABLED_ROUTES``,
``AGENT_CUSTOM_ROUTE_AUTH``)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest
from fastapi import FastAPI, Request

from agent_runtime.api.app_factory import create_api
from agent_runtime.config.http_settings import HttpSettings, RouteGroup
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.user_app.app_defaults import settings_env
from agent_runtime.user_app.langgraph_json import read_langgraph_json
from tests.api.admin_app import App, admin_settings
from tests.api.app_services import services as app_services
from tests.backends import backend_settings

Opener = Callable[..., AbstractAsyncContextManager[App]]


def custom() -> FastAPI:
    web = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)  # not answering for ours

    @web.get("/whoami")
    async def whoami(request: Request) -> dict[str, str | None]:
        principal = getattr(request.state, "principal", None)
        return {"tenant": principal.tenant_id if principal is not None else None}

    return web


@pytest.fixture
def open_app(tmp_path: Path) -> Opener:
    @asynccontextmanager
    async def opened(
        disabled: list[RouteGroup], custom_route_auth: bool = False
    ) -> AsyncIterator[App]:
        async with backend_settings("sqlite", tmp_path) as storage:
            settings = admin_settings(storage)
            settings.http = HttpSettings(
                disabled_routes=disabled, custom_route_auth=custom_route_auth
            )
            store = MetadataStore(storage)
            await store.setup()
            services = app_services(store, settings)
            try:
                yield App(create_api(services, custom()), services, store)
            finally:
                await services.limiter.close()
                await store.close()

    return opened


async def test_disabled_groups_are_not_served_and_the_rest_are(open_app: Opener) -> None:
    async with open_app(["threads", "runs", "meta"]) as app:
        key = await app.key("acme", "read", "run")
        async with app.http(key) as http:
            gone = {
                path: (await http.request(method, path, json={})).status_code
                for method, path in [
                    ("POST", "/threads"),
                    ("POST", "/threads/search"),
                    ("POST", "/runs/wait"),
                    ("POST", "/runs/crons"),
                    ("GET", "/info"),
                    ("GET", "/openapi.json"),
                    ("GET", "/docs"),
                ]
            }
            missing = await http.post("/threads", json={})
            kept = await http.post("/assistants/search", json={})
            ok = await http.get("/ok")
            usage = await http.get("/usage")
    assert set(gone.values()) == {404}, repr(gone)
    assert missing.headers["content-type"] == "application/json"
    assert (kept.status_code, ok.status_code, usage.status_code) == (200, 200, 200)


async def test_nothing_is_disabled_by_default(open_app: Opener) -> None:
    async with open_app([]) as app, app.http() as http:
        info = await http.get("/info")
        docs = await http.get("/openapi.json")
        threads = await http.post("/threads", json={})
    assert (info.status_code, docs.status_code) == (200, 200)
    assert threads.status_code == 401  # there, asking for a key


async def test_custom_routes_ask_for_a_key_when_the_app_says_so(open_app: Opener) -> None:
    async with open_app([], custom_route_auth=True) as app:
        key = await app.key("acme", "read")
        async with app.http() as anonymous, app.http("ar_wrong.key") as wrong, app.http(key) as ok:
            refused = await anonymous.get("/whoami")
            bad = await wrong.get("/whoami")
            answered = await ok.get("/whoami")
    assert refused.status_code == 401 and refused.json()["error"] == "unauthorized"
    assert bad.status_code == 401
    assert (answered.status_code, answered.json()) == (200, {"tenant": "acme"})


async def test_custom_routes_are_open_by_default(open_app: Opener) -> None:
    async with open_app([]) as app, app.http() as http:
        answered = await http.get("/whoami")
    assert (answered.status_code, answered.json()) == (200, {"tenant": None})


def test_langgraph_json_http_switches_become_settings(tmp_path: Path) -> None:
    config = tmp_path / "langgraph.json"
    http = {
        "disable_threads": True,
        "disable_meta": True,
        "disable_mcp": True,
        "disable_webhooks": True,
        "enable_custom_route_auth": True,
    }
    config.write_text(json.dumps({"graphs": {"g": "./g.py:graph"}, "http": http}))
    loaded = read_langgraph_json(config)
    env = settings_env(loaded.config)
    assert json.loads(env["AGENT_DISABLED_ROUTES"]) == ["threads", "meta"]
    assert env["AGENT_WEBHOOKS_ENABLED"] == "false"
    assert env["AGENT_CUSTOM_ROUTE_AUTH"] == "true"
    assert not [w for w in loaded.warnings if "disable_" in w or "custom_route" in w]


def test_the_setting_takes_a_list_or_comma_separated_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AGENT_DISABLED_ROUTES", "threads, store")
    assert HttpSettings().disabled_routes == ["threads", "store"]
    monkeypatch.setenv("AGENT_DISABLED_ROUTES", '["meta"]')
    assert HttpSettings().disabled_routes == ["meta"]
    monkeypatch.setenv("AGENT_DISABLED_ROUTES", "mcp")
    with pytest.raises(ValueError, match="assistants"):
        HttpSettings()
