"""SSE bytes and JSON, read back by the official SDK's own decoder and client."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage
from langgraph.types import Interrupt
from langgraph_sdk import get_client
from langgraph_sdk._async.client import LangGraphClient
from langgraph_sdk._shared.utilities import (
    _get_run_metadata_from_response,
    _run_url_from_stream_location,
)
from langgraph_sdk.schema import StreamPart

from agent_runtime.core.records import RunRecord
from agent_runtime.protocol.agent_protocol import RunCreate
from agent_runtime.protocol.agent_responses import run_to_wire
from agent_runtime.protocol.sse import (
    HEARTBEAT,
    SSE_MEDIA_TYPE,
    encode_event,
    error_payload,
    event_number,
    json_dumpb,
    metadata_payload,
    run_location_headers,
    sse_headers,
    to_jsonable,
    with_heartbeats,
)
from tests.protocol.sse_decoder import decode

BASE_URL = "http://agent-runtime.test"


def test_encode_event_is_read_back_by_the_sdk_decoder() -> None:
    data = {"messages": [AIMessage("héllo ✓", id="a1").model_dump()], "n": 1}
    stream = (
        encode_event("metadata", metadata_payload("run-1"))
        + encode_event("values", data, "1")
        + HEARTBEAT
        + encode_event("updates", {"node": {"k": [1, 2]}}, "2")
    )
    assert stream.startswith(b"event: metadata\r\ndata: {")
    expected = [
        StreamPart("metadata", {"run_id": "run-1", "attempt": 1}, None),
        StreamPart("values", to_jsonable(data), "1"),
        StreamPart("updates", {"node": {"k": [1, 2]}}, "2"),
    ]
    assert decode(stream) == expected
    for size in (1, 2, 3, 7, 64):
        assert decode(stream, size) == expected


def test_event_and_id_cannot_break_the_framing() -> None:
    stream = encode_event("custom\r\nevent: forged", {"x": "a\nb"}, "7\n8")
    assert decode(stream) == [StreamPart("customevent: forged", {"x": "a\nb"}, "78")]


def test_preencoded_bytes_pass_through() -> None:
    body = json_dumpb({"a": [1, 2]})
    assert encode_event("values", body) == encode_event("values", {"a": [1, 2]})


def test_error_event_payload() -> None:
    [part] = decode(encode_event("error", error_payload(ValueError("bad input")), "9"))
    assert part == StreamPart("error", {"error": "ValueError", "message": "bad input"}, "9")
    # An exception handed straight to the encoder takes the same shape (langgraph-api's default).
    assert decode(encode_event("error", KeyError("k")))[0].data == error_payload(KeyError("k"))


def test_run_location_headers_are_understood_by_the_sdk() -> None:
    stateful = run_location_headers("r1", "t1", "stream")
    assert stateful == {
        "Location": "/threads/t1/runs/r1/stream",
        "Content-Location": "/threads/t1/runs/r1",
    }
    response = httpx.Response(200, headers=stateful)
    assert _get_run_metadata_from_response(response) == {"run_id": "r1", "thread_id": "t1"}
    assert _run_url_from_stream_location(stateful["Location"]) == "/threads/t1/runs/r1"
    stateless = httpx.Response(200, headers=run_location_headers("r2", None, "stream"))
    assert _get_run_metadata_from_response(stateless) == {"run_id": "r2", "thread_id": None}
    assert run_location_headers("r3", "t3", "wait")["Location"] == "/threads/t3/runs/r3/join"
    assert run_location_headers("r4", None, "create") == {"Content-Location": "/runs/r4"}


@asynccontextmanager
async def sdk_client(transport: httpx.MockTransport) -> AsyncIterator[LangGraphClient]:
    probe = get_client(url=BASE_URL, api_key="k")
    headers = probe.http.client.headers
    await probe.aclose()
    client = LangGraphClient(
        httpx.AsyncClient(base_url=BASE_URL, transport=transport, headers=headers)
    )
    try:
        yield client
    finally:
        await client.aclose()


def sse_response(body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(
        200,
        content=body,
        headers={
            "content-type": f"{SSE_MEDIA_TYPE}; charset=utf-8",
            **sse_headers(),
            **(headers or {}),
        },
    )


def run_wire(run_id: str, thread_id: str, status: Any) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    record = RunRecord(
        run_id=run_id,
        thread_id=thread_id,
        tenant_id="t",
        assistant_id="agent",
        status=status,
        created_at=now,
        updated_at=now,
    )
    return run_to_wire(record)


async def test_runs_stream_through_the_sdk_v1_and_v2() -> None:
    interrupt_value = Interrupt(value={"q": "ok?"}, id="i-1")
    values = {"messages": [HumanMessage("hi", id="h1")], "__interrupt__": (interrupt_value,)}
    body = (
        encode_event("metadata", metadata_payload("run-9"))
        + encode_event("values", values)
        + encode_event("messages", [AIMessageChunk("he", id="a1"), {"langgraph_node": "agent"}])
        + encode_event("error", error_payload(RuntimeError("provider down")))
    )
    requests: list[httpx.Request] = []

    def respond(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return sse_response(body)

    async with sdk_client(httpx.MockTransport(respond)) as client:
        parts = [
            p
            async for p in client.runs.stream(
                None, "agent", input={"messages": []}, stream_mode=["values", "messages-tuple"]
            )
        ]
        v2 = [p async for p in client.runs.stream(None, "agent", input={}, version="v2")]

    sent = RunCreate.model_validate(orjson.loads(requests[0].content))
    assert requests[0].url.path == "/runs/stream"
    assert requests[0].headers["accept"] == SSE_MEDIA_TYPE
    assert sent.stream_modes == ["values", "messages-tuple"] and sent.stream_subgraphs is False
    assert [p.event for p in parts] == ["metadata", "values", "messages", "error"]
    assert parts[0].data == {"run_id": "run-9", "attempt": 1}
    # In events, as langgraph-api encodes the dataclass: response_schema is there, null.
    assert parts[1].data["__interrupt__"] == [
        {"value": {"q": "ok?"}, "id": "i-1", "response_schema": None}
    ]
    assert parts[1].data["messages"] == [HumanMessage("hi", id="h1").model_dump()]
    message, meta = parts[2].data
    assert (message["type"], message["content"], meta) == (
        "AIMessageChunk",
        "he",
        {"langgraph_node": "agent"},
    )
    assert parts[3].data == {"error": "RuntimeError", "message": "provider down"}
    # v2 splits the interrupts out of the values, as the SDK documents
    assert v2[1]["type"] == "values" and v2[1]["interrupts"] == [
        {"value": {"q": "ok?"}, "id": "i-1", "response_schema": None}
    ]
    assert "__interrupt__" not in v2[1]["data"]


async def test_stream_reconnects_to_location_with_last_event_id() -> None:
    """A stream cut while the run still runs is resumed at ``Location``; the SDK learns
    that by asking the run, so the run must be terminal before a finished stream closes."""
    thread_id, run_id = str(uuid.uuid4()), str(uuid.uuid4())
    headers = run_location_headers(run_id, thread_id, "stream")
    requests: list[httpx.Request] = []

    def respond(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        if request.method == "POST":
            return sse_response(
                encode_event("metadata", metadata_payload(run_id), "1")
                + encode_event("values", {"n": 1}, "2"),
                headers,
            )
        if request.url.path == f"/threads/{thread_id}/runs/{run_id}":
            status = "running" if len(requests) == 2 else "success"
            return httpx.Response(200, json=run_wire(run_id, thread_id, status))
        return sse_response(encode_event("values", {"n": 2}, "3"), headers)

    async with sdk_client(httpx.MockTransport(respond)) as client:
        parts = [p async for p in client.runs.stream(thread_id, "agent", input={})]

    assert [(p.event, p.id) for p in parts] == [("metadata", "1"), ("values", "2"), ("values", "3")]
    methods = [(r.method, r.url.path) for r in requests]
    assert methods == [
        ("POST", f"/threads/{thread_id}/runs/stream"),
        ("GET", f"/threads/{thread_id}/runs/{run_id}"),
        ("GET", f"/threads/{thread_id}/runs/{run_id}/stream"),
        ("GET", f"/threads/{thread_id}/runs/{run_id}"),
    ]
    assert requests[2].headers["last-event-id"] == "2"


def test_event_numbers_are_ascii_digits_only() -> None:
    assert event_number("42") == 42
    for text in ("²", "٣", "-1", "1.5", "", "9" * 19, "abc"):
        assert event_number(text) is None, text


async def _quiet() -> AsyncIterator[bytes]:
    """A stream with one event, then silence (a thread with no run)."""
    yield b"first"
    await asyncio.Event().wait()
    yield b"never"


async def test_heartbeats_end_when_told_or_past_their_lifetime() -> None:
    stop = asyncio.Event()
    seen: list[bytes] = []
    heard = asyncio.Event()

    async def read() -> None:
        async for frame in with_heartbeats(_quiet(), interval_s=0.02, until=stop):
            seen.append(frame)
            if frame == HEARTBEAT:
                heard.set()

    async with asyncio.timeout(5):
        reader = asyncio.ensure_future(read())
        await heard.wait()
        stop.set()
        await reader  # ended by itself, no error
        lived = [f async for f in with_heartbeats(_quiet(), interval_s=60, max_s=0.1)]
    assert seen[0] == b"first" and set(seen[1:]) == {HEARTBEAT}
    assert lived == [b"first"]
