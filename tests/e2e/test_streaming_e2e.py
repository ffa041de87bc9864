"""Streaming through the official SDK and raw SSE on the Serve stack: every stream mode,
several at once, subgraphs, errors, joins (live and after the end) and reconnects with
``Last-Event-ID``."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from langgraph_sdk.errors import NotFoundError, UnprocessableEntityError

from tests.e2e.support import MISSING, Api, contents, msg, parse_sse, until_status

pytestmark = pytest.mark.e2e

ANSWER = "[fake-fast] You said: hi there"


async def stream(api: Api, thread_id: str | None, **kwargs: Any) -> list[Any]:
    kwargs.setdefault("input", msg("hi there"))
    return [part async for part in api.sdk.runs.stream(thread_id, "memory", **kwargs)]


async def test_each_stream_mode(api: Api) -> None:
    tid = (await api.sdk.threads.create())["thread_id"]

    values = await stream(api, tid, stream_mode="values")
    assert [p.event for p in values] == ["metadata", "values", "values"]
    assert set(values[0].data) == {"run_id", "attempt"} and values[0].data["attempt"] == 1
    assert contents(values[1].data) == ["hi there"]
    assert contents(values[2].data) == ["hi there", ANSWER] and values[2].data["recalled"] == []

    updates = await stream(api, tid, stream_mode="updates")
    assert [p.event for p in updates] == ["metadata", "updates", "updates"]
    assert updates[1].data == {"memorize": None}
    assert contents(updates[2].data["respond"]) == [ANSWER]

    tuples = await stream(api, tid, stream_mode="messages-tuple")
    tokens = [p.data for p in tuples[1:]]
    assert {p.event for p in tuples[1:]} == {"messages"} and len(tokens) > 3
    assert "".join(chunk["content"] for chunk, _ in tokens) == ANSWER
    chunk, metadata = tokens[0]
    assert chunk["type"] == "AIMessageChunk"
    assert metadata["langgraph_node"] == "respond" and metadata["graph_id"] == "memory"

    messages = await stream(api, tid, stream_mode="messages")
    names = [p.event for p in messages]
    assert names[:2] == ["metadata", "messages/metadata"]
    assert set(names[2:]) == {"messages/partial"}
    partials = [p.data[0]["content"] for p in messages[2:]]
    assert partials[-1] == ANSWER and all(ANSWER.startswith(text) for text in partials)
    # Accumulated: each partial extends the one before.
    assert all(b.startswith(a) for a, b in itertools.pairwise(partials))

    # The memory graph writes no custom events: a custom-only stream is just its metadata.
    assert [p.event for p in await stream(api, tid, stream_mode="custom")] == ["metadata"]
    # multi_agent's router reports its choice as one.
    routed = [
        p
        async for p in api.sdk.runs.stream(
            tid, "multi_agent", input=msg("analyze this: what is 6 * 7?"), stream_mode="custom"
        )
    ]
    assert [p.event for p in routed] == ["metadata", "custom"]
    assert routed[1].data["step"] == "router" and routed[1].data["specialist"] == "analysis"

    debug = await stream(api, tid, stream_mode="debug")
    kinds = [p.data["type"] for p in debug[1:]]
    assert kinds[:2] == ["checkpoint", "checkpoint"] and kinds[-1] == "checkpoint"
    assert {"task", "task_result"} <= set(kinds)
    first = debug[1].data["payload"]
    assert first["metadata"]["source"] == "input" and first["checkpoint"]["thread_id"] == tid

    events = await stream(api, tid, stream_mode="events")
    run_id = events[0].data["run_id"]
    assert {p.event for p in events[1:]} == {"events"}
    assert events[1].data["event"] == "on_chain_start" and events[1].data["run_id"] == run_id
    assert events[-1].data["event"] == "on_chain_end"
    kinds = {p.data["event"] for p in events[1:]}
    assert {"on_chat_model_start", "on_chat_model_stream", "on_chat_model_end"} <= kinds
    # The root graph's own stream events are not forwarded.
    assert not any(
        p.data["event"] == "on_chain_stream" and p.data["run_id"] == run_id for p in events[1:]
    )

    tasks = await stream(api, tid, stream_mode="tasks")
    assert [(p.event, p.data["name"]) for p in tasks[1:]] == [
        ("tasks", "memorize"), ("tasks", "memorize"), ("tasks", "respond"), ("tasks", "respond"),
    ]  # fmt: skip
    assert "input" in tasks[1].data and "result" in tasks[2].data
    checkpoints = await stream(api, tid, stream_mode="checkpoints")
    steps = [p.data["metadata"]["step"] for p in checkpoints[1:]]
    assert steps == sorted(steps) and len(steps) == 4
    assert "checkpoint" not in checkpoints[1].data  # unlike debug's payloads


async def test_several_modes_at_once_and_subgraphs(api: Api) -> None:
    tid = (await api.sdk.threads.create())["thread_id"]
    modes = ["values", "updates", "messages-tuple", "custom", "debug"]
    parts = await stream(api, tid, stream_mode=modes)
    names = [p.event for p in parts]
    assert names[0] == "metadata"
    assert set(names) == {"metadata", "values", "updates", "messages", "debug"}
    # Events interleave in the order the graph produced them.
    assert names.index("messages") < names.index("updates", names.index("messages"))
    assert contents([p.data for p in parts if p.event == "values"][-1])[-1] == ANSWER

    # A graph without subgraphs: with stream_subgraphs the events carry no "|" suffix.
    flat = await stream(api, tid, stream_mode=["updates", "values"], stream_subgraphs=True)
    assert [p.event for p in flat] == ["metadata", "values", "updates", "updates", "values"]
    assert not any("|" in p.event for p in flat)
    # multi_agent's analyst is a subgraph: its steps come as updates|analysis:<task>.
    question = msg("analyze this: what is 6 * 7?")
    nested = [
        p
        async for p in api.sdk.runs.stream(
            tid, "multi_agent", input=question, stream_mode="updates", stream_subgraphs=True
        )
    ]
    inner = [p for p in nested if "|" in p.event]
    assert inner and all(p.event.startswith("updates|analysis:") for p in inner)
    assert [next(iter(p.data)) for p in inner] == ["analyze", "tools", "analyze"]
    outer = [next(iter(p.data)) for p in nested if p.event == "updates"]
    assert outer == ["router", "analysis"]
    hidden = [
        p
        async for p in api.sdk.runs.stream(
            tid, "multi_agent", input=question, stream_mode="updates"
        )
    ]
    assert [p.event for p in hidden] == ["metadata", "updates", "updates"]

    with pytest.raises(UnprocessableEntityError):
        await stream(api, tid, stream_mode="bogus")
    with pytest.raises(NotFoundError):
        await stream(api, MISSING)


async def test_raw_sse_framing_and_headers(api: Api) -> None:
    tid = (await api.sdk.threads.create())["thread_id"]
    body = {"assistant_id": "memory", "input": msg("hi there"), "stream_mode": ["updates"]}
    async with api.http.stream("POST", f"/threads/{tid}/runs/stream", json=body) as response:
        raw = await response.aread()
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-accel-buffering"] == "no"
    frames = parse_sse(raw)
    run_id = json.loads(frames[0].data)["run_id"]
    assert response.headers["location"] == f"/threads/{tid}/runs/{run_id}/stream"
    assert response.headers["content-location"] == f"/threads/{tid}/runs/{run_id}"
    assert raw.startswith(b'event: metadata\r\ndata: {"run_id":"')
    assert [f.event for f in frames] == ["metadata", "updates", "updates"]
    # This runtime numbers every event (1, 2, ...), resumable or not; there is no "end".
    assert [f.id for f in frames] == ["1", "2", "3"]
    assert frames[1].data == '{"memorize":null}'  # compact JSON on one line

    stateless = {**body, "stream_mode": "values"}
    async with api.http.stream("POST", "/runs/stream", json=stateless) as response:
        frames = parse_sse(await response.aread())
    run_id = json.loads(frames[0].data)["run_id"]
    assert response.headers["location"] == f"/runs/{run_id}/stream"
    assert [f.event for f in frames] == ["metadata", "values", "values"]

    # Errors before the first event are plain JSON, not a stream.
    rejected = await api.http.post(
        f"/threads/{MISSING}/runs/stream", json={"assistant_id": "memory"}
    )
    assert rejected.status_code == 404 and rejected.headers["content-type"] == "application/json"


async def test_graph_error_ends_the_stream_with_an_error_event(api: Api) -> None:
    tid = (await api.sdk.threads.create())["thread_id"]
    parts = await stream(api, tid, input="not a dict", stream_mode=["values", "updates"])
    assert [p.event for p in parts] == ["metadata", "error"]
    assert parts[1].data["error"] == "InvalidUpdateError"
    assert "Expected dict" in parts[1].data["message"]
    assert (await api.sdk.threads.get(tid))["status"] == "error"


async def test_join_stream_live_and_after_the_end(api: Api) -> None:
    sdk = api.sdk
    tid = (await sdk.threads.create())["thread_id"]
    run = await sdk.runs.create(
        tid, "memory", input=msg("hi [delay:700]"), stream_mode=["values", "updates"]
    )
    # Live: the SDK's plain join_stream (no stream_mode) gets every event of the run.
    live = [p async for p in sdk.runs.join_stream(tid, run["run_id"])]
    assert [p.event for p in live] == ["metadata", "values", "updates", "updates", "values"]
    assert [p.id for p in live] == ["1", "2", "3", "4", "5"]
    assert (await sdk.runs.get(tid, run["run_id"]))["status"] == "success"

    # After the end: background runs keep their events. This runtime replays them all to
    # a join without Last-Event-ID (the Platform sends nothing then); with one, only later.
    replay = [p async for p in sdk.runs.join_stream(tid, run["run_id"])]
    assert [(p.event, p.id) for p in replay] == [(p.event, p.id) for p in live]
    later = [p async for p in sdk.runs.join_stream(tid, run["run_id"], last_event_id="3")]
    assert [(p.event, p.id) for p in later] == [("updates", "4"), ("values", "5")]
    only = [p async for p in sdk.runs.join_stream(tid, run["run_id"], stream_mode="updates")]
    assert [p.event for p in only] == ["metadata", "updates", "updates"]
    several = [
        p
        async for p in sdk.runs.join_stream(
            tid, run["run_id"], stream_mode=["updates", "values"], last_event_id="2"
        )
    ]
    assert [p.id for p in several] == ["3", "4", "5"]

    # Streamed runs keep their events too (a reconnect may reach another replica), so a
    # late join replays them; a wait run executed by its own request keeps none.
    plain = await stream(api, tid)
    plain_id = plain[0].data["run_id"]
    await until_status(api, tid, plain_id, "success")
    replayed = [p async for p in sdk.runs.join_stream(tid, plain_id, last_event_id="1")]
    assert [p.event for p in replayed] == [p.event for p in plain[1:]]
    await sdk.runs.wait(tid, "memory", input=msg("waited"))
    waited = (await sdk.runs.list(tid, limit=1))[0]["run_id"]
    assert [p async for p in sdk.runs.join_stream(tid, waited, last_event_id="0")] == []
    missing = await api.http.get(f"/threads/{tid}/runs/{MISSING}/stream")
    assert missing.status_code == 404
    bad = await api.http.get(
        f"/threads/{tid}/runs/{run['run_id']}/stream", params={"stream_mode": "bogus"}
    )
    assert bad.status_code == 422


async def test_resumable_stream_reconnects_with_last_event_id(api: Api) -> None:
    tid = (await api.sdk.threads.create())["thread_id"]
    body = {
        "assistant_id": "memory",
        "input": msg("hi [delay:700]"),
        "stream_mode": ["values", "updates"],
        "stream_resumable": True,
    }
    raw = b""
    async with api.http.stream("POST", f"/threads/{tid}/runs/stream", json=body) as response:
        location = response.headers["location"]
        async for chunk in response.aiter_bytes():
            raw += chunk
            if raw.count(b"\r\n\r\n") >= 2:
                break  # disconnect after metadata and the input's values
    first = parse_sse(raw)[:2]
    assert [f.event for f in first] == ["metadata", "values"]
    run_id = json.loads(first[0].data)["run_id"]
    # The default on_disconnect is "continue": the run goes on without us.
    rest = await api.http.get(location, headers={"Last-Event-ID": first[-1].id or ""})
    frames = parse_sse(rest.content)
    assert [(f.event, f.id) for f in frames] == [
        ("updates", "3"), ("updates", "4"), ("values", "5"),
    ], rest.content  # fmt: skip
    assert await until_status(api, tid, run_id, "success") == "success"
    assert contents(json.loads(frames[-1].data))[-1] == "[fake-fast] You said: hi [delay:700]"
    everything = await api.http.get(location, headers={"Last-Event-ID": "0"})
    assert [f.event for f in parse_sse(everything.content)] == [
        "metadata", "values", "updates", "updates", "values",
    ]  # fmt: skip


async def test_disconnect_with_on_disconnect_cancel_interrupts_the_run(api: Api) -> None:
    tid = (await api.sdk.threads.create())["thread_id"]
    body = {
        "assistant_id": "memory",
        "input": msg("hi [delay:1500]"),
        "stream_mode": "values",
        "on_disconnect": "cancel",
    }
    raw = b""
    async with api.http.stream("POST", f"/threads/{tid}/runs/stream", json=body) as response:
        async for chunk in response.aiter_bytes():
            raw += chunk
            if raw.count(b"\r\n\r\n") >= 2:
                break
    run_id = json.loads(parse_sse(raw)[0].data)["run_id"]
    assert await until_status(api, tid, run_id, "interrupted", "success") == "interrupted"
    assert (await api.sdk.threads.get(tid))["status"] == "interrupted"
