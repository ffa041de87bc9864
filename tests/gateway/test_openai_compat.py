"""OpenAI wire format <-> router types, checked against the openai package's own models.

Requests, answers, model listings and errors here; streamed chunks in
test_openai_compat_stream.py; the end-to-end cases, which run the real ``ModelRouter``
against the fake provider so the chunks and results converted are the ones ``ChatOpenAI``
really produces, in test_openai_compat_router.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from openai.types import Model
from openai.types.chat import ChatCompletion as OpenAIChatCompletion
from pydantic import ValidationError

from agent_runtime.core.errors import ProviderChainExhausted, RateLimited
from agent_runtime.core.types import ChatResult, TokenUsage
from agent_runtime.gateway.openai_compat import (
    completion_response,
    field_path,
    models_response,
    new_completion_id,
    runtime_error_body,
    to_chat_request,
    validation_error_body,
)
from tests.gateway.chat_bodies import CREATED, MISSING, body
from tests.tool_specs import CALCULATOR

# -- request ---------------------------------------------------------------------------


def test_messages_of_every_role_become_langchain_messages() -> None:
    request = to_chat_request(
        body(
            messages=[
                {"role": "system", "content": "be brief"},
                {
                    "role": "user",
                    "name": "ada",
                    "content": [
                        {"type": "text", "text": "what is 2 + 2?"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}},
                    ],
                },
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {
                                "name": "calculator",
                                "arguments": '{"expression": "2+2"}',
                            },
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "4"},
            ]
        ),
        tenant_id="t-1",
    )
    system, user, assistant, tool = request.messages
    assert isinstance(system, SystemMessage) and system.content == "be brief"
    assert isinstance(user, HumanMessage) and user.name == "ada"
    assert user.content == [
        {"type": "text", "text": "what is 2 + 2?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}},
    ]
    assert isinstance(assistant, AIMessage) and assistant.content == ""
    assert assistant.tool_calls == [
        {"name": "calculator", "args": {"expression": "2+2"}, "id": "call_1", "type": "tool_call"}
    ]
    assert isinstance(tool, ToolMessage)
    assert (tool.tool_call_id, tool.content) == ("call_1", "4")
    assert request.tenant_id == "t-1"
    assert request.alias == "fast"


def test_sampling_options_and_tools_are_passed_through() -> None:
    named = {"type": "function", "function": {"name": "calculator"}}
    request = to_chat_request(
        body(
            tools=[CALCULATOR],
            tool_choice=named,
            temperature=0.2,
            max_tokens=10,
            max_completion_tokens=20,
            stop="END",
            seed=7,  # unsupported OpenAI fields are ignored, not refused
        )
    )
    assert request.tools == [CALCULATOR]
    assert request.tool_choice == named
    assert request.temperature == 0.2
    assert request.max_tokens == 20  # the newer name wins
    assert request.stop == ["END"]
    plain = to_chat_request(body(max_tokens=10, stop=["a", "b"], tools=[CALCULATOR]))
    assert (plain.max_tokens, plain.stop, plain.tool_choice) == (10, ["a", "b"], None)
    assert to_chat_request(body(tools=[CALCULATOR], tool_choice="required")).tool_choice == (
        "required"
    )


def invalid(**fields: Any) -> dict[str, Any]:
    with pytest.raises(ValidationError) as raised:
        body(**fields)
    error: dict[str, Any] = validation_error_body(raised.value.errors()).model_dump()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith(f"invalid request: {error['param']}: ")
    return error


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"messages": MISSING}, "messages"),
        ({"messages": []}, "messages"),
        ({"model": ""}, "model"),
        ({"messages": [{"role": "user"}]}, "messages.0.content"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages.0"),
        ({"messages": [{"role": "assistant"}]}, "messages.0"),
        ({"messages": [{"role": "tool", "content": "4"}]}, "messages.0.tool_call_id"),
        ({"messages": [{"role": "user", "content": [{"type": "video"}]}]}, "messages.0.content"),
        ({"temperature": 3}, "temperature"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"n": 2}, "n"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"tools": [{"type": "function", "function": {"name": "bad name"}}]}, "tools.0"),
        ({"tool_choice": "auto"}, "tool_choice"),
    ],
)
def test_malformed_bodies_name_the_field(fields: dict[str, Any], param: str) -> None:
    error = invalid(**fields)
    assert error["param"].startswith(param)
    assert error["code"] == "invalid_request"


def test_tool_call_arguments_must_be_a_json_object() -> None:
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1, 2]"}}
    error = invalid(messages=[{"role": "assistant", "tool_calls": [call]}])
    assert error["param"] == "messages.0.tool_calls.0.function.arguments"
    assert "JSON object" in error["message"]


def test_named_tool_choice_must_be_offered() -> None:
    choice = {"type": "function", "function": {"name": "current_time"}}
    error = invalid(tools=[CALCULATOR], tool_choice=choice)
    assert error["param"] == "tool_choice"
    assert "'current_time' is not among the tools" in error["message"]


def test_field_path_drops_the_body_and_the_role_tag() -> None:
    assert field_path(("body", "messages", 2, "user", "content", 0)) == "messages.2.content.0"
    assert field_path(("body", "tools", 0, "function", "name")) == "tools.0.function.name"
    assert field_path(("body",)) == "body"


# -- response --------------------------------------------------------------------------


def result(message: AIMessage, model: str = "fake-fast") -> ChatResult:
    return ChatResult(
        message=message,
        model=model,
        usage=TokenUsage(input_tokens=7, output_tokens=3),
        provider_ms=1.0,
    )


def test_text_answer_is_a_chat_completion() -> None:
    completion_id = new_completion_id()
    completion = completion_response(result(AIMessage(content="hi there")), completion_id, CREATED)
    parsed = OpenAIChatCompletion.model_validate(completion.model_dump())
    assert parsed.id == completion_id and completion_id.startswith("chatcmpl-")
    assert (parsed.object, parsed.created, parsed.model) == (
        "chat.completion",
        CREATED,
        "fake-fast",
    )
    choice = parsed.choices[0]
    assert (choice.message.role, choice.message.content) == ("assistant", "hi there")
    assert choice.message.tool_calls is None
    assert choice.finish_reason == "stop"
    assert parsed.usage is not None
    assert (parsed.usage.prompt_tokens, parsed.usage.completion_tokens) == (7, 3)
    assert parsed.usage.total_tokens == 10


def test_length_finish_reason_and_content_blocks_survive() -> None:
    message = AIMessage(
        content=[{"type": "text", "text": "cut "}, {"type": "text", "text": "short"}],
        response_metadata={"finish_reason": "length"},
    )
    choice = completion_response(result(message), "chatcmpl-x", CREATED).choices[0]
    assert (choice.message.content, choice.finish_reason) == ("cut short", "length")


def test_tool_calls_round_trip_through_the_openai_format() -> None:
    original = AIMessage(
        content="",
        tool_calls=[
            {"name": "calculator", "args": {"expression": "2 + 3"}, "id": "call_a"},
            {"name": "lookup", "args": {"terms": ["x", "y"], "limit": 2}, "id": "call_b"},
        ],
    )
    completion = completion_response(result(original), "chatcmpl-x", CREATED)
    parsed = OpenAIChatCompletion.model_validate(completion.model_dump())
    choice = parsed.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None
    first = choice.message.tool_calls[0]
    assert first.type == "function" and first.id == "call_a"
    assert isinstance(first.function.arguments, str)
    assert json.loads(first.function.arguments) == {"expression": "2 + 3"}

    # The client sends the assistant message back as it came: the same calls come out.
    echoed = completion.choices[0].message.model_dump(exclude_none=True)
    again = to_chat_request(body(messages=[{"role": "user", "content": "go"}, echoed]))
    returned = again.messages[1]
    assert isinstance(returned, AIMessage)
    assert returned.tool_calls == original.tool_calls


def test_unparsable_tool_arguments_are_returned_as_sent() -> None:
    message = AIMessage(
        content="",
        invalid_tool_calls=[
            {"name": "calculator", "args": "{oops", "id": "call_z", "error": "bad json"}
        ],
    )
    calls = completion_response(result(message), "chatcmpl-x", CREATED).choices[0].message
    assert calls.tool_calls is not None
    assert calls.tool_calls[0].function.arguments == "{oops"
    assert calls.tool_calls[0].id == "call_z"


# -- models and errors -----------------------------------------------------------------


def test_models_lists_aliases_then_each_chain_model_once() -> None:
    listing = models_response({"fast": ["a", "b"], "smart": ["c", "a"]}).model_dump()
    models = [Model.model_validate(card) for card in listing["data"]]
    assert listing["object"] == "list"
    assert [m.id for m in models] == ["fast", "smart", "a", "b", "c"]
    assert [m.owned_by for m in models[:2]] == ["agent-runtime", "agent-runtime"]
    assert {m.owned_by for m in models[2:]} == {"provider"}


def test_models_lists_configured_models_after_the_aliases() -> None:
    listing = models_response({"fast": ["a", "b"]}, ["b", "c", "fast"])
    assert [card.id for card in listing.data] == ["fast", "b", "c", "a"]
    assert [card.owned_by for card in listing.data] == [
        "agent-runtime",
        "provider",
        "provider",
        "provider",
    ]


def test_runtime_errors_use_the_openai_error_shape() -> None:
    exhausted = runtime_error_body(ProviderChainExhausted("fake-broken", ["fake-broken: HTTP 500"]))
    assert exhausted.error.type == "server_error"
    assert exhausted.error.code == "provider_chain_exhausted"
    assert "every model for 'fake-broken' failed" in exhausted.error.message
    limited = runtime_error_body(RateLimited("slow down", retry_after=1.0))
    assert (limited.error.type, limited.error.code) == ("rate_limit_error", "rate_limited")
