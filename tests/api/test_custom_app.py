"""An app's own HTTP app (``http.app`` in its langgraph.json) answers the paths the API
does not take, behind the same hardening: the API's routes still win."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fastapi import FastAPI

from agent_runtime.api.app_factory import create_api
from agent_runtime.config.http_settings import HttpSettings
from agent_runtime.db.metadata import MetadataStore
from tests.api.admin_app import App, admin_settings
from tests.api.app_services import services as app_services
from tests.backends import backend_settings


def custom() -> FastAPI:
    web = FastAPI()

    @web.get("/hello/{name}")
    async def hello(name: str) -> dict[str, str]:
        return {"hello": name}

    @web.get("/ok")
    async def not_ours() -> dict[str, str]:
        return {"from": "the custom app"}

    return web


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    async with backend_settings("sqlite", tmp_path) as storage:
        settings = admin_settings(storage)
        settings.http = HttpSettings(max_headers=20)
        store = MetadataStore(storage)
        await store.setup()
        services = app_services(store, settings)
        try:
            yield App(create_api(services, custom()), services, store)
        finally:
            await services.limiter.close()
            await store.close()


async def test_its_routes_answer_and_the_apis_win(app: App) -> None:
    async with app.http() as http:
        hello = await http.get("/hello/ada")
        ok = await http.get("/ok")
        threads = await http.post("/threads", json={})  # the API's, with its own auth
    assert (hello.status_code, hello.json()) == (200, {"hello": "ada"})
    assert ok.json() == {"ok": True}
    assert threads.status_code == 401


async def test_it_sits_behind_the_same_hardening(app: App) -> None:
    async with app.http() as http:
        many = await http.get("/hello/ada", headers={f"x-h{i}": "v" for i in range(30)})
        fine = await http.get("/hello/ada")
    assert many.status_code == 431 and many.json()["error"] == "headers_too_large"
    assert fine.headers["x-content-type-options"] == "nosniff"
    assert fine.headers["x-request-id"]
