"""Budget rows: the store sets, replaces, lists and deletes budgets on both databases.

Needs the Postgres of ``tests/runtime/conftest``; if it is down these tests fail.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from agent_runtime.config.settings import StorageSettings
from agent_runtime.core.errors import NotFound
from agent_runtime.tenancy.budget_rows import BudgetStore
from tests.tenancy.budget_helpers import add_key, open_store


async def test_store_sets_replaces_lists_and_deletes(storage_settings: StorageSettings) -> None:
    store = await open_store(storage_settings, ("acme", "other"))
    budgets = BudgetStore(store)
    try:
        key = await add_key(store, "acme")
        foreign = await add_key(store, "other")
        await budgets.set_budget("acme", "month", 100)
        await budgets.set_budget("acme", "day", "5")
        await budgets.set_budget("acme", "day", 7.5, key_id=key)
        replaced = await budgets.set_budget("acme", "day", Decimal("6.25"))
        assert (replaced.scope, replaced.key_id, replaced.limit_micro_usd) == (
            "tenant",
            None,
            6_250_000,
        )
        listed = await budgets.list_budgets("acme")
        assert [(b.scope, b.key_id, b.period, b.limit_usd) for b in listed] == [
            ("tenant", None, "day", Decimal("6.25")),
            ("tenant", None, "month", Decimal(100)),
            ("key", key, "day", Decimal("7.5")),
        ]
        assert listed[2].label == f"key {key} of tenant acme, daily, $7.50"
        assert await budgets.list_budgets("other") == []
        with pytest.raises(NotFound):
            await budgets.set_budget("acme", "day", 1, key_id=foreign)  # another tenant's key
        with pytest.raises(NotFound):
            await budgets.set_budget("nobody", "day", 1)
        with pytest.raises(ValueError):
            await budgets.set_budget("acme", "day", -1)
        await budgets.delete_budget("acme", "day", key_id=key)
        with pytest.raises(NotFound):
            await budgets.delete_budget("acme", "day", key_id=key)
        assert [b.period for b in await budgets.list_budgets("acme")] == ["day", "month"]
    finally:
        await store.close()
