"""Budgets and the usage ledger wired into a real router, against the fake provider."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest
from langchain_core.messages import HumanMessage
from sqlalchemy import select

from agent_runtime.config.pricing import ModelPrice
from agent_runtime.config.settings import StorageSettings
from agent_runtime.core.errors import BudgetExceeded, ProviderChainExhausted
from agent_runtime.core.identity import RunIdentity, run_identity, stamp
from agent_runtime.core.types import ChatRequest, EmbeddingRequest
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.db.tables import USAGE
from agent_runtime.gateway.breakers import BreakerRegistry
from agent_runtime.gateway.model_router import ModelRouter
from agent_runtime.tenancy.budget_rows import BudgetStore
from agent_runtime.tenancy.budget_spend import InMemorySpend
from agent_runtime.tenancy.budgets import BudgetGuard
from agent_runtime.tenancy.cost_observers import BudgetObserver, LedgerObserver
from agent_runtime.tenancy.usage import UsageLedger
from tests.gateway.router_harness import BASE_URL, fake, provider_settings

TENANT = "cost-tenant"


@dataclass
class Setup:
    store: MetadataStore
    budgets: BudgetStore
    guard: BudgetGuard
    router: ModelRouter
    hits: Counter[str]

    async def usage_rows(self) -> list[dict[str, Any]]:
        async with self.store.transaction() as conn:
            rows = (await conn.execute(select(USAGE))).mappings().all()
        return [dict(row) for row in rows]

    async def spent(self) -> Decimal:
        [status] = await self.guard.status(TENANT)
        return Decimal(status.spent_micro_usd) / 1_000_000


@pytest.fixture
async def setup(storage_settings: StorageSettings) -> AsyncIterator[Setup]:
    store = MetadataStore(storage_settings)
    await store.setup()
    await store.ensure_tenant(TENANT, "cost")
    budgets = BudgetStore(store)
    guard = BudgetGuard(budgets, InMemorySpend(), cache_ttl_s=0.0)
    hits: Counter[str] = Counter()

    async def count(request: httpx.Request) -> None:
        if request.url.path.endswith("/chat/completions"):
            hits["calls"] += 1

    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=fake(failing_models=["fake-down"])),
        base_url=BASE_URL,
        event_hooks={"request": [count]},
    )
    settings = provider_settings(model_aliases={"smart": ["fake-smart"], "down": ["fake-down"]})
    observers = [
        LedgerObserver(UsageLedger(store)),
        BudgetObserver(guard, default_max_tokens=4096, default_price=ModelPrice(10, 30)),
    ]
    router = ModelRouter(
        settings, BASE_URL, BreakerRegistry(5, 30.0), http_client=client, observers=observers
    )
    try:
        yield Setup(store, budgets, guard, router, hits)
    finally:
        await router.close()
        await client.aclose()
        await guard.close()
        await store.close()


def ask(alias: str = "smart", **ids: Any) -> ChatRequest:
    return ChatRequest(alias=alias, messages=[HumanMessage("hello there")], **ids)


async def test_a_call_is_settled_to_its_real_cost_and_recorded(setup: Setup) -> None:
    await setup.budgets.set_budget(TENANT, "day", "5.00")
    ids = {"tenant_id": TENANT, "key_id": "k1", "thread_id": "t1", "run_id": "r1"}
    result = await setup.router.chat(ask(**ids))
    [row] = await setup.usage_rows()
    assert (row["tenant_id"], row["key_id"], row["thread_id"], row["run_id"]) == (
        TENANT, "k1", "t1", "r1",
    )  # fmt: skip
    assert (row["model"], row["alias"], row["outcome"]) == ("fake-smart", "smart", "ok")
    assert (row["input_tokens"], row["output_tokens"]) == (
        result.usage.input_tokens,
        result.usage.output_tokens,
    )
    # What the budget holds now is the real cost, not the worst case it reserved.
    cost = Decimal(row["cost_micro_usd"]) / 1_000_000
    assert cost > 0
    assert await setup.spent() == cost


async def test_a_call_over_budget_is_refused_before_the_provider(setup: Setup) -> None:
    # The worst case (whole prompt + 4096 tokens at fake-smart's price) is about $0.04.
    await setup.budgets.set_budget(TENANT, "day", "0.01")
    with pytest.raises(BudgetExceeded, match=r"budget .*daily.* would be exceeded"):
        await setup.router.chat(ask(tenant_id=TENANT))
    assert setup.hits["calls"] == 0
    [row] = await setup.usage_rows()
    assert (row["outcome"], row["cost_micro_usd"]) == ("refused", 0)
    assert await setup.spent() == 0


async def test_a_failed_chain_costs_nothing(setup: Setup) -> None:
    await setup.budgets.set_budget(TENANT, "day", "5.00")
    with pytest.raises(ProviderChainExhausted):
        await setup.router.chat(ask("down", tenant_id=TENANT))
    [row] = await setup.usage_rows()
    assert (row["outcome"], row["model"], row["cost_micro_usd"]) == ("error", "fake-down", 0)
    assert await setup.spent() == 0


async def test_streamed_calls_are_settled_too(setup: Setup) -> None:
    await setup.budgets.set_budget(TENANT, "day", "5.00")
    chunks = [chunk async for chunk in setup.router.stream(ask(tenant_id=TENANT))]
    assert "".join(c.text for c in chunks) == "[fake-smart] You said: hello there"
    [row] = await setup.usage_rows()
    assert row["outcome"] == "ok" and row["output_tokens"] > 0
    assert await setup.spent() == Decimal(row["cost_micro_usd"]) / 1_000_000


async def test_embeddings_are_recorded_and_charged_their_input_tokens(setup: Setup) -> None:
    # Too little for a chat call's worst case (prompt + 4096 completion tokens), enough for
    # embeddings, which reserve no completion.
    await setup.budgets.set_budget(TENANT, "day", "0.01")
    with pytest.raises(BudgetExceeded):
        await setup.router.chat(ask(tenant_id=TENANT))
    with run_identity(RunIdentity(TENANT, key_id="k2", thread_id="t2", run_id="r2")):
        # 50 texts of 100 tokens each (the fake counts four characters a token).
        request = stamp(EmbeddingRequest(alias="fake-embed", texts=["word " * 80] * 50))
    result = await setup.router.embed(request)
    _refused, row = await setup.usage_rows()
    assert (row["key_id"], row["thread_id"], row["run_id"]) == ("k2", "t2", "r2")
    assert (row["model"], row["outcome"], row["output_tokens"]) == ("fake-embed", "ok", 0)
    assert row["input_tokens"] == result.usage.input_tokens == 5000
    # fake-embed costs $0.02 per million input tokens.
    assert Decimal(row["cost_micro_usd"]) / 1_000_000 == await setup.spent() == Decimal("0.0001")


async def test_calls_for_no_tenant_are_neither_budgeted_nor_recorded(setup: Setup) -> None:
    await setup.budgets.set_budget(TENANT, "day", "0.000001")
    await setup.router.chat(ask())
    assert await setup.usage_rows() == []


def test_a_runs_identity_reaches_its_model_calls() -> None:
    bare = ask()
    assert stamp(bare) is bare  # outside a run: unchanged
    with run_identity(RunIdentity(TENANT, key_id="k", thread_id="t", run_id="r")):
        stamped = stamp(bare)
        own = stamp(ask(tenant_id="gateway-tenant"))
    assert (stamped.tenant_id, stamped.key_id, stamped.thread_id, stamped.run_id) == (
        TENANT, "k", "t", "r",
    )  # fmt: skip
    assert own.tenant_id == "gateway-tenant"  # what the request already says wins
