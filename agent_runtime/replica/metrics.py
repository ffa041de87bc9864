"""The runtime's own metrics, exported through Ray's metrics API beside ``ray_serve_*``.

Each deployment builds its metric objects in its constructor (never at import time). Labels
stay bounded: route templates, model names, graph ids, outcomes; never raw paths or ids.
Ray prefixes every name with ``ray_`` (a Counter ``x`` is scraped as ``ray_x_total``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ray.serve import metrics

from agent_runtime.core.errors import AgentRuntimeError, BudgetExceeded
from agent_runtime.core.timing import RunTimings
from agent_runtime.core.types import Attempt, TokenUsage
from agent_runtime.evals.schema import Judgement
from agent_runtime.gateway.call_observer import CallPlan, CallReport
from agent_runtime.runs.executor import QueueStats
from agent_runtime.tenancy.budgets import BudgetStatus

logger = logging.getLogger(__name__)

LATENCY_BOUNDARIES_MS = [1.0, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000]
FAST_BOUNDARIES_MS = [0.25, 0.5, 1.0, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000]
STEP_BOUNDARIES = [1.0, 2, 3, 5, 8, 13, 21, 34, 55]
TOKEN_BOUNDARIES = [16.0, 64, 256, 1024, 4096, 16384, 65536, 262144]
MESSAGE_BOUNDARIES = [1.0, 2, 4, 8, 16, 32, 64, 128]
BREAKER_STATE_VALUE = {"closed": 0.0, "half-open": 1.0, "open": 2.0}
MAX_TOOL_NAMES = 64  # tool names past this many are counted as "other"


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
        self.limiter_unavailable = limiter_unavailable_counter()

    def record_limiter_unavailable(self, limit: str, mode: str) -> None:
        """A limit decided without Redis (agent_runtime.tenancy.token_buckets.FailoverLimiter's
        hook)."""
        self.limiter_unavailable.inc(tags={"limit": limit, "mode": mode})

    def observe(self, route: str, method: str, status: int, latency_ms: float) -> None:
        outcome = "ok" if status < 400 else ("client_error" if status < 500 else "server_error")
        self.requests.inc(tags={"route": route, "method": method, "status": str(status)})
        self.latency.observe(
            latency_ms, tags={"route": route, "method": method, "outcome": outcome}
        )


def limiter_unavailable_counter() -> Any:
    """Decisions a limiter took without Redis, by limit and failure mode (fail_open: in
    process; fail_closed: refused with 503). The router's tokens-per-minute observer can
    count into the same family (``build_token_rate_observer(on_unavailable=...)``)."""
    return metrics.Counter(
        "agent_rate_limiter_unavailable",
        description="Limit decisions taken while Redis was unreachable, by limit and mode.",
        tag_keys=_tags("limit", "mode"),
    )


OTHER = "other"  # the label of model names the config does not list (unbounded otherwise)
NO_TENANT = "none"


class RouterMetrics:
    """Calls, latency, time to first token, context size, tokens and cost by model and
    tenant; fallbacks; refusals by limit; breaker states and transitions; what budgets
    have left (:meth:`record_budgets`, from ``agent_runtime.tenancy.budget_watch``)."""

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
        self.budget_used = metrics.Gauge(
            "agent_budget_used_ratio",
            description="Share of a budget spent in its current window (key budgets: the "
            "most spent of the tenant's keys).",
            tag_keys=_tags("tenant", "scope", "period"),
        )
        self.first_token = metrics.Histogram(
            "agent_llm_time_to_first_token_ms",
            description="Streamed requests: time to the first token, failed models included.",
            boundaries=LATENCY_BOUNDARIES_MS,
            tag_keys=_tags("model", "tenant"),
        )
        self.context_tokens = metrics.Histogram(
            "agent_llm_context_tokens",
            description="Input (prompt) tokens fed to the model per answered request.",
            boundaries=TOKEN_BOUNDARIES,
            tag_keys=_tags("model"),
        )
        self.context_messages = metrics.Histogram(
            "agent_llm_context_messages",
            description="Messages sent to the model per request.",
            boundaries=MESSAGE_BOUNDARIES,
            tag_keys=_tags("alias"),
        )
        self.refusals = metrics.Counter(
            "agent_limit_refusals",
            description="Model requests refused before any provider call, by limit.",
            tag_keys=_tags("limit", "tenant"),
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
        self.context_messages.observe(len(request.messages), tags={"alias": self.name(plan.alias)})
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
        self.steps = metrics.Histogram(
            "agent_run_steps",
            description="Reasoning steps (graph node executions, subgraphs' included) per run.",
            boundaries=STEP_BOUNDARIES,
            tag_keys=_tags("graph"),
        )
        self.tool_calls = metrics.Counter(
            "agent_tool_calls",
            description="Tool calls by graph, tool and outcome (success or error).",
            tag_keys=_tags("graph", "tool", "outcome"),
        )
        self.in_flight = metrics.Gauge(
            "agent_runs_in_flight",
            description="Runs executing on this orchestrator replica.",
        )
        self.queue_depth = metrics.Gauge(
            "agent_run_queue_depth",
            description="Runs waiting in the queue (pending in the database, all replicas).",
        )
        self.judgements = metrics.Counter(
            "agent_online_judgements",
            description="Sampled runs the online judge scored, by graph and outcome "
            "(scored, failed).",
            tag_keys=_tags("graph", "outcome"),
        )
        self.judge_scores = metrics.Histogram(
            "agent_online_judge_score",
            description="Online judge scores (1-5) by graph and metric (relevance, helpfulness).",
            boundaries=[1.5, 2.5, 3.5, 4.5],
            tag_keys=_tags("graph", "metric"),
        )
        self.hallucinations = metrics.Counter(
            "agent_online_hallucinations",
            description="Sampled runs the online judge found hallucinating, by graph.",
            tag_keys=_tags("graph"),
        )
        self._tools: set[str] = set()

    def record_judgement(self, graph: str, judgement: Judgement) -> None:
        score = judgement.score
        outcome = "failed" if score is None else "scored"
        self.judgements.inc(tags={"graph": graph, "outcome": outcome})
        if score is None:
            return
        self.judge_scores.observe(score.relevance, tags={"graph": graph, "metric": "relevance"})
        self.judge_scores.observe(score.helpfulness, tags={"graph": graph, "metric": "helpfulness"})
        if score.hallucination:
            self.hallucinations.inc(tags={"graph": graph})

    def record_run(self, graph: str, status: str, duration_ms: float, timings: RunTimings) -> None:
        tags = {"graph": graph}
        self.runs.inc(tags={"graph": graph, "status": status})
        self.duration.observe(duration_ms, tags=tags)
        self.llm_calls_per_run.observe(timings.llm_calls, tags=tags)
        self.steps.observe(timings.steps, tags=tags)
        for (tool, ok), count in timings.tool_calls.items():
            outcome = "success" if ok else "error"
            self.tool_calls.inc(
                count, tags={"graph": graph, "tool": self._tool(tool), "outcome": outcome}
            )

    def _tool(self, name: str) -> str:
        # Tool names come from graph code, but a model may ask for one that does not
        # exist (ToolNode answers with an error under that name): bound them.
        if name in self._tools:
            return name
        if len(self._tools) < MAX_TOOL_NAMES and name.isidentifier():
            self._tools.add(name)
            return name
        return OTHER

    def record_queue(self, stats: QueueStats) -> None:
        self.in_flight.set(stats.in_flight)
        if stats.queued is not None:
            self.queue_depth.set(stats.queued)


class DependencyMetrics:
    """The :class:`agent_runtime.core.telemetry.Telemetry` sink of a replica: database and Redis
    calls, checkpoint writes."""

    def __init__(self) -> None:
        self.latency = metrics.Histogram(
            "agent_dependency_latency_ms",
            description="Database statements and Redis commands: latency by system and "
            "operation (statement verb or command).",
            boundaries=FAST_BOUNDARIES_MS,
            tag_keys=_tags("system", "operation"),
        )
        self.errors = metrics.Counter(
            "agent_dependency_errors",
            description="Failed database statements and Redis commands, by error class.",
            tag_keys=_tags("system", "operation", "error"),
        )
        self.checkpoint = metrics.Histogram(
            "agent_checkpoint_write_latency_ms",
            description="Checkpoint writes (put: a checkpoint, put_writes: a node's writes).",
            boundaries=FAST_BOUNDARIES_MS,
            tag_keys=_tags("operation"),
        )

    def dependency_call(
        self, system: str, operation: str, latency_ms: float, error: str | None
    ) -> None:
        tags = {"system": system, "operation": operation}
        self.latency.observe(latency_ms, tags=tags)
        if error is not None:
            self.errors.inc(tags={**tags, "error": error})

    def checkpoint_write(self, operation: str, latency_ms: float) -> None:
        self.checkpoint.observe(latency_ms, tags={"operation": operation})
