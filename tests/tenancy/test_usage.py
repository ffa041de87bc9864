"""The usage ledger on SQLite and Postgres: records, totals by day, month and model, tenant
isolation, the admin view; and the cost helpers it is fed by."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from pydantic import ValidationError
from sqlalchemy import select

from agent_runtime.config.pricing import (
    ModelPrice,
    cost,
    estimate_prompt_tokens,
    estimate_worst_case,
    format_usd,
    to_micros,
)
from agent_runtime.config.settings import StorageSettings
from agent_runtime.core.types import TokenUsage
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.db.tables import USAGE
from agent_runtime.tenancy.usage import UsageEvent, UsageLedger, UsageRow


@pytest.fixture
async def store(storage_settings: StorageSettings) -> AsyncIterator[MetadataStore]:
    store = MetadataStore(storage_settings)
    await store.setup()
    yield store
    await store.close()


def event(
    tenant: str, when: datetime, model: str, tokens: tuple[int, int], cost_usd: str, **extra: str
) -> UsageEvent:
    return UsageEvent(
        tenant_id=tenant,
        key_id=extra.get("key_id", "k1"),
        thread_id="t1",
        run_id="r1",
        model=model,
        alias=extra.get("alias", "fast"),
        input_tokens=tokens[0],
        output_tokens=tokens[1],
        latency_ms=12.5,
        cost_usd=Decimal(cost_usd),
        outcome=extra.get("outcome", "ok"),
        created_at=when,
    )


def at(day: int, month: int = 12, hour: int = 12) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


@pytest.fixture
async def ledger(store: MetadataStore) -> UsageLedger:
    ledger = UsageLedger(store)
    for item in (
        event("acme", at(1, hour=0), "fake-fast", (100, 10), "0.000021"),
        event("acme", at(1, hour=23), "fake-fast", (200, 20), "0.000042", key_id="k2"),
        event("acme", at(1), "fake-smart", (1000, 500), "0.0075", alias="smart"),
        event("acme", at(2), "fake-fast", (50, 5), "0.0000105", outcome="error"),
        event("acme", at(30, month=11), "fake-smart", (10, 1), "0.000035"),
        event("globex", at(1), "fake-fast", (7, 7), "0.000005"),
    ):
        await ledger.record(item)
    return ledger


def keyed(rows: list[UsageRow], *fields: str) -> dict[tuple[object, ...], tuple[int, ...]]:
    return {
        tuple(getattr(r, f) for f in fields): (
            r.calls,
            r.input_tokens,
            r.output_tokens,
            r.cost_micro_usd,
        )
        for r in rows
    }


async def test_record_writes_one_row_with_its_utc_day(store: MetadataStore) -> None:
    ledger = UsageLedger(store)
    when = datetime.fromisoformat("2026-12-02T01:30:00+05:00")  # 2026-12-01 20:30 UTC
    event_id = await ledger.record(event("acme", when, "m", (3, 4), "0.0000015"))
    async with store.transaction() as conn:
        row = (await conn.execute(select(USAGE))).mappings().one()
    assert row["event_id"] == event_id
    assert (row["usage_day"], row["cost_micro_usd"], row["latency_ms"]) == ("2026-12-01", 2, 12.5)
    assert row["created_at"] == when
    assert (row["key_id"], row["thread_id"], row["run_id"], row["alias"]) == (
        "k1",
        "t1",
        "r1",
        "fast",
    )
    with pytest.raises(ValidationError):
        UsageEvent(tenant_id="a", model="m", created_at=datetime(2026, 1, 1))
    with pytest.raises(ValidationError):
        UsageEvent(tenant_id="a", model="m", input_tokens=-1)


async def test_totals_by_day_and_model(ledger: UsageLedger) -> None:
    report = await ledger.totals("acme", since=date(2026, 12, 1), until=date(2026, 12, 2))
    assert keyed(report.rows, "period", "model") == {
        ("2026-12-01", "fake-fast"): (2, 300, 30, 63),
        ("2026-12-01", "fake-smart"): (1, 1000, 500, 7500),
        ("2026-12-02", "fake-fast"): (1, 50, 5, 10),  # failed calls count too
    }
    assert [r.period for r in report.rows] == ["2026-12-01", "2026-12-01", "2026-12-02"]
    assert report.total.model_dump() == {
        "calls": 4,
        "input_tokens": 1350,
        "output_tokens": 535,
        "cost_micro_usd": 7573,
    }
    assert report.total.cost_usd == Decimal("0.007573")
    # ``until`` is inclusive; ``since`` alone is open-ended.
    only_first = await ledger.totals("acme", since=date(2026, 12, 1), until=date(2026, 12, 1))
    assert only_first.total.calls == 3
    assert (await ledger.totals("acme", since=date(2026, 12, 2))).total.calls == 1


async def test_totals_by_month_and_without_groups(ledger: UsageLedger) -> None:
    by_month = await ledger.totals("acme", period="month")
    assert keyed(by_month.rows, "period", "model") == {
        ("2026-11", "fake-smart"): (1, 10, 1, 35),
        ("2026-12", "fake-fast"): (3, 350, 35, 73),
        ("2026-12", "fake-smart"): (1, 1000, 500, 7500),
    }
    months = await ledger.totals("acme", period="month", group_by=())
    assert keyed(months.rows, "period") == {
        ("2026-11",): (1, 10, 1, 35),
        ("2026-12",): (4, 1350, 535, 7573),
    }
    everything = await ledger.totals("acme", period=None, group_by=())
    assert keyed(everything.rows, "period") == {(None,): (5, 1360, 536, 7608)}
    by_key = await ledger.totals("acme", period=None, group_by=("key_id", "alias"))
    assert keyed(by_key.rows, "key_id", "alias") == {
        ("k1", "fast"): (3, 160, 16, 66),
        ("k1", "smart"): (1, 1000, 500, 7500),
        ("k2", "fast"): (1, 200, 20, 42),
    }
    assert by_key.as_json()["rows"][0] == {
        "key_id": "k1",
        "alias": "fast",
        "calls": 3,
        "input_tokens": 160,
        "output_tokens": 16,
        "cost_usd": 0.000066,
    }
    with pytest.raises(ValueError):
        await ledger.totals("acme", group_by=("thread_id",))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await ledger.totals("acme", since=date(2026, 12, 2), until=date(2026, 12, 1))


async def test_tenants_are_isolated_and_admins_see_all(ledger: UsageLedger) -> None:
    globex = await ledger.totals("globex", period=None)
    assert keyed(globex.rows, "model") == {("fake-fast",): (1, 7, 7, 5)}
    nobody = await ledger.totals("nobody", period=None, group_by=())
    assert nobody.rows == [] and nobody.total.calls == 0
    admin = await ledger.all_tenants(since=date(2026, 12, 1), period="month")
    assert keyed(admin.rows, "period", "tenant_id", "model") == {
        ("2026-12", "acme", "fake-fast"): (3, 350, 35, 73),
        ("2026-12", "acme", "fake-smart"): (1, 1000, 500, 7500),
        ("2026-12", "globex", "fake-fast"): (1, 7, 7, 5),
    }
    assert admin.total.calls == 5
    per_tenant = await ledger.all_tenants(period=None, group_by=("tenant_id",))
    assert keyed(per_tenant.rows, "tenant_id") == {
        ("acme",): (5, 1360, 536, 7608),
        ("globex",): (1, 7, 7, 5),
    }


async def test_run_cost_sums_the_runs_calls(ledger: UsageLedger) -> None:
    # Every acme row above belongs to run r1; globex's r1 is another tenant's. Rows keep
    # whole micro-dollars: 21 + 42 + 7500 + 10 (0.0000105, half-even) + 35.
    assert await ledger.run_cost("acme", "r1") == Decimal("0.007608")
    assert await ledger.run_cost("acme", "no-such-run") == 0
    assert await ledger.run_cost("globex", "r1") == Decimal("0.000005")


def test_costs_and_worst_case() -> None:
    price = ModelPrice(Decimal("2.50"), 10)
    assert ModelPrice(input_per_million_usd=2.5, output_per_million_usd="10") == price
    assert cost(price, TokenUsage(input_tokens=1000, output_tokens=500)) == Decimal("0.0075")
    assert estimate_worst_case(price, 1000, 4096) == Decimal("0.04346")
    assert to_micros(Decimal("0.0000015")) == 2 and to_micros(Decimal("0.0000025")) == 2
    assert to_micros(Decimal("0.0000001"), round_up=True) == 1
    assert (format_usd(5_000_000), format_usd(150), format_usd(1_234_567_890)) == (
        "$5.00",
        "$0.00015",
        "$1,234.56789",
    )
    with pytest.raises(ValidationError):
        ModelPrice(-1, 0)


def test_prompt_estimate_errs_high_and_counts_everything() -> None:
    prose = "The quick brown fox jumps over the lazy dog. " * 20  # ~200 real tokens
    estimate = estimate_prompt_tokens([HumanMessage(prose)])
    assert 200 <= estimate <= 320
    assert estimate_prompt_tokens([{"role": "user", "content": prose}]) == estimate
    cjk = estimate_prompt_tokens([HumanMessage("数据" * 100)])
    assert cjk >= 200  # one token per non-ASCII character at least
    call = AIMessage("", tool_calls=[{"name": "search", "args": {"q": "x" * 300}, "id": "c1"}])
    assert estimate_prompt_tokens([call]) > 100
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 9000}}
    with_image = HumanMessage(content=[{"type": "text", "text": "what is this?"}, image])
    assert 1000 < estimate_prompt_tokens([with_image]) < 1100
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"x": "y" * 300}}}]
    system = [SystemMessage("hi")]
    assert estimate_prompt_tokens(system, tools) > estimate_prompt_tokens(system) + 100
    assert estimate_prompt_tokens([]) == 3
