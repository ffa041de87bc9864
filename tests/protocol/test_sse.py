"""SSE bytes and JSON, read back by the official SDK's own decoder and client."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import decimal
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypedDict

import httpx
import orjson
import pydantic
import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import Interrupt, interrupt
from langgraph_sdk import get_client
from langgraph_sdk._async.client import LangGraphClient
from langgraph_sdk._shared.utilities import (
    _get_run_metadata_from_response,
    _run_url_from_stream_location,
)
from langgraph_sdk.schema import StreamPart
from langgraph_sdk.sse import BytesLineDecoder, SSEDecoder

from agent_runtime.core.records import RunRecord
from agent_runtime.protocol.agent_protocol import RunCreate
from agent_runtime.protocol.agent_responses import run_to_wire
from agent_runtime.protocol.sse import (
    HEARTBEAT,
    SSE_MEDIA_TYPE,
    StreamTranslator,
    encode_event,
    error_payload,
    json_dumpb,
    metadata_payload,
    run_location_headers,
    sse_headers,
    to_jsonable,
)

BASE_URL = "http://agent-runtime.test"


def decode(stream: bytes, chunk_size: int | None = None) -> list[StreamPart]:
    """Parse bytes exactly as the SDK does, optionally fed in small pieces."""
    lines = BytesLineDecoder()
    events = SSEDecoder()
    pieces = (
        [stream]
        if chunk_size is None
        else [stream[i : i + chunk_size] for i in range(0, len(stream), chunk_size)]
    )
    parts: list[StreamPart] = []
    raw = [line for piece in pieces for line in lines.decode(piece)] + lines.flush()
    for line in [*raw, b""]:
        part = events.decode(line=bytes(line).rstrip(b"\n"))
        if part is not None and (part.event or events.has_data):
            parts.append(part)
    return parts


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


@dataclasses.dataclass
class Point:
    x: int
    _hidden: int = 0


class Reply(pydantic.BaseModel):
    answer: str


Pair = collections.namedtuple("Pair", "left right")


def rich_sample() -> dict[Any, Any]:
    return {
        "messages": [
            HumanMessage("hi", id="h"),
            AIMessage("", id="a", tool_calls=[{"name": "calc", "args": {"x": 1}, "id": "c1"}]),
            ToolMessage("2", tool_call_id="c1", id="t"),
            AIMessageChunk("par", id="k"),
        ],
        "interrupts": [
            Interrupt(value={"q": 1}, id="i"),
            Interrupt(value="v", id="j", response_schema=Reply),
        ],
        "when": dt.datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC),
        "day": dt.date(2025, 1, 2),
        "naive": dt.datetime(2025, 1, 2, 3, 4, 5),
        "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "tags": {"only"},
        "pair": Pair(1, 2),
        "tuple": (1, "two"),
        "point": Point(3),
        "error": ValueError("nope"),
        "money": decimal.Decimal("1.50"),
        "count": decimal.Decimal("3"),
        "span": dt.timedelta(seconds=90),
        "raw": b"\x00\x01",
        "nan": float("nan"),
        "nul": "a\x00b",
        "opaque": object(),
        1: "int key",
        None: "none key",
    }


def test_to_jsonable_matches_the_encoder() -> None:
    sample = rich_sample()
    assert to_jsonable(sample) == orjson.loads(json_dumpb(sample))


def test_to_jsonable_shapes() -> None:
    out = to_jsonable(rich_sample())
    human, ai, tool, chunk = out["messages"]
    sample_messages = rich_sample()["messages"]
    assert [human, ai, tool, chunk] == [to_jsonable(m.model_dump()) for m in sample_messages]
    assert set(human) == {"content", "additional_kwargs", "response_metadata", "type", "name", "id"}
    assert ai["tool_calls"] == [{"name": "calc", "args": {"x": 1}, "id": "c1", "type": "tool_call"}]
    assert (tool["type"], tool["tool_call_id"], chunk["type"]) == ("tool", "c1", "AIMessageChunk")
    plain, typed = out["interrupts"]
    assert plain == {"value": {"q": 1}, "id": "i", "response_schema": None}
    assert typed["response_schema"] == Reply.model_json_schema()
    when = rich_sample()["when"]
    assert out["when"] == orjson.loads(orjson.dumps(when)) == "2025-01-02T03:04:05.000006+00:00"
    assert (out["day"], out["naive"]) == ("2025-01-02", "2025-01-02T03:04:05")
    assert out["id"] == "12345678-1234-5678-1234-567812345678"
    assert (out["tags"], out["pair"], out["tuple"], out["point"]) == (
        ["only"],
        {"left": 1, "right": 2},
        [1, "two"],
        {"x": 3},
    )
    assert out["error"] == {"error": "ValueError", "message": "nope"}
    assert (out["money"], out["count"], out["span"]) == (1.5, 3, 90.0)
    assert (out["raw"], out["nan"], out["nul"], out["opaque"]) == ("AAE=", None, "ab", None)
    assert (out["1"], out["null"]) == ("int key", "none key")


class State(TypedDict):
    messages: Annotated[list[Any], add_messages]


def build_graph() -> Any:
    def greet(state: State) -> dict[str, Any]:
        return {"messages": [AIMessage("hello", id="ai-1")]}

    def ask(state: State) -> dict[str, Any]:
        answer = interrupt({"question": "proceed?"})
        return {"messages": [AIMessage(f"got {answer}", id="ai-2")]}

    inner = (
        StateGraph(State)
        .add_node("greet", greet)
        .add_edge(START, "greet")
        .add_edge("greet", END)
        .compile()
    )
    return (
        StateGraph(State)
        .add_node("inner", inner)
        .add_node("ask", ask)
        .add_edge(START, "inner")
        .add_edge("inner", "ask")
        .add_edge("ask", END)
        .compile(checkpointer=InMemorySaver())
    )


async def translated(modes: list[str], subgraphs: bool = False) -> list[StreamPart]:
    """Run the graph to its interrupt and return what the SDK would parse from our SSE."""
    graph = build_graph()
    translator = StreamTranslator(modes, subgraphs=subgraphs)
    config = {"configurable": {"thread_id": str(uuid.uuid4())}}
    stream = b""
    async for namespace, mode, chunk in graph.astream(
        {"messages": [{"role": "user", "content": "hi"}]},
        config,
        stream_mode=translator.graph_stream_modes(),
        subgraphs=True,
    ):
        for event, data in translator.translate(mode, chunk, namespace):
            stream += encode_event(event, data)
    return decode(stream)


def test_graph_stream_modes() -> None:
    assert StreamTranslator(["values"]).graph_stream_modes() == ["values"]
    modes = StreamTranslator(["messages-tuple", "custom", "events", "debug"]).graph_stream_modes()
    assert modes == ["custom", "debug", "messages"]


async def test_interrupt_travels_inside_values() -> None:
    parts = await translated(["values"])
    assert {p.event for p in parts} == {"values"}
    pending = [p.data["__interrupt__"] for p in parts if "__interrupt__" in p.data]
    expected = {"value": {"question": "proceed?"}, "id": pending[0][0]["id"]}
    assert pending and all(i == [{**expected, "response_schema": None}] for i in pending)
    assert [m["type"] for m in parts[-1].data["messages"]] == ["human", "ai"]


async def test_interrupt_goes_to_updates_when_asked_and_subgraphs_are_named() -> None:
    parts = await translated(["updates", "messages-tuple"], subgraphs=True)
    updates = [p.data for p in parts if p.event == "updates"]
    assert any("__interrupt__" in u for u in updates)
    assert not [p for p in parts if p.event.startswith("values")]
    inner = [p for p in parts if p.event.startswith("messages|")]
    assert inner and all(p.event.split("|")[1].startswith("inner:") for p in inner)
    message, meta = inner[0].data
    assert (message["type"], message["content"], meta["langgraph_node"]) == ("ai", "hello", "greet")


async def test_subgraph_events_keep_plain_names_without_stream_subgraphs() -> None:
    parts = await translated(["messages-tuple"], subgraphs=False)
    # The inner graph's LLM message; as in langgraph-api, no event re-emits the interrupt.
    assert [p.event for p in parts] == ["messages"]
    assert parts[0].data[0]["content"] == "hello"


async def test_subgraph_updates_are_left_out_without_stream_subgraphs() -> None:
    parts = await translated(["updates"], subgraphs=False)
    # Only the parent's nodes: the inner graph as one node, then the interrupt.
    assert [list(p.data) for p in parts] == [["inner"], ["__interrupt__"]]
    with_subgraphs = await translated(["updates"], subgraphs=True)
    assert [p.event.split("|")[0] for p in with_subgraphs] == ["updates"] * 3
    assert "greet" in with_subgraphs[0].data


def test_messages_mode_accumulates_chunks() -> None:
    translator = StreamTranslator(["messages"])
    meta = {"langgraph_node": "agent"}
    first = translator.translate("messages", (AIMessageChunk("Hel", id="m1"), meta))
    second = translator.translate("messages", (AIMessageChunk("lo", id="m1"), meta))
    done = translator.translate("messages", (ToolMessage("42", tool_call_id="c", id="m2"), meta))
    assert [e for e, _ in first] == ["messages/metadata", "messages/partial"]
    assert first[0][1] == {"m1": {"metadata": meta}}
    [(event, [message])] = second
    assert (event, message.type, message.content) == ("messages/partial", "ai", "Hello")
    assert [e for e, _ in done] == ["messages/metadata", "messages/complete"]
    parsed = decode(b"".join(encode_event(e, d) for e, d in first + second + done))
    assert parsed[2].data[0]["content"] == "Hello" and parsed[2].data[0]["type"] == "ai"


def test_debug_checkpoints_gain_checkpoint_keys() -> None:
    payload = {
        "config": {"configurable": {"thread_id": "t", "checkpoint_ns": "", "checkpoint_id": "c2"}},
        "parent_config": {
            "configurable": {"thread_id": "t", "checkpoint_ns": "", "checkpoint_id": "c1"}
        },
        "values": {},
        "metadata": {},
        "next": ["n"],
        "tasks": [
            {
                "id": "x",
                "name": "n",
                "interrupts": [],
                "state": {"configurable": {"checkpoint_ns": "n:x"}},
            }
        ],
    }
    [(event, data)] = StreamTranslator(["debug"]).translate(
        "debug", {"type": "checkpoint", "payload": payload}
    )
    assert event == "debug"
    assert data["payload"]["checkpoint"] == {
        "checkpoint_id": "c2",
        "thread_id": "t",
        "checkpoint_ns": "",
    }
    assert data["payload"]["parent_checkpoint"]["checkpoint_id"] == "c1"
    assert data["payload"]["tasks"] == [
        {"id": "x", "name": "n", "interrupts": [], "checkpoint": {"checkpoint_ns": "n:x"}}
    ]


@pytest.mark.parametrize("mode", ["events", "tools", "lifecycle"])
def test_server_side_modes_produce_nothing_from_graph_parts(mode: str) -> None:
    translator = StreamTranslator([mode])
    assert mode not in translator.graph_stream_modes()
    assert translator.translate("values", {"a": 1}) == []
