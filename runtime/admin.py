"""Minimal administration: ``python -m runtime.admin create-key --tenant acme``.

Keys (``create-key``, ``revoke-key``), budgets (``set-budget``, ``list-budgets``,
``delete-budget``) and usage totals (``usage``). Reads the same ``AGENT_*`` settings as the
runtime, so it talks to the same database. A new key is printed once; only its hash is
stored. A budget change reaches running replicas within ``AGENT_BUDGET_CACHE_TTL_S``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import TypeVar

from runtime.auth import generate_key
from runtime.budgets import BudgetPeriod, BudgetStore
from runtime.errors import AgentRuntimeError
from runtime.settings import StorageSettings
from runtime.storage import MetadataStore
from runtime.usage import UsageLedger

T = TypeVar("T")


async def create_key(settings: StorageSettings, tenant_id: str, name: str) -> str:
    store = MetadataStore(settings)
    await store.setup()
    try:
        await store.ensure_tenant(tenant_id, tenant_id)
        raw, record = generate_key(tenant_id, name=name)
        await store.add_key(record)
        return raw
    finally:
        await store.close()


async def revoke_key(settings: StorageSettings, key_id: str) -> None:
    store = MetadataStore(settings)
    await store.setup()
    try:
        await store.revoke_key(key_id)
    finally:
        await store.close()


async def _with_store(
    settings: StorageSettings, work: Callable[[MetadataStore], Awaitable[T]]
) -> T:
    store = MetadataStore(settings)
    await store.setup()
    try:
        return await work(store)
    finally:
        await store.close()


async def set_budget(
    settings: StorageSettings,
    tenant_id: str,
    key_id: str | None,
    period: BudgetPeriod,
    usd: Decimal,
) -> str:
    async def work(store: MetadataStore) -> str:
        budget = await BudgetStore(store).set_budget(tenant_id, period, usd, key_id=key_id)
        return budget.label

    return await _with_store(settings, work)


async def list_budgets(settings: StorageSettings, tenant_id: str) -> list[str]:
    async def work(store: MetadataStore) -> list[str]:
        budgets = await BudgetStore(store).list_budgets(tenant_id)
        return [f"{b.scope}\t{b.key_id or '-'}\t{b.period}\t{b.limit_usd:.6f}" for b in budgets]

    return await _with_store(settings, work)


async def delete_budget(
    settings: StorageSettings, tenant_id: str, key_id: str | None, period: BudgetPeriod
) -> None:
    async def work(store: MetadataStore) -> None:
        await BudgetStore(store).delete_budget(tenant_id, period, key_id=key_id)

    await _with_store(settings, work)


async def usage_lines(
    settings: StorageSettings,
    tenant_id: str,
    since: date | None,
    until: date | None,
    period: str,
) -> list[str]:
    async def work(store: MetadataStore) -> list[str]:
        report = await UsageLedger(store).totals(
            tenant_id,
            since=since,
            until=until,
            period="month" if period == "month" else "day",
            group_by=("model",),
        )
        lines = ["period\tmodel\tcalls\tinput_tokens\toutput_tokens\tcost_usd"]
        for row in report.rows:
            lines.append(
                f"{row.period}\t{row.model}\t{row.calls}\t{row.input_tokens}\t"
                f"{row.output_tokens}\t{row.cost_usd:.6f}"
            )
        total = report.total
        lines.append(
            f"total\t-\t{total.calls}\t{total.input_tokens}\t{total.output_tokens}\t"
            f"{total.cost_usd:.6f}"
        )
        return lines

    return await _with_store(settings, work)


def _usd(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation as exc:
        raise argparse.ArgumentTypeError(f"not an amount of dollars: {text!r}") from exc
    if not value.is_finite() or value < 0:
        raise argparse.ArgumentTypeError("the amount must be a non-negative number")
    return value


def _budget_args(parser: argparse.ArgumentParser, with_usd: bool) -> None:
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--key", default=None, help="a key id: the key's budget, not the tenant's")
    parser.add_argument("--period", required=True, choices=["day", "month"])
    if with_usd:
        parser.add_argument("--usd", required=True, type=_usd, help="limit in US dollars")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runtime.admin", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create-key", help="issue a key for a tenant (created if new)")
    create.add_argument("--tenant", required=True)
    create.add_argument("--name", default="", help="a label shown in key listings")
    revoke = commands.add_parser("revoke-key", help="revoke a key by its id (ar_<id>_...)")
    revoke.add_argument("key_id")
    _budget_args(commands.add_parser("set-budget", help="set a tenant's or key's budget"), True)
    _budget_args(commands.add_parser("delete-budget", help="remove a budget"), False)
    listing = commands.add_parser("list-budgets", help="a tenant's budgets and its keys'")
    listing.add_argument("--tenant", required=True)
    report = commands.add_parser("usage", help="a tenant's calls, tokens and cost by model")
    report.add_argument("--tenant", required=True)
    report.add_argument("--since", type=date.fromisoformat, default=None, help="YYYY-MM-DD")
    report.add_argument("--until", type=date.fromisoformat, default=None, help="inclusive")
    report.add_argument("--period", choices=["day", "month"], default="day")
    args = parser.parse_args(argv)
    try:
        _run(args, StorageSettings())
    except AgentRuntimeError as error:  # e.g. an unknown tenant or key: no traceback
        print(f"error: {error.message}", file=sys.stderr)
        return 1
    return 0


def _run(args: argparse.Namespace, settings: StorageSettings) -> None:
    if args.command == "create-key":
        raw = asyncio.run(create_key(settings, args.tenant, args.name))
        print(raw)
        print(f"(shown once: store it now; tenant {args.tenant})", file=sys.stderr)
    elif args.command == "revoke-key":
        asyncio.run(revoke_key(settings, args.key_id))
        print(f"revoked {args.key_id}", file=sys.stderr)
    elif args.command == "set-budget":
        label = asyncio.run(set_budget(settings, args.tenant, args.key, args.period, args.usd))
        print(f"budget set: {label}", file=sys.stderr)
    elif args.command == "delete-budget":
        asyncio.run(delete_budget(settings, args.tenant, args.key, args.period))
        print(f"deleted the {args.period} budget", file=sys.stderr)
    elif args.command == "list-budgets":
        print("scope\tkey_id\tperiod\tlimit_usd")
        for line in asyncio.run(list_budgets(settings, args.tenant)):
            print(line)
    else:
        lines = asyncio.run(usage_lines(settings, args.tenant, args.since, args.until, args.period))
        print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
