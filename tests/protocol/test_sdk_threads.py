"""The SDK's thread calls parsed by our request models and answered with our thread bodies."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, TypedDict

import httpx
import langgraph_sdk
import orjson
from langchain_core.messages import AIMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import StateSnapshot, interrupt
from langgraph_sdk.schema import Thread as SdkThread
from langgraph_sdk.schema import ThreadState as SdkThreadState

from agent_runtime.protocol.agent_protocol import (
    ThreadCreate,
    ThreadPatch,
    ThreadSearch,
    ThreadStateCheckpointRequest,
)
from agent_runtime.protocol.agent_responses import state_to_wire, thread_interrupts, thread_to_wire
from tests.protocol.sdk_recorder import (
    API_KEY,
    WHEN,
    Recorder,
    json_response,
    sdk_client,
    sdk_keys,
    thread_record,
)


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
