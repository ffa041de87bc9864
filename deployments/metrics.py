"""The runtime's own metrics, exported through Ray's metrics API beside ``ray_serve_*``.

Each deployment builds its metric objects in its constructor (never at import time). Labels
stay bounded: route templates, model names, graph ids, outcomes; never raw paths or ids.
Ray prefixes every name with ``ray_`` (a Counter ``x`` is scraped as ``ray_x_total``).
"""

from __future__ import annotations

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


class RouterMetrics:
    def __init__(self) -> None:
        self.calls = metrics.Counter(
            "agent_llm_calls",
            description="Provider calls by model and outcome.",
            tag_keys=_tags("model", "outcome"),
        )
        self.tokens = metrics.Counter(
            "agent_llm_tokens",
            description="Tokens by model and direction (input/output).",
            tag_keys=_tags("model", "direction"),
        )
        self.latency = metrics.Histogram(
            "agent_llm_latency_ms",
            description="Provider call latency by model.",
            boundaries=LATENCY_BOUNDARIES_MS,
            tag_keys=_tags("model"),
        )
        self.breaker_state = metrics.Gauge(
            "agent_breaker_state",
            description="Circuit breaker state per provider model: 0 closed, 1 half-open, 2 open.",
            tag_keys=_tags("model"),
        )

    def record_attempt(self, model: str, attempt: Attempt, usage: TokenUsage | None) -> None:
        self.calls.inc(tags={"model": model, "outcome": attempt.outcome})
        if attempt.outcome != "circuit_open":
            self.latency.observe(attempt.latency_ms, tags={"model": model})
        if usage is not None:
            self.tokens.inc(usage.input_tokens, tags={"model": model, "direction": "input"})
            self.tokens.inc(usage.output_tokens, tags={"model": model, "direction": "output"})

    def record_breakers(self, states: dict[str, str]) -> None:
        for model, state in states.items():
            self.breaker_state.set(BREAKER_STATE_VALUE.get(state, 0.0), tags={"model": model})


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
