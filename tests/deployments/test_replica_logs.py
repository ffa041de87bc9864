"""Handle calls open their log context from their arguments; refusals get bounded names."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi.responses import Response

from agent_runtime.api.middleware import _run_location
from agent_runtime.core import logs
from agent_runtime.core.errors import BudgetExceeded, NotFound, RateLimited
from agent_runtime.core.records import Principal
from agent_runtime.replica.replica_logs import logged
from agent_runtime.replica.router_metrics import refusal_limit

CALLER = Principal(tenant_id="acme", key_id="k1", request_id="req-9")


def ids() -> tuple[str | None, ...]:
    context = logs.current()
    assert context is not None
    return (context.request_id, context.tenant_id, context.thread_id, context.run_id)


class Orchestrator:
    @logged
    async def join(self, principal: Principal, thread_id: str, run_id: str) -> Any:
        return ids()

    @logged
    async def stream(self, principal: Principal, thread_id: str | None) -> AsyncIterator[Any]:
        yield ids()
        yield ids()

    @logged
    async def cancel(self, principal: Principal, thread_id: str | None, run_ids: list[str]) -> Any:
        return ids()


async def test_positional_and_keyword_ids_and_streams() -> None:
    orchestrator = Orchestrator()
    assert await orchestrator.join(CALLER, "th-1", "run-1") == ("req-9", "acme", "th-1", "run-1")
    assert await orchestrator.join(CALLER, run_id="run-2", thread_id="th-2") == (
        "req-9",
        "acme",
        "th-2",
        "run-2",
    )
    assert [item async for item in orchestrator.stream(CALLER, None)] == [
        ("req-9", "acme", None, None)
    ] * 2
    assert await orchestrator.cancel(CALLER, "th-3", ["a", "b"]) == ("req-9", "acme", "th-3", None)
    assert logs.current() is None


def test_run_location_of_run_routes() -> None:
    def location(value: str | None) -> Response:
        response = Response()
        if value is not None:
            response.headers["content-location"] = value
        return response

    assert _run_location(location("/threads/t1/runs/r1")) == ("t1", "r1")
    assert _run_location(location("/runs/r2")) == (None, "r2")
    assert _run_location(location("/threads/t1")) == ("t1", None)
    assert _run_location(location(None)) == (None, None)


def test_refusals_are_named_by_their_limit() -> None:
    budget = BudgetExceeded("over", scope="key", period="month", budget="key k1 of acme")
    assert refusal_limit(budget) == "budget_key_month"
    assert refusal_limit(RateLimited("slow down", 1.0, limit="tokens_per_minute")) == (
        "tokens_per_minute"
    )
    assert refusal_limit(RateLimited("slow down", 1.0, limit=50)) == "rate_limited"
    assert refusal_limit(NotFound("no")) == "not_found"
    assert refusal_limit(ValueError("x")) == "other"
    assert refusal_limit(None) == "other"
