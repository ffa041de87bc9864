"""Helpers for the end-to-end suites: SDK clients for fresh tenants, polling, SSE parsing.

The e2e stack limits every API key to a burst of 20 requests refilled at 5/s (a test of
its own proves that). Suites that drive the whole API make far more calls than that, so
:func:`open_api` gives a tenant several keys and the clients rotate them per request:
every call is still made as that one tenant, through ``langgraph_sdk.get_client``.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from agent_runtime.db.metadata import MetadataStore
from agent_runtime.tenancy.auth import generate_key

T = TypeVar("T")
KEYS_PER_TENANT = 8
MISSING = "00000000-0000-4000-8000-000000000000"  # a valid UUID nobody uses


@dataclass
class Api:
    """One tenant's clients: the official SDK and raw httpx (for statuses and headers)."""

    tenant_id: str
    api_key: str
    sdk: LangGraphClient
    http: httpx.AsyncClient
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def aclose(self) -> None:
        for close in self.closers:
            await close()


async def open_api(url: str, store: MetadataStore, keys: int = KEYS_PER_TENANT) -> Api:
    """A fresh tenant with ``keys`` API keys, and clients that take turns using them."""
    tenant_id = f"t-{uuid.uuid4().hex[:10]}"
    await store.ensure_tenant(tenant_id, "e2e test tenant")
    raw_keys = []
    for _ in range(keys):
        raw, record = generate_key(tenant_id, name="e2e")
        await store.add_key(record)
        raw_keys.append(raw)
    turns = itertools.cycle(raw_keys)

    async def rotate(request: httpx.Request) -> None:
        request.headers["x-api-key"] = next(turns)

    sdk = get_client(url=url, api_key=raw_keys[0])
    sdk.http.client.event_hooks["request"].append(rotate)
    http = httpx.AsyncClient(
        base_url=url,
        timeout=30.0,
        headers={"x-api-key": raw_keys[0]},
        event_hooks={"request": [rotate]},
    )
    return Api(tenant_id, raw_keys[0], sdk, http, [http.aclose, sdk.aclose])


def msg(text: str) -> dict[str, Any]:
    """A run input of one user message."""
    return {"messages": [{"role": "user", "content": text}]}


def contents(values: dict[str, Any] | None) -> list[str]:
    return [m["content"] for m in (values or {}).get("messages", [])]


async def eventually(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    *,
    timeout_s: float = 15.0,
    interval_s: float = 0.05,
) -> T:
    """Call ``probe`` until ``done`` holds for its answer; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s; last: {value!r}")
        await asyncio.sleep(interval_s)


async def run_status(api: Api, thread_id: str, run_id: str) -> str | None:
    """The run's status, or None once it is gone (404)."""
    response = await api.http.get(f"/threads/{thread_id}/runs/{run_id}")
    if response.status_code == 404:
        return None
    response.raise_for_status()
    status: str = response.json()["status"]
    return status


async def until_status(
    api: Api, thread_id: str, run_id: str, *wanted: str | None, timeout_s: float = 15.0
) -> str | None:
    return await eventually(
        lambda: run_status(api, thread_id, run_id), lambda s: s in wanted, timeout_s=timeout_s
    )


async def until_in_node(api: Api, thread_id: str, node: str) -> dict[str, Any]:
    """Wait until the thread's latest checkpoint says ``node`` runs next (it is running)."""
    return await eventually(
        lambda: api.sdk.threads.get_state(thread_id), lambda s: s["next"] == [node]
    )


@dataclass
class Frame:
    event: str
    data: str
    id: str | None


def parse_sse(raw: bytes) -> list[Frame]:
    """Events of a raw SSE body, checking the framing langgraph-api writes (CRLF,
    ``event``, ``data``, then ``id``); heartbeat comments are skipped."""
    frames = []
    for block in raw.split(b"\r\n\r\n"):
        if not block or block.startswith(b":"):
            continue
        lines = block.decode().split("\r\n")
        assert lines[0].startswith("event: ") and lines[1].startswith("data: "), lines
        event_id = lines[2].removeprefix("id: ") if len(lines) > 2 else None
        assert len(lines) <= 3, lines
        frames.append(Frame(lines[0].removeprefix("event: "), lines[1][6:], event_id))
    return frames
