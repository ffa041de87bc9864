"""The SDK's run calls parsed by our request models and answered with our run bodies."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import orjson
import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.types import Command as LangGraphCommand
from langgraph.types import Send as LangGraphSend
from langgraph_sdk import get_sync_client
from langgraph_sdk._sync.client import SyncLangGraphClient
from langgraph_sdk.schema import Run as SdkRun

from agent_runtime.protocol.agent_protocol import RunCreate
from agent_runtime.protocol.agent_responses import run_to_wire
from agent_runtime.protocol.sse import error_payload, run_location_headers
from tests.protocol.sdk_recorder import (
    API_KEY,
    BASE_URL,
    Recorder,
    json_response,
    run_record,
    sdk_client,
    sdk_keys,
)


async def test_runs_wait_body_and_values() -> None:
    thread_id = str(uuid.uuid4())
    run_id = str(uuid.uuid4())
    values = {"messages": [HumanMessage("hi", id="h1"), AIMessage("hello", id="a1")]}
    recorder = Recorder(
        lambda r: json_response(values, headers=run_location_headers(run_id, thread_id, "wait"))
    )
    async with sdk_client(recorder) as client:
        result = await client.runs.wait(
            thread_id,
            "agent",
            input={"messages": [{"role": "user", "content": "hi"}]},
            metadata={"trace": "x"},
            config={"tags": ["t"], "recursion_limit": 9},
            interrupt_before="*",
            interrupt_after=["tools"],
            multitask_strategy="reject",
            if_not_exists="create",
            on_completion="keep",
            on_disconnect="cancel",
            durability="exit",
            after_seconds=2,
            webhook="https://hooks.example/run",
        )
        await client.runs.wait(None, "agent", input={"messages": []})

    stateful, stateless = recorder.requests
    assert (stateful.method, stateful.url.path) == ("POST", f"/threads/{thread_id}/runs/wait")
    assert stateless.url.path == "/runs/wait"
    # runs.wait sends no stream_mode and drops every None-valued argument
    assert "stream_mode" not in recorder.body(0) and "command" not in recorder.body(0)
    body = RunCreate.model_validate(recorder.body(0))
    assert body.assistant_id == "agent"
    assert body.input == {"messages": [{"role": "user", "content": "hi"}]}
    assert (body.metadata, body.config) == ({"trace": "x"}, {"tags": ["t"], "recursion_limit": 9})
    assert (body.interrupt_before, body.interrupt_after) == ("*", ["tools"])
    assert (body.multitask_strategy, body.if_not_exists) == ("reject", "create")
    assert (body.on_completion, body.on_disconnect, body.effective_durability()) == (
        "keep",
        "cancel",
        "exit",
    )
    assert (body.after_seconds, body.webhook, body.stream_modes) == (
        2,
        "https://hooks.example/run",
        ["values"],
    )
    defaults = RunCreate.model_validate(recorder.body(1))
    assert (defaults.multitask_strategy, defaults.if_not_exists, defaults.on_disconnect) == (
        "enqueue",
        "reject",
        "continue",
    )
    assert defaults.effective_on_completion(stateless=True) == "delete"
    assert defaults.effective_durability() == "async"
    assert result == {"messages": [m.model_dump() for m in values["messages"]]}


async def test_sync_client_sends_the_same_wire() -> None:
    def respond(request: httpx.Request) -> httpx.Response:
        return json_response({"ok": True})

    kwargs: dict[str, Any] = {
        "input": {"messages": [{"role": "user", "content": "hi"}]},
        "command": {"resume": "yes"},
        "metadata": {"a": 1},
        "interrupt_before": ["tools"],
        "multitask_strategy": "interrupt",
    }
    async_recorder, sync_recorder = Recorder(respond), Recorder(respond)
    async with sdk_client(async_recorder) as client:
        await client.runs.wait("t-1", "agent", **kwargs)
    probe = get_sync_client(url=BASE_URL, api_key=API_KEY)
    headers = probe.http.client.headers
    probe.close()
    transport = httpx.MockTransport(sync_recorder)
    sync = SyncLangGraphClient(
        httpx.Client(base_url=BASE_URL, transport=transport, headers=headers)
    )
    try:
        sync.runs.wait("t-1", "agent", **kwargs)
    finally:
        sync.close()
    assert sync_recorder.body() == async_recorder.body()
    assert sync_recorder.last.url == async_recorder.last.url
    assert sync_recorder.last.headers["x-api-key"] == API_KEY
    sent = RunCreate.model_validate(sync_recorder.body())
    assert sent.command is not None and sent.command.to_langgraph().resume == "yes"


async def test_runs_wait_error_body_and_raise_error() -> None:
    failure = {"__error__": error_payload(ValueError("boom"))}
    recorder = Recorder(lambda r: json_response(failure))
    async with sdk_client(recorder) as client:
        with pytest.raises(Exception, match=r"^ValueError: boom$"):
            await client.runs.wait(None, "agent", input={})
        kept = await client.runs.wait(None, "agent", input={}, raise_error=False)
    assert kept == {"__error__": {"error": "ValueError", "message": "boom"}}


async def test_runs_create_get_list_join() -> None:
    thread_id = str(uuid.uuid4())
    run_id = str(uuid.uuid4())
    run = run_record(run_id, thread_id, metadata={"m": 1})

    def respond(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/join"):
            return json_response(
                {"messages": []}, headers=run_location_headers(run_id, thread_id, "wait")
            )
        if path.endswith("/runs") and request.method == "GET":
            return json_response([run_to_wire(run)])
        headers = (
            run_location_headers(run_id, thread_id, "create") if request.method == "POST" else {}
        )
        enqueued = run.model_copy(update={"multitask_strategy": "enqueue"})
        return json_response(run_to_wire(enqueued), headers=headers)

    created_meta: list[Any] = []
    recorder = Recorder(respond)
    async with sdk_client(recorder) as client:
        created = await client.runs.create(
            thread_id,
            "agent",
            input={"messages": []},
            command={"resume": "yes", "goto": {"node": "ask", "input": {"x": 1}}},
            stream_mode=["values", "messages-tuple"],
            on_run_created=created_meta.append,
        )
        fetched = await client.runs.get(thread_id, run_id)
        listed = await client.runs.list(thread_id, status="success")
        joined = await client.runs.join(thread_id, run_id)

    create, get, list_, join = recorder.requests
    body = RunCreate.model_validate(orjson.loads(create.content))
    assert create.url.path == f"/threads/{thread_id}/runs"
    assert (body.stream_modes, body.stream_subgraphs, body.stream_resumable) == (
        ["values", "messages-tuple"],
        False,
        False,
    )
    command = body.command
    assert command is not None
    converted = command.to_langgraph()
    assert isinstance(converted, LangGraphCommand)
    assert converted.resume == "yes" and converted.goto == [LangGraphSend("ask", {"x": 1})]
    assert created_meta == [{"run_id": run_id, "thread_id": thread_id}]
    assert sdk_keys(SdkRun) <= set(created)
    assert created["multitask_strategy"] == "enqueue" and created["kwargs"] == {}
    assert fetched == created and get.url.path == f"/threads/{thread_id}/runs/{run_id}"
    assert dict(list_.url.params) == {"limit": "10", "offset": "0", "status": "success"}
    assert [r["run_id"] for r in listed] == [run_id]
    assert (join.method, join.url.path, joined) == (
        "GET",
        f"/threads/{thread_id}/runs/{run_id}/join",
        {"messages": []},
    )
