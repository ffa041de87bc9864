"""The fake provider's side of the OpenAI Chat Completions wire format: the request body it
checks (:class:`ChatCompletionBody`), errors in OpenAI's ``{"error": {...}}`` shape
(:func:`openai_error`), and the completion JSON and SSE chunks of an answer
(:func:`completion_json`, :func:`sse_events`), built as JSON directly.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent_runtime.fake.fake_model import FakeAnswer, chunk_text

_FINGERPRINT = "fp_fake"


class _ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[_ContentPart] | None = None


class _Function(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1)


class _Tool(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["function"]
    function: _Function


class _StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatCompletionBody(BaseModel):
    """The parts of a Chat Completions request the fake checks; other fields are ignored."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    messages: list[_Message] = Field(min_length=1)
    tools: list[_Tool] | None = None
    stream: bool | None = False
    stream_options: _StreamOptions | None = None


def openai_error(
    status: int,
    message: str,
    *,
    error_type: str | None = None,
    param: str | None = None,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A JSON error response in OpenAI's shape; a 429 carries ``Retry-After`` (1 s unless set)."""
    if status == 429 and code is None:
        code = "rate_limit_exceeded"
    body = {
        "error": {
            "message": message,
            "type": error_type or _error_type(status),
            "param": param,
            "code": code,
        }
    }
    if status == 429 and headers is None:
        headers = {"Retry-After": "1"}
    return Response(
        content=json.dumps(body), status_code=status, media_type="application/json", headers=headers
    )


def _error_type(status: int) -> str:
    if status == 429:
        return "requests"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def validation_error(error: ValidationError) -> Response:
    first = error.errors(include_url=False)[0]
    # OpenAI spells list positions as ".[0]": "messages.[0].role".
    param = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in first["loc"]) or None
    if first["type"] == "missing":
        return openai_error(
            400,
            f"Missing required parameter: '{param}'.",
            param=param,
            code="missing_required_parameter",
        )
    return openai_error(
        400, f"Invalid value for '{param}': {first['msg']}.", param=param, code="invalid_value"
    )


def _message(answer: FakeAnswer) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": answer.text, "refusal": None}
    if answer.tool_calls:
        message["tool_calls"] = [call.wire() for call in answer.tool_calls]
    return message


def completion_json(reply_id: str, model: str, answer: FakeAnswer) -> bytes:
    return json.dumps(
        {
            "id": reply_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": _FINGERPRINT,
            "choices": [
                {
                    "index": 0,
                    "message": _message(answer),
                    "logprobs": None,
                    "finish_reason": answer.finish_reason,
                }
            ],
            "usage": answer.usage(),
        }
    ).encode()


def _deltas(answer: FakeAnswer) -> Sequence[dict[str, Any]]:
    """The ``delta`` of each content chunk; the first one carries the role."""
    if answer.tool_calls:
        calls = [{"index": i, **call.wire()} for i, call in enumerate(answer.tool_calls)]
        return [{"role": "assistant", "content": None, "tool_calls": calls}]
    pieces = chunk_text(answer.text or "") or [""]
    deltas: list[dict[str, Any]] = [{"content": piece} for piece in pieces]
    deltas[0] = {"role": "assistant", **deltas[0]}
    return deltas


def sse_events(reply_id: str, model: str, answer: FakeAnswer, include_usage: bool) -> list[bytes]:
    """The stream's SSE events, ``data: [DONE]`` last."""
    base: dict[str, Any] = {
        "id": reply_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": _FINGERPRINT,
    }
    if include_usage:
        # OpenAI sends "usage": null on every chunk but the last when usage is asked for.
        base["usage"] = None

    def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        return b"data: " + json.dumps({**base, "choices": choices, **extra}).encode() + b"\n\n"

    events = [
        event([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}])
        for delta in _deltas(answer)
    ]
    events.append(
        event([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": answer.finish_reason}])
    )
    if include_usage:
        events.append(event([], usage=answer.usage()))
    events.append(b"data: [DONE]\n\n")
    return events
