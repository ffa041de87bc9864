"""The model router: an alias becomes a fallback chain of provider models, each behind a breaker.

:class:`ModelRouter` takes its providers, models and aliases from a
:class:`~agent_runtime.config.models_file.ModelsConfig` and calls each provider through a
:class:`~agent_runtime.gateway.provider_client.ProviderClient`. For every request it walks the chain
within one deadline (``deadline_s``):

* a model whose breaker is open is skipped at once (no call, no wait); the fallback is
  chosen per request, so a failure never switches the model for other users;
* a retryable failure (by the provider's retry policy) is retried on the same model after a
  jittered exponential backoff, or after a 429's ``Retry-After`` when that is short enough
  (``retry_after_max_s``) and fits the deadline; otherwise the next model is tried;
* 5xx, timeouts and connection errors count against the model's breaker (the policy says
  which statuses); a 400/404/413/422 is the caller's request at fault: it is raised at
  once as :class:`ProviderRejected`, not counted, and no other model is tried.

Streams: a failure before the first token moves to the next model unseen (chunks are held
back until the first one with content); a failure after it ends the stream with a last
chunk whose ``response_metadata["partial"]`` is true, then :class:`StreamInterrupted`.

Observers (:mod:`agent_runtime.gateway.call_observer`) see each request before and after: budgets,
the usage ledger and metrics plug in there. When no model answers,
:class:`ProviderChainExhausted` lists what happened to each.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.messages.ai import UsageMetadata
from pydantic import BaseModel

from agent_runtime.config.builtin_models import builtin_config
from agent_runtime.config.models_file import ModelsConfig, RetryPolicy
from agent_runtime.config.provider_settings import ProviderSettings
from agent_runtime.core.errors import (
    CircuitOpen,
    DependencyUnavailable,
    NotFound,
    ProviderChainExhausted,
    ProviderError,
    ProviderRejected,
)
from agent_runtime.core.types import Attempt, ChatRequest, ChatResult, TokenUsage
from agent_runtime.gateway.breakers import BreakerRegistry, Breakers, guarded, policy_filter
from agent_runtime.gateway.call_observer import (
    CallObserver,
    CallPlan,
    CallReport,
    Observers,
    Outcome,
)
from agent_runtime.gateway.chains import Route, build_routes
from agent_runtime.gateway.provider_client import ProviderClient

PING_TIMEOUT_S = 5.0
# response_metadata key of the last chunk of :meth:`ModelRouter.stream` (a StreamSummary).
STREAM_SUMMARY_KEY = "router"
PARTIAL_KEY = "partial"
Sleep = Callable[[float], Awaitable[None]]


class StreamSummary(BaseModel):
    """What :meth:`ModelRouter.stream` reports in its last chunk, for timing and metrics."""

    model: str
    provider_ms: float
    router_ms: float
    attempts: list[Attempt]
    partial: bool = False
    cost_usd: float | None = None  # at the answering model's price (None: unpriced)


class StreamInterrupted(ProviderError):
    """A streamed answer broke off after its first token: what was sent is partial."""

    def __init__(self, message: str, model: str, status: int | None = None) -> None:
        super().__init__(message, model=model, status=status)
        self.partial = True
        self.details["partial"] = True


def _usd(amount: Decimal | None) -> float | None:
    return None if amount is None else float(amount)


def _elapsed_ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000


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


def _reason(exc: ProviderError) -> str:
    return f"HTTP {exc.status}" if exc.status is not None else exc.message


def _outcome(exc: BaseException) -> Outcome:
    if isinstance(exc, StreamInterrupted):
        return "partial"
    if isinstance(exc, ProviderRejected):
        return "rejected"
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return "cancelled"
    return "error"


@dataclass
class _Progress:
    """One request's walk down its chain."""

    alias: str
    started: float
    deadline: float
    attempts: list[Attempt] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    provider_ms: float = 0.0
    model: str | None = None
    usage: TokenUsage = field(default_factory=TokenUsage)
    route: Route | None = None
    first_token_ms: float | None = None

    def record(self, model: str, outcome: str, error: str | None, latency_ms: float) -> None:
        self.attempts.append(
            Attempt(model=model, outcome=outcome, error=error, latency_ms=latency_ms)
        )
        if outcome not in ("circuit_open", "deadline"):
            self.provider_ms += latency_ms

    def skip(self, model: str, outcome: str, why: str) -> None:
        self.record(model, outcome, why, 0.0)
        self.failures.append(f"{model}: {why}")

    def report(self, outcome: Outcome, error: BaseException | None = None) -> CallReport:
        price = self.route.planned.price if self.route is not None else None
        return CallReport(
            outcome=outcome,
            model=self.model,
            usage=self.usage,
            latency_ms=_elapsed_ms(self.started),
            attempts=tuple(self.attempts),
            error=error,
            price=price,
            first_token_ms=self.first_token_ms,
        )


