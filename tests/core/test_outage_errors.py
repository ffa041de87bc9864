"""An outage (database, Redis, a deployment) is a 503 that tells the client when to retry."""

from __future__ import annotations

from agent_runtime.core.errors import (
    DEPENDENCY_RETRY_AFTER_S,
    DependencyUnavailable,
    error_body,
    http_status,
)
from agent_runtime.tenancy.fair_use import refusal_headers


def test_every_outage_answer_carries_retry_after() -> None:
    error = DependencyUnavailable("database unavailable")
    assert http_status(error) == 503
    assert refusal_headers(error) == {"Retry-After": str(int(DEPENDENCY_RETRY_AFTER_S))}
    assert error_body(error)["error"] == "service_unavailable"


def test_a_known_retry_time_wins() -> None:
    error = DependencyUnavailable("redis unavailable", retry_after=7.2)
    assert refusal_headers(error)["Retry-After"] == "8"
