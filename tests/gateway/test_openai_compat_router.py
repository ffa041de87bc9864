"""OpenAI wire format through the real ModelRouter and fake provider: answers, tools, streams."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from openai.types.chat import ChatCompletion as OpenAIChatCompletion
from openai.types.chat import ChatCompletionChunk as OpenAIChatCompletionChunk

from agent_runtime.config.fake_provider_settings import FakeProviderSettings
from agent_runtime.config.provider_settings import ProviderSettings
from agent_runtime.fake.provider_app import create_fake_provider_app
from agent_runtime.gateway.breakers import BreakerRegistry
from agent_runtime.gateway.model_router import ModelRouter
from agent_runtime.gateway.openai_compat import (
    DONE,
    ChunkEncoder,
    completion_response,
    new_completion_id,
    sse_stream,
    to_chat_request,
)
from tests.gateway.chat_bodies import CREATED, body, decode
from tests.tool_specs import CALCULATOR

ALIASES = {"fast": ["fake-fast", "fake-fallback"], "smart": ["fake-down", "fake-smart"]}
TOOL_QUESTION = "what is 2 + 3 * 4?"


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
