"""The Agent Protocol models against the official ``langgraph_sdk`` client.

Every request body here is produced by the SDK itself: its client talks to an
``httpx.MockTransport`` that records the request, parses it with our models and answers
with our wire helpers, so both directions are checked against the SDK's real code.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypedDict

import httpx
import langgraph_sdk
import orjson
import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import Command as LangGraphCommand
from langgraph.types import Send as LangGraphSend
from langgraph.types import StateSnapshot, interrupt
from langgraph_sdk import get_client, get_sync_client
from langgraph_sdk._async.client import LangGraphClient
from langgraph_sdk._sync.client import SyncLangGraphClient
from langgraph_sdk.schema import Assistant as SdkAssistant
from langgraph_sdk.schema import Run as SdkRun
from langgraph_sdk.schema import Thread as SdkThread
from langgraph_sdk.schema import ThreadState as SdkThreadState
from pydantic import ValidationError

from agent_runtime.core.errors import InvalidRequest
from agent_runtime.core.records import AssistantRecord, RunRecord, ThreadRecord
from agent_runtime.protocol.agent_protocol import (
    NAMESPACE_GRAPH,
    AssistantSearch,
    RunCreate,
    ThreadCreate,
    ThreadPatch,
    ThreadSearch,
    ThreadStateCheckpointRequest,
    default_assistant_id,
    normalise_stream_modes,
)
from agent_runtime.protocol.agent_responses import (
    assistant_to_wire,
    dumps,
    run_to_wire,
    state_to_wire,
    thread_interrupts,
    thread_to_wire,
)
from agent_runtime.protocol.sse import error_payload, run_location_headers, to_jsonable

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


class State(TypedDict):
    messages: Annotated[list[Any], add_messages]


async def interrupted_snapshot() -> StateSnapshot:
    """A real LangGraph state paused in an ``interrupt()`` (no LLM involved)."""

    def greet(state: State) -> dict[str, Any]:
        return {"messages": [AIMessage("hello", id="ai-1")]}

    def ask(state: State) -> dict[str, Any]:
        answer = interrupt({"question": "proceed?"})
        return {"messages": [AIMessage(f"got {answer}", id="ai-2")]}

    graph = (
        StateGraph(State)
        .add_node("greet", greet)
        .add_node("ask", ask)
        .add_edge(START, "greet")
        .add_edge("greet", "ask")
        .add_edge("ask", END)
        .compile(checkpointer=InMemorySaver())
    )
    config = {"configurable": {"thread_id": str(uuid.uuid4())}}
    await graph.ainvoke({"messages": [{"role": "user", "content": "hi"}]}, config)
    return await graph.aget_state(config)


async def test_sdk_sends_api_key_and_user_agent() -> None:
    recorder = Recorder(lambda r: json_response(thread_to_wire(thread_record(str(uuid.uuid4())))))
    async with sdk_client(recorder) as client:
        await client.threads.create()
    request = recorder.last
    assert request.headers["x-api-key"] == API_KEY
    assert request.headers["user-agent"] == f"langgraph-sdk-py/{langgraph_sdk.__version__}"
    assert request.headers["content-type"] == "application/json"
    assert request.method == "POST" and request.url.path == "/threads"
    assert recorder.body() == {}
    assert ThreadCreate.model_validate(recorder.body()) == ThreadCreate()


async def test_threads_create_round_trip() -> None:
    thread_id = str(uuid.uuid4())

    def respond(request: httpx.Request) -> httpx.Response:
        body = ThreadCreate.model_validate(orjson.loads(request.content))
        record = thread_record(body.thread_id or "", metadata=body.metadata, graph_id=body.graph_id)
        return json_response(thread_to_wire(record))

    recorder = Recorder(respond)
    async with sdk_client(recorder) as client:
        thread = await client.threads.create(
            metadata={"owner": "ana"}, thread_id=thread_id, if_exists="do_nothing", graph_id="agent"
        )
    body = ThreadCreate.model_validate(recorder.body())
    # The SDK has no top-level graph_id: it travels inside metadata.
    assert "graph_id" not in recorder.body()
    assert body.graph_id == "agent"
    assert body.thread_id == thread_id and body.if_exists == "do_nothing"
    assert sdk_keys(SdkThread) <= set(thread)
    assert thread["thread_id"] == thread_id
    assert thread["metadata"] == {"owner": "ana", "graph_id": "agent"}
    assert thread["status"] == "idle" and thread["interrupts"] == {} and thread["values"] is None
    # orjson's datetime format, as langgraph-api sends it (not pydantic's "Z")
    assert thread["created_at"] == WHEN.isoformat()


async def test_threads_get_update_delete_search() -> None:
    thread_id = str(uuid.uuid4())
    stored = thread_record(thread_id, metadata={"a": 1}, status="interrupted")

    def respond(request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE":
            return httpx.Response(204)
        if request.url.path == "/threads/search":
            return json_response(
                [thread_to_wire(stored.model_copy(update={"state_values": {"messages": []}}))]
            )
        if request.method == "PATCH":
            patch = ThreadPatch.model_validate(orjson.loads(request.content))
            return json_response(
                thread_to_wire(stored.model_copy(update={"metadata": patch.metadata}))
            )
        return json_response(
            thread_to_wire(
                stored.model_copy(
                    update={"state_values": {"messages": []}, "interrupts": {"task-1": []}}
                )
            )
        )

    recorder = Recorder(respond)
    async with sdk_client(recorder) as client:
        fetched = await client.threads.get(thread_id)
        updated = await client.threads.update(thread_id, metadata={"b": 2})
        found = await client.threads.search(metadata={"a": 1}, status="interrupted", limit=5)
        await client.threads.delete(thread_id)

    get, patch, search, delete = recorder.requests
    assert (get.method, get.url.path) == ("GET", f"/threads/{thread_id}")
    assert fetched["status"] == "interrupted" and fetched["interrupts"] == {"task-1": []}
    assert (patch.method, patch.url.path) == ("PATCH", f"/threads/{thread_id}")
    assert ThreadPatch.model_validate(orjson.loads(patch.content)).metadata == {"b": 2}
    assert updated["metadata"] == {"b": 2}
    criteria = ThreadSearch.model_validate(orjson.loads(search.content))
    assert (criteria.metadata, criteria.status, criteria.limit, criteria.offset) == (
        {"a": 1},
        "interrupted",
        5,
        0,
    )
    assert [t["thread_id"] for t in found] == [thread_id]
    assert (delete.method, delete.url.path) == ("DELETE", f"/threads/{thread_id}")


async def test_get_state_three_routes_and_state_shape() -> None:
    snapshot = await interrupted_snapshot()
    wire = state_to_wire(snapshot)
    thread_id = snapshot.config["configurable"]["thread_id"]
    checkpoint_id = snapshot.config["configurable"]["checkpoint_id"]
    recorder = Recorder(lambda r: json_response(wire))
    async with sdk_client(recorder) as client:
        latest = await client.threads.get_state(thread_id)
        await client.threads.get_state(thread_id, checkpoint_id=checkpoint_id)
        await client.threads.get_state(
            thread_id,
            checkpoint={
                "thread_id": thread_id,
                "checkpoint_ns": "",
                "checkpoint_id": checkpoint_id,
            },
        )

    plain, by_id, by_checkpoint = recorder.requests
    assert (plain.method, plain.url.path, plain.url.params["subgraphs"]) == (
        "GET",
        f"/threads/{thread_id}/state",
        "false",
    )
    assert by_id.url.path == f"/threads/{thread_id}/state/{checkpoint_id}"
    assert (by_checkpoint.method, by_checkpoint.url.path) == (
        "POST",
        f"/threads/{thread_id}/state/checkpoint",
    )
    asked = ThreadStateCheckpointRequest.model_validate(orjson.loads(by_checkpoint.content))
    assert asked.checkpoint.checkpoint_id == checkpoint_id and asked.subgraphs is False

    assert sdk_keys(SdkThreadState) <= set(latest)
    assert latest["next"] == ["ask"]
    assert latest["checkpoint"] == {
        "checkpoint_id": checkpoint_id,
        "thread_id": thread_id,
        "checkpoint_ns": "",
    }
    assert latest["parent_checkpoint"]["checkpoint_id"] == latest["parent_checkpoint_id"]
    [pending] = snapshot.interrupts
    assert latest["interrupts"] == [{"id": pending.id, "value": {"question": "proceed?"}}]
    [task] = latest["tasks"]
    assert (task["name"], task["interrupts"], task["state"]) == ("ask", latest["interrupts"], None)
    assert [m["type"] for m in latest["values"]["messages"]] == ["human", "ai"]
    assert thread_interrupts(snapshot) == {task["id"]: latest["interrupts"]}


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


async def test_assistants_get_and_search_default_assistant() -> None:
    record = AssistantRecord(
        tenant_id="acme",
        assistant_id=default_assistant_id("agent"),
        graph_id="agent",
        name="agent",
        description="A helpful agent",
        metadata={"created_by": "system"},
        created_at=WHEN,
        updated_at=WHEN,
    )
    wire = assistant_to_wire(record)

    def respond(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/assistants/search":
            criteria = AssistantSearch.model_validate(orjson.loads(request.content))
            return json_response([wire] if criteria.graph_id == "agent" else [])
        return json_response(wire)

    recorder = Recorder(respond)
    async with sdk_client(recorder) as client:
        fetched = await client.assistants.get(record.assistant_id)
        found = await client.assistants.search(graph_id="agent", limit=3)
    get, search = recorder.requests
    assert get.url.path == f"/assistants/{record.assistant_id}"
    assert AssistantSearch.model_validate(orjson.loads(search.content)).limit == 3
    assert sdk_keys(SdkAssistant) <= set(fetched)
    assert fetched["assistant_id"] == str(uuid.uuid5(NAMESPACE_GRAPH, "agent"))
    assert (fetched["graph_id"], fetched["name"], fetched["version"]) == ("agent", "agent", 1)
    assert fetched["metadata"] == {"created_by": "system"}
    assert fetched["description"] == "A helpful agent" and fetched["config"] == {}
    assert found == [fetched]


def test_default_assistant_id() -> None:
    assert default_assistant_id("agent") == str(uuid.uuid5(NAMESPACE_GRAPH, "agent"))
    assert default_assistant_id("agent") != default_assistant_id("react")


@pytest.mark.parametrize(
    ("model", "payload", "field"),
    [
        (RunCreate, {"assistant_id": "agent", "stream_mode": 5}, "stream_mode"),
        (RunCreate, {"assistant_id": "agent", "stream_mode": ["values", "bogus"]}, "stream_mode"),
        (RunCreate, {"assistant_id": 7}, "assistant_id"),
        (RunCreate, {}, "assistant_id"),
        (RunCreate, {"assistant_id": "a", "multitask_strategy": "later"}, "multitask_strategy"),
        (RunCreate, {"assistant_id": "a", "interrupt_before": "all"}, "interrupt_before"),
        (RunCreate, {"assistant_id": "a", "command": {"goto": {"input": {}}}}, "command.goto"),
        (ThreadCreate, {"if_exists": "overwrite"}, "if_exists"),
        (ThreadCreate, {"metadata": ["not", "a", "dict"]}, "metadata"),
        (ThreadSearch, {"limit": "5"}, "limit"),
        (ThreadSearch, {"limit": 0}, "limit"),
    ],
)
def test_wrong_types_fail_naming_the_field(model: Any, payload: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as raised:
        model.model_validate(payload)
    # The API's 422 names each error by its location (agent_runtime.api.middleware).
    assert ".".join(str(part) for part in raised.value.errors()[0]["loc"]).startswith(field)


def test_unknown_fields_are_ignored() -> None:
    body = RunCreate.model_validate(
        {"assistant_id": "agent", "langsmith_tracer": {"project_name": "p"}, "from_the_future": 1}
    )
    assert body.langsmith_tracer == {"project_name": "p"}
    assert "from_the_future" not in body.model_dump()


def test_config_and_context_follow_the_platform() -> None:
    by_context = RunCreate.model_validate(
        {"assistant_id": "a", "context": {"user": "u1"}, "checkpoint_id": "c1"}
    )
    config, context = by_context.config_and_context()
    assert context == {"user": "u1"}
    assert config["configurable"] == {"user": "u1", "checkpoint_id": "c1"}
    by_config = RunCreate.model_validate(
        {
            "assistant_id": "a",
            "config": {"configurable": {"model": "m"}, "tags": ["x"]},
            "checkpoint": {"checkpoint_ns": "", "checkpoint_id": "c2"},
        }
    )
    config, context = by_config.config_and_context()
    assert context == {"model": "m"} and config["tags"] == ["x"]
    assert config["configurable"] == {"model": "m", "checkpoint_ns": "", "checkpoint_id": "c2"}
    both = RunCreate.model_validate(
        {"assistant_id": "a", "config": {"configurable": {"k": 1}}, "context": {"k": 2}}
    )
    assert "both configurable and context" in (both.semantic_error("t") or "")
    resume = RunCreate.model_validate({"assistant_id": "a", "command": {"resume": "yes"}})
    assert resume.semantic_error(None) == "You must provide a thread_id when resuming."
    assert resume.semantic_error("t") is None


def test_command_update_pairs_become_tuples() -> None:
    body = RunCreate.model_validate(
        {"assistant_id": "a", "command": {"update": [["messages", []], ["n", 1]], "goto": "node"}}
    )
    assert body.command is not None
    command = body.command.to_langgraph()
    assert command.update == [("messages", []), ("n", 1)]
    assert command.goto == ["node"]


def test_normalise_stream_modes() -> None:
    assert normalise_stream_modes(None) == ["values"]
    assert normalise_stream_modes([]) == ["values"]
    assert normalise_stream_modes("updates") == ["updates"]
    assert normalise_stream_modes(["values", "updates", "values"]) == ["values", "updates"]
    with pytest.raises(InvalidRequest, match="stream_mode"):
        normalise_stream_modes(["nope"])


def test_sdk_style_message_dicts_feed_add_messages() -> None:
    """Inputs carry messages as role/type dicts; add_messages turns them into messages,
    and our serialised form goes back in unchanged."""
    added = add_messages(
        [],
        [
            {"role": "user", "content": "hi"},
            {"type": "human", "content": "again"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"name": "calc", "args": {"x": 1}, "id": "c1"}],
            },
            {"role": "tool", "content": "2", "tool_call_id": "c1"},
        ],
    )
    assert [type(m).__name__ for m in added] == [
        "HumanMessage",
        "HumanMessage",
        "AIMessage",
        "ToolMessage",
    ]
    assert [m["type"] for m in to_jsonable(added)] == ["human", "human", "ai", "tool"]
    original = [
        AIMessage("", id="a1", tool_calls=[{"name": "calc", "args": {"x": 1}, "id": "c1"}]),
        ToolMessage("2", tool_call_id="c1", id="t1"),
    ]
    restored = add_messages([], to_jsonable(original))
    # LangChain's dict conversion files the AI message's invalid_tool_calls/usage_metadata
    # under additional_kwargs; everything a model or tool reads comes back the same.
    assert [(type(m), m.id, m.content) for m in restored] == [
        (type(m), m.id, m.content) for m in original
    ]
    assert isinstance(restored[0], AIMessage) and restored[0].tool_calls == original[0].tool_calls
    assert isinstance(restored[1], ToolMessage) and restored[1].tool_call_id == "c1"
