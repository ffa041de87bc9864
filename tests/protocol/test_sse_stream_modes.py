"""Graph stream parts translated into each stream mode's SSE events, as the SDK reads them."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import interrupt
from langgraph_sdk.schema import StreamPart

from agent_runtime.protocol.sse import StreamTranslator, encode_event
from tests.protocol.sse_decoder import decode


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
