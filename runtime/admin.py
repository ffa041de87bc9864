"""Minimal key administration: ``python -m runtime.admin create-key --tenant acme``.

Reads the same ``AGENT_*`` settings as the runtime, so it talks to the same database.
A new key is printed once; only its hash is stored.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from runtime.auth import generate_key
from runtime.settings import StorageSettings
from runtime.storage import MetadataStore


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runtime.admin", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create-key", help="issue a key for a tenant (created if new)")
    create.add_argument("--tenant", required=True)
    create.add_argument("--name", default="", help="a label shown in key listings")
    revoke = commands.add_parser("revoke-key", help="revoke a key by its id (ar_<id>_...)")
    revoke.add_argument("key_id")
    args = parser.parse_args(argv)
    settings = StorageSettings()
    if args.command == "create-key":
        raw = asyncio.run(create_key(settings, args.tenant, args.name))
        print(raw)
        print(f"(shown once: store it now; tenant {args.tenant})", file=sys.stderr)
    else:
        asyncio.run(revoke_key(settings, args.key_id))
        print(f"revoked {args.key_id}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
