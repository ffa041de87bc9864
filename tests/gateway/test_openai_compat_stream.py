"""Streamed answers in the OpenAI wire format: chunk deltas, the closing chunk, and SSE errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from langchain_core.messages import AIMessageChunk
from openai.types.chat import ChatCompletionChunk as OpenAIChatCompletionChunk

from agent_runtime.core.errors import ProviderError
from agent_runtime.gateway.openai_compat import ChunkEncoder, sse_stream
from tests.gateway.chat_bodies import CREATED, decode


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
