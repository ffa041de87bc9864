"""One OpenAI-compatible provider, called over httpx: a request in, LangChain messages out.

:class:`ProviderClient` sends the router's :class:`~agent_runtime.core.types.ChatRequest` to
``POST {base_url}/chat/completions`` and turns the answer into an ``AIMessage`` (or, for
a stream, ``AIMessageChunk`` objects) the way ``ChatOpenAI`` does, using langchain-openai's
own converters, but without LangChain's callback machinery around each call (about 1.5 ms
a call here; see docs/benchmarks.md); an ``EmbeddingRequest`` goes to
``POST {base_url}/embeddings`` and comes back as vectors. It enforces the provider's timeouts itself
(``asyncio.timeout`` too: httpx's are per read, and in-process transports ignore them) and
maps every failure at this boundary:

* 400/404/413/422 -> :class:`~agent_runtime.core.errors.ProviderRejected`: the caller's request is
at
  fault; no other model would take it;
* any other status, timeouts, connection errors, malformed answers -> :class:`ProviderFailure`
  (a :class:`~agent_runtime.core.errors.ProviderError`) with its ``kind`` and a 429's
  ``Retry-After``.

Messages never carry the provider's key (an echoed key is masked).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncGenerator, Mapping
from typing import Any, Literal

import httpx
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_openai.chat_models.base import (
    _convert_delta_to_message_chunk,
    _convert_dict_to_message,
    _convert_message_to_dict,
    _create_usage_metadata,
)

from agent_runtime.config.models_file import ProviderConfig
from agent_runtime.core.errors import ProviderError, ProviderRejected
from agent_runtime.core.types import ChatRequest, EmbeddingRequest, TokenUsage

FailureKind = Literal["status", "timeout", "connection", "invalid"]

# Statuses that mean "your request is wrong": another model would refuse it too.
CALLER_FAULT_STATUSES = frozenset({400, 404, 413, 422})
_TOOL_CHOICE_KEYWORDS = frozenset({"none", "auto", "required"})
_DONE = "[DONE]"


class ProviderFailure(ProviderError):
    """A provider call failed on the provider's side: it may count, and may be retried."""

    def __init__(
        self,
        message: str,
        model: str,
        status: int | None = None,
        *,
        kind: FailureKind = "status",
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message, model=model, status=status)
        self.kind = kind
        self.retry_after_s = retry_after_s
        self.details.update(kind=kind, retry_after_s=retry_after_s)


def _tool_choice(choice: str | dict[str, Any]) -> str | dict[str, Any]:
    if isinstance(choice, str) and choice not in _TOOL_CHOICE_KEYWORDS:
        if choice == "any":
            return "required"
        return {"type": "function", "function": {"name": choice}}
    return choice


