"""OpenAI clients a graph builds itself, sent to the model router by configuration alone.

A user's graph that makes ``ChatOpenAI(...)`` or ``init_chat_model("openai:...")`` calls the
provider its environment names. With ``AGENT_APP_ROUTE_OPENAI_CLIENTS=true``,
:func:`route_openai_clients` points those clients (``OPENAI_BASE_URL``) at
:data:`ROUTED_BASE_URL`, a host that exists only inside the process: requests to it never
reach the network. They are answered in process by the router of the run in progress
(:func:`~agent_runtime.execution.chat_model.router_calls`), so the calls get the
runtime's breakers, fallback chains, budgets and usage per tenant and run, exactly as
``runtime_model`` calls do, with no code change.

The hook wraps the transports of httpx and httpx2 (the HTTP libraries openai clients use)
and diverts only requests to :data:`ROUTED_BASE_URL`; every other request goes on
unchanged. Sync clients (``invoke`` in a sync node, run in a worker thread) are answered
through the run's event loop, as one buffered body.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import importlib.util
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, MutableMapping
from types import ModuleType
from typing import Any

from langchain_core.messages import AIMessageChunk
from pydantic import ValidationError

from agent_runtime.core.errors import AgentRuntimeError, http_status
from agent_runtime.core.types import ChatRequest, TokenUsage
from agent_runtime.execution.chat_model import RouterCalls, current_router, record_call
from agent_runtime.gateway.model_router_stream import STREAM_SUMMARY_KEY, StreamSummary
from agent_runtime.gateway.openai_compat import (
    ChatCompletionRequest,
    ChunkEncoder,
    completion_response,
    new_completion_id,
    runtime_error_body,
    sse_stream,
    to_chat_request,
    validation_error_body,
)

logger = logging.getLogger(__name__)

ROUTED_HOST = "model-router.agent-runtime.internal"
ROUTED_BASE_URL = f"http://{ROUTED_HOST}/v1"
# The key routed clients send when the app sets none: OpenAI clients refuse to start
# without one, and the routed requests never leave the process (the router holds the real
# provider keys), so any fixed value serves.
ROUTED_API_KEY = "routed-by-agent-runtime"
_CHAT_PATH = "/v1/chat/completions"
_MARK = "_agent_runtime_routed"


def route_openai_clients(environ: MutableMapping[str, str] = os.environ) -> None:
    """Point OpenAI clients built from here on at the router, and answer them in process.

    Call it before the app's modules are imported: clients read the environment when they
    are built. Idempotent.
    """
    previous = environ.get("OPENAI_BASE_URL")
    if previous not in (None, ROUTED_BASE_URL):
        logger.info("OPENAI_BASE_URL=%s replaced: OpenAI clients use the router", previous)
    environ["OPENAI_BASE_URL"] = ROUTED_BASE_URL
    environ.pop("OPENAI_API_BASE", None)  # langchain-openai's older name wins over the above
    environ.setdefault("OPENAI_API_KEY", ROUTED_API_KEY)
    _install()


# The HTTP libraries OpenAI clients are built on: httpx, and httpx2 in newer openai releases.
_HTTP_LIBRARIES = ("httpx", "httpx2")


def _install() -> None:
    for name in _HTTP_LIBRARIES:
        if importlib.util.find_spec(name) is not None:
            _divert(importlib.import_module(name))


def _divert(lib: ModuleType) -> None:
    """Answer ``lib``'s requests to :data:`ROUTED_HOST` in process; others as before."""
    async_handle = lib.AsyncHTTPTransport.handle_async_request
    if getattr(async_handle, _MARK, False):
        return
    sync_handle = lib.HTTPTransport.handle_request

    async def handle_async_request(self: object, request: Any) -> Any:
        if request.url.host != ROUTED_HOST:
            return await async_handle(self, request)
        return await answer(lib, request)

    def handle_request(self: object, request: Any) -> Any:
        if request.url.host != ROUTED_HOST:
            return sync_handle(self, request)
        return _answer_from_thread(lib, request)

    setattr(handle_async_request, _MARK, True)
    lib.AsyncHTTPTransport.handle_async_request = handle_async_request
    lib.HTTPTransport.handle_request = handle_request


class _Chunks:
    """A streamed answer's SSE bytes; closing it early stops the router's stream."""

    def __init__(self, events: AsyncIterator[bytes]) -> None:
        self._events = events

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for event in self._events:
            yield event

    async def aclose(self) -> None:
        close: Callable[[], Any] | None = getattr(self._events, "aclose", None)
        if close is not None:
            await close()


