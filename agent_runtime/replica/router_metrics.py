"""The model router's metrics: calls, latency, tokens and cost by model and tenant, fallbacks,
refusals by limit, breakers and what budgets have left (:class:`RouterMetrics`).

Model names the config does not list are counted as ``other``; calls without a tenant under
``none``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from agent_runtime.core.errors import AgentRuntimeError, BudgetExceeded
from agent_runtime.core.types import Attempt, ChatRequest, TokenUsage
from agent_runtime.gateway.call_observer import CallPlan, CallReport
from agent_runtime.replica.metrics import (
    LATENCY_BOUNDARIES_MS,
    OTHER,
    counter,
    gauge,
    histogram,
    limiter_unavailable_counter,
)
from agent_runtime.tenancy.budgets import BudgetStatus

TOKEN_BOUNDARIES = [16.0, 64, 256, 1024, 4096, 16384, 65536, 262144]
MESSAGE_BOUNDARIES = [1.0, 2, 4, 8, 16, 32, 64, 128]
BREAKER_STATE_VALUE = {"closed": 0.0, "half-open": 1.0, "open": 2.0}
NO_TENANT = "none"


class RouterMetrics:
    """Calls, latency, time to first token, context size, tokens and cost by model and
    tenant; fallbacks; refusals by limit; breaker states and transitions; what budgets
    have left (:meth:`record_budgets`, from ``agent_runtime.tenancy.budget_watch``)."""

    def __init__(self, known_names: Iterable[str] = ()) -> None:
        self._known = frozenset(known_names)
        self.calls = counter(
            "agent_llm_calls",
            "Provider calls (attempts) by model, tenant and outcome.",
            ("model", "tenant", "outcome"),
        )
        self.tokens = counter(
            "agent_llm_tokens",
            "Tokens by model, tenant and direction (input/output).",
            ("model", "tenant", "direction"),
        )
        self.cost = counter(
            "agent_llm_cost_usd",
            "Cost in USD at the models file's prices, by model and tenant.",
            ("model", "tenant"),
        )
        self.latency = histogram(
            "agent_llm_latency_ms",
            "Provider call latency by model.",
            LATENCY_BOUNDARIES_MS,
            ("model",),
        )
        self.requests = counter(
            "agent_llm_requests",
            "Model requests (every try and fallback of one) by alias, tenant, outcome.",
            ("alias", "tenant", "outcome"),
        )
        self.request_latency = histogram(
            "agent_llm_request_latency_ms",
            "Model request latency through the router, by alias and outcome.",
            LATENCY_BOUNDARIES_MS,
            ("alias", "outcome"),
        )
        self.fallbacks = counter(
            "agent_llm_fallbacks",
            "Requests answered by a later model of their chain, by alias and model.",
            ("alias", "model"),
        )
        self.breaker_state = gauge(
            "agent_breaker_state",
            "Circuit breaker state per provider model: 0 closed, 1 half-open, 2 open.",
            ("model",),
        )
        self.breaker_transitions = counter(
            "agent_breaker_transitions",
            "Breaker transitions this replica made, by model and states.",
            ("model", "from_state", "to_state"),
        )
        self.budget_remaining = gauge(
            "agent_budget_remaining_usd",
            "What a tenant's budget has left in its current window.",
            ("tenant", "scope", "period"),
        )
        self.budget_used = gauge(
            "agent_budget_used_ratio",
            "Share of a budget spent in its current window (key budgets: the "
            "most spent of the tenant's keys).",
            ("tenant", "scope", "period"),
        )
        self.first_token = histogram(
            "agent_llm_time_to_first_token_ms",
            "Streamed requests: time to the first token, failed models included.",
            LATENCY_BOUNDARIES_MS,
            ("model", "tenant"),
        )
        self.context_tokens = histogram(
            "agent_llm_context_tokens",
            "Input (prompt) tokens fed to the model per answered request.",
            TOKEN_BOUNDARIES,
            ("model",),
        )
        self.context_messages = histogram(
            "agent_llm_context_messages",
            "Messages sent to the model per request.",
            MESSAGE_BOUNDARIES,
            ("alias",),
        )
        self.refusals = counter(
            "agent_limit_refusals",
            "Model requests refused before any provider call, by limit.",
            ("limit", "tenant"),
        )
        self.limiter_unavailable = limiter_unavailable_counter()

    def record_limiter_unavailable(self, limit: str, mode: str) -> None:
        """The tokens-per-minute limit decided without Redis (build_token_rate_observer's
        ``on_unavailable``)."""
        self.limiter_unavailable.inc(tags={"limit": limit, "mode": mode})

    def name(self, model: str) -> str:
        return model if model in self._known else OTHER

    def record_request(
        self,
        alias: str,
        tenant: str | None,
        outcome: str,
        latency_ms: float,
        attempts: Sequence[Attempt],
        answered: str | None,
        usage: TokenUsage,
        cost_usd: float | None,
    ) -> None:
        tenant_tag = tenant or NO_TENANT
        alias_tag = self.name(alias)
        self.requests.inc(tags={"alias": alias_tag, "tenant": tenant_tag, "outcome": outcome})
        self.request_latency.observe(latency_ms, tags={"alias": alias_tag, "outcome": outcome})
        for attempt in attempts:
            self.record_attempt(self.name(attempt.model), attempt, tenant_tag)
        if answered is None:
            return
        model = self.name(answered)
        if attempts and attempts[0].model != answered:
            self.fallbacks.inc(tags={"alias": alias_tag, "model": model})
        for direction, count in (("input", usage.input_tokens), ("output", usage.output_tokens)):
            if count > 0:
                self.tokens.inc(
                    count, tags={"model": model, "tenant": tenant_tag, "direction": direction}
                )
        if cost_usd:
            self.cost.inc(cost_usd, tags={"model": model, "tenant": tenant_tag})

    def record_attempt(self, model: str, attempt: Attempt, tenant: str = NO_TENANT) -> None:
        self.calls.inc(tags={"model": model, "tenant": tenant, "outcome": attempt.outcome})
        if attempt.outcome not in ("circuit_open", "deadline"):
            self.latency.observe(attempt.latency_ms, tags={"model": model})

    def record_transition(self, model: str, old: str, new: str) -> None:
        model = self.name(model)
        self.breaker_transitions.inc(tags={"model": model, "from_state": old, "to_state": new})
        self.breaker_state.set(BREAKER_STATE_VALUE.get(new, 0.0), tags={"model": model})

    def record_breakers(self, states: Mapping[str, str]) -> None:
        for model, state in states.items():
            self.breaker_state.set(
                BREAKER_STATE_VALUE.get(state, 0.0), tags={"model": self.name(model)}
            )

    def record_report(self, plan: CallPlan, report: CallReport) -> None:
        """Everything one finished model request tells: the counters above, its time to
        first token and context size, and a refusal's limit."""
        cost = report.cost_usd
        request = plan.request
        tenant = request.tenant_id or NO_TENANT
        self.record_request(
            plan.alias,
            request.tenant_id,
            report.outcome,
            report.latency_ms,
            report.attempts,
            report.model,
            report.usage,
            float(cost) if cost is not None else None,
        )
        if report.outcome == "refused":
            self.refusals.inc(tags={"limit": refusal_limit(report.error), "tenant": tenant})
            return
        if isinstance(request, ChatRequest):
            alias = self.name(plan.alias)
            self.context_messages.observe(len(request.messages), tags={"alias": alias})
        if report.model is None:
            return
        model = self.name(report.model)
        if report.first_token_ms is not None:
            self.first_token.observe(report.first_token_ms, tags={"model": model, "tenant": tenant})
        if report.usage.input_tokens > 0:
            self.context_tokens.observe(report.usage.input_tokens, tags={"model": model})

    def record_budgets(self, tenant: str, statuses: Sequence[BudgetStatus]) -> None:
        """A tenant's budgets as just read: remaining and used share, per scope and period
        (several key budgets of one period: the most spent one)."""
        worst: dict[tuple[str, str], tuple[float, float]] = {}
        for status in statuses:
            budget = status.budget
            limit = budget.limit_micro_usd
            used = status.spent_micro_usd / limit if limit > 0 else 1.0
            remaining = status.remaining_micro_usd / 1_000_000
            key = (budget.scope, budget.period)
            if key not in worst or used > worst[key][0]:
                worst[key] = (used, remaining)
        for (scope, period), (used, remaining) in worst.items():
            tags = {"tenant": tenant, "scope": scope, "period": period}
            self.budget_used.set(used, tags=tags)
            self.budget_remaining.set(remaining, tags=tags)


def refusal_limit(error: BaseException | None) -> str:
    """A bounded name for what refused a request: ``budget_tenant_day``, a rate limit's
    ``limit`` detail, or the error's code."""
    if isinstance(error, BudgetExceeded):
        scope = error.details.get("scope", "tenant")
        period = error.details.get("period", "day")
        return f"budget_{scope}_{period}"
    if isinstance(error, AgentRuntimeError):
        limit = error.details.get("limit")
        return limit if isinstance(limit, str) and limit.isidentifier() else error.code
    return "other"
