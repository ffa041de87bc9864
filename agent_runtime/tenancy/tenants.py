"""Tenants and their keys, limits and budgets: what the admin API and the CLI do.

:class:`TenantStore` holds the queries :class:`agent_runtime.db.metadata.MetadataStore` lacks
(tenant listing, key rotation, a tenant's own limits: :meth:`TenantStore.get_limits` is
what the rate limiter reads). :class:`TenantAdmin` is every admin action, each written
to the audit log (:mod:`agent_runtime.tenancy.audit`) and, for keys and tenants, announced to the
replicas' authenticators (``forget_key`` / ``forget_tenant``) so it takes effect at once
where Redis carries it and within the auth cache TTL everywhere else.

A new or rotated key is returned once, as plaintext, and stored only as its SHA-256.
Rotation keeps the key's id (its budgets and usage stay attached) and replaces the
secret: the old plaintext stops working.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from agent_runtime.core.errors import Conflict, InvalidRequest, NotFound
from agent_runtime.core.records import ApiKeyRecord, Scope, Tenant, TenantLimits
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.db.tables import API_KEYS, TENANT_LIMITS, TENANTS, utcnow
from agent_runtime.tenancy.audit import Actor, AuditLog
from agent_runtime.tenancy.auth import generate_key, new_secret
from agent_runtime.tenancy.budget_rows import Budget, BudgetPeriod, BudgetStore

TENANT_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
Forget = Callable[[str], Awaitable[None]]


async def _nothing(_: str) -> None:
    return None


def check_tenant_id(tenant_id: str) -> str:
    if not TENANT_ID_RE.fullmatch(tenant_id):
        raise InvalidRequest(
            "tenant_id: 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit",
            field="tenant_id",
        )
    return tenant_id


class TenantStore:
    """Tenant listing, key rotation and tenant limits over a (set up) metadata store."""

    def __init__(self, store: MetadataStore) -> None:
        self._store = store

    async def list_tenants(self, limit: int = 100, offset: int = 0) -> list[Tenant]:
        async with self._store.transaction() as conn:
            result = await conn.execute(
                select(TENANTS).order_by(TENANTS.c.tenant_id).limit(limit).offset(offset)
            )
            rows = result.mappings().all()
        return [Tenant.model_validate(dict(row)) for row in rows]

    async def require_tenant(self, tenant_id: str) -> Tenant:
        tenant = await self._store.get_tenant(tenant_id)
        if tenant is None:
            raise NotFound(f"tenant {tenant_id} not found")
        return tenant

    async def replace_secret(self, key_id: str, key_hash: str) -> ApiKeyRecord:
        """Store a new hash for a live key; NotFound, or Conflict when it is revoked."""
        async with self._store.transaction() as conn:
            result = await conn.execute(
                update(API_KEYS)
                .where(API_KEYS.c.key_id == key_id, API_KEYS.c.revoked.is_(False))
                .values(key_hash=key_hash)
                .returning(*API_KEYS.c)
            )
            row = result.mappings().one_or_none()
        if row is None:
            if await self._store.get_key(key_id) is None:
                raise NotFound(f"api key {key_id} not found")
            raise Conflict(f"api key {key_id} is revoked; create a new key instead")
        return ApiKeyRecord.model_validate(dict(row))

    async def get_limits(self, tenant_id: str) -> TenantLimits:
        """The tenant's own limits; every field None (the defaults) when it set none."""
        async with self._store.transaction() as conn:
            result = await conn.execute(
                select(TENANT_LIMITS).where(TENANT_LIMITS.c.tenant_id == tenant_id)
            )
            row = result.mappings().one_or_none()
        return TenantLimits() if row is None else TenantLimits.model_validate(dict(row))

    async def set_limits(self, tenant_id: str, limits: TenantLimits) -> TenantLimits:
        """Replace the tenant's limits (a None field goes back to the default)."""
        values = {**limits.model_dump(), "updated_at": utcnow()}
        for attempt in range(2):
            try:
                async with self._store.transaction(write_lock=True) as conn:
                    exists = await conn.execute(
                        select(TENANTS.c.tenant_id).where(TENANTS.c.tenant_id == tenant_id)
                    )
                    if exists.first() is None:
                        raise NotFound(f"tenant {tenant_id} not found")
                    result = await conn.execute(
                        update(TENANT_LIMITS)
                        .where(TENANT_LIMITS.c.tenant_id == tenant_id)
                        .values(**values)
                    )
                    if result.rowcount == 0:
                        await conn.execute(
                            insert(TENANT_LIMITS).values(tenant_id=tenant_id, **values)
                        )
                break
            except IntegrityError:
                if attempt:  # Postgres: another writer inserted first; now it updates
                    raise
        return limits


