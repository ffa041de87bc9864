"""An OpenAI-compatible fake provider: the Chat Completions wire format over deterministic rules.

:func:`create_fake_provider_app` builds a FastAPI app serving ``POST /v1/chat/completions``
(plain and SSE streaming) and ``GET /v1/models``. The answers come from
:func:`runtime.fake_llm.fake_reply`; this module adds the HTTP layer and the faults of
:class:`~runtime.settings.FakeProviderSettings` (latency, jitter, failing, flaky and hanging
models). Every error uses OpenAI's ``{"error": {...}}`` body so real clients map it to their
own exception classes. It is a load-test target: responses are built as JSON directly.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from runtime.fake_llm import FakeAnswer, chunk_text, completion_id, fake_reply
from runtime.settings import FakeProviderSettings

DEFAULT_MODELS = ("fake-fast", "fake-smart", "fake-fallback")
HANG_S = 3600.0
_DELAY = re.compile(r"\[delay:(\d{1,6})\]")
MAX_DELAY_MS = 60_000.0
# How often a hanging request checks whether its client gave up (so it can stop waiting).
_HANG_POLL_S = 0.5
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
) -> Response:
    """A JSON error response in OpenAI's shape; 429 carries ``Retry-After``."""
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
    headers = {"Retry-After": "1"} if status == 429 else None
    return Response(
        content=json.dumps(body), status_code=status, media_type="application/json", headers=headers
    )


def _error_type(status: int) -> str:
    if status == 429:
        return "requests"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def _validation_error(error: ValidationError) -> Response:
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


class FakeProvider:
    """Request handlers of the fake provider; owns the random source of its faults."""

    def __init__(self, settings: FakeProviderSettings) -> None:
        self._settings = settings
        self._rng = random.Random(settings.seed)
        models = [*DEFAULT_MODELS, *settings.failing_models, *settings.hanging_models]
        self._models_body = json.dumps(
            {
                "object": "list",
                "data": [
                    {"id": name, "object": "model", "created": 0, "owned_by": "fake-provider"}
                    for name in dict.fromkeys(models)
                ],
            }
        ).encode()

    async def list_models(self) -> Response:
        return Response(content=self._models_body, media_type="application/json")

    async def chat_completions(self, request: Request) -> Response:
        raw = await request.body()
        try:
            payload = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return openai_error(400, "We could not parse the JSON body of your request.")
        if not isinstance(payload, dict):
            return openai_error(400, "The request body must be a JSON object.")
        try:
            body = ChatCompletionBody.model_validate(payload)
        except ValidationError as error:
            return _validation_error(error)

        # The raw JSON objects, already checked above, are what the reply rules read.
        messages: list[dict[str, Any]] = payload["messages"]
        fault = await self._apply_faults(body.model, request, requested_delay_ms(messages))
        if fault is not None:
            return fault
        tools: list[dict[str, Any]] = payload.get("tools") or []
        answer = fake_reply(body.model, messages, tools)
        reply_id = completion_id(body.model, messages, tools)
        if body.stream:
            include_usage = body.stream_options is not None and body.stream_options.include_usage
            return StreamingResponse(
                _sse_events(reply_id, body.model, answer, include_usage),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache"},
            )
        return Response(
            content=_completion_json(reply_id, body.model, answer), media_type="application/json"
        )

    async def _apply_faults(
        self, model: str, request: Request, extra_delay_ms: float = 0.0
    ) -> Response | None:
        """Hang, wait the configured latency, then fail if the settings say so."""
        settings = self._settings
        if model in settings.hanging_models:
            await _hang(request)
            return openai_error(504, f"model {model!r} never answered")
        delay_ms = settings.latency_ms + extra_delay_ms
        if settings.jitter_ms > 0:
            delay_ms += self._rng.uniform(0.0, settings.jitter_ms)
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000.0)
        if model in settings.failing_models:
            return openai_error(
                settings.fail_status, f"fake provider: model {model!r} is configured to fail"
            )
        if settings.fail_rate > 0 and self._rng.random() < settings.fail_rate:
            return openai_error(
                settings.fail_status, f"fake provider: injected failure for model {model!r}"
            )
        return None


def requested_delay_ms(messages: list[dict[str, Any]]) -> float:
    """Extra latency a caller asks for with ``[delay:<ms>]`` in its last user message.

    Per-request latency lets a test (or a demo) make one run slow, e.g. to double-text it
    or cancel it, without slowing every other call; capped at :data:`MAX_DELAY_MS`.
    """
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            found = _DELAY.search(content) if isinstance(content, str) else None
            return min(float(found.group(1)), MAX_DELAY_MS) if found else 0.0
    return 0.0


async def _hang(request: Request) -> None:
    # Sleeps up to an hour, but stops once the client has disconnected (its timeout fired),
    # so a hanging model does not pile up sleeping handlers under load.
    deadline = time.monotonic() + HANG_S
    while (remaining := deadline - time.monotonic()) > 0:
        if await request.is_disconnected():
            return
        await asyncio.sleep(min(_HANG_POLL_S, remaining))


def _message(answer: FakeAnswer) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": answer.text, "refusal": None}
    if answer.tool_calls:
        message["tool_calls"] = [call.wire() for call in answer.tool_calls]
    return message


def _completion_json(reply_id: str, model: str, answer: FakeAnswer) -> bytes:
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


async def _sse_events(
    reply_id: str, model: str, answer: FakeAnswer, include_usage: bool
) -> AsyncIterator[bytes]:
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

    for delta in _deltas(answer):
        yield event([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}])
    yield event(
        [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": answer.finish_reason}]
    )
    if include_usage:
        yield event([], usage=answer.usage())
    yield b"data: [DONE]\n\n"


def create_fake_provider_app(settings: FakeProviderSettings) -> FastAPI:
    """The fake provider as a FastAPI app; paths are relative to where it is mounted."""
    provider = FakeProvider(settings)
    app = FastAPI(
        title="Fake OpenAI-compatible provider", docs_url=None, redoc_url=None, openapi_url=None
    )
    app.add_api_route("/v1/chat/completions", provider.chat_completions, methods=["POST"])
    app.add_api_route("/v1/models", provider.list_models, methods=["GET"])

    async def http_error(request: Request, exc: Exception) -> Response:
        # Unknown paths and wrong methods also answer in OpenAI's error shape.
        status = exc.status_code if isinstance(exc, StarletteHTTPException) else 500
        detail = exc.detail if isinstance(exc, StarletteHTTPException) else "internal error"
        return openai_error(status, str(detail))

    app.add_exception_handler(StarletteHTTPException, http_error)
    return app
