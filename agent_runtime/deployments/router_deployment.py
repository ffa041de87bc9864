"""Model router deployment: a thin Serve wrapper around
``agent_runtime.gateway.model_router.ModelRouter``.

The providers, models and aliases come from ``settings.models`` (the models file, or the
provider settings), loaded once by whoever built the settings; breakers are shared by every
replica through Redis when ``AGENT_REDIS_URL`` is set. Metrics are fed by a call observer
and by the breakers' transition hook (runtime/ stays free of Ray); budgets' spend by
``agent_runtime.tenancy.budget_watch``. Each request is served in a log context made of its ids
(``ChatRequest`` carries them across the hop), and ends with one log line.

The built-in fake provider, when the models config uses it, is reached either as its own
Serve application at ``/fake-provider`` (the local stack: ``make run``, ``agent-runtime
serve``, tests/e2e deploy it beside the runtime) or, for a Serve config file that deploys
the runtime alone (``serve_config.yaml``), served in each router replica's own process:
then no route leads to it, and its fault-control endpoint cannot be reached at all.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager

import httpx
from langchain_core.messages import AIMessageChunk
from ray import serve

from agent_runtime.config.builtin_models import fake_models_warning
from agent_runtime.config.provider_settings import ProviderSettings
from agent_runtime.config.settings import RuntimeSettings
from agent_runtime.core import logs
from agent_runtime.core.types import ChatRequest, ChatResult, EmbeddingRequest, EmbeddingResult
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.db.pg_pool import open_replica_pool
from agent_runtime.fake.provider_app import create_fake_provider_app
from agent_runtime.gateway.breakers import Breakers
from agent_runtime.gateway.call_observer import CallObserver, CallPlan, CallReport
from agent_runtime.gateway.model_router import ModelRouter
from agent_runtime.gateway.shared_breakers import build_breakers
from agent_runtime.replica import replica_logs
from agent_runtime.replica.health import Probe, ReplicaHealth
from agent_runtime.replica.router_metrics import RouterMetrics
from agent_runtime.replica.single_node import alive_nodes, refuse_sqlite_across_nodes
from agent_runtime.tenancy.budget_watch import BudgetWatch
from agent_runtime.tenancy.budgets import BudgetGuard, build_budget_guard
from agent_runtime.tenancy.cost_observers import BudgetObserver, LedgerObserver
from agent_runtime.tenancy.fair_use import build_token_rate_observer
from agent_runtime.tenancy.tenants import TenantStore
from agent_runtime.tenancy.usage import UsageLedger

logger = logging.getLogger(__name__)

# The in-process fake's address: its transport answers it, no network or route is involved.
IN_PROCESS_FAKE_URL = "http://fake-provider.in-process/v1"


def fake_provider_route(
    settings: RuntimeSettings, *, in_process: bool
) -> tuple[str, httpx.AsyncBaseTransport | None]:
    """Where the router calls the built-in fake: the base URL, and the transport of a fake
    served in this process (``in_process``) or None (its application on this node)."""
    if in_process:
        app = create_fake_provider_app(settings.fake)
        return IN_PROCESS_FAKE_URL, httpx.ASGITransport(app=app)
    return ProviderSettings.fake_base_url(settings.serve.http_port), None


def warn_if_fake(settings: RuntimeSettings) -> None:
    """Log, at start, that models are answered by the fake provider (when they are)."""
    warning = fake_models_warning(settings.models)
    if warning is not None:
        logger.warning(warning)


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
    *,
    in_process_fake: bool = False,
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
    fake_url, fake_transport = fake_provider_route(settings, in_process=in_process_fake)
    return ModelRouter(
        config, fake_url, breakers, observers=observers, fake_transport=fake_transport
    )


@serve.deployment(name="ModelRouter")
class ModelRouterDeployment:
    # Serve awaits async constructors (the usage ledger needs its database first).
    # ``in_process_fake``: serve the built-in fake in this process (see the module's doc).
    async def __init__(  # type: ignore[misc]
        self, settings: RuntimeSettings, in_process_fake: bool = False
    ) -> None:
        replica_logs.install(settings.serve.log_level)
        refuse_sqlite_across_nodes(settings.storage, alive_nodes())
        warn_if_fake(settings)
        self._metrics = RouterMetrics(settings.models.public_names())
        # The replica's one Postgres pool: its only user is the store (the usage ledger).
        self._pool = await open_replica_pool(settings.storage, "router")
        self._store = MetadataStore(settings.storage, self._pool)
        self._db_timeout_s = settings.storage.db_timeout_s
        try:
            await self._store.setup()
            self._budgets = build_budget_guard(settings.limits, settings.budgets, self._store)
            self._router = build_router(
                settings,
                self._metrics,
                self._store,
                self._budgets,
                in_process_fake=in_process_fake,
            )
        except BaseException:
            # A replica that failed to start is not closed through __del__ (it has no
            # router yet): the pool opened above would outlive it.
            await self._store.close()
            if self._pool is not None:
                await self._pool.close(timeout=self._db_timeout_s)
            raise
        probes: dict[str, Probe] = {"database": self._store.ping}
        if settings.limits.redis_url is not None:
            probes["redis"] = self._budgets.ping  # spend counters; breakers share the Redis
        self._health = ReplicaHealth.from_settings(settings.serve, probes)

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

    async def check_health(self) -> None:
        """Serve's health check (:mod:`agent_runtime.replica.health`): the database and
        Redis, not the providers, which the breakers and fallbacks deal with."""
        await self._health.check()

    def breaker_states(self) -> dict[str, str]:
        return self._router.breaker_states()

    async def __del__(self) -> None:
        await self._router.close()
        await self._router.breakers.close()
        await self._budgets.close()
        await self._store.close()
        if self._pool is not None:  # after its user
            await self._pool.close(timeout=self._db_timeout_s)


def _log_context(
    request: ChatRequest | EmbeddingRequest,
) -> AbstractContextManager[logs.LogContext]:
    return logs.bind(
        request_id=request.request_id,
        tenant_id=request.tenant_id,
        thread_id=request.thread_id,
        run_id=request.run_id,
    )
