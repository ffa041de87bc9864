"""The request guard alone (agent_runtime/api/hardening.py) around small apps: the JSON depth
scan, and per-route deadlines (ordinary routes, wait routes, streams once started)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from agent_runtime.api.hardening import RequestGuard, json_depth_exceeds, unstorable_text
from agent_runtime.config.http_settings import HttpSettings


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert body["error"] == code and isinstance(body["detail"], str)
    return body


def test_json_depth_counts_only_structure() -> None:
    assert not json_depth_exceeds(b'{"a": "[[[[[[[[[[[[[[[[[[[["}', 3)
    assert not json_depth_exceeds(json.dumps({"s": '\\"[[[[[[[[[[[[\\\\'}).encode(), 3)
    assert json_depth_exceeds(b"[[[[1]]]]", 3)
    assert not json_depth_exceeds(b"[[[1]]]", 3)
    assert not json_depth_exceeds(b"[" + b"[1]," * 10_000 + b"[2]]", 3)
    assert json_depth_exceeds(json.dumps({"k": ["[", {"x": [[[]]]}]}).encode(), 4)


def guarded(app: FastAPI, **http: Any) -> httpx.AsyncClient:
    guard = RequestGuard(app, HttpSettings(**http), max_body_bytes=1_000_000)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=guard), base_url="http://test")


def slow_app(delay_s: float) -> FastAPI:
    app = FastAPI()

    @app.get("/slow")
    async def slow() -> dict[str, bool]:
        await asyncio.sleep(delay_s)
        return {"ok": True}

    @app.post("/runs/wait")
    async def wait() -> dict[str, bool]:
        await asyncio.sleep(delay_s)
        return {"ok": True}

    @app.post("/runs/stream")
    async def stream() -> StreamingResponse:
        async def events() -> AsyncIterator[bytes]:
            for _ in range(3):
                await asyncio.sleep(delay_s)
                yield b"event: values\r\n\r\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


async def test_ordinary_routes_time_out_with_504() -> None:
    async with guarded(slow_app(5.0), request_timeout_s=0.2, wait_timeout_s=10) as http:
        started = asyncio.get_running_loop().time()
        response = await http.get("/slow")
        elapsed = asyncio.get_running_loop().time() - started
    body = assert_error(response, 504, "timeout")
    assert body["timeout_s"] == 0.2
    assert elapsed < 2


async def test_wait_routes_get_the_long_deadline_and_streams_run_on() -> None:
    async with guarded(slow_app(0.3), request_timeout_s=0.1, wait_timeout_s=0.6) as http:
        waited = await http.post("/runs/wait")
        streamed = await http.post("/runs/stream")  # 0.9 s in all, its start within 0.6
    assert waited.status_code == 200
    assert streamed.status_code == 200 and streamed.text.count("event: values") == 3
    async with guarded(slow_app(1.0), request_timeout_s=0.1, wait_timeout_s=0.3) as http:
        late = await http.post("/runs/wait")
    assert_error(late, 504, "timeout")


def test_unstorable_text() -> None:
    # Found by fuzzing: valid JSON that no Postgres text can hold failed queries as 500s.
    assert unstorable_text(json.dumps({"a": "x\u0000"}).encode())
    assert unstorable_text(json.dumps({"\ud800": 1}).encode())
    assert unstorable_text(json.dumps({"a": "\udc00 low first"}).encode())
    assert not unstorable_text(json.dumps({"a": "😀 a pair", "b": "plain"}).encode())
    assert not unstorable_text(json.dumps({"a": "\\u0000 as text"}).encode())


async def test_nul_in_the_url_or_body_is_422() -> None:
    app = FastAPI()

    @app.post("/echo")
    async def echo(body: dict[str, Any]) -> dict[str, Any]:
        return body

    async with guarded(app) as http:
        in_query = await http.post("/echo?tenant_id=a%00b", json={})
        in_body = await http.post(
            "/echo", content=b'{"a": "\\u0000"}', headers={"content-type": "application/json"}
        )
        fine = await http.post("/echo", json={"a": "ok"})
    assert assert_error(in_query, 422, "invalid_request")["field"] == "url"
    assert assert_error(in_body, 422, "invalid_request")["field"] == "body"
    assert fine.json() == {"a": "ok"}
