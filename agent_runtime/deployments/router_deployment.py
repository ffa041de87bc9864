"""Model router deployment: a thin Serve wrapper around
``agent_runtime.gateway.model_router.ModelRouter``.

The providers, models and aliases come from ``settings.models`` (the models file, or the
provider settings), loaded once by whoever built the settings; breakers are shared by every
replica through Redis when ``AGENT_REDIS_URL`` is set. Metrics are fed by a call observer
and by the breakers' transition hook (runtime/ stays free of Ray); budgets' spend by
``agent_runtime.tenancy.budget_watch``. Each request is served in a log context made of its ids
(``ChatRequest`` carries them across the hop), and ends with one log line.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager

from langchain_core.messages import AIMessageChunk
from ray import serve

from agent_runtime.config.provider_settings import ProviderSettings
from agent_runtime.config.settings import RuntimeSettings
from agent_runtime.core import logs
from agent_runtime.core.types import ChatRequest, ChatResult, EmbeddingRequest, EmbeddingResult
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.gateway.breakers import Breakers
from agent_runtime.gateway.call_observer import CallObserver, CallPlan, CallReport
from agent_runtime.gateway.model_router import ModelRouter
from agent_runtime.gateway.shared_breakers import build_breakers
from agent_runtime.replica import replica_logs
from agent_runtime.replica.router_metrics import RouterMetrics
from agent_runtime.tenancy.budget_watch import BudgetWatch
from agent_runtime.tenancy.budgets import BudgetGuard, build_budget_guard
from agent_runtime.tenancy.cost_observers import BudgetObserver, LedgerObserver
from agent_runtime.tenancy.fair_use import build_token_rate_observer
from agent_runtime.tenancy.tenants import TenantStore
from agent_runtime.tenancy.usage import UsageLedger

logger = logging.getLogger(__name__)


class MetricsObserver:
    """Records each finished model request in the router's metrics."""

    def __init__(self, metrics: RouterMetrics, breakers: Breakers) -> None:
        self._metrics = metrics
        self._breakers = breakers

    async def before_call(self, plan: CallPlan) -> object:
        return None

    async def after_call(self, plan: CallPlan, report: CallReport, ticket: object) -> None:
        self._metrics.record_report(plan, report)
        self._metrics.record_breakers(self._breakers.states())
        usage = report.usage
        logger.info(
            "model request %s: %s by %s, %.1f ms, %d+%d tokens",
            plan.alias,
            report.outcome,
            report.model or "no model",
            report.latency_ms,
            usage.input_tokens,
            usage.output_tokens,
        )


def build_router(
    settings: RuntimeSettings,
    metrics: RouterMetrics,
    store: MetadataStore | None = None,
    budgets: BudgetGuard | None = None,
) -> ModelRouter:
    """The router with its observers: metrics, and with a store the usage ledger, each
    tenant's tokens per minute and the budgets (the ledger comes first, so a refused
    request is recorded too; tokens per minute before the budgets, so a request it
    refuses reserves no money)."""
    config = settings.models
    limits = settings.limits
    trial_ttl_s = max(p.timeouts.request_s for p in config.providers.values()) + 1.0
    breakers = build_breakers(
        config.breaker,
        limits.redis_url.get_secret_value() if limits.redis_url is not None else None,
        redis_timeout_s=limits.redis_timeout_s,
        trial_ttl_s=trial_ttl_s,
        on_transition=metrics.record_transition,
    )
    observers: list[CallObserver] = [MetricsObserver(metrics, breakers)]
    if budgets is not None:
        observers.append(BudgetWatch(budgets, metrics.record_budgets))
    if store is not None:
        observers.append(LedgerObserver(UsageLedger(store)))
        observers.append(
            build_token_rate_observer(
                limits,
                settings.budgets,
                TenantStore(store),
                on_unavailable=metrics.record_limiter_unavailable,
            )
        )
    if budgets is not None:
        observers.append(
            BudgetObserver(
                budgets,
                default_max_tokens=settings.budgets.default_max_output_tokens,
                default_price=settings.budgets.default_model_price,
            )
        )
    return ModelRouter(
        config,
        ProviderSettings.fake_base_url(settings.serve.http_port),
        breakers,
        observers=observers,
    )


@serve.deployment(name="ModelRouter")
class ModelRouterDeployment:
    # Serve awaits async constructors (the usage ledger needs its database first).
    async def __init__(self, settings: RuntimeSettings) -> None:  # type: ignore[misc]
        replica_logs.install(settings.serve.log_level)
        self._metrics = RouterMetrics(settings.models.public_names())
        self._store = MetadataStore(settings.storage)
        await self._store.setup()
        self._budgets = build_budget_guard(settings.limits, settings.budgets, self._store)
        self._router = build_router(settings, self._metrics, self._store, self._budgets)

    async def chat(self, request: ChatRequest) -> ChatResult:
        with _log_context(request):
            return await self._router.chat(request)

    async def stream(self, request: ChatRequest) -> AsyncIterator[AIMessageChunk]:
        with _log_context(request):
            async for chunk in self._router.stream(request):
                yield chunk

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResult:
        with _log_context(request):
            return await self._router.embed(request)

    async def ping(self) -> None:
        await self._router.ping()

    def breaker_states(self) -> dict[str, str]:
        return self._router.breaker_states()

    async def __del__(self) -> None:
        await self._router.close()
        await self._router.breakers.close()
        await self._budgets.close()
        await self._store.close()


def _log_context(
    request: ChatRequest | EmbeddingRequest,
) -> AbstractContextManager[logs.LogContext]:
    return logs.bind(
        request_id=request.request_id,
        tenant_id=request.tenant_id,
        thread_id=request.thread_id,
        run_id=request.run_id,
    )
