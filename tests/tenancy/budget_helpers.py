"""A metadata store with tenants and keys, for the budget tests."""

from __future__ import annotations

from agent_runtime.config.settings import StorageSettings
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.tenancy.auth import generate_key


async def open_store(settings: StorageSettings, tenants: tuple[str, ...] = ()) -> MetadataStore:
    store = MetadataStore(settings)
    await store.setup()
    for tenant in tenants:
        await store.ensure_tenant(tenant, tenant)
    return store


async def add_key(store: MetadataStore, tenant_id: str) -> str:
    _, record = generate_key(tenant_id)
    await store.add_key(record)
    return record.key_id
