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

Streams (:mod:`agent_runtime.gateway.model_router_stream`): a failure before the first token
moves to the next model unseen (chunks are held back until the first one with content); a
failure after it ends the stream with a last chunk whose ``response_metadata["partial"]`` is
true, then :class:`~agent_runtime.core.errors.StreamInterrupted`. Each request's walk down its
chain is recorded by :mod:`agent_runtime.gateway.chain_progress`.

:meth:`ModelRouter.embed` walks the chain in the same way for embeddings (``/embeddings``).

Observers (:mod:`agent_runtime.gateway.call_observer`) see each request before and after: budgets,
the usage ledger and metrics plug in there. When no model answers,
:class:`ProviderChainExhausted` lists what happened to each.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import aclosing
from typing import Any, TypeVar

import httpx
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.messages.ai import UsageMetadata

from agent_runtime.config.builtin_models import builtin_config
from agent_runtime.config.models_file import ModelsConfig
from agent_runtime.config.provider_settings import ProviderSettings
from agent_runtime.core.errors import (
    CircuitOpen,
    DependencyUnavailable,
    ModelNotFound,
    ProviderChainExhausted,
    ProviderError,
    ProviderRejected,
    StreamInterrupted,
)
from agent_runtime.core.types import (
    ChatRequest,
    ChatResult,
    EmbeddingRequest,
    EmbeddingResult,
    TokenUsage,
)
from agent_runtime.gateway.breakers import BreakerRegistry, Breakers, guarded, policy_filter
from agent_runtime.gateway.call_observer import (
    CallObserver,
    CallPlan,
    CallReport,
    Observers,
    Outcome,
)
from agent_runtime.gateway.chain_progress import (
    ChainProgress,
    Sleep,
    call_outcome,
    elapsed_ms,
    failure_reason,
    retry_wait,
    usd,
)
from agent_runtime.gateway.chains import Route, build_routes
from agent_runtime.gateway.model_router_stream import stream_model, stream_summary
from agent_runtime.gateway.provider_client import ProviderClient

PING_TIMEOUT_S = 5.0

