"""The admin CLI's budget and usage commands, on both backends."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from agent_runtime.cli.admin import main
from agent_runtime.config.settings import StorageSettings
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.tenancy.auth import generate_key
from agent_runtime.tenancy.budget_rows import BudgetStore
from agent_runtime.tenancy.usage import UsageEvent, UsageLedger


@pytest.fixture
def cli_env(storage_settings: StorageSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in storage_settings.model_dump(exclude_none=True).items():
        monkeypatch.setenv(f"AGENT_{name.upper()}", str(value))


async def cli(*argv: str) -> int:
    # The CLI runs its own event loop, as it does from a shell.
    return await asyncio.to_thread(main, list(argv))


async def test_set_list_delete_budgets_and_usage(
    cli_env: None, storage_settings: StorageSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    store = MetadataStore(storage_settings)
    await store.setup()
    try:
        await store.ensure_tenant("acme", "Acme")
        _, record = generate_key("acme")
        await store.add_key(record)
        key = record.key_id
        when = datetime(2026, 11, 3, 9, tzinfo=UTC)
        for model, cost in (("fake-fast", "0.000021"), ("fake-smart", "0.0035")):
            await UsageLedger(store).record(
                UsageEvent(
                    tenant_id="acme",
                    key_id=key,
                    model=model,
                    input_tokens=100,
                    output_tokens=10,
                    cost_usd=Decimal(cost),
                    created_at=when,
                )
            )
        capsys.readouterr()

        assert await cli("set-budget", "--tenant", "acme", "--period", "day", "--usd", "5") == 0
        assert "tenant acme, daily, $5.00" in capsys.readouterr().err
        argv = ("set-budget", "--tenant", "acme", "--key", key, "--period", "month", "--usd")
        assert await cli(*argv, "20.5") == 0
        assert await cli("list-budgets", "--tenant", "acme") == 0
        assert capsys.readouterr().out.splitlines() == [
            "scope\tkey_id\tperiod\tlimit_usd",
            "tenant\t-\tday\t5.000000",
            f"key\t{key}\tmonth\t20.500000",
        ]
        limits = [b.limit_usd for b in await BudgetStore(store).list_budgets("acme")]
        assert limits == [Decimal(5), Decimal("20.5")]

        assert await cli("usage", "--tenant", "acme", "--since", "2026-11-01") == 0
        assert capsys.readouterr().out.splitlines() == [
            "period\tmodel\tcalls\tinput_tokens\toutput_tokens\tcost_usd",
            "2026-11-03\tfake-fast\t1\t100\t10\t0.000021",
            "2026-11-03\tfake-smart\t1\t100\t10\t0.003500",
            "total\t-\t2\t200\t20\t0.003521",
        ]
        assert await cli("usage", "--tenant", "acme", "--period", "month") == 0
        assert "2026-11\tfake-smart\t1" in capsys.readouterr().out

        delete = ("delete-budget", "--tenant", "acme", "--key", key, "--period", "month")
        assert await cli(*delete) == 0
        assert await cli(*delete) == 1  # already gone: a message, not a traceback
        assert "error: no month budget" in capsys.readouterr().err
        unknown = ("set-budget", "--tenant", "nobody", "--period", "day", "--usd", "1")
        assert await cli(*unknown) == 1
        assert "tenant nobody not found" in capsys.readouterr().err
        with pytest.raises(SystemExit):
            await cli("set-budget", "--tenant", "acme", "--period", "day", "--usd", "-1")
    finally:
        await store.close()
