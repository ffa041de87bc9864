"""OpenAI wire format <-> router types, checked against the openai package's own models.

The end-to-end cases run the real ``ModelRouter`` against the fake provider (served
in-process through httpx's ASGI transport), so the chunks and results converted here are
the ones ``ChatOpenAI`` really produces.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from openai.types import Model
from openai.types.chat import ChatCompletion as OpenAIChatCompletion
from openai.types.chat import ChatCompletionChunk as OpenAIChatCompletionChunk
from pydantic import ValidationError

from agent_runtime.config.fake_provider_settings import FakeProviderSettings
from agent_runtime.config.provider_settings import ProviderSettings
from agent_runtime.core.errors import ProviderChainExhausted, ProviderError, RateLimited
from agent_runtime.core.types import ChatResult, TokenUsage
from agent_runtime.fake.provider_app import create_fake_provider_app
from agent_runtime.gateway.breakers import BreakerRegistry
from agent_runtime.gateway.model_router import ModelRouter
from agent_runtime.gateway.openai_compat import (
    DONE,
    ChatCompletionRequest,
    ChunkEncoder,
    completion_response,
    field_path,
    models_response,
    new_completion_id,
    runtime_error_body,
    sse_stream,
    to_chat_request,
    validation_error_body,
)

CREATED = 1_700_000_000
ALIASES = {"fast": ["fake-fast", "fake-fallback"], "smart": ["fake-down", "fake-smart"]}
CALCULATOR = {
    "type": "function",
    "function": {
        "name": "calculator",
        "description": "Evaluate an arithmetic expression.",
        "parameters": {
            "type": "object",
            "properties": {"expression": {"type": "string"}},
            "required": ["expression"],
        },
    },
}
TOOL_QUESTION = "what is 2 + 3 * 4?"
MISSING = object()  # a field left out of the body


def body(**fields: Any) -> ChatCompletionRequest:
    fields.setdefault("model", "fast")
    fields.setdefault("messages", [{"role": "user", "content": "hello"}])
    return ChatCompletionRequest.model_validate(
        {name: value for name, value in fields.items() if value is not MISSING}
    )


@pytest.fixture
async def router() -> AsyncIterator[ModelRouter]:
    app = create_fake_provider_app(
        FakeProviderSettings(latency_ms=0, failing_models=["fake-down", "fake-broken"])
    )
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), timeout=5.0)
    settings = ProviderSettings(provider_timeout_s=5.0, model_aliases=ALIASES)
    model_router = ModelRouter(
        settings, "http://fake/v1", BreakerRegistry(fail_max=5, reset_timeout_s=30.0), client
    )
    yield model_router
    await model_router.close()
    await client.aclose()


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


# -- streaming -------------------------------------------------------------------------


def encode_all(encoder: ChunkEncoder, chunks: list[AIMessageChunk]) -> list[dict[str, Any]]:
    out = [payload for chunk in chunks for payload in encoder.encode(chunk)] + encoder.finish()
    parsed = [OpenAIChatCompletionChunk.model_validate(p.model_dump()) for p in out]
    return [p.model_dump() for p in parsed]


def test_text_chunks_carry_the_role_first_and_finish_last() -> None:
    encoder = ChunkEncoder("chatcmpl-s", CREATED, "fast", include_usage=True)
    payloads = encode_all(
        encoder,
        [
            AIMessageChunk(content=""),
            AIMessageChunk(content="Hello "),
            AIMessageChunk(
                content="world",
                response_metadata={"finish_reason": "stop", "model_name": "fake-fast"},
            ),
            AIMessageChunk(
                content="",
                usage_metadata={"input_tokens": 4, "output_tokens": 2, "total_tokens": 6},
            ),
        ],
    )
    deltas = [p["choices"][0]["delta"] for p in payloads if p["choices"]]
    assert deltas[0]["role"] == "assistant"
    assert all(d["role"] is None for d in deltas[1:])
    assert "".join(d["content"] or "" for d in deltas) == "Hello world"
    closing, usage = payloads[-2], payloads[-1]
    assert closing["choices"][0]["finish_reason"] == "stop"
    assert closing["model"] == "fake-fast"
    assert usage["choices"] == []
    assert usage["usage"]["total_tokens"] == 6
    assert {p["id"] for p in payloads} == {"chatcmpl-s"}


def test_tool_call_chunk_becomes_a_tool_call_delta() -> None:
    encoder = ChunkEncoder("chatcmpl-t", CREATED, "fast", include_usage=False)
    payloads = encode_all(
        encoder,
        [
            AIMessageChunk(
                content="",
                tool_call_chunks=[
                    {"name": "calculator", "args": '{"expression": "1+1"}', "id": "c1", "index": 0}
                ],
            )
        ],
    )
    assert len(payloads) == 2  # no usage payload unless asked for
    call = payloads[0]["choices"][0]["delta"]["tool_calls"][0]
    assert (call["index"], call["id"], call["type"]) == (0, "c1", "function")
    assert call["function"] == {"name": "calculator", "arguments": '{"expression": "1+1"}'}
    assert payloads[1]["choices"][0]["finish_reason"] == "tool_calls"


def test_an_empty_stream_still_opens_and_closes_the_message() -> None:
    encoder = ChunkEncoder("chatcmpl-e", CREATED, "fast", include_usage=False)
    (only,) = encode_all(encoder, [])
    assert only["choices"][0]["delta"]["role"] == "assistant"
    assert only["choices"][0]["finish_reason"] == "stop"


def decode(events: list[bytes]) -> list[Any]:
    out: list[Any] = []
    for event in events:
        assert event.startswith(b"data: ") and event.endswith(b"\n\n")
        data = event[len(b"data: ") : -2]
        out.append("[DONE]" if data == b"[DONE]" else json.loads(data))
    return out


async def chunks_then(
    chunks: list[AIMessageChunk], error: BaseException
) -> AsyncIterator[AIMessageChunk]:
    for chunk in chunks:
        yield chunk
    raise error


async def test_an_error_mid_stream_is_the_last_event() -> None:
    encoder = ChunkEncoder("chatcmpl-m", CREATED, "fast", include_usage=False)
    broke = ProviderError("the answer broke off", model="fake-fast", status=500)
    source = chunks_then([AIMessageChunk(content="Hel")], broke)
    events = decode([event async for event in sse_stream(encoder, source)])
    assert events[0]["choices"][0]["delta"]["content"] == "Hel"
    assert events[-1] == {
        "error": {
            "message": "the answer broke off",
            "type": "server_error",
            "param": None,
            "code": "provider_error",
        }
    }
    assert "[DONE]" not in events


async def test_an_unexpected_error_mid_stream_hides_its_message() -> None:
    encoder = ChunkEncoder("chatcmpl-u", CREATED, "fast", include_usage=False)
    source = chunks_then([], RuntimeError("postgresql://user:secret@db"))
    events = decode([event async for event in sse_stream(encoder, source)])
    assert events == [
        {
            "error": {
                "message": "internal error while streaming the answer",
                "type": "server_error",
                "param": None,
                "code": "internal_error",
            }
        }
    ]


# -- through the real router and the fake provider -------------------------------------


async def test_router_answer_becomes_a_completion_naming_the_fallback(
    router: ModelRouter,
) -> None:
    answer = await router.chat(to_chat_request(body(model="smart")))
    parsed = OpenAIChatCompletion.model_validate(
        completion_response(answer, new_completion_id(), CREATED).model_dump()
    )
    assert parsed.model == "fake-smart"  # fake-down failed first
    assert parsed.choices[0].message.content == "[fake-smart] You said: hello"
    assert parsed.usage is not None and parsed.usage.completion_tokens > 0


async def test_router_tool_call_answer_and_tool_result(router: ModelRouter) -> None:
    ask = body(tools=[CALCULATOR], messages=[{"role": "user", "content": TOOL_QUESTION}])
    first = completion_response(await router.chat(to_chat_request(ask)), "chatcmpl-1", CREATED)
    message = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls"
    assert message.tool_calls is not None
    call = message.tool_calls[0]
    assert call.function.name == "calculator"
    assert json.loads(call.function.arguments) == {"expression": "2 + 3 * 4"}

    follow_up = body(
        tools=[CALCULATOR],
        messages=[
            {"role": "user", "content": TOOL_QUESTION},
            message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "14"},
        ],
    )
    second = await router.chat(to_chat_request(follow_up))
    final = completion_response(second, "chatcmpl-2", CREATED).choices[0]
    assert final.message.content == "Tool result: 14"
    assert final.finish_reason == "stop"


async def test_router_stream_becomes_sse_equal_to_the_plain_answer(router: ModelRouter) -> None:
    ask = body(model="smart", stream=True, stream_options={"include_usage": True})
    encoder = ChunkEncoder("chatcmpl-r", CREATED, ask.model, ask.include_usage)
    raw = [event async for event in sse_stream(encoder, router.stream(to_chat_request(ask)))]
    assert raw[-1] == DONE
    events = decode(raw)
    chunks = [OpenAIChatCompletionChunk.model_validate(e) for e in events[:-1]]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    plain = await router.chat(to_chat_request(body(model="smart")))
    assert text == plain.message.text == "[fake-smart] You said: hello"
    closing = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    assert (closing.choices[0].finish_reason, closing.model) == ("stop", "fake-smart")
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == plain.usage.output_tokens


async def test_router_streamed_tool_call(router: ModelRouter) -> None:
    ask = body(stream=True, tools=[CALCULATOR], messages=[{"role": "user", "content": "5 * 6"}])
    encoder = ChunkEncoder("chatcmpl-c", CREATED, ask.model, include_usage=False)
    events = decode(
        [event async for event in sse_stream(encoder, router.stream(to_chat_request(ask)))]
    )
    chunks = [OpenAIChatCompletionChunk.model_validate(e) for e in events[:-1]]
    calls = [t for c in chunks for t in c.choices[0].delta.tool_calls or []]
    assert [c.function.name for c in calls if c.function] == ["calculator"]
    assert calls[0].function is not None and calls[0].function.arguments is not None
    assert json.loads(calls[0].function.arguments) == {"expression": "5 * 6"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


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
