"""The model router: an alias becomes a fallback chain of provider models, each behind a breaker.

:class:`ModelRouter` calls an OpenAI-compatible provider through ``ChatOpenAI`` (one per
provider model, sharing one pooled ``httpx.AsyncClient``). For each model of the chain it
skips a model whose breaker is open, gives every call a hard deadline of
``provider_timeout_s``, and maps the client's exceptions at this boundary:

* 5xx, 429, 401/403, timeouts, connection errors -> :class:`ProviderError`: counted by the
  model's breaker, and the next model of the chain is tried;
* 400/404/413/422 (and context-length overflows) -> :class:`ProviderRejected`: the caller's
  request is at fault, so it is raised at once, not counted, and no other model is tried.

When no model answers, :class:`ProviderChainExhausted` lists what happened to each.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

import httpx
import openai
from langchain_core.exceptions import ContextOverflowError
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.messages.ai import UsageMetadata
from langchain_core.runnables import RunnableBinding, RunnableConfig
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from runtime.breakers import BreakerRegistry, call, guarded
from runtime.errors import (
    CircuitOpen,
    DependencyUnavailable,
    ProviderChainExhausted,
    ProviderError,
    ProviderRejected,
)
from runtime.settings import ProviderSettings
from runtime.types import Attempt, ChatRequest, ChatResult, TokenUsage

OnCall = Callable[[str, Attempt, TokenUsage | None], None]

# Statuses that mean "your request is wrong": another model would refuse it too.
CALLER_FAULT_STATUSES = frozenset({400, 404, 413, 422})
MAX_CONNECTIONS = 200
PING_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 5.0
# response_metadata key of the last chunk of :meth:`ModelRouter.stream` (a StreamSummary).
STREAM_SUMMARY_KEY = "router"


class StreamSummary(BaseModel):
    """What :meth:`ModelRouter.stream` reports in its last chunk, for timing and metrics."""

    model: str
    provider_ms: float
    router_ms: float
    attempts: list[Attempt]


def _elapsed_ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000


def _counts(exc: BaseException) -> bool:
    """Only provider-side failures trip a breaker (not rejections, not cancellations)."""
    return isinstance(exc, ProviderError)


def _usage(message: AIMessage) -> TokenUsage:
    usage = message.usage_metadata
    if usage is None:
        return TokenUsage()
    return TokenUsage(input_tokens=usage["input_tokens"], output_tokens=usage["output_tokens"])


def _usage_metadata(usage: TokenUsage) -> UsageMetadata:
    return UsageMetadata(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        total_tokens=usage.total_tokens,
    )


class ModelRouter:
    """Routes chat requests over fallback chains of provider models."""

    def __init__(
        self,
        settings: ProviderSettings,
        base_url: str,
        breakers: BreakerRegistry,
        http_client: httpx.AsyncClient | None = None,
        on_call: OnCall | None = None,
    ) -> None:
        self._settings = settings
        self._base_url = base_url.rstrip("/")
        self._breakers = breakers
        self._on_call = on_call
        self._timeout_s = settings.provider_timeout_s
        self._owns_client = http_client is None
        self._client = http_client or httpx.AsyncClient(
            timeout=httpx.Timeout(
                settings.provider_timeout_s,
                connect=min(CONNECT_TIMEOUT_S, settings.provider_timeout_s),
            ),
            limits=httpx.Limits(
                max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS
            ),
        )
        self._models: dict[str, ChatOpenAI] = {}

    async def close(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    def resolve(self, alias: str) -> list[str]:
        """The fallback chain of ``alias``, or ``[alias]`` for a direct provider model name."""
        return list(self._settings.model_aliases.get(alias, [alias]))

    def breaker_states(self) -> dict[str, str]:
        return self._breakers.states()

    async def ping(self) -> None:
        """Raise :class:`DependencyUnavailable` unless the provider lists its models."""
        timeout_s = min(PING_TIMEOUT_S, self._timeout_s)
        key = self._settings.provider_api_key.get_secret_value()
        try:
            # asyncio.timeout too: in-process transports ignore httpx's timeouts.
            async with asyncio.timeout(timeout_s):
                response = await self._client.get(
                    f"{self._base_url}/models",
                    headers={"Authorization": f"Bearer {key}"},
                    timeout=timeout_s,
                )
            response.raise_for_status()
        except (httpx.HTTPError, TimeoutError) as exc:
            raise DependencyUnavailable(
                f"model provider unreachable ({type(exc).__name__})", base_url=self._base_url
            ) from exc

    async def chat(self, request: ChatRequest) -> ChatResult:
        started = time.perf_counter()
        attempts: list[Attempt] = []
        failures: list[str] = []
        provider_ms = 0.0
        for model in self.resolve(request.alias):
            breaker = self._breakers.get(model)
            if breaker.refuses_calls():
                self._skip(request.alias, model, attempts, failures)
                continue
            call_started = time.perf_counter()
            try:
                message = await call(
                    breaker, functools.partial(self._invoke, model, request), counts=_counts
                )
            except CircuitOpen:
                # Another caller's half-open trial call is in flight.
                self._skip(request.alias, model, attempts, failures)
                continue
            except ProviderRejected as exc:
                latency = _elapsed_ms(call_started)
                self._record(request.alias, attempts, model, "rejected", exc.message, latency)
                raise
            except ProviderError as exc:
                latency = _elapsed_ms(call_started)
                provider_ms += latency
                self._record(request.alias, attempts, model, "error", exc.message, latency)
                failures.append(f"{model}: {_reason(exc)}")
                continue
            latency = _elapsed_ms(call_started)
            provider_ms += latency
            usage = _usage(message)
            if message.usage_metadata is None:
                message.usage_metadata = _usage_metadata(usage)
            self._record(request.alias, attempts, model, "ok", None, latency, usage)
            return ChatResult(
                message=message,
                model=str(message.response_metadata.get("model_name") or model),
                usage=usage,
                provider_ms=provider_ms,
                router_ms=_elapsed_ms(started),
                attempts=attempts,
            )
        raise ProviderChainExhausted(request.alias, failures)

    async def stream(self, request: ChatRequest) -> AsyncIterator[AIMessageChunk]:
        """Stream the answer; the last chunk's ``response_metadata["router"]`` is a
        :class:`StreamSummary`. A model failing before its first chunk is replaced by the
        next one unseen; a failure after it raises :class:`ProviderError`."""
        started = time.perf_counter()
        attempts: list[Attempt] = []
        failures: list[str] = []
        provider_ms = 0.0
        for model in self.resolve(request.alias):
            breaker = self._breakers.get(model)
            if breaker.refuses_calls():
                self._skip(request.alias, model, attempts, failures)
                continue
            call_started = time.perf_counter()
            usage = TokenUsage()
            answered = model
            streamed = False
            try:
                with guarded(breaker, counts=_counts):
                    async with aclosing(self._provider_chunks(model, request)) as chunks:
                        async for chunk in chunks:
                            if chunk.usage_metadata is not None:
                                usage.input_tokens += chunk.usage_metadata["input_tokens"]
                                usage.output_tokens += chunk.usage_metadata["output_tokens"]
                            answered = str(chunk.response_metadata.get("model_name") or answered)
                            streamed = True
                            yield chunk
            except CircuitOpen:
                self._skip(request.alias, model, attempts, failures)
                continue
            except ProviderRejected as exc:
                latency = _elapsed_ms(call_started)
                self._record(request.alias, attempts, model, "rejected", exc.message, latency)
                raise
            except ProviderError as exc:
                latency = _elapsed_ms(call_started)
                provider_ms += latency
                self._record(request.alias, attempts, model, "error", exc.message, latency)
                if streamed:
                    raise ProviderError(
                        f"the answer from {model!r} broke off after it began: {exc.message}",
                        model=model,
                        status=exc.status,
                    ) from exc
                failures.append(f"{model}: {_reason(exc)}")
                continue
            latency = _elapsed_ms(call_started)
            provider_ms += latency
            self._record(request.alias, attempts, model, "ok", None, latency, usage)
            summary = StreamSummary(
                model=answered,
                provider_ms=provider_ms,
                router_ms=_elapsed_ms(started),
                attempts=attempts,
            )
            yield AIMessageChunk(
                content="", response_metadata={STREAM_SUMMARY_KEY: summary.model_dump()}
            )
            return
        raise ProviderChainExhausted(request.alias, failures)

    # -- one provider call -------------------------------------------------------------

    def _model(self, model: str) -> ChatOpenAI:
        chat_model = self._models.get(model)
        if chat_model is None:
            chat_model = ChatOpenAI(
                model=model,
                base_url=self._base_url,
                api_key=self._settings.provider_api_key,
                max_retries=0,  # the router owns retries: the fallback chain and breakers
                timeout=self._timeout_s,
                http_async_client=self._client,
                stream_usage=True,
            )
            self._models[model] = chat_model
        return chat_model

    def _call_options(self, model: str, request: ChatRequest) -> dict[str, Any]:
        """Per-call options for ``ChatOpenAI`` (tools normalised by its ``bind_tools``).

        They are passed to the model itself rather than through a ``RunnableBinding``: a
        binding would merge the caller's callbacks back in (see ``_isolated_config``).
        """
        options: dict[str, Any] = {"stop": request.stop}
        if request.tools:
            binding = self._model(model).bind_tools(request.tools, tool_choice=request.tool_choice)
            if not isinstance(binding, RunnableBinding):
                raise TypeError(f"ChatOpenAI.bind_tools returned {type(binding).__name__}")
            options.update(binding.kwargs)
        if request.temperature is not None:
            options["temperature"] = request.temperature
        if request.max_tokens is not None:
            options["max_tokens"] = request.max_tokens
        return options

    async def _invoke(self, model: str, request: ChatRequest) -> AIMessage:
        chat_model, options = self._model(model), self._call_options(model, request)
        try:
            # A hard deadline of our own: httpx's timeout is per read, not per call.
            async with asyncio.timeout(self._timeout_s):
                return await chat_model.ainvoke(request.messages, _isolated_config(), **options)
        except (openai.APIError, TimeoutError) as exc:
            raise self._map_error(model, exc) from exc

    async def _provider_chunks(
        self, model: str, request: ChatRequest
    ) -> AsyncGenerator[AIMessageChunk, None]:
        chat_model, options = self._model(model), self._call_options(model, request)
        stream = chat_model.astream(request.messages, _isolated_config(), **options)
        try:
            while True:
                try:
                    # The deadline applies to each chunk: a long answer may take a while.
                    async with asyncio.timeout(self._timeout_s):
                        chunk = await anext(stream)
                except StopAsyncIteration:
                    return
                yield chunk
        except (openai.APIError, TimeoutError) as exc:
            raise self._map_error(model, exc) from exc
        finally:
            if isinstance(stream, AsyncGenerator):
                await stream.aclose()

    def _map_error(
        self, model: str, exc: openai.APIError | TimeoutError
    ) -> ProviderError | ProviderRejected:
        if isinstance(exc, TimeoutError):
            return ProviderError(f"no answer within {self._timeout_s:g} s", model=model)
        detail = self._provider_message(exc)
        if isinstance(exc, ContextOverflowError):
            return ProviderRejected(f"model {model!r} rejected the request: {detail}", model=model)
        if isinstance(exc, openai.APITimeoutError):
            return ProviderError(f"timed out: {detail}", model=model)
        if isinstance(exc, openai.APIConnectionError):
            return ProviderError(f"connection failed: {detail}", model=model)
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            if status in CALLER_FAULT_STATUSES:
                return ProviderRejected(
                    f"model {model!r} rejected the request: {detail}", model=model, status=status
                )
            return ProviderError(f"HTTP {status}: {detail}", model=model, status=status)
        return ProviderError(f"invalid response: {detail}", model=model)

    def _provider_message(self, exc: openai.APIError) -> str:
        """The provider's own error message, with the API key masked should it echo it."""
        body = exc.body
        message = body.get("message") if isinstance(body, dict) else None
        text = message if isinstance(message, str) and message else exc.message
        key = self._settings.provider_api_key.get_secret_value()
        return text.replace(key, "***") if key else text

    # -- bookkeeping -------------------------------------------------------------------

    def _skip(self, alias: str, model: str, attempts: list[Attempt], failures: list[str]) -> None:
        self._record(alias, attempts, model, "circuit_open", "circuit breaker open", 0.0)
        failures.append(f"{model}: circuit open")

    def _record(
        self,
        alias: str,
        attempts: list[Attempt],
        model: str,
        outcome: str,
        error: str | None,
        latency_ms: float,
        usage: TokenUsage | None = None,
    ) -> None:
        attempt = Attempt(model=model, outcome=outcome, error=error, latency_ms=latency_ms)
        attempts.append(attempt)
        if self._on_call is not None:
            self._on_call(alias, attempt, usage)


def _reason(exc: ProviderError) -> str:
    return f"HTTP {exc.status}" if exc.status is not None else exc.message


def _isolated_config() -> RunnableConfig:
    # No callbacks: the provider call is the router's business, not a step of the caller's
    # run (in-process, the caller's LangGraph stream would otherwise see every token twice).
    return RunnableConfig(callbacks=[])
