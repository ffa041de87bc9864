"""The ingress's app (``create_api``) in process over a real database, for the admin and
scope tests: real store, authenticator and limiter; no deployment handles (the routes
these tests reach before a handler never use them)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from agent_runtime.api.app_factory import create_api
from agent_runtime.api.deps import Services
from agent_runtime.config.settings import BudgetSettings, RuntimeSettings, StorageSettings
from agent_runtime.core.records import Scope
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.tenancy.audit import CLI
from agent_runtime.tenancy.auth import Authenticator
from agent_runtime.tenancy.tenants import TenantAdmin
from tests.api import app_services
from tests.api.app_services import runtime_settings
from tests.backends import backend_settings

ADMIN = SecretStr("bootstrap-admin-key-for-tests")


@dataclass
class App:
    app: Any
    services: Services
    store: MetadataStore

    def http(self, key: str | None = None, **headers: str) -> httpx.AsyncClient:
        if key:
            headers["x-api-key"] = key
        transport = httpx.ASGITransport(app=self.app)
        return httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers)

    def admin_http(self) -> httpx.AsyncClient:
        return self.http(**{"x-admin-key": ADMIN.get_secret_value()})

    async def key(self, tenant_id: str, *scopes: Scope) -> str:
        admin = TenantAdmin(self.store)
        if await self.store.get_tenant(tenant_id) is None:
            await admin.create_tenant(CLI, tenant_id, None)
        raw, _ = await admin.create_key(CLI, tenant_id, "test", list(scopes) or None)
        return raw


def admin_settings(storage: StorageSettings, bootstrap: bool = True) -> RuntimeSettings:
    return runtime_settings(
        storage, budgets=BudgetSettings(admin_api_key=ADMIN if bootstrap else None)
    )


@asynccontextmanager
async def admin_app(
    backend: str, folder: Path, *, bootstrap: bool = True, cache_ttl_s: float = 0
) -> AsyncIterator[App]:
    async with backend_settings(backend, folder) as storage:
        settings = admin_settings(storage, bootstrap)
        store = MetadataStore(storage)
        await store.setup()
        auth = Authenticator(store, cache_ttl_s=cache_ttl_s)
        services = app_services.services(store, settings, auth=auth)
        try:
            yield App(create_api(services), services, store)
        finally:
            await services.limiter.close()
            await store.close()
