"""The usage and budget routes over real databases and Redis: the ingress's own app
(``create_api``) in process through httpx's ASGI transport, with real services; only the
deployment handles, which these routes never use, are absent."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from agent_runtime.api.app_factory import create_api
from agent_runtime.api.deps import Services
from agent_runtime.config.settings import (
    BudgetSettings,
    RuntimeSettings,
    StorageSettings,
)
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.db.redis_client import make_redis_client
from agent_runtime.tenancy.auth import generate_key
from agent_runtime.tenancy.budget_rows import BudgetStore
from agent_runtime.tenancy.budget_spend import RedisSpend
from agent_runtime.tenancy.budgets import BudgetGuard
from agent_runtime.tenancy.usage import UsageEvent, UsageLedger
from tests.api.app_services import runtime_settings
from tests.api.app_services import services as app_services
from tests.backends import BACKENDS, backend_settings

REDIS_URL = os.environ.get("AGENT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ADMIN_KEY = "admin-" + uuid.uuid4().hex


@dataclass
class Api:
    app: Any
    store: MetadataStore
    guard: BudgetGuard
    alice: str  # raw API keys of two tenants
    alice_key_id: str
    bob: str

    def http(self, key: str | None = None, **headers: str) -> httpx.AsyncClient:
        if key:
            headers["x-api-key"] = key
        transport = httpx.ASGITransport(app=self.app)
        return httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers)


def usage_settings(storage: StorageSettings, admin_key: str | None) -> RuntimeSettings:
    admin = SecretStr(admin_key) if admin_key else None
    return runtime_settings(storage, budgets=BudgetSettings(admin_api_key=admin))


async def issue_key(store: MetadataStore, tenant_id: str) -> tuple[str, str]:
    await store.ensure_tenant(tenant_id, tenant_id)
    raw, record = generate_key(tenant_id)
    await store.add_key(record)
    return raw, record.key_id


async def delete_prefix(prefix: str) -> None:
    client = make_redis_client(REDIS_URL, timeout_s=2.0)
    try:
        keys = [key async for key in client.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def at(day: int, month: int = 12) -> datetime:
    return datetime(2025, month, day, 12, tzinfo=UTC)


def event(tenant: str, key_id: str, when: datetime, model: str, cost: str) -> UsageEvent:
    return UsageEvent(
        tenant_id=tenant,
        key_id=key_id,
        model=model,
        alias="fast",
        input_tokens=100,
        output_tokens=10,
        latency_ms=5.0,
        cost_usd=Decimal(cost),
        created_at=when,
    )


@pytest.fixture(params=BACKENDS)
async def api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Api]:
    prefix = f"test:budget-routes:{uuid.uuid4().hex}:"
    async with backend_settings(request.param, tmp_path) as storage:
        settings = usage_settings(storage, ADMIN_KEY)
        store = MetadataStore(storage)
        await store.setup()
        guard = BudgetGuard(
            BudgetStore(store),
            RedisSpend(make_redis_client(REDIS_URL, timeout_s=2.0)),
            cache_ttl_s=0,
            prefix=prefix,
        )
        await guard.ping()  # a Redis that is down fails the test here
        services = app_services(store, settings, budgets=guard)
        try:
            alice, alice_key_id = await issue_key(store, "alice")
            bob, bob_key_id = await issue_key(store, "bob")
            ledger = UsageLedger(store)
            for item in (
                event("alice", alice_key_id, at(1), "fake-fast", "0.000021"),
                event("alice", alice_key_id, at(1), "fake-smart", "0.0035"),
                event("alice", alice_key_id, at(2), "fake-fast", "0.000021"),
                event("alice", alice_key_id, at(30, month=11), "fake-fast", "0.000021"),
                event("bob", bob_key_id, at(1), "fake-fast", "0.000042"),
            ):
                await ledger.record(item)
            yield Api(create_api(services), store, guard, alice, alice_key_id, bob)
        finally:
            await guard.close()
            await services.limiter.close()
            await store.close()
            await delete_prefix(prefix)


async def test_usage_of_the_callers_tenant_by_day_and_model(api: Api) -> None:
    async with api.http(api.alice) as client:
        response = await client.get("/usage", params={"since": "2025-12-01", "until": "2025-12-02"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert {k: body[k] for k in ("tenant_id", "since", "until", "period", "group_by")} == {
        "tenant_id": "alice",
        "since": "2025-12-01",
        "until": "2025-12-02",
        "period": "day",
        "group_by": ["model"],
    }
    assert body["totals"] == {
        "calls": 3,
        "input_tokens": 300,
        "output_tokens": 30,
        "cost_usd": 0.003542,
    }
    assert [(r["period"], r["model"], r["calls"], r["cost_usd"]) for r in body["rows"]] == [
        ("2025-12-01", "fake-fast", 1, 0.000021),
        ("2025-12-01", "fake-smart", 1, 0.0035),
        ("2025-12-02", "fake-fast", 1, 0.000021),
    ]


async def test_usage_by_month_other_groupings_and_isolation(api: Api) -> None:
    window = {"since": "2025-11-01", "until": "2025-12-31"}
    async with api.http(api.alice) as client:
        months = (await client.get("/usage", params={**window, "period": "month"})).json()
        by_key = await client.get(
            "/usage", params=[*window.items(), ("group_by", "key_id"), ("group_by", "alias")]
        )
        flat = (await client.get("/usage", params={**window, "group_by": "none"})).json()
    assert [(r["period"], r["model"], r["calls"]) for r in months["rows"]] == [
        ("2025-11", "fake-fast", 1),
        ("2025-12", "fake-fast", 2),
        ("2025-12", "fake-smart", 1),
    ]
    [row] = [r for r in by_key.json()["rows"] if r["period"] == "2025-12-01"]
    assert (row["key_id"], row["alias"], row["calls"]) == (api.alice_key_id, "fast", 2)
    assert [(r["period"], r["calls"]) for r in flat["rows"]] == [
        ("2025-11-30", 1),
        ("2025-12-01", 2),
        ("2025-12-02", 1),
    ]
    assert "model" not in flat["rows"][0]
    async with api.http(api.bob) as client:
        bob = (await client.get("/usage", params=window)).json()
    assert bob["tenant_id"] == "bob"
    assert bob["totals"]["calls"] == 1 and bob["totals"]["cost_usd"] == 0.000042


async def test_usage_defaults_to_this_month_and_validates(api: Api) -> None:
    now = datetime.now(UTC)
    await UsageLedger(api.store).record(event("alice", "k", now, "fake-fast", "0.01"))
    async with api.http(api.alice) as client:
        current = await client.get("/usage")
        inverted = await client.get("/usage", params={"since": "2025-12-02", "until": "2025-12-01"})
        weekly = await client.get("/usage", params={"period": "week"})
        bad_group = await client.get("/usage", params={"group_by": "thread_id"})
        bad_date = await client.get("/usage", params={"since": "yesterday"})
    async with api.http() as anonymous:
        unauthenticated = await anonymous.get("/usage")
    assert current.status_code == 200
    body = current.json()
    assert body["since"] == now.date().replace(day=1).isoformat()
    assert body["until"] == now.date().isoformat()
    assert body["totals"]["calls"] == 1  # the fixture's rows are from 2025
    for response in (inverted, weekly, bad_group, bad_date):
        assert response.status_code == 422, response.text
    assert "since" in inverted.json()["detail"]
    assert unauthenticated.status_code == 401


async def test_budgets_show_spend_and_remaining_of_the_callers_tenant(api: Api) -> None:
    budgets = BudgetStore(api.store)
    await budgets.set_budget("alice", "day", 5)
    await budgets.set_budget("alice", "month", 20, key_id=api.alice_key_id)
    reservation = await api.guard.reserve("alice", api.alice_key_id, 1)
    await api.guard.settle(reservation, Decimal("0.25"))
    await api.guard.reserve("alice", api.alice_key_id, Decimal("0.5"))  # in flight
    async with api.http(api.alice) as client:
        response = await client.get("/budgets")
    assert response.status_code == 200, response.text
    body = response.json()
    today = datetime.now(UTC).date()
    tomorrow = today + timedelta(days=1)
    next_month = (today.replace(day=28) + timedelta(days=4)).replace(day=1)
    assert body == {
        "tenant_id": "alice",
        "budgets": [
            {
                "scope": "tenant",
                "key_id": None,
                "period": "day",
                "limit_usd": 5.0,
                "spent_usd": 0.75,
                "remaining_usd": 4.25,
                "window_start": f"{today.isoformat()}T00:00:00Z",
                "resets_at": f"{tomorrow.isoformat()}T00:00:00Z",
                "label": "tenant alice, daily, $5.00",
            },
            {
                "scope": "key",
                "key_id": api.alice_key_id,
                "period": "month",
                "limit_usd": 20.0,
                "spent_usd": 0.75,
                "remaining_usd": 19.25,
                "window_start": f"{today.replace(day=1).isoformat()}T00:00:00Z",
                "resets_at": f"{next_month.isoformat()}T00:00:00Z",
                "label": f"key {api.alice_key_id} of tenant alice, monthly, $20.00",
            },
        ],
    }
    async with api.http(api.bob) as client:
        assert (await client.get("/budgets")).json() == {"tenant_id": "bob", "budgets": []}


async def test_admin_usage_needs_the_admin_credential(api: Api) -> None:
    params = {"since": "2025-11-01", "until": "2025-12-31", "period": "month"}
    async with api.http() as client:
        missing = await client.get("/admin/usage", params=params)
        wrong = await client.get("/admin/usage", params=params, headers={"x-admin-key": "no"})
        with_api_key = await client.get(
            "/admin/usage", params=params, headers={"x-api-key": api.alice}
        )
        ok = await client.get("/admin/usage", params=params, headers={"x-admin-key": ADMIN_KEY})
        bearer = await client.get(
            "/admin/usage",
            params={**params, "tenant_id": "bob"},
            headers={"authorization": f"Bearer {ADMIN_KEY}"},
        )
    assert (missing.status_code, wrong.status_code) == (401, 401)
    # A valid key without the admin scope: 403 naming it (admin-scoped keys get in).
    assert with_api_key.status_code == 403
    assert with_api_key.json()["missing_scope"] == "admin"
    assert ADMIN_KEY not in wrong.text
    assert ok.status_code == 200, ok.text
    rows = [(r["period"], r["tenant_id"], r["model"], r["calls"]) for r in ok.json()["rows"]]
    assert rows == [
        ("2025-11", "alice", "fake-fast", 1),
        ("2025-12", "alice", "fake-fast", 2),
        ("2025-12", "alice", "fake-smart", 1),
        ("2025-12", "bob", "fake-fast", 1),
    ]
    assert ok.json()["totals"]["calls"] == 5
    assert bearer.status_code == 200
    assert [(r["tenant_id"], r["calls"]) for r in bearer.json()["rows"]] == [("bob", 1)]


async def test_admin_routes_are_absent_without_an_admin_key(api: Api) -> None:
    services: Services = api.app.state.services
    services.settings.budgets.admin_api_key = None
    async with api.http(**{"x-admin-key": ADMIN_KEY}) as client:
        response = await client.get("/admin/usage")
    assert response.status_code == 404
