"""The runtime's own metrics, exported through Ray's metrics API beside ``ray_serve_*``.

Each deployment builds its metric objects in its constructor (never at import time). Labels
stay bounded: route templates, model names, graph ids, outcomes; never raw paths or ids.
Ray prefixes every name with ``ray_`` (a Counter ``x`` is scraped as ``ray_x_total``).

This module holds what every deployment's metrics share (latency boundaries, the ``other``
label, the :func:`counter` / :func:`gauge` / :func:`histogram` constructors), the ingress's
metrics and the dependency metrics of every replica. The router's are in
:mod:`agent_runtime.replica.router_metrics`, the orchestrator's in
:mod:`agent_runtime.replica.orchestrator_metrics`.
"""

from __future__ import annotations

import logging
from typing import Any

from ray.serve import metrics

logger = logging.getLogger(__name__)

LATENCY_BOUNDARIES_MS = [1.0, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000]
FAST_BOUNDARIES_MS = [0.25, 0.5, 1.0, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000]


def _tags(*names: str) -> Any:
    # Ray annotates tag_keys as a one-element tuple; any tuple of names is accepted.
    return names


def counter(name: str, description: str, tag_keys: tuple[str, ...] = ()) -> metrics.Counter:
    return metrics.Counter(name, description=description, tag_keys=_tags(*tag_keys))


def gauge(name: str, description: str, tag_keys: tuple[str, ...] = ()) -> metrics.Gauge:
    return metrics.Gauge(name, description=description, tag_keys=_tags(*tag_keys))


def histogram(
    name: str, description: str, boundaries: list[float], tag_keys: tuple[str, ...] = ()
) -> metrics.Histogram:
    return metrics.Histogram(
        name, description=description, boundaries=boundaries, tag_keys=_tags(*tag_keys)
    )


class IngressMetrics:
    def __init__(self) -> None:
        self.requests = counter(
            "agent_http_requests",
            "HTTP requests by route template, method and status code.",
            ("route", "method", "status"),
        )
        self.latency = histogram(
            "agent_http_request_latency_ms",
            "HTTP request latency by route template and outcome.",
            LATENCY_BOUNDARIES_MS,
            ("route", "method", "outcome"),
        )
        self.rate_limited = counter(
            "agent_rate_limit_rejections", "Requests refused by a rate limit.", ("limit",)
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
    return counter(
        "agent_rate_limiter_unavailable",
        "Limit decisions taken while Redis was unreachable, by limit and mode.",
        ("limit", "mode"),
    )


OTHER = "other"  # the label of model names the config does not list (unbounded otherwise)


class DependencyMetrics:
    """The :class:`agent_runtime.core.telemetry.Telemetry` sink of a replica: database and Redis
    calls, checkpoint writes."""

    def __init__(self) -> None:
        self.latency = histogram(
            "agent_dependency_latency_ms",
            "Database statements and Redis commands: latency by system and "
            "operation (statement verb or command).",
            FAST_BOUNDARIES_MS,
            ("system", "operation"),
        )
        self.errors = counter(
            "agent_dependency_errors",
            "Failed database statements and Redis commands, by error class.",
            ("system", "operation", "error"),
        )
        self.checkpoint = histogram(
            "agent_checkpoint_write_latency_ms",
            "Checkpoint writes (put: a checkpoint, put_writes: a node's writes).",
            FAST_BOUNDARIES_MS,
            ("operation",),
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
