"""Model router deployment: a thin Serve wrapper around ``runtime.routing.ModelRouter``."""

from __future__ import annotations

from collections.abc import AsyncIterator

from langchain_core.messages import AIMessageChunk
from ray import serve

from deployments.metrics import RouterMetrics
from runtime.breakers import BreakerRegistry
from runtime.routing import ModelRouter
from runtime.settings import RuntimeSettings
from runtime.types import Attempt, ChatRequest, ChatResult, TokenUsage


@serve.deployment(name="ModelRouter")
class ModelRouterDeployment:
    def __init__(self, settings: RuntimeSettings) -> None:
        self._metrics = RouterMetrics()
        self._breakers = BreakerRegistry(
            fail_max=settings.provider.breaker_fail_max,
            reset_timeout_s=settings.provider.breaker_reset_timeout_s,
        )
        self._router = ModelRouter(
            settings.provider,
            settings.provider.base_url(settings.serve.http_port),
            self._breakers,
            on_call=self._on_call,
        )

    def _on_call(self, alias: str, attempt: Attempt, usage: TokenUsage | None) -> None:
        # Label by the provider model that was tried, not the alias asked for.
        self._metrics.record_attempt(attempt.model, attempt, usage)
        self._metrics.record_breakers(self._breakers.states())

    async def chat(self, request: ChatRequest) -> ChatResult:
        return await self._router.chat(request)

    async def stream(self, request: ChatRequest) -> AsyncIterator[AIMessageChunk]:
        async for chunk in self._router.stream(request):
            yield chunk

    async def ping(self) -> None:
        await self._router.ping()

    def breaker_states(self) -> dict[str, str]:
        return self._breakers.states()

    async def __del__(self) -> None:
        await self._router.close()
