"""Administration: ``agent-runtime <command>`` (or ``python -m agent_runtime.cli.admin <command>``).

``check [-c langgraph.json]`` loads an app's graphs and reports what would stop it from
being served (:mod:`agent_runtime.cli.app_check`); ``serve [-c langgraph.json] [--port N]``
serves it on a local Ray cluster and ``stop`` stops that
(:mod:`agent_runtime.cli.app_serve`); ``build`` writes a Serve config that serves it on a
cluster (:mod:`agent_runtime.cli.app_build`). The others administer tenants
(``create-tenant``, ``list-tenants``, ``disable-tenant``, ``enable-tenant``), keys
(``create-key [--scope read|run|admin ...]``, ``list-keys``, ``rotate-key``,
``revoke-key``), a tenant's limits (``set-limits``, ``get-limits``), budgets
(``set-budget``, ``list-budgets``, ``delete-budget``), usage totals (``usage``) and the
audit log (``audit``). Talks to the database directly, with the same ``AGENT_*`` settings as
the runtime; every change is written to the audit log (actor ``cli``). A new or rotated key
is printed once: only its hash is stored. With ``AGENT_REDIS_URL`` set, revocations and
disabled tenants reach running replicas at once, else within ``AGENT_AUTH_CACHE_TTL_S``; a
budget change within ``AGENT_BUDGET_CACHE_TTL_S``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TypeVar

from agent_runtime.cli import app_build, app_check, app_serve
from agent_runtime.config.settings import LimitSettings, StorageSettings
from agent_runtime.core.errors import AgentRuntimeError
from agent_runtime.core.records import ALL_SCOPES, ApiKeyRecord, Scope, TenantLimits
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.tenancy.audit import CLI
from agent_runtime.tenancy.auth import AuthInvalidations, key_prefix
from agent_runtime.tenancy.tenants import TenantAdmin
from agent_runtime.tenancy.usage import UsageLedger

T = TypeVar("T")
SHOWN_ONCE = "shown once: store it now; only its hash is kept, it cannot be shown again"


async def _with_admin(
    settings: StorageSettings,
    work: Callable[[TenantAdmin], Awaitable[T]],
    limits: LimitSettings | None = None,
) -> T:
    store = MetadataStore(settings)
    await store.setup()
    bus = AuthInvalidations.from_settings(limits or LimitSettings())
    try:

        async def forget_key(key_id: str) -> None:
            if bus is not None:
                await bus.publish("key", key_id)

        async def forget_tenant(tenant_id: str) -> None:
            if bus is not None:
                await bus.publish("tenant", tenant_id)

        return await work(TenantAdmin(store, forget_key=forget_key, forget_tenant=forget_tenant))
    finally:
        if bus is not None:
            await bus.close()
        await store.close()


async def create_key(
    settings: StorageSettings, tenant_id: str, name: str, scopes: list[Scope] | None = None
) -> str:
    """A key of the tenant (created first when it does not exist): its plaintext."""

    async def work(admin: TenantAdmin) -> str:
        if await admin.store.get_tenant(tenant_id) is None:
            await admin.create_tenant(CLI, tenant_id, tenant_id)
        raw, _ = await admin.create_key(CLI, tenant_id, name, scopes)
        return raw

    return await _with_admin(settings, work)


async def revoke_key(settings: StorageSettings, key_id: str) -> None:
    async def work(admin: TenantAdmin) -> None:
        await admin.revoke_key(CLI, key_id)

    await _with_admin(settings, work)


def _key_line(key: ApiKeyRecord) -> str:
    created = key.created_at.isoformat(timespec="seconds")
    state = "revoked" if key.revoked else "active"
    scopes = ",".join(key.scopes)
    fields = (key.key_id, f"{key_prefix(key.key_id)}...", key.name or "-", scopes, created, state)
    return "\t".join(fields)


def _limits_line(limits: TenantLimits) -> str:
    return "\t".join(
        "default" if value is None else str(value) for value in limits.model_dump().values()
    )


async def _usage_lines(
    admin: TenantAdmin, tenant_id: str, since: date | None, until: date | None, period: str
) -> list[str]:
    report = await UsageLedger(admin.store).totals(
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


def _limit(text: str) -> int | None:
    if text == "default":
        return None
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a whole number nor 'default': {text!r}") from exc
    if value < 0:
        raise argparse.ArgumentTypeError("a limit cannot be negative")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agent-runtime",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser(
        "check", help="load an app's langgraph.json and its graphs, start nothing"
    )
    check.add_argument("-c", "--config", type=Path, default=app_check.DEFAULT_CONFIG)
    serve = commands.add_parser(
        "serve", help="serve an app's langgraph.json on a local Ray cluster (as make run)"
    )
    serve.add_argument("-c", "--config", type=Path, default=app_check.DEFAULT_CONFIG)
    serve.add_argument("--host", default=None, help="HTTP address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="HTTP port (default 8000)")
    build = commands.add_parser(
        "build", help="write a Serve config that serves an app on a Ray cluster"
    )
    build.add_argument("-c", "--config", type=Path, default=app_check.DEFAULT_CONFIG)
    build.add_argument("-o", "--output", type=Path, default=app_build.DEFAULT_OUTPUT)
    build.add_argument(
        "--app-dir", default=None, help="the app's folder on every node (default ~/<its name>)"
    )
    stop = commands.add_parser("stop", help="stop the stack `serve` started in this folder")
    stop.add_argument("-c", "--config", type=Path, default=app_check.DEFAULT_CONFIG)
    tenant = commands.add_parser("create-tenant", help="create a tenant")
    tenant.add_argument("--tenant", required=True)
    tenant.add_argument("--name", default=None, help="a display name (default: the id)")
    commands.add_parser("list-tenants", help="every tenant, disabled ones marked")
    for verb in ("disable", "enable"):
        toggle = commands.add_parser(f"{verb}-tenant", help=f"{verb} a tenant and all its keys")
        toggle.add_argument("tenant")
    create = commands.add_parser("create-key", help="issue a key for a tenant (created if new)")
    create.add_argument("--tenant", required=True)
    create.add_argument("--name", default="", help="a label shown in key listings")
    create.add_argument(
        "--scope",
        action="append",
        choices=ALL_SCOPES,
        default=None,
        help="what the key may do (repeatable; default: read and run)",
    )
    keys = commands.add_parser("list-keys", help="a tenant's keys (ids and prefixes only)")
    keys.add_argument("--tenant", required=True)
    rotate = commands.add_parser("rotate-key", help="a new secret for a key; the old one dies")
    rotate.add_argument("key_id")
    revoke = commands.add_parser("revoke-key", help="revoke a key by its id (ar_<id>_...)")
    revoke.add_argument("key_id")
    limits = commands.add_parser(
        "set-limits", help="a tenant's own limits (each omitted one: the default)"
    )
    limits.add_argument("--tenant", required=True)
    for name, what in (
        ("requests-per-minute", "requests per minute, per key"),
        ("tokens-per-minute", "model tokens per minute, for the tenant"),
        ("max-concurrent-runs", "runs at once, for the tenant"),
        ("max-queued-runs", "background runs waiting, for the tenant"),
    ):
        limits.add_argument(f"--{name}", type=_limit, default=None, help=f"{what}, or 'default'")
    commands.add_parser("get-limits", help="a tenant's own limits").add_argument(
        "--tenant", required=True
    )
    _budget_args(commands.add_parser("set-budget", help="set a tenant's or key's budget"), True)
    _budget_args(commands.add_parser("delete-budget", help="remove a budget"), False)
    listing = commands.add_parser("list-budgets", help="a tenant's budgets and its keys'")
    listing.add_argument("--tenant", required=True)
    report = commands.add_parser("usage", help="a tenant's calls, tokens and cost by model")
    report.add_argument("--tenant", required=True)
    report.add_argument("--since", type=date.fromisoformat, default=None, help="YYYY-MM-DD")
    report.add_argument("--until", type=date.fromisoformat, default=None, help="inclusive")
    report.add_argument("--period", choices=["day", "month"], default="day")
    audit = commands.add_parser("audit", help="the audit log, newest first")
    audit.add_argument("--tenant", default=None)
    audit.add_argument("--action", default=None, help="e.g. key.revoke, or a prefix: key.")
    audit.add_argument("--since", type=datetime.fromisoformat, default=None, help="ISO time")
    audit.add_argument("--limit", type=int, default=50)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The ``agent-runtime`` console script (and ``python -m agent_runtime.cli.admin``)."""
    args = _parser().parse_args(argv)
    if args.command == "check":  # the app's files only: no database
        return app_check.check(args.config)
    if args.command == "serve":
        return app_serve.serve(args.config, args.host, args.port)
    if args.command == "build":
        return app_build.build(args.config, args.output, args.app_dir)
    if args.command == "stop":
        return app_serve.stop_app(args.config)
    try:
        asyncio.run(_with_admin(StorageSettings(), lambda admin: _run(args, admin)))
    except AgentRuntimeError as error:  # e.g. an unknown tenant or key: no traceback
        print(f"error: {error.message}", file=sys.stderr)
        return 1
    return 0


