"""Request limits and response headers of the ingress (agent_runtime/api/hardening.py): the
app's own ``create_api`` over a real database, and the guard alone around small apps for
deadlines and streams. Every refusal is JSON in the runtime's error shape."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent_runtime.api.app_factory import create_api
from agent_runtime.config.http_settings import HttpSettings
from agent_runtime.db.metadata import MetadataStore
from tests.api.admin_app import App, admin_settings
from tests.api.app_services import services as app_services
from tests.backends import backend_settings


async def make_app(folder: Path, **http: Any) -> AsyncIterator[App]:
    async with backend_settings("sqlite", folder) as storage:
        settings = admin_settings(storage)
        settings.http = HttpSettings(**http)
        store = MetadataStore(storage)
        await store.setup()
        services = app_services(store, settings)
        try:
            yield App(create_api(services), services, store)
        finally:
            await services.limiter.close()
            await store.close()


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    async for built in make_app(tmp_path, max_headers=20, max_header_bytes=2048):
        yield built


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert body["error"] == code and isinstance(body["detail"], str)
    return body


async def test_security_headers_on_answers_and_errors(app: App) -> None:
    async with app.http() as http:
        for response in (await http.get("/ok"), await http.get("/threads")):
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["x-frame-options"] == "DENY"
            assert response.headers["referrer-policy"] == "no-referrer"
            assert response.headers["cache-control"] == "no-store"
            assert "default-src 'none'" in response.headers["content-security-policy"]
            assert "strict-transport-security" not in response.headers
        docs = await http.get("/docs")
    assert docs.status_code == 200
    assert "content-security-policy" not in docs.headers  # Swagger UI loads its scripts
    assert docs.headers["x-frame-options"] == "DENY"


async def test_hsts_only_when_configured(tmp_path: Path) -> None:
    async for built in make_app(tmp_path, hsts_max_age_s=31536000):
        async with built.http() as http:
            response = await http.get("/ok")
        assert response.headers["strict-transport-security"].startswith("max-age=31536000")


async def test_cors_is_off_by_default(app: App) -> None:
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    async with app.http() as http:
        answer = await http.options("/threads", headers=preflight)
        plain = await http.get("/ok", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in answer.headers
    assert "access-control-allow-origin" not in plain.headers


async def test_cors_allows_only_the_configured_origins(tmp_path: Path) -> None:
    async for built in make_app(tmp_path, cors_origins=["https://app.example"]):
        async with built.http() as http:
            ok = await http.options(
                "/threads",
                headers={
                    "Origin": "https://app.example",
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "x-api-key, content-type",
                },
            )
            simple = await http.get("/ok", headers={"Origin": "https://app.example"})
            other = await http.get("/ok", headers={"Origin": "https://evil.example"})
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == "https://app.example"
        assert "x-api-key" in ok.headers["access-control-allow-headers"].lower()
        assert simple.headers["access-control-allow-origin"] == "https://app.example"
        assert "X-RateLimit-Remaining" in simple.headers["access-control-expose-headers"]
        assert "access-control-allow-origin" not in other.headers


async def test_too_many_or_too_large_headers_are_431(app: App) -> None:
    async with app.http() as http:
        many = await http.get("/ok", headers={f"x-h{i}": "v" for i in range(30)})
        large = await http.get("/ok", headers={"x-big": "v" * 4000})
        fine = await http.get("/ok", headers={"x-small": "v" * 100})
    body = assert_error(many, 431, "headers_too_large")
    assert body["max_headers"] == 20
    assert_error(large, 431, "headers_too_large")
    assert fine.status_code == 200
    assert many.headers["x-content-type-options"] == "nosniff"


async def test_a_chunked_body_past_the_limit_is_413(app: App) -> None:
    limit = app.services.settings.serve.max_request_bytes

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(limit // 65536 + 2):
            yield b" " * 65536

    async with app.http() as http:
        response = await http.post("/threads", content=chunks())
        declared = await http.post("/threads", content=b"{}", headers={"content-length": "9" * 9})
    assert "content-length" not in response.request.headers  # really chunked
    body = assert_error(response, 413, "payload_too_large")
    assert body["limit"] == limit
    assert_error(declared, 413, "payload_too_large")


async def test_deep_json_is_refused_before_parsing(app: App) -> None:
    key = await app.key("acme")
    depth = app.services.settings.http.max_json_depth
    deep = "[" * 100_000 + "]" * 100_000
    async with app.http(key) as http:
        refused = await http.post(
            "/threads", content=deep, headers={"content-type": "application/json"}
        )
        nested = {"metadata": {"a": _nest(depth - 3)}}
        allowed = await http.post("/threads/search", json=nested)
        too_deep = await http.post("/threads/search", json={"metadata": {"a": _nest(depth)}})
    body = assert_error(refused, 422, "invalid_request")
    assert body["max_depth"] == depth and f"deeper than {depth}" in body["detail"]
    assert allowed.status_code == 200, allowed.text
    assert_error(too_deep, 422, "invalid_request")


def _nest(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value
