"""An OpenAI-compatible fake provider: the Chat Completions wire format over deterministic rules.

:func:`create_fake_provider_app` builds a FastAPI app serving ``POST /v1/chat/completions``
(plain and SSE streaming), ``POST /v1/embeddings`` (:mod:`agent_runtime.fake.fake_embed`)
and ``GET /v1/models``. The answers come from
:func:`agent_runtime.fake.fake_model.fake_reply`; this module adds the HTTP layer and carries out
the fault plans of :mod:`agent_runtime.fake.faults` (latency, errors, 429s, hangs, cut streams, slow
tokens). Every error uses OpenAI's ``{"error": {...}}`` body so real clients map it to their
own exception classes. It is a load-test target: responses are built as JSON directly, by
:mod:`agent_runtime.fake.fake_wire`.

With ``control_enabled`` (a development flag, ``AGENT_FAKE_CONTROL_ENABLED``) and
``control_token`` set, ``/control/faults`` reads and changes the fault table of this app
instance (one per Serve replica: with several replicas, set each one, or use the
settings). A change applies to calls that start after it. Without both the routes are
404: the provider has no other authentication, and a fault table anyone could change
would let them break every model call of the runtime.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import math
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Send

from agent_runtime.config.fake_provider_settings import FakeProviderSettings
from agent_runtime.config.fault_profiles import MAX_DELAY_MS, FaultProfile, FaultTable
from agent_runtime.fake.fake_embed import EmbeddingsBody, fake_embeddings
from agent_runtime.fake.fake_model import completion_id, fake_reply
from agent_runtime.fake.fake_wire import (
    ChatCompletionBody,
    completion_json,
    openai_error,
    sse_events,
    validation_error,
)
from agent_runtime.fake.faults import FaultInjector, FaultPlan, configured_faults

Sleep = Callable[[float], Awaitable[None]]
_Body = TypeVar("_Body", bound=BaseModel)

DEFAULT_MODELS = ("fake-fast", "fake-smart", "fake-fallback", "fake-embed")
HANG_S = 3600.0
_DELAY = re.compile(r"\[delay:(\d{1,6})\]")
# How often a hanging request checks whether its client gave up (so it can stop waiting).
_HANG_POLL_S = 0.5


class FakeProvider:
    """Request handlers of the fake provider; owns its live fault table."""

    def __init__(self, settings: FakeProviderSettings, sleep: Sleep = asyncio.sleep) -> None:
        self._faults = FaultInjector(configured_faults(settings), seed=settings.seed)
        self._sleep = sleep
        self._control_token = settings.control_token if settings.control_enabled else None
        self._control_enabled = settings.control_enabled
        self._models_body = b""
        self._models_table: FaultTable | None = None

    async def list_models(self) -> Response:
        table = self._faults.table
        if table is not self._models_table:
            names = dict.fromkeys([*DEFAULT_MODELS, *table.models])
            self._models_body = json.dumps(
                {
                    "object": "list",
                    "data": [
                        {"id": name, "object": "model", "created": 0, "owned_by": "fake-provider"}
                        for name in names
                    ],
                }
            ).encode()
            self._models_table = table
        return Response(content=self._models_body, media_type="application/json")

    async def chat_completions(self, request: Request) -> Response:
        payload = await _json_object(request)
        if isinstance(payload, Response):
            return payload
        try:
            body = ChatCompletionBody.model_validate(payload)
        except ValidationError as error:
            return validation_error(error)

        # The raw JSON objects, already checked above, are what the reply rules read.
        messages: list[dict[str, Any]] = payload["messages"]
        plan = self._faults.plan(body.model)
        fault = await self._apply_faults(body.model, plan, request, requested_delay_ms(messages))
        if fault is not None:
            return fault
        tools: list[dict[str, Any]] = payload.get("tools") or []
        answer = fake_reply(body.model, messages, tools)
        reply_id = completion_id(body.model, messages, tools)
        if body.stream:
            include_usage = body.stream_options is not None and body.stream_options.include_usage
            events = sse_events(reply_id, body.model, answer, include_usage)
            return _EventStream(self._paced(events, plan), complete=plan.cut_after_chunks is None)
        return Response(
            content=completion_json(reply_id, body.model, answer), media_type="application/json"
        )

    async def embeddings(self, request: Request) -> Response:
        """Deterministic vectors (:mod:`agent_runtime.fake.fake_embed`), after the model's
        faults, as for chat."""
        payload = await _json_object(request)
        if isinstance(payload, Response):
            return payload
        try:
            body = EmbeddingsBody.model_validate(payload)
        except ValidationError as error:
            return validation_error(error)
        fault = await self._apply_faults(body.model, self._faults.plan(body.model), request)
        if fault is not None:
            return fault
        return Response(content=fake_embeddings(body), media_type="application/json")

    async def _apply_faults(
        self, model: str, plan: FaultPlan, request: Request, extra_delay_ms: float = 0.0
    ) -> Response | None:
        """Hang, wait the drawn latency, then answer the planned error, if any."""
        if plan.hang:
            await _hang(request)
            return openai_error(504, f"model {model!r} never answered")
        delay_ms = plan.delay_ms + extra_delay_ms
        if delay_ms > 0:
            await self._sleep(delay_ms / 1000.0)
        if plan.status == 429:
            retry_after_s = plan.retry_after_s if plan.retry_after_s is not None else 1.0
            return openai_error(
                429,
                f"Rate limit reached for {model} (fake provider). "
                f"Please try again in {retry_after_s:g}s.",
                headers={
                    "Retry-After": str(math.ceil(retry_after_s)),
                    "retry-after-ms": str(round(retry_after_s * 1000)),
                },
            )
        if plan.status is not None:
            return openai_error(
                plan.status, f"fake provider: injected {plan.status} for model {model!r}"
            )
        return None

    async def _paced(self, events: Sequence[bytes], plan: FaultPlan) -> AsyncIterator[bytes]:
        """The stream's chunks with the plan's token delays; a cut one stops early, no [DONE]."""
        chunks = events[:-1]
        if plan.cut_after_chunks is not None:
            chunks = chunks[: plan.cut_after_chunks]
        for index, chunk in enumerate(chunks):
            delay_ms = plan.first_token_delay_ms if index == 0 else plan.inter_token_delay_ms
            if delay_ms > 0:
                await self._sleep(delay_ms / 1000.0)
            yield chunk
        if plan.cut_after_chunks is None:
            yield events[-1]

    # --- control endpoint -----------------------------------------------------------------

    def _control_denied(self, request: Request) -> Response | None:
        """404 while control is disabled, 401 without the right token; None when allowed."""
        if not self._control_enabled:
            return openai_error(
                404, "fault control is disabled: a development feature (AGENT_FAKE_CONTROL_ENABLED)"
            )
        if self._control_token is None:
            return openai_error(404, "fault control is disabled (AGENT_FAKE_CONTROL_TOKEN)")
        given = _presented_token(request)
        expected = self._control_token.get_secret_value().encode()
        if given is None or not hmac.compare_digest(given.encode(), expected):
            return openai_error(
                401,
                "missing or wrong control token: send Authorization: Bearer <token>",
                error_type="invalid_request_error",
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return None

    def _table_json(self) -> Response:
        return Response(content=self._faults.table.model_dump_json(), media_type="application/json")

    async def get_faults(self, request: Request) -> Response:
        denied = self._control_denied(request)
        return denied if denied is not None else self._table_json()

    async def put_faults(self, request: Request) -> Response:
        denied = self._control_denied(request)
        if denied is not None:
            return denied
        table = await _read_json(request, FaultTable)
        if isinstance(table, Response):
            return table
        self._faults.replace(table)
        return self._table_json()

    async def patch_model_faults(self, request: Request, model: str) -> Response:
        denied = self._control_denied(request)
        if denied is not None:
            return denied
        profile = await _read_json(request, FaultProfile)
        if isinstance(profile, Response):
            return profile
        self._faults.set_model(model, profile)
        return self._table_json()

    async def reset_faults(self, request: Request) -> Response:
        denied = self._control_denied(request)
        if denied is not None:
            return denied
        self._faults.reset()
        return self._table_json()


async def _json_object(request: Request) -> dict[str, Any] | Response:
    """The request's JSON object, or OpenAI's 400 for a body that is not one."""
    try:
        payload = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        return openai_error(400, "We could not parse the JSON body of your request.")
    if not isinstance(payload, dict):
        return openai_error(400, "The request body must be a JSON object.")
    return payload


def _presented_token(request: Request) -> str | None:
    authorization = request.headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("x-api-key") or None


async def _read_json(request: Request, model: type[_Body]) -> _Body | Response:
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as error:
        if error.errors()[0]["type"] == "json_invalid":
            return openai_error(400, "We could not parse the JSON body of your request.")
        return validation_error(error)


class _EventStream(StreamingResponse):
    """An SSE response; an incomplete one ends without its last body message.

    The server then closes the connection mid-body (uvicorn: "ASGI callable returned without
    completing response"), which is how a provider's stream cut by a failure looks to a
    client: an incomplete chunked read, no ``data: [DONE]``.
    """

    def __init__(self, content: AsyncIterator[bytes], *, complete: bool) -> None:
        super().__init__(
            content, media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )
        self._complete = complete

    async def stream_response(self, send: Send) -> None:
        if self._complete:
            await super().stream_response(send)
            return
        start = {"type": "http.response.start", "status": self.status_code}
        await send({**start, "headers": self.raw_headers})
        async for chunk in self.body_iterator:
            data = chunk if isinstance(chunk, bytes) else str(chunk).encode()
            await send({"type": "http.response.body", "body": data, "more_body": True})


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


def create_fake_provider_app(
    settings: FakeProviderSettings, *, sleep: Sleep = asyncio.sleep
) -> FastAPI:
    """The fake provider as a FastAPI app; paths are relative to where it is mounted.

    ``sleep`` waits every injected delay (latency and stream delays, not hangs): tests pass
    one that records the drawn delays. ``app.state.provider`` is the :class:`FakeProvider`.
    """
    provider = FakeProvider(settings, sleep)
    app = FastAPI(
        title="Fake OpenAI-compatible provider", docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.provider = provider
    app.add_api_route("/v1/chat/completions", provider.chat_completions, methods=["POST"])
    app.add_api_route("/v1/embeddings", provider.embeddings, methods=["POST"])
    app.add_api_route("/v1/models", provider.list_models, methods=["GET"])
    app.add_api_route("/control/faults", provider.get_faults, methods=["GET"])
    app.add_api_route("/control/faults", provider.put_faults, methods=["PUT"])
    app.add_api_route("/control/faults", provider.reset_faults, methods=["DELETE"])
    app.add_api_route(
        "/control/faults/{model:path}", provider.patch_model_faults, methods=["PATCH"]
    )

    async def http_error(request: Request, exc: Exception) -> Response:
        # Unknown paths and wrong methods also answer in OpenAI's error shape.
        status = exc.status_code if isinstance(exc, StarletteHTTPException) else 500
        detail = exc.detail if isinstance(exc, StarletteHTTPException) else "internal error"
        return openai_error(status, str(detail))

    app.add_exception_handler(StarletteHTTPException, http_error)
    return app