ModelRequest = ChatRequest | EmbeddingRequest
Answer = TypeVar("Answer")


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
    """Routes chat requests over fallback chains of provider models.

    ``config`` is a models config, or (as before models files) ``ProviderSettings``, whose
    provider is then at ``base_url``. For a models config, ``base_url`` is where the
    built-in fake provider answers; ``fake_transport``, if given, carries its calls instead
    of the network (a fake served in this process). ``http_client``, if given, serves every
    provider and stays the caller's to close.
    """

    def __init__(
        self,
        config: ModelsConfig | ProviderSettings,
        base_url: str = "",
        breakers: Breakers | None = None,
        http_client: httpx.AsyncClient | None = None,
        observers: Sequence[CallObserver] = (),
        *,
        fake_transport: httpx.AsyncBaseTransport | None = None,
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
                    transport=fake_transport if provider.kind == "fake" else None,
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
        default, price = self.config.default_provider, self.config.default_price
        if default is None or price is None:
            raise ModelNotFound(
                f"The model {alias!r} does not exist or is not served here: GET /v1/models "
                "lists the models and aliases",
                model=alias,
            )
        return (Route.unlisted(alias, self._clients[default], price.price),)

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

    def _start(self, request: ModelRequest) -> tuple[tuple[Route, ...], ChainProgress]:
        started = time.perf_counter()
        chain = self._chain(request.alias)
        progress = ChainProgress(request.alias, started, started + self._deadline_s)
        return chain, progress

    def _plan(self, request: ModelRequest, chain: tuple[Route, ...], stream: bool) -> CallPlan:
        return CallPlan(
            request=request,
            alias=request.alias,
            stream=stream,
            models=tuple(route.plan(request) for route in chain),
        )

    async def chat(self, request: ChatRequest) -> ChatResult:
        async def call_model(route: Route, progress: ChainProgress) -> AIMessage | None:
            return await self._call_model(route, request, progress)

        message, progress, report = await self._walk(request, call_model)
        return ChatResult(
            message=message,
            model=progress.model or request.alias,
            usage=progress.usage,
            provider_ms=progress.provider_ms,
            router_ms=report.latency_ms,
            attempts=progress.attempts,
            cost_usd=usd(report.cost_usd),
        )

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResult:
        """One vector per text, from the first model of the chain that answers; the chain
        is walked as for :meth:`chat` (breakers, retries, fallbacks, deadline, observers)."""

        async def call_model(route: Route, progress: ChainProgress) -> list[list[float]] | None:
            client = route.client
            answer = await self._try_model(
                route,
                progress,
                lambda: client.embeddings_payload(route.model_id, request),
                lambda body, timeout_s: client.embed(route.model_id, body, timeout_s),
            )
            if answer is None:
                return None
            vectors, usage = answer
            progress.model, progress.usage, progress.route = route.name, usage, route
            return vectors

        vectors, progress, report = await self._walk(request, call_model)
        return EmbeddingResult(
            vectors=vectors,
            model=progress.model or request.alias,
            usage=progress.usage,
            provider_ms=progress.provider_ms,
            router_ms=report.latency_ms,
            attempts=progress.attempts,
            cost_usd=usd(report.cost_usd),
        )

    async def _walk(
        self,
        request: ModelRequest,
        call_model: Callable[[Route, ChainProgress], Awaitable[Answer | None]],
    ) -> tuple[Answer, ChainProgress, CallReport]:
        """The first answer down ``request``'s chain, between its observers' two calls."""
        chain, progress = self._start(request)
        plan = self._plan(request, chain, False) if self._observers else None
        tickets = await self._observers.before(plan) if plan is not None else []
        try:
            answer = None
            for route in chain:
                answer = await call_model(route, progress)
                if answer is not None:
                    break
            if answer is None:
                raise ProviderChainExhausted(request.alias, progress.failures)
        except BaseException as exc:
            if plan is not None:
                await self._observers.after(plan, progress.report(call_outcome(exc), exc), tickets)
            raise
        report = progress.report("ok")
        if plan is not None:
            await self._observers.after(plan, report, tickets)
        return answer, progress, report

    async def _call_model(
        self, route: Route, request: ChatRequest, progress: ChainProgress
    ) -> AIMessage | None:
        client = route.client
        message = await self._try_model(
            route,
            progress,
            lambda: client.payload(route.model_id, request, route.max_tokens(request), False),
            lambda body, timeout_s: client.complete(route.model_id, body, timeout_s),
        )
        if message is None:
            return None
        usage = _usage(message)
        if message.usage_metadata is None:
            message.usage_metadata = _usage_metadata(usage)
        message.response_metadata["model_name"] = route.name
        progress.model, progress.usage, progress.route = route.name, usage, route
        return message

    async def _try_model(
        self,
        route: Route,
        progress: ChainProgress,
        payload: Callable[[], dict[str, Any]],
        send: Callable[[dict[str, Any], float], Awaitable[Answer]],
    ) -> Answer | None:
        """``send`` the ``payload`` to ``route``'s model, retried by its policy, within its
        breaker and the deadline; None: go on to the next model."""
        name = route.name
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
                body = payload()
            call_started = time.perf_counter()
            try:
                async with guarded(breaker, counts=self._counts):
                    answer = await send(body, min(route.timeouts.request_s, remaining))
            except CircuitOpen:
                # Another caller's half-open trial call is in flight.
                progress.skip(name, "circuit_open", "circuit open")
                return None
            except ProviderRejected as exc:
                progress.record(name, "rejected", exc.message, elapsed_ms(call_started))
                raise
            except ProviderError as exc:
                progress.record(name, "error", exc.message, elapsed_ms(call_started))
                wait_s = retry_wait(route.retry, exc, retry, progress.deadline, self._jitter)
                if wait_s is None:
                    progress.failures.append(f"{name}: {failure_reason(exc)}")
                    return None
                await self._sleep(wait_s)
                continue
            progress.record(name, "ok", None, elapsed_ms(call_started))
            return answer
        return None

    # -- a streamed answer -------------------------------------------------------------

    async def stream(self, request: ChatRequest) -> AsyncIterator[AIMessageChunk]:
        """Stream the answer; the last chunk's ``response_metadata["router"]`` is a
        :class:`StreamSummary`. A model failing before its first token is replaced by the
        next one unseen; a failure after it ends the stream with a last chunk marked
        ``partial``, then :class:`StreamInterrupted`."""
        chain, progress = self._start(request)
        plan = self._plan(request, chain, True) if self._observers else None
        tickets = await self._observers.before(plan) if plan is not None else []
        outcome: Outcome = "ok"
        error: BaseException | None = None
        try:
            for route in chain:
                async with aclosing(
                    stream_model(
                        route,
                        request,
                        progress,
                        breakers=self._breakers,
                        counts=self._counts,
                        sleep=self._sleep,
                        jitter=self._jitter,
                    )
                ) as chunks:
                    async for chunk in chunks:
                        yield chunk
                if progress.model is not None:
                    yield stream_summary(progress)
                    return
            raise ProviderChainExhausted(request.alias, progress.failures)
        except StreamInterrupted as exc:
            outcome, error = "partial", exc
            yield stream_summary(progress, partial=True)
            raise
        except BaseException as exc:
            outcome, error = call_outcome(exc), exc
            raise
        finally:
            if plan is not None:
                await self._observers.after(plan, progress.report(outcome, error), tickets)
