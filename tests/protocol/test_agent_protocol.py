"""The Agent Protocol's request models: strict types, unknown fields, the Platform's rules."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from langchain_core.messages import AIMessage, ToolMessage
from langgraph.graph.message import add_messages
from pydantic import ValidationError

from agent_runtime.core.errors import InvalidRequest
from agent_runtime.protocol.agent_protocol import (
    NAMESPACE_GRAPH,
    RunCreate,
    ThreadCreate,
    ThreadSearch,
    default_assistant_id,
    normalise_stream_modes,
)
from agent_runtime.protocol.sse import to_jsonable


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