@functools.cache
def _stream_type(lib: ModuleType) -> type[_Chunks]:
    """:class:`_Chunks` as the library's own stream type, which its clients check for."""
    return type(f"Routed{lib.__name__}Chunks", (_Chunks, lib.AsyncByteStream), {})


def _json(lib: ModuleType, status: int, payload: object) -> Any:
    return lib.Response(
        status, headers={"content-type": "application/json"}, content=json.dumps(payload)
    )


async def answer(lib: ModuleType, request: Any) -> Any:
    """The router's answer to one OpenAI request, as the OpenAI API would give it."""
    if request.method != "POST" or request.url.path != _CHAT_PATH:
        detail = f"{request.method} {request.url.path} is not routed; only {_CHAT_PATH} is"
        return _json(lib, 404, {"error": {"message": detail, "type": "invalid_request_error"}})
    try:
        body = ChatCompletionRequest.model_validate_json(await request.aread())
    except ValidationError as error:
        return _json(lib, 422, validation_error_body(error.errors()).model_dump())
    try:
        calls = current_router()
    except RuntimeError as error:
        return _json(lib, 503, {"error": {"message": str(error), "type": "server_error"}})
    chat_request = to_chat_request(body)
    try:
        if body.stream:
            return await _streamed(lib, calls, body, chat_request)
        started = time.perf_counter()
        result = await calls.chat(chat_request)
    except AgentRuntimeError as error:
        return _json(lib, http_status(error), runtime_error_body(error).model_dump())
    router_ms = (time.perf_counter() - started) * 1000
    record_call(result.model, router_ms, result.provider_ms, result.usage)
    completion = completion_response(result, new_completion_id(), int(time.time()))
    return _json(lib, 200, completion.model_dump())


async def _streamed(
    lib: ModuleType, calls: RouterCalls, body: ChatCompletionRequest, chat_request: ChatRequest
) -> Any:
    if calls.stream is None:
        raise RuntimeError("the router of this run cannot stream")
    chunks = _recorded(calls.stream(chat_request))
    # The router settles on a model before its first chunk: a refused request or an
    # exhausted chain becomes a status here, not a broken stream.
    first = await anext(chunks, None)
    encoder = ChunkEncoder(new_completion_id(), int(time.time()), body.model, body.include_usage)
    events = sse_stream(encoder, _prepend(first, chunks))
    headers = {"content-type": "text/event-stream"}
    return lib.Response(200, headers=headers, stream=_stream_type(lib)(events))


async def _recorded(chunks: AsyncIterator[AIMessageChunk]) -> AsyncIterator[AIMessageChunk]:
    """``chunks``, adding the call to the run's timings once the router sums it up."""
    started = time.perf_counter()
    usage = TokenUsage()
    async for chunk in chunks:
        if chunk.usage_metadata is not None:
            usage.input_tokens += chunk.usage_metadata["input_tokens"]
            usage.output_tokens += chunk.usage_metadata["output_tokens"]
        raw_summary = chunk.response_metadata.get(STREAM_SUMMARY_KEY)
        if raw_summary is not None:
            summary = StreamSummary.model_validate(raw_summary)
            router_ms = (time.perf_counter() - started) * 1000
            record_call(summary.model, router_ms, summary.provider_ms, usage)
        yield chunk


async def _prepend(
    first: AIMessageChunk | None, rest: AsyncIterator[AIMessageChunk]
) -> AsyncIterator[AIMessageChunk]:
    if first is not None:
        yield first
    async for chunk in rest:
        yield chunk


def _answer_from_thread(lib: ModuleType, request: Any) -> Any:
    """A sync client's request, answered on the run's event loop (whole body at once)."""
    try:
        loop = current_router().loop
    except RuntimeError as error:
        return _json(lib, 503, {"error": {"message": str(error), "type": "server_error"}})
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if loop is None or running is loop:
        # Waiting here on the loop that must answer would never end.
        detail = "a sync OpenAI client cannot be answered here; call the model with ainvoke"
        return _json(lib, 503, {"error": {"message": detail, "type": "server_error"}})
    buffered = lib.Request(
        request.method, request.url, headers=request.headers, content=request.read()
    )

    async def whole() -> Any:
        response = await answer(lib, buffered)
        content = await response.aread()
        return lib.Response(response.status_code, headers=response.headers, content=content)

    timeouts = request.extensions.get("timeout", {})
    # The answer runs in a copy of this thread's context: the run's ids and router.
    future = asyncio.run_coroutine_threadsafe(whole(), loop)
    return future.result(timeout=timeouts.get("read"))
