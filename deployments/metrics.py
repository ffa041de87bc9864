"""The runtime's own metrics, exported through Ray's metrics API beside ``ray_serve_*``.

Each deployment builds its metric objects in its constructor (never at import time). Labels
stay bounded: route templates, model names, graph ids, outcomes; never raw paths or ids.
Ray prefixes every name with ``ray_`` (a Counter ``x`` is scraped as ``ray_x_total``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ray.serve import metrics

from runtime.types import Attempt, TokenUsage

LATENCY_BOUNDARIES_MS = [1.0, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000]
BREAKER_STATE_VALUE = {"closed": 0.0, "half-open": 1.0, "open": 2.0}


def _tags(*names: str) -> Any:
    # Ray annotates tag_keys as a one-element tuple; any tuple of names is accepted.
    return names


class IngressMetrics:
    def __init__(self) -> None:
        self.requests = metrics.Counter(
            "agent_http_requests",
            description="HTTP requests by route template, method and status code.",
            tag_keys=_tags("route", "method", "status"),
        )
        self.latency = metrics.Histogram(
            "agent_http_request_latency_ms",
            description="HTTP request latency by route template and outcome.",
            boundaries=LATENCY_BOUNDARIES_MS,
            tag_keys=_tags("route", "method", "outcome"),
        )
        self.rate_limited = metrics.Counter(
            "agent_rate_limit_rejections",
            description="Requests refused by a rate limit.",
            tag_keys=_tags("limit"),
        )

    def observe(self, route: str, method: str, status: int, latency_ms: float) -> None:
        outcome = "ok" if status < 400 else ("client_error" if status < 500 else "server_error")
        self.requests.inc(tags={"route": route, "method": method, "status": str(status)})
        self.latency.observe(
            latency_ms, tags={"route": route, "method": method, "outcome": outcome}
        )


OTHER = "other"  # the label of model names the config does not list (unbounded otherwise)
NO_TENANT = "none"


class RouterMetrics:
    """Calls, latency, tokens and cost by model and tenant; fallbacks; breaker states and
    transitions; budget remaining (set by the budgets integration)."""

    def __init__(self, known_names: Iterable[str] = ()) -> None:
        self._known = frozenset(known_names)
        self.calls = metrics.Counter(
            "agent_llm_calls",
            description="Provider calls (attempts) by model, tenant and outcome.",
            tag_keys=_tags("model", "tenant", "outcome"),
        )
        self.tokens = metrics.Counter(
            "agent_llm_tokens",
            description="Tokens by model, tenant and direction (input/output).",
            tag_keys=_tags("model", "tenant", "direction"),
        )
        self.cost = metrics.Counter(
            "agent_llm_cost_usd",
            description="Cost in USD at the models file's prices, by model and tenant.",
            tag_keys=_tags("model", "tenant"),
        )
        self.latency = metrics.Histogram(
            "agent_llm_latency_ms",
            description="Provider call latency by model.",
            boundaries=LATENCY_BOUNDARIES_MS,
            tag_keys=_tags("model"),
        )
        self.requests = metrics.Counter(
            "agent_llm_requests",
            description="Model requests (every try and fallback of one) by alias, tenant, outcome.",
            tag_keys=_tags("alias", "tenant", "outcome"),
        )
        self.request_latency = metrics.Histogram(
            "agent_llm_request_latency_ms",
            description="Model request latency through the router, by alias and outcome.",
            boundaries=LATENCY_BOUNDARIES_MS,
            tag_keys=_tags("alias", "outcome"),
        )
        self.fallbacks = metrics.Counter(
            "agent_llm_fallbacks",
            description="Requests answered by a later model of their chain, by alias and model.",
            tag_keys=_tags("alias", "model"),
        )
        self.breaker_state = metrics.Gauge(
            "agent_breaker_state",
            description="Circuit breaker state per provider model: 0 closed, 1 half-open, 2 open.",
            tag_keys=_tags("model"),
        )
        self.breaker_transitions = metrics.Counter(
            "agent_breaker_transitions",
            description="Breaker transitions this replica made, by model and states.",
            tag_keys=_tags("model", "from_state", "to_state"),
        )
        self.budget_remaining = metrics.Gauge(
            "agent_budget_remaining_usd",
            description="What a tenant's budget has left in its current window.",
            tag_keys=_tags("tenant", "scope", "period"),
        )

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

    def record_budget(self, tenant: str, scope: str, period: str, remaining_usd: float) -> None:
        """For the budgets integration: a budget's remaining amount after a call."""
        self.budget_remaining.set(
            remaining_usd, tags={"tenant": tenant, "scope": scope, "period": period}
        )


class OrchestratorMetrics:
    def __init__(self) -> None:
        self.runs = metrics.Counter(
            "agent_runs",
            description="Finished runs by graph and status.",
            tag_keys=_tags("graph", "status"),
        )
        self.duration = metrics.Histogram(
            "agent_run_duration_ms",
            description="Run duration by graph.",
            boundaries=LATENCY_BOUNDARIES_MS,
            tag_keys=_tags("graph"),
        )
        self.llm_calls_per_run = metrics.Histogram(
            "agent_run_llm_calls",
            description="Model calls made by one run.",
            boundaries=[1.0, 2, 3, 5, 8, 13, 21],
            tag_keys=_tags("graph"),
        )

    def record_run(self, graph: str, status: str, duration_ms: float, llm_calls: int) -> None:
        self.runs.inc(tags={"graph": graph, "status": status})
        self.duration.observe(duration_ms, tags={"graph": graph})
        self.llm_calls_per_run.observe(llm_calls, tags={"graph": graph})