def retry_after_s(headers: httpx.Headers) -> float | None:
    """A 429's wait: ``retry-after-ms`` (OpenAI's), else ``Retry-After`` in seconds."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            continue  # an HTTP date: rare from model providers, treated as absent
        if seconds >= 0:
            return seconds
    return None


class ProviderClient:
    """Calls of one provider; ``http`` may be shared (the caller then closes it)."""

    def __init__(
        self, name: str, config: ProviderConfig, base_url: str, http: httpx.AsyncClient
    ) -> None:
        self.name = name
        self.config = config
        self.base_url = base_url.rstrip("/")
        self._url = f"{self.base_url}/chat/completions"
        self._embeddings_url = f"{self.base_url}/embeddings"
        self._key = config.key()
        self.headers = {"Authorization": f"Bearer {self._key}"}
        self.http = http
        timeouts = config.timeouts
        self._connect_s = timeouts.connect_s
        self._stream_timeout = httpx.Timeout(
            max(timeouts.first_token_s, timeouts.idle_s), connect=timeouts.connect_s
        )

    # -- requests ------------------------------------------------------------------------

    def embeddings_payload(self, model_id: str, request: EmbeddingRequest) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model_id, "input": request.texts}
        body["encoding_format"] = "float"
        if request.dimensions is not None:
            body["dimensions"] = request.dimensions
        return body

    def payload(
        self, model_id: str, request: ChatRequest, max_tokens: int | None, stream: bool
    ) -> dict[str, Any]:
        try:
            messages = [_convert_message_to_dict(message) for message in request.messages]
        except (TypeError, ValueError) as exc:
            raise ProviderRejected(f"cannot send the messages: {exc}", model=model_id) from exc
        body: dict[str, Any] = {"model": model_id, "messages": messages, "stream": stream}
        if stream:
            body["stream_options"] = {"include_usage": True}
        if request.tools:
            body["tools"] = request.tools
            if request.tool_choice is not None:
                body["tool_choice"] = _tool_choice(request.tool_choice)
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if max_tokens is not None:
            body["max_completion_tokens"] = max_tokens
        if request.stop:
            body["stop"] = request.stop
        return body

    async def complete(self, model_id: str, body: Mapping[str, Any], timeout_s: float) -> AIMessage:
        """One non-streamed call, answered within ``timeout_s`` or failed."""
        response = await self._post(self._url, model_id, body, timeout_s)
        try:
            return self._message(response.json())
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise ProviderFailure(
                f"invalid response: {type(exc).__name__}", model=model_id, kind="invalid"
            ) from exc

    async def embed(
        self, model_id: str, body: Mapping[str, Any], timeout_s: float
    ) -> tuple[list[list[float]], TokenUsage]:
        """``POST /embeddings``: one vector per input, in the inputs' order, and the usage."""
        response = await self._post(self._embeddings_url, model_id, body, timeout_s)
        try:
            return embeddings_answer(response.json(), len(body["input"]))
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise ProviderFailure(
                f"invalid response: {type(exc).__name__}: {exc}", model=model_id, kind="invalid"
            ) from exc

    async def _post(
        self, url: str, model_id: str, body: Mapping[str, Any], timeout_s: float
    ) -> httpx.Response:
        """The provider's answer to ``body``, with a status below 400, or a failure."""
        timeout = httpx.Timeout(timeout_s, connect=min(self._connect_s, timeout_s))
        try:
            async with asyncio.timeout(timeout_s):
                response = await self.http.post(
                    url, json=body, headers=self.headers, timeout=timeout
                )
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise ProviderFailure(
                f"no answer within {timeout_s:.3g} s", model=model_id, kind="timeout"
            ) from exc
        except httpx.TransportError as exc:
            raise self._transport_failure(model_id, exc) from exc
        if response.status_code >= 400:
            raise self._status_failure(model_id, response.status_code, response)
        return response

    async def stream(
        self,
        model_id: str,
        body: Mapping[str, Any],
        *,
        first_token_s: float,
        idle_s: float,
    ) -> AsyncGenerator[AIMessageChunk, None]:
        """The answer's chunks; the first token within ``first_token_s``, then no gap
        longer than ``idle_s`` (a stalled provider fails instead of hanging)."""
        events = self._events(model_id, body)
        first_by = time.monotonic() + first_token_s
        started = False
        try:
            while True:
                wait_s = idle_s if started else first_by - time.monotonic()
                try:
                    async with asyncio.timeout(max(wait_s, 0.0)):
                        event = await anext(events)
                except StopAsyncIteration:
                    return
                except TimeoutError as exc:
                    what = (
                        f"no token for {idle_s:.3g} s"
                        if started
                        else f"no first token within {first_token_s:.3g} s"
                    )
                    raise ProviderFailure(what, model=model_id, kind="timeout") from exc
                chunk = self._chunk(model_id, event)
                if chunk is None:
                    continue
                started = started or bool(chunk.content or chunk.tool_call_chunks)
                yield chunk
        finally:
            await events.aclose()

    async def _events(
        self, model_id: str, body: Mapping[str, Any]
    ) -> AsyncGenerator[dict[str, Any], None]:
        try:
            async with self.http.stream(
                "POST", self._url, json=body, headers=self.headers, timeout=self._stream_timeout
            ) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise self._status_failure(model_id, response.status_code, response)
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue  # blank separators, comments, "event:" lines
                    data = line[5:].strip()
                    if data == _DONE:
                        return
                    yield self._event(model_id, data)
            raise ProviderFailure(
                "the stream ended before [DONE]", model=model_id, kind="connection"
            )
        except httpx.TimeoutException as exc:
            raise ProviderFailure("timed out", model=model_id, kind="timeout") from exc
        except httpx.TransportError as exc:
            raise self._transport_failure(model_id, exc) from exc

    def _event(self, model_id: str, data: str) -> dict[str, Any]:
        try:
            event = json.loads(data)
        except ValueError as exc:
            raise ProviderFailure("invalid stream event", model=model_id, kind="invalid") from exc
        if not isinstance(event, dict):
            raise ProviderFailure("invalid stream event", model=model_id, kind="invalid")
        if event.get("error"):
            # An error after the headers (OpenAI sends them as data events).
            raise ProviderFailure(
                f"error mid-stream: {self._mask(_error_text(event, 'unknown error'))}",
                model=model_id,
            )
        return event

    # -- answers -------------------------------------------------------------------------

    def _message(self, data: dict[str, Any]) -> AIMessage:
        choice = data["choices"][0]
        message = _convert_dict_to_message(choice["message"])
        if not isinstance(message, AIMessage):
            raise TypeError(f"a {type(message).__name__} answer")
        usage = data.get("usage")
        if usage:
            message.usage_metadata = _create_usage_metadata(usage, data.get("service_tier"))
        message.response_metadata = {
            "token_usage": usage,
            "provider_model_name": data.get("model"),
            "system_fingerprint": data.get("system_fingerprint"),
            "id": data.get("id"),
            "finish_reason": choice.get("finish_reason"),
            "model_provider": "openai",
        }
        return message

    def _chunk(self, model_id: str, event: dict[str, Any]) -> AIMessageChunk | None:
        usage = event.get("usage")
        usage_metadata = _create_usage_metadata(usage, event.get("service_tier")) if usage else None
        choices = event.get("choices") or []
        if not choices:
            if usage_metadata is None:
                return None
            return AIMessageChunk(content="", usage_metadata=usage_metadata)
        choice = choices[0]
        delta = choice.get("delta")
        if delta is None:
            return None
        chunk = _convert_delta_to_message_chunk(delta, AIMessageChunk)
        if not isinstance(chunk, AIMessageChunk):
            raise ProviderFailure("a non-assistant stream", model=model_id, kind="invalid")
        if usage_metadata is not None:
            chunk.usage_metadata = usage_metadata
        if finish_reason := choice.get("finish_reason"):
            chunk.response_metadata["finish_reason"] = finish_reason
            if event.get("model"):
                chunk.response_metadata["provider_model_name"] = event["model"]
            if event.get("system_fingerprint"):
                chunk.response_metadata["system_fingerprint"] = event["system_fingerprint"]
        chunk.response_metadata["model_provider"] = "openai"
        return chunk

    # -- errors --------------------------------------------------------------------------

    def _status_failure(
        self, model_id: str, status: int, response: httpx.Response
    ) -> ProviderFailure | ProviderRejected:
        try:
            body = response.json()
        except ValueError:
            body = None
        detail = self._mask(_error_text(body, response.reason_phrase or f"HTTP {status}"))
        if status in CALLER_FAULT_STATUSES:
            return ProviderRejected(
                f"model {model_id!r} rejected the request: {detail}", model=model_id, status=status
            )
        wait_s = retry_after_s(response.headers) if status in (429, 503) else None
        return ProviderFailure(
            f"HTTP {status}: {detail}", model=model_id, status=status, retry_after_s=wait_s
        )

    def _transport_failure(self, model_id: str, exc: httpx.TransportError) -> ProviderFailure:
        return ProviderFailure(
            f"connection failed: {type(exc).__name__}", model=model_id, kind="connection"
        )

    def _mask(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text


def _error_text(body: object, fallback: str) -> str:
    """OpenAI's ``{"error": {"message": ...}}`` message, or ``fallback``."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(error, str) and error:
            return error
        if isinstance(body.get("message"), str):
            return str(body["message"])
    return fallback


def embeddings_answer(data: Any, count: int) -> tuple[list[list[float]], TokenUsage]:
    """The vectors of an OpenAI ``/embeddings`` answer, put in order by ``index``, and its
    usage; ``ValueError``, ``KeyError`` or ``TypeError`` for anything else."""
    vectors: list[list[float] | None] = [None] * count
    for item in data["data"]:
        index = item["index"]
        if not isinstance(index, int) or not 0 <= index < count or vectors[index] is not None:
            raise ValueError(f"embedding index {index!r} out of place")
        vectors[index] = _vector(item["embedding"])
    missing = [index for index, vector in enumerate(vectors) if vector is None]
    if missing:
        raise ValueError(f"no embedding for input {missing[0]}")
    tokens = (data.get("usage") or {}).get("prompt_tokens", 0)
    if not isinstance(tokens, int) or tokens < 0:
        raise TypeError("usage.prompt_tokens is not a count")
    return [vector for vector in vectors if vector is not None], TokenUsage(input_tokens=tokens)


def _vector(values: Any) -> list[float]:
    if not isinstance(values, list) or not values:
        raise TypeError("an embedding is not a list of numbers")
    if not all(type(v) in (int, float) and math.isfinite(v) for v in values):
        raise TypeError("an embedding holds something other than finite numbers")
    return [float(v) for v in values]