def _print_new_key(raw: str, record: ApiKeyRecord) -> None:
    print(raw)
    scopes = ", ".join(record.scopes)
    print(
        f"({SHOWN_ONCE}; key {record.key_id} of tenant {record.tenant_id}, scopes {scopes})",
        file=sys.stderr,
    )


async def _run(args: argparse.Namespace, admin: TenantAdmin) -> None:
    command = args.command
    if command == "create-tenant":
        tenant = await admin.create_tenant(CLI, args.tenant, args.name)
        print(f"created tenant {tenant.tenant_id}", file=sys.stderr)
    elif command == "list-tenants":
        print("tenant_id\tname\tstate\tcreated_at")
        for t in await admin.tenants.list_tenants(limit=100_000):
            state = "disabled" if t.disabled else "active"
            print(f"{t.tenant_id}\t{t.name}\t{state}\t{t.created_at.isoformat(timespec='seconds')}")
    elif command in ("disable-tenant", "enable-tenant"):
        await admin.set_disabled(CLI, args.tenant, command == "disable-tenant")
        print(f"{command.split('-')[0]}d tenant {args.tenant}", file=sys.stderr)
    elif command == "create-key":
        if await admin.store.get_tenant(args.tenant) is None:
            await admin.create_tenant(CLI, args.tenant, args.tenant)
        _print_new_key(*await admin.create_key(CLI, args.tenant, args.name, args.scope))
    elif command == "list-keys":
        print("key_id\tprefix\tname\tscopes\tcreated_at\tstate")
        for key in await admin.list_keys(args.tenant):
            print(_key_line(key))
    elif command == "rotate-key":
        _print_new_key(*await admin.rotate_key(CLI, args.key_id))
    elif command == "revoke-key":
        await admin.revoke_key(CLI, args.key_id)
        print(f"revoked {args.key_id}", file=sys.stderr)
    elif command == "set-limits":
        limits = TenantLimits(
            requests_per_minute=args.requests_per_minute,
            tokens_per_minute=args.tokens_per_minute,
            max_concurrent_runs=args.max_concurrent_runs,
            max_queued_runs=args.max_queued_runs,
        )
        await admin.set_limits(CLI, args.tenant, limits)
        print(f"limits set for tenant {args.tenant}", file=sys.stderr)
    elif command == "get-limits":
        await admin.tenants.require_tenant(args.tenant)
        print("\t".join(TenantLimits.model_fields))
        print(_limits_line(await admin.tenants.get_limits(args.tenant)))
    elif command == "set-budget":
        budget = await admin.set_budget(CLI, args.tenant, args.period, args.usd, args.key)
        print(f"budget set: {budget.label}", file=sys.stderr)
    elif command == "delete-budget":
        await admin.delete_budget(CLI, args.tenant, args.period, args.key)
        print(f"deleted the {args.period} budget", file=sys.stderr)
    elif command == "list-budgets":
        print("scope\tkey_id\tperiod\tlimit_usd")
        for b in await admin.budgets.list_budgets(args.tenant):
            print(f"{b.scope}\t{b.key_id or '-'}\t{b.period}\t{b.limit_usd:.6f}")
    elif command == "usage":
        lines = await _usage_lines(admin, args.tenant, args.since, args.until, args.period)
        print("\n".join(lines))
    else:
        print("created_at\ttenant_id\tactor\tkey_id\taction\ttarget\tdetails")
        entries = await admin.audit.search(
            tenant_id=args.tenant, action=args.action, since=args.since, limit=args.limit
        )
        for e in entries:
            print(
                f"{e.created_at.isoformat(timespec='seconds')}\t{e.tenant_id or '-'}\t{e.actor}"
                f"\t{e.key_id or '-'}\t{e.action}\t{e.target or '-'}\t{json.dumps(e.details)}"
            )


if __name__ == "__main__":
    sys.exit(main())
