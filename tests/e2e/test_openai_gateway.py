"""The OpenAI-compatible gateway, driven with the official openai client."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionFunctionToolParam

from tests.e2e.conftest import Stack, Tenant

pytestmark = pytest.mark.e2e

CALCULATOR: ChatCompletionFunctionToolParam = {
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


@pytest.fixture
async def client(stack: Stack, tenant: Tenant) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=stack.url + "/v1", api_key=tenant.api_key, max_retries=0, timeout=30.0
    ) as api:
        yield api


async def test_answer_names_the_model_that_answered(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model="fast", messages=[{"role": "user", "content": "hello gateway"}]
    )
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "fake-fast"
    choice = completion.choices[0]
    assert choice.message.content == "[fake-fast] You said: hello gateway"
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    assert completion.usage.completion_tokens > 0


async def test_embeddings_through_the_router_deployment(client: openai.AsyncOpenAI) -> None:
    floats = await client.embeddings.create(
        model="fake-embed", input=["I like tea", "my cat"], encoding_format="float", dimensions=8
    )
    assert floats.model == "fake-embed"
    assert [len(item.embedding) for item in floats.data] == [8, 8]
    assert floats.usage.prompt_tokens == 5
    # The client's default: base64, decoded by the client to the same numbers.
    decoded = await client.embeddings.create(model="fake-embed", input="I like tea", dimensions=8)
    assert decoded.data[0].embedding == pytest.approx(floats.data[0].embedding, abs=1e-6)
    with pytest.raises(openai.NotFoundError):
        await client.embeddings.create(model="text-embedding-9", input="x")


async def test_alias_falls_back_when_its_first_model_fails(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model="smart", messages=[{"role": "user", "content": "are you there?"}]
    )
    # "smart" is [fake-down, fake-smart] and fake-down always answers 500.
    assert completion.model == "fake-smart"
    assert completion.choices[0].message.content == "[fake-smart] You said: are you there?"


async def test_streamed_text_equals_the_plain_answer(client: openai.AsyncOpenAI) -> None:
    messages: list[openai.types.chat.ChatCompletionMessageParam] = [
        {"role": "user", "content": "stream these few words please"}
    ]
    plain = await client.chat.completions.create(model="fast", messages=messages)
    stream = await client.chat.completions.create(
        model="fast", messages=messages, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1
    assert chunks[0].choices[0].delta.role == "assistant"
    closing = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    assert closing.choices[0].finish_reason == "stop"
    assert closing.model == "fake-fast"
    assert chunks[-1].usage is not None
    assert plain.usage is not None
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens


async def test_tool_call_round_trip(client: openai.AsyncOpenAI) -> None:
    question: openai.types.chat.ChatCompletionMessageParam = {
        "role": "user",
        "content": "what is (2 + 3) * 4?",
    }
    first = await client.chat.completions.create(
        model="fast", messages=[question], tools=[CALCULATOR]
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "calculator"
    assert json.loads(call.function.arguments) == {"expression": "(2 + 3) * 4"}

    second = await client.chat.completions.create(
        model="fast",
        tools=[CALCULATOR],
        messages=[
            question,
            choice.message.model_dump(exclude_none=True),  # type: ignore[list-item]
            {"role": "tool", "tool_call_id": call.id, "content": "20"},
        ],
    )
    assert second.choices[0].message.content == "Tool result: 20"
    assert second.choices[0].finish_reason == "stop"


async def test_streamed_tool_call(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="fast",
        messages=[{"role": "user", "content": "what is 6 * 7?"}],
        tools=[CALCULATOR],
        stream=True,
    )
    chunks = [chunk async for chunk in stream]
    calls = [t for c in chunks for t in c.choices[0].delta.tool_calls or []]
    assert calls and calls[0].function is not None
    assert calls[0].function.name == "calculator"
    assert json.loads(calls[0].function.arguments or "") == {"expression": "6 * 7"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize("stream", [False, True])
async def test_exhausted_chain_is_503(client: openai.AsyncOpenAI, stream: bool) -> None:
    with pytest.raises(openai.APIStatusError) as raised:
        await client.chat.completions.create(
            model="broken", messages=[{"role": "user", "content": "hi"}], stream=stream
        )
    error = raised.value
    assert error.status_code == 503
    assert error.code == "provider_chain_exhausted"
    assert "every model for 'broken' failed or is unavailable" in error.message


async def test_a_model_the_config_does_not_list_is_404_model_not_found(
    client: openai.AsyncOpenAI,
) -> None:
    # Passed through, it would be unpriced: no cost in the ledger, no budget would stop it.
    with pytest.raises(openai.NotFoundError) as raised:
        await client.chat.completions.create(
            model="no-such-model-4f2a", messages=[{"role": "user", "content": "hi"}]
        )
    assert raised.value.code == "model_not_found"
    assert "no-such-model-4f2a" in raised.value.message


async def test_bad_key_is_401(stack: Stack) -> None:
    async with openai.AsyncOpenAI(
        base_url=stack.url + "/v1", api_key="ar_000000000000_not-a-real-secret", max_retries=0
    ) as stranger:
        with pytest.raises(openai.AuthenticationError) as raised:
            await stranger.chat.completions.create(
                model="fast", messages=[{"role": "user", "content": "hi"}]
            )
        with pytest.raises(openai.AuthenticationError):
            await stranger.models.list()
    assert raised.value.status_code == 401
    assert raised.value.type == "authentication_error"


async def test_invalid_body_is_422_naming_the_field(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as missing:
        await client.post(
            "/chat/completions",
            body={"model": "fast"},
            cast_to=openai.types.chat.ChatCompletion,
        )
    assert missing.value.param == "messages"
    assert "messages: Field required" in missing.value.message

    with pytest.raises(openai.UnprocessableEntityError) as empty:
        await client.chat.completions.create(model="fast", messages=[])
    assert empty.value.param == "messages"

    with pytest.raises(openai.UnprocessableEntityError) as bad_arguments:
        await client.chat.completions.create(
            model="fast",
            messages=[
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "calculator", "arguments": "not json"},
                        }
                    ],
                }
            ],
        )
    assert bad_arguments.value.param == "messages.0.tool_calls.0.function.arguments"


async def test_x_api_key_header_works_too(stack: Stack, tenant: Tenant) -> None:
    async with httpx.AsyncClient(base_url=stack.url, timeout=30.0) as http:
        response = await http.post(
            "/v1/chat/completions",
            json={"model": "fast", "messages": [{"role": "user", "content": "by header"}]},
            headers={"x-api-key": tenant.api_key},
        )
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "[fake-fast] You said: by header"
    assert "provider;dur=" in response.headers["Server-Timing"]


async def test_models_lists_aliases_and_chain_models(
    client: openai.AsyncOpenAI, stack: Stack
) -> None:
    models = [model async for model in client.models.list()]
    ids = [model.id for model in models]
    aliases = stack.settings.provider.model_aliases
    assert ids[: len(aliases)] == list(aliases)
    chains = {m for chain in aliases.values() for m in chain}
    assert set(ids) == set(aliases) | chains | set(stack.settings.provider.embedding_models)
    assert len(ids) == len(set(ids))
    assert all(model.object == "model" for model in models)


async def test_per_key_rate_limit_applies(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as raised:
        for _ in range(100):  # the e2e key allows a burst of 20 at 5 per second
            await client.models.list()
    assert raised.value.code == "rate_limited"
    assert int(raised.value.response.headers["Retry-After"]) >= 1
    assert raised.value.response.headers["X-RateLimit-Remaining"] == "0"