class TenantAdmin:
    """Every admin action, audited. ``forget_key`` / ``forget_tenant`` tell the replicas'
    authenticators (:meth:`agent_runtime.tenancy.auth.Authenticator.forget_key`)."""

    def __init__(
        self,
        store: MetadataStore,
        *,
        forget_key: Forget = _nothing,
        forget_tenant: Forget = _nothing,
        on_budget_change: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.tenants = TenantStore(store)
        self.budgets = BudgetStore(store)
        self.audit = AuditLog(store)
        self._forget_key = forget_key
        self._forget_tenant = forget_tenant
        self._on_budget_change = on_budget_change

    # -- tenants ------------------------------------------------------------------------
    async def create_tenant(self, actor: Actor, tenant_id: str, name: str | None) -> Tenant:
        check_tenant_id(tenant_id)
        tenant = Tenant(tenant_id=tenant_id, name=name or tenant_id, created_at=utcnow())
        try:
            async with self.store.transaction() as conn:
                await conn.execute(insert(TENANTS).values(**tenant.model_dump()))
        except IntegrityError as exc:
            raise Conflict(f"tenant {tenant_id} already exists") from exc
        await self.audit.record(
            "tenant.create", actor, tenant_id=tenant_id, target=tenant_id, details={"name": name}
        )
        return tenant

    async def set_disabled(self, actor: Actor, tenant_id: str, disabled: bool) -> Tenant:
        await self.store.set_tenant_disabled(tenant_id, disabled)
        await self._forget_tenant(tenant_id)
        action = "tenant.disable" if disabled else "tenant.enable"
        await self.audit.record(action, actor, tenant_id=tenant_id, target=tenant_id)
        return await self.tenants.require_tenant(tenant_id)

    # -- keys ---------------------------------------------------------------------------
    async def create_key(
        self,
        actor: Actor,
        tenant_id: str,
        name: str = "",
        scopes: Iterable[Scope] | None = None,
    ) -> tuple[str, ApiKeyRecord]:
        """A new key of an existing tenant: (plaintext, shown once; the stored record)."""
        try:
            raw, record = generate_key(tenant_id, name=name, scopes=scopes)
        except ValueError as exc:
            raise InvalidRequest(f"scopes: {exc}", field="scopes") from None
        await self.store.add_key(record)
        await self._forget_key(record.key_id)  # a cached "unknown id" must not linger
        await self.audit.record(
            "key.create",
            actor,
            tenant_id=tenant_id,
            target=record.key_id,
            details={"name": name, "scopes": list(record.scopes)},
        )
        return raw, record

    async def list_keys(self, tenant_id: str) -> list[ApiKeyRecord]:
        await self.tenants.require_tenant(tenant_id)
        return await self.store.list_keys(tenant_id)

    async def rotate_key(self, actor: Actor, key_id: str) -> tuple[str, ApiKeyRecord]:
        """A new secret for the key (same id); the old plaintext stops working."""
        raw, digest = new_secret(key_id)
        record = await self.tenants.replace_secret(key_id, digest)
        await self._forget_key(key_id)
        await self.audit.record("key.rotate", actor, tenant_id=record.tenant_id, target=key_id)
        return raw, record

    async def revoke_key(self, actor: Actor, key_id: str) -> ApiKeyRecord:
        await self.store.revoke_key(key_id)
        await self._forget_key(key_id)
        record = await self.store.get_key(key_id)
        if record is None:  # deleted between the two statements
            raise NotFound(f"api key {key_id} not found")
        await self.audit.record("key.revoke", actor, tenant_id=record.tenant_id, target=key_id)
        return record

    # -- limits and budgets -------------------------------------------------------------
    async def set_limits(self, actor: Actor, tenant_id: str, limits: TenantLimits) -> TenantLimits:
        stored = await self.tenants.set_limits(tenant_id, limits)
        await self.audit.record(
            "limits.set", actor, tenant_id=tenant_id, target=tenant_id, details=limits.model_dump()
        )
        return stored

    async def set_budget(
        self,
        actor: Actor,
        tenant_id: str,
        period: BudgetPeriod,
        usd: Decimal,
        key_id: str | None = None,
    ) -> Budget:
        try:
            budget = await self.budgets.set_budget(tenant_id, period, usd, key_id=key_id)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None
        self._budget_changed(tenant_id)
        details: dict[str, Any] = {"period": period, "usd": str(usd), "key_id": key_id}
        await self.audit.record(
            "budget.set", actor, tenant_id=tenant_id, target=budget.label, details=details
        )
        return budget

    async def delete_budget(
        self, actor: Actor, tenant_id: str, period: BudgetPeriod, key_id: str | None = None
    ) -> None:
        await self.budgets.delete_budget(tenant_id, period, key_id=key_id)
        self._budget_changed(tenant_id)
        await self.audit.record(
            "budget.delete",
            actor,
            tenant_id=tenant_id,
            target=key_id or tenant_id,
            details={"period": period, "key_id": key_id},
        )

    def _budget_changed(self, tenant_id: str) -> None:
        if self._on_budget_change is not None:
            self._on_budget_change(tenant_id)