class ModelRouter:
    """Routes chat requests over fallback chains of provider models.

    ``config`` is a models config, or (as before models files) ``ProviderSettings``, whose
    provider is then at ``base_url``. For a models config, ``base_url`` is where the
    built-in fake provider answers. ``http_client``, if given, serves every provider and
    stays the caller's to close.
    """

    def __init__(
        self,
        config: ModelsConfig | ProviderSettings,
        base_url: str = "",
        breakers: Breakers | None = None,
        http_client: httpx.AsyncClient | None = None,
        observers: Sequence[CallObserver] = (),
        *,
        sleep: Sleep = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if isinstance(config, ProviderSettings):
            config = builtin_config(config, base_url=base_url or None)
        self.config = config
        policy = config.breaker
        self._breakers: Breakers = breakers or BreakerRegistry(
            policy.fail_max, policy.reset_timeout_s
        )
        self._counts = policy_filter(policy)
        self._observers = Observers(observers)
        self._sleep = sleep
        self._jitter = jitter
        self._deadline_s = config.deadline_s
        self._clients: dict[str, ProviderClient] = {}
        self._owned: list[httpx.AsyncClient] = []
        for name, provider in config.providers.items():
            if provider.kind == "fake" and not base_url:
                raise ValueError("the built-in fake provider's base_url is needed")
            http = http_client
            if http is None:
                timeouts = provider.timeouts
                http = httpx.AsyncClient(
                    timeout=httpx.Timeout(timeouts.request_s, connect=timeouts.connect_s),
                    limits=httpx.Limits(
                        max_connections=provider.max_connections,
                        max_keepalive_connections=provider.max_connections,
                    ),
                )
                self._owned.append(http)
            self._clients[name] = ProviderClient(name, provider, provider.url(base_url), http)
        self._routes = build_routes(config, self._clients)

    async def close(self) -> None:
        for client in self._owned:
            await client.aclose()

    @property
    def breakers(self) -> Breakers:
        return self._breakers

    def resolve(self, alias: str) -> list[str]:
        """The fallback chain of ``alias``, or ``[alias]`` for a direct model name."""
        return [route.name for route in self._chain(alias)]

    def breaker_states(self) -> dict[str, str]:
        return self._breakers.states()

    def _chain(self, alias: str) -> tuple[Route, ...]:
        chain = self._routes.get(alias)
        if chain is not None:
            return chain
        default = self.config.default_provider
        if default is None:
            raise NotFound(
                f"unknown model {alias!r}: GET /v1/models lists the models and aliases",
                model=alias,
            )
        return (Route.unlisted(alias, self._clients[default]),)

    async def ping(self) -> None:
        """Raise :class:`DependencyUnavailable` unless every provider lists its models."""
        results = await asyncio.gather(
            *(self._ping(client) for client in self._clients.values()), return_exceptions=True
        )
        down = [str(r) for r in results if isinstance(r, BaseException)]
        if down:
            raise DependencyUnavailable(f"model provider unreachable ({'; '.join(down)})")

    async def _ping(self, client: ProviderClient) -> None:
        timeout_s = min(PING_TIMEOUT_S, client.config.timeouts.request_s)
        try:
            # asyncio.timeout too: in-process transports ignore httpx's timeouts.
            async with asyncio.timeout(timeout_s):
                response = await client.http.get(
                    f"{client.base_url}/models", headers=client.headers, timeout=timeout_s
                )
            response.raise_for_status()
        except (httpx.HTTPError, TimeoutError) as exc:
            raise RuntimeError(f"{client.name}: {type(exc).__name__}") from exc

    # -- one answer ----------------------------------------------------------------------

    def _start(self, request: ChatRequest, stream: bool) -> tuple[tuple[Route, ...], _Progress]:
        started = time.perf_counter()
        chain = self._chain(request.alias)
        progress = _Progress(request.alias, started, started + self._deadline_s)
        return chain, progress

    def _plan(self, request: ChatRequest, chain: tuple[Route, ...], stream: bool) -> CallPlan:
        return CallPlan(
            request=request,
            alias=request.alias,
            stream=stream,
            models=tuple(route.plan(request) for route in chain),
        )

    async def chat(self, request: ChatRequest) -> ChatResult:
        chain, progress = self._start(request, stream=False)
        plan = self._plan(request, chain, False) if self._observers else None
        tickets = await self._observers.before(plan) if plan is not None else []
        try:
            message = None
            for route in chain:
                message = await self._call_model(route, request, progress)
                if message is not None:
                    break
            if message is None:
                raise ProviderChainExhausted(request.alias, progress.failures)
        except BaseException as exc:
            if plan is not None:
                await self._observers.after(plan, progress.report(_outcome(exc), exc), tickets)
            raise
        report = progress.report("ok")
        result = ChatResult(
            message=message,
            model=progress.model or request.alias,
            usage=progress.usage,
            provider_ms=progress.provider_ms,
            router_ms=_elapsed_ms(progress.started),
            attempts=progress.attempts,
            cost_usd=_usd(report.cost_usd),
        )
        if plan is not None:
            await self._observers.after(plan, report, tickets)
        return result

    async def _call_model(
        self, route: Route, request: ChatRequest, progress: _Progress
    ) -> AIMessage | None:
        name, client = route.name, route.client
        breaker = self._breakers.get(name)
        body: dict[str, Any] | None = None  # built once, and only if the model is called
        for retry in range(route.retry.max_retries + 1):
            remaining = progress.deadline - time.perf_counter()
            if remaining <= 0:
                progress.skip(name, "deadline", "request deadline exceeded")
                return None
            if breaker.refuses_calls():
                progress.skip(name, "circuit_open", "circuit open")
                return None
            if body is None:
                body = client.payload(route.model_id, request, route.max_tokens(request), False)
            call_started = time.perf_counter()
            try:
                async with guarded(breaker, counts=self._counts):
                    message = await client.complete(
                        route.model_id, body, min(route.timeouts.request_s, remaining)
                    )
            except CircuitOpen:
                # Another caller's half-open trial call is in flight.
                progress.skip(name, "circuit_open", "circuit open")
                return None
            except ProviderRejected as exc:
                progress.record(name, "rejected", exc.message, _elapsed_ms(call_started))
                raise
            except ProviderError as exc:
                progress.record(name, "error", exc.message, _elapsed_ms(call_started))
                wait_s = self._retry_wait(route.retry, exc, retry, progress.deadline)
                if wait_s is None:
                    progress.failures.append(f"{name}: {_reason(exc)}")
                    return None
                await self._sleep(wait_s)
                continue
            progress.record(name, "ok", None, _elapsed_ms(call_started))
            usage = _usage(message)
            if message.usage_metadata is None:
                message.usage_metadata = _usage_metadata(usage)
            message.response_metadata["model_name"] = name
            progress.model, progress.usage, progress.route = name, usage, route
            return message
        return None

    def _retry_wait(
        self, policy: RetryPolicy, exc: ProviderError, retry: int, deadline: float
    ) -> float | None:
        """Seconds to wait before trying the same model again, or None: the next model."""
        if retry >= policy.max_retries:
            return None
        kind = getattr(exc, "kind", "status")
        if exc.status is not None:
            retryable = exc.status in policy.retry_statuses
        elif kind == "timeout":
            retryable = policy.retry_timeouts
        elif kind == "connection":
            retryable = policy.retry_connection_errors
        else:
            retryable = False
        if not retryable:
            return None
        wait_s: float | None = getattr(exc, "retry_after_s", None)
        if wait_s is not None:
            if wait_s > policy.retry_after_max_s:
                return None  # the provider asks for longer than we wait: next model
        else:
            ceiling = min(policy.backoff_max_s, policy.backoff_initial_s * 2**retry)
            wait_s = self._jitter() * ceiling  # "full jitter"
        if time.perf_counter() + wait_s >= deadline:
            return None
        return wait_s

    # -- a streamed answer -------------------------------------------------------------

    async def stream(self, request: ChatRequest) -> AsyncIterator[AIMessageChunk]:
        """Stream the answer; the last chunk's ``response_metadata["router"]`` is a
        :class:`StreamSummary`. A model failing before its first token is replaced by the
        next one unseen; a failure after it ends the stream with a last chunk marked
        ``partial``, then :class:`StreamInterrupted`."""
        chain, progress = self._start(request, stream=True)
        plan = self._plan(request, chain, True) if self._observers else None
        tickets = await self._observers.before(plan) if plan is not None else []
        outcome: Outcome = "ok"
        error: BaseException | None = None
        try:
            for route in chain:
                async with aclosing(self._stream_model(route, request, progress)) as chunks:
                    async for chunk in chunks:
                        yield chunk
                if progress.model is not None:
                    yield self._summary(progress)
                    return
            raise ProviderChainExhausted(request.alias, progress.failures)
        except StreamInterrupted as exc:
            outcome, error = "partial", exc
            yield self._summary(progress, partial=True)
            raise
        except BaseException as exc:
            outcome, error = _outcome(exc), exc
            raise
        finally:
            if plan is not None:
                await self._observers.after(plan, progress.report(outcome, error), tickets)

    def _summary(self, progress: _Progress, partial: bool = False) -> AIMessageChunk:
        summary = StreamSummary(
            model=progress.model or progress.alias,
            provider_ms=progress.provider_ms,
            router_ms=_elapsed_ms(progress.started),
            attempts=progress.attempts,
            partial=partial,
            cost_usd=_usd(progress.report("partial" if partial else "ok").cost_usd),
        )
        metadata: dict[str, object] = {STREAM_SUMMARY_KEY: summary.model_dump()}
        if partial:
            metadata[PARTIAL_KEY] = True
        return AIMessageChunk(content="", response_metadata=metadata)

    async def _stream_model(
        self, route: Route, request: ChatRequest, progress: _Progress
    ) -> AsyncGenerator[AIMessageChunk, None]:
        name, client, timeouts = route.name, route.client, route.timeouts
        breaker = self._breakers.get(name)
        body: dict[str, Any] | None = None
        for retry in range(route.retry.max_retries + 1):
            remaining = progress.deadline - time.perf_counter()
            if remaining <= 0:
                progress.skip(name, "deadline", "request deadline exceeded")
                return
            if breaker.refuses_calls():
                progress.skip(name, "circuit_open", "circuit open")
                return
            if body is None:
                body = client.payload(route.model_id, request, route.max_tokens(request), True)
            call_started = time.perf_counter()
            usage = TokenUsage()
            held: list[AIMessageChunk] = []  # chunks before the first token
            started = False
            try:
                async with (
                    guarded(breaker, counts=self._counts),
                    aclosing(
                        client.stream(
                            route.model_id,
                            body,
                            first_token_s=min(timeouts.first_token_s, remaining),
                            idle_s=timeouts.idle_s,
                        )
                    ) as chunks,
                ):
                    async for chunk in chunks:
                        if chunk.usage_metadata is not None:
                            usage.input_tokens += chunk.usage_metadata["input_tokens"]
                            usage.output_tokens += chunk.usage_metadata["output_tokens"]
                        if started:
                            yield chunk
                            continue
                        held.append(chunk)
                        if chunk.content or chunk.tool_call_chunks:
                            started = True
                            progress.first_token_ms = _elapsed_ms(progress.started)
                            for early in _named(held, name):
                                yield early
                            held = []
                    for early in _named(held, name):
                        yield early  # an answer without a token (empty): still an answer
            except CircuitOpen:
                progress.skip(name, "circuit_open", "circuit open")
                return
            except ProviderRejected as exc:
                progress.record(name, "rejected", exc.message, _elapsed_ms(call_started))
                raise
            except ProviderError as exc:
                if started:
                    progress.record(name, "partial", exc.message, _elapsed_ms(call_started))
                    progress.model, progress.usage, progress.route = name, usage, route
                    raise StreamInterrupted(
                        f"the answer from {name!r} broke off after it began: {exc.message}",
                        model=name,
                        status=exc.status,
                    ) from exc
                progress.record(name, "error", exc.message, _elapsed_ms(call_started))
                wait_s = self._retry_wait(route.retry, exc, retry, progress.deadline)
                if wait_s is None:
                    progress.failures.append(f"{name}: {_reason(exc)}")
                    return
                await self._sleep(wait_s)
                continue
            progress.record(name, "ok", None, _elapsed_ms(call_started))
            progress.model, progress.usage, progress.route = name, usage, route
            return


def _named(chunks: list[AIMessageChunk], model: str) -> list[AIMessageChunk]:
    """The first chunk names the model that answers (once: LangChain concatenates strings)."""
    if chunks:
        chunks[0].response_metadata["model_name"] = model
    return chunks
