"""OpenAI-compatible gateway: ``POST /v1/chat/completions``, ``POST /v1/embeddings`` and
``GET /v1/models``.

The routes take the same API keys (``Authorization: Bearer``, as OpenAI clients send them,
or ``x-api-key``) and the same per-key limits as the rest of the API, and call the model
router deployment directly: ``model`` is an alias (a fallback chain) or a provider model.
Errors leave in OpenAI's shape (see :class:`OpenAIRoute`) so OpenAI clients show them.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from langchain_core.messages import AIMessageChunk

from agent_runtime.api.deps import ReadPrincipal, RunPrincipal, ServicesDep
from agent_runtime.api.limit_headers import error_headers
from agent_runtime.core.errors import AgentRuntimeError, http_status
from agent_runtime.core.types import ChatResult, EmbeddingResult
from agent_runtime.gateway.openai_compat import (
    ChatCompletionRequest,
    ChunkEncoder,
    ModelList,
    completion_response,
    models_response,
    new_completion_id,
    runtime_error_body,
    sse_stream,
    to_chat_request,
    validation_error_body,
)
from agent_runtime.gateway.openai_embeddings import embeddings_response, to_embedding_request
from agent_runtime.protocol.embeddings_wire import EmbeddingsRequest
from agent_runtime.replica.handles import call, iterate

SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


def _runtime_error(request: Request, error: AgentRuntimeError) -> JSONResponse:
    headers = error_headers(request, error)
    return JSONResponse(
        runtime_error_body(error).model_dump(), status_code=http_status(error), headers=headers
    )


class OpenAIRoute(APIRoute):
    """Answers runtime and validation errors (auth included) in OpenAI's error shape.

    The app's handlers use ``{"detail": ...}``, which OpenAI clients cannot read; errors
    raised while solving dependencies surface here, so the key check is covered too.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as error:
                body = validation_error_body(error.errors())
                return JSONResponse(body.model_dump(), status_code=422)
            except AgentRuntimeError as error:
                return _runtime_error(request, error)

        return handle


openai = APIRouter(prefix="/v1", tags=["openai"], route_class=OpenAIRoute)


@openai.get("/models")
async def list_models(services: ServicesDep, principal: ReadPrincipal) -> ModelList:
    """The configured aliases, then every configured model."""
    models = services.settings.models
    return models_response(models.aliases, list(models.models))


@openai.post("/chat/completions", response_model=None)
async def chat_completions(
    body: ChatCompletionRequest, services: ServicesDep, principal: RunPrincipal
) -> Response:
    request = to_chat_request(body, tenant_id=principal.tenant_id, key_id=principal.key_id)
    request.request_id = principal.request_id
    completion_id = new_completion_id()
    created = int(time.time())
    if not body.stream:
        result: ChatResult = await call(services.router.chat.remote(request))
        completion = completion_response(result, completion_id, created)
        timing = f"provider;dur={result.provider_ms:.2f}, router;dur={result.router_ms:.2f}"
        return JSONResponse(completion.model_dump(), headers={"Server-Timing": timing})

    generator = services.router.options(stream=True).stream.remote(request)
    chunks: AsyncIterator[AIMessageChunk] = iterate(generator)
    # The router settles on a model before its first chunk: waiting for it turns an
    # exhausted chain or a rejected request into a proper status instead of a broken stream.
    try:
        first = await anext(chunks)
    except StopAsyncIteration:
        first = None
    encoder = ChunkEncoder(completion_id, created, body.model, body.include_usage)

    async def events() -> AsyncIterator[bytes]:
        finished = False
        try:
            async for event in sse_stream(encoder, _prepend(first, chunks)):
                yield event
            finished = True
        finally:
            if not finished:
                generator.cancel()  # the client left: stop the provider call too

    return StreamingResponse(events(), media_type="text/event-stream", headers=SSE_HEADERS)


@openai.post("/embeddings", response_model=None)
async def embeddings(
    body: EmbeddingsRequest, services: ServicesDep, principal: RunPrincipal
) -> JSONResponse:
    """One vector per input, from ``model`` (a model or an alias) through the router."""
    request = to_embedding_request(body, tenant_id=principal.tenant_id, key_id=principal.key_id)
    request.request_id = principal.request_id
    result: EmbeddingResult = await call(services.router.embed.remote(request))
    answer = embeddings_response(result, body.encoding_format)
    timing = f"provider;dur={result.provider_ms:.2f}, router;dur={result.router_ms:.2f}"
    return JSONResponse(answer.model_dump(), headers={"Server-Timing": timing})


async def _prepend(
    first: AIMessageChunk | None, rest: AsyncIterator[AIMessageChunk]
) -> AsyncIterator[AIMessageChunk]:
    if first is not None:
        yield first
    async for chunk in rest:
        yield chunk
