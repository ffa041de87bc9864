"""A recording transport for the official ``langgraph_sdk`` client, and records to answer with.

Every request body the SDK tests check is produced by the SDK itself: its client talks to
an ``httpx.MockTransport`` that records the request, parses it with our models and answers
with our wire helpers, so both directions are checked against the SDK's real code.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
from langgraph_sdk import get_client
from langgraph_sdk._async.client import LangGraphClient

from agent_runtime.core.records import RunRecord, ThreadRecord
from agent_runtime.protocol.agent_responses import dumps

BASE_URL = "http://agent-runtime.test"
API_KEY = "test-key-123"
WHEN = dt.datetime(2025, 3, 4, 5, 6, 7, 891011, tzinfo=dt.UTC)

Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """MockTransport handler that keeps every request the SDK sent."""

    def __init__(self, respond: Handler) -> None:
        self.respond = respond
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.respond(request)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]

    def body(self, index: int = -1) -> Any:
        return orjson.loads(self.requests[index].content)


@asynccontextmanager
async def sdk_client(recorder: Recorder) -> AsyncIterator[LangGraphClient]:
    """The SDK's async client with its own default headers, on a recording transport."""
    probe = get_client(url=BASE_URL, api_key=API_KEY)
    headers = probe.http.client.headers
    await probe.aclose()
    transport = httpx.MockTransport(recorder)
    client = LangGraphClient(
        httpx.AsyncClient(base_url=BASE_URL, transport=transport, headers=headers)
    )
    try:
        yield client
    finally:
        await client.aclose()


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> httpx.Response:
    return httpx.Response(
        status, content=dumps(body), headers={"content-type": "application/json", **(headers or {})}
    )


def thread_record(thread_id: str, **fields: Any) -> ThreadRecord:
    return ThreadRecord(
        thread_id=thread_id, tenant_id="t1", created_at=WHEN, updated_at=WHEN, **fields
    )


def run_record(run_id: str, thread_id: str | None, **fields: Any) -> RunRecord:
    return RunRecord(
        run_id=run_id,
        thread_id=thread_id,
        tenant_id="t1",
        assistant_id="agent",
        created_at=WHEN,
        updated_at=WHEN,
        **fields,
    )


def sdk_keys(typed_dict: Any) -> set[str]:
    """Keys an SDK TypedDict always has (its annotations are forward references)."""
    return {
        name
        for name, hint in typed_dict.__annotations__.items()
        if not getattr(hint, "__forward_arg__", str(hint)).startswith("NotRequired")
    }
