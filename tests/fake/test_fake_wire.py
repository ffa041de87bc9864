"""The fake's wire format through the ``openai`` client: streamed chunks and usage, and 400s and
404s in OpenAI's error shape.
"""

from __future__ import annotations

import json

import openai
import pytest

from agent_runtime.fake.provider_app import create_fake_provider_app
from tests.fake.provider_clients import (
    asgi_http,
    ask,
    fake_settings,
    openai_client,
)
from tests.servers import served
from tests.tool_specs import CALCULATOR

# --- streaming -------------------------------------------------------------------------


async def test_streamed_text_matches_the_plain_answer_and_ends_with_usage() -> None:
    text = "please stream   this sentence back to me"
    async with openai_client(fake_settings()) as client:
        plain = await ask(client, text)
        stream = await ask(client, text, stream=True, stream_options={"include_usage": True})
        chunks = [chunk async for chunk in stream]
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) > 1
    assert content_chunks[0].choices[0].delta.role == "assistant"
    streamed = "".join(c.choices[0].delta.content or "" for c in content_chunks)
    assert streamed == plain.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert {c.id for c in chunks} == {plain.id}
    assert chunks[-1].choices == []
    assert chunks[-1].usage == plain.usage
    assert all(c.usage is None for c in chunks[:-1])


async def test_stream_without_include_usage_has_no_usage_chunk() -> None:
    async with openai_client(fake_settings()) as client:
        stream = await ask(client, "hi there", stream=True)
        chunks = [chunk async for chunk in stream]
    assert all(c.choices and c.usage is None for c in chunks)
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks)
        == "[fake-fast] You said: hi there"
    )


async def test_streamed_tool_call_is_parsed_by_the_openai_client() -> None:
    async with openai_client(fake_settings()) as client:
        stream = await ask(client, "compute (1 + 2) ** 3", tools=[CALCULATOR], stream=True)
        chunks = [chunk async for chunk in stream]
    deltas = [call for c in chunks for call in (c.choices[0].delta.tool_calls or [])]
    assert len(deltas) == 1
    (delta,) = deltas
    assert delta.index == 0
    assert delta.function is not None and delta.function.name == "calculator"
    assert json.loads(delta.function.arguments or "") == {"expression": "(1 + 2) ** 3"}
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def test_streaming_over_a_real_socket() -> None:
    app = create_fake_provider_app(fake_settings())
    async with served(app) as base_url:
        client = openai.AsyncOpenAI(api_key="k", base_url=base_url, max_retries=0, timeout=5)
        async with client:
            stream = await ask(client, "over tcp", stream=True)
            text = "".join([c.choices[0].delta.content or "" async for c in stream])
    assert text == "[fake-fast] You said: over tcp"


# --- request validation ----------------------------------------------------------------


async def test_bad_role_is_a_400_invalid_request() -> None:
    async with openai_client(fake_settings()) as client:
        with pytest.raises(openai.BadRequestError) as rejected:
            await client.chat.completions.create(
                model="fake-fast", messages=[{"role": "wizard", "content": "hi"}]
            )
    assert rejected.value.status_code == 400
    assert isinstance(rejected.value.body, dict)
    assert rejected.value.body["type"] == "invalid_request_error"
    assert rejected.value.param == "messages.[0].role"


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        (b'{"model": "fake-fast"}', "messages"),
        (b'{"model": "fake-fast", "messages": []}', "messages"),
        (b'{"messages": [{"role": "user", "content": "hi"}]}', "model"),
        (b'{"model": "m", "messages": [{"role": "user", "content": 5}]}', "messages.[0].content"),
        (b'{"model": "m", "messages": [{"role": "user"}], "tools": [{"type": "x"}]}', "tools.[0]"),
        (b"not json", None),
        (b"[1, 2]", None),
    ],
)
async def test_invalid_bodies_get_400_with_an_openai_error(
    payload: bytes, param: str | None
) -> None:
    async with asgi_http(create_fake_provider_app(fake_settings())) as http:
        response = await http.post(
            "/chat/completions", content=payload, headers={"content-type": "application/json"}
        )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if param is None:
        assert error["param"] is None
    else:
        assert error["param"].startswith(param)


async def test_unknown_path_uses_the_openai_error_shape() -> None:
    async with asgi_http(create_fake_provider_app(fake_settings())) as http:
        response = await http.get("/nowhere")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "invalid_request_error"
