"""TenantAdmin on both backends: tenants, keys (scopes, rotation, revocation), limits,
budgets, and the audit entries each action leaves (never a secret)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal

import pytest

from agent_runtime.config.settings import StorageSettings
from agent_runtime.core.errors import Conflict, InvalidRequest, NotFound, Unauthorized
from agent_runtime.core.records import TenantLimits
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.db.tables import utcnow
from agent_runtime.tenancy.audit import CLI, Actor, AuditLog
from agent_runtime.tenancy.auth import Authenticator, parse_key
from agent_runtime.tenancy.tenants import TenantAdmin, TenantStore

OPS = Actor("api-key", key_id="0123456789ab", tenant_id="ops")


@pytest.fixture
async def store(storage_settings: StorageSettings) -> AsyncIterator[MetadataStore]:
    store = MetadataStore(storage_settings)
    await store.setup()
    yield store
    await store.close()


@pytest.fixture
def forgotten() -> list[str]:
    return []


@pytest.fixture
def admin(store: MetadataStore, forgotten: list[str]) -> TenantAdmin:
    async def forget_key(key_id: str) -> None:
        forgotten.append(f"key:{key_id}")

    async def forget_tenant(tenant_id: str) -> None:
        forgotten.append(f"tenant:{tenant_id}")

    return TenantAdmin(store, forget_key=forget_key, forget_tenant=forget_tenant)


async def test_tenants_create_list_disable_enable(
    admin: TenantAdmin, store: MetadataStore, forgotten: list[str]
) -> None:
    created = await admin.create_tenant(OPS, "acme", "Acme Inc")
    assert (created.tenant_id, created.name, created.disabled) == ("acme", "Acme Inc", False)
    await admin.create_tenant(CLI, "beta", None)
    with pytest.raises(Conflict):
        await admin.create_tenant(CLI, "acme", "again")
    with pytest.raises(InvalidRequest):
        await admin.create_tenant(CLI, "no spaces", None)
    listed = await admin.tenants.list_tenants()
    assert [(t.tenant_id, t.name) for t in listed] == [("acme", "Acme Inc"), ("beta", "beta")]
    assert [t.tenant_id for t in await admin.tenants.list_tenants(limit=1, offset=1)] == ["beta"]

    assert (await admin.set_disabled(OPS, "acme", True)).disabled is True
    assert (await store.get_tenant("acme")).disabled is True  # type: ignore[union-attr]
    assert (await admin.set_disabled(OPS, "acme", False)).disabled is False
    assert forgotten == ["tenant:acme", "tenant:acme"]
    with pytest.raises(NotFound):
        await admin.set_disabled(OPS, "nobody", True)

    entries = await admin.audit.search(tenant_id="acme")
    assert [e.action for e in entries] == ["tenant.enable", "tenant.disable", "tenant.create"]
    assert {(e.actor, e.key_id, e.target) for e in entries} == {("api-key", OPS.key_id, "acme")}
    assert entries[-1].details == {"name": "Acme Inc"}


async def test_keys_have_scopes_rotate_and_revoke(
    admin: TenantAdmin, store: MetadataStore, forgotten: list[str]
) -> None:
    await admin.create_tenant(CLI, "acme", None)
    auth = Authenticator(store, cache_ttl_s=0)
    default_raw, default_key = await admin.create_key(CLI, "acme", "ci")
    admin_raw, admin_key = await admin.create_key(OPS, "acme", "ops", ["admin", "read"])
    assert default_key.scopes == ["read", "run"]
    assert admin_key.scopes == ["read", "admin"]
    assert (await auth.authenticate(default_raw)).scopes == ("read", "run")
    assert (await auth.authenticate(admin_raw)).scopes == ("read", "admin")
    with pytest.raises(InvalidRequest, match="unknown scope 'write'"):
        await admin.create_key(CLI, "acme", "bad", ["write"])  # type: ignore[list-item]
    with pytest.raises(NotFound):
        await admin.create_key(CLI, "nobody", "x")

    new_raw, rotated = await admin.rotate_key(OPS, default_key.key_id)
    assert rotated.key_id == default_key.key_id == parse_key(new_raw)
    assert new_raw != default_raw and rotated.key_hash != default_key.key_hash
    assert (await auth.authenticate(new_raw)).key_id == default_key.key_id
    with pytest.raises(Unauthorized):
        await auth.authenticate(default_raw)

    revoked = await admin.revoke_key(OPS, default_key.key_id)
    assert revoked.revoked is True
    with pytest.raises(Unauthorized):
        await auth.authenticate(new_raw)
    with pytest.raises(Conflict, match="revoked"):
        await admin.rotate_key(OPS, default_key.key_id)
    with pytest.raises(NotFound):
        await admin.rotate_key(OPS, "ffffffffffff")
    with pytest.raises(NotFound):
        await admin.revoke_key(OPS, "ffffffffffff")
    assert f"key:{default_key.key_id}" in forgotten

    keys = await admin.list_keys("acme")
    assert [(k.key_id, k.revoked) for k in keys] == [
        (default_key.key_id, True),
        (admin_key.key_id, False),
    ]
    with pytest.raises(NotFound):
        await admin.list_keys("nobody")

    actions = [(e.action, e.target) for e in await admin.audit.search(action="key.")]
    assert actions == [
        ("key.revoke", default_key.key_id),
        ("key.rotate", default_key.key_id),
        ("key.create", admin_key.key_id),
        ("key.create", default_key.key_id),
    ]
    created = (await admin.audit.search(action="key.create"))[0]
    assert created.details == {"name": "ops", "scopes": ["read", "admin"]}
    await _assert_no_secrets(
        admin.audit,
        [default_raw, admin_raw, new_raw],
        [default_key.key_hash, admin_key.key_hash, rotated.key_hash],
    )


async def _assert_no_secrets(log: AuditLog, raws: list[str], hashes: list[str]) -> None:
    dumped = json.dumps([e.model_dump(mode="json") for e in await log.search(limit=1000)])
    for secret in [*raws, *hashes]:
        assert secret not in dumped
        assert secret.split("_", 2)[-1] not in dumped  # nor the secret part of a key


async def test_limits_default_to_none_and_are_replaced_whole(admin: TenantAdmin) -> None:
    await admin.create_tenant(CLI, "acme", None)
    tenants = TenantStore(admin.store)
    assert await tenants.get_limits("acme") == TenantLimits()
    assert await tenants.get_limits("nobody") == TenantLimits()
    first = TenantLimits(requests_per_minute=600, tokens_per_minute=10**9, max_queued_runs=0)
    await admin.set_limits(OPS, "acme", first)
    assert await tenants.get_limits("acme") == first
    second = TenantLimits(max_concurrent_runs=4)
    await admin.set_limits(OPS, "acme", second)
    assert await tenants.get_limits("acme") == second  # the others went back to default
    with pytest.raises(NotFound):
        await admin.set_limits(OPS, "nobody", first)
    [entry, _] = await admin.audit.search(action="limits.set")
    assert entry.details == second.model_dump()
    with pytest.raises(ValueError):
        TenantLimits(requests_per_minute=0)


async def test_budgets_through_the_admin_are_audited(admin: TenantAdmin) -> None:
    await admin.create_tenant(CLI, "acme", None)
    _, key = await admin.create_key(CLI, "acme", "k")
    changed: list[str] = []
    audited = TenantAdmin(admin.store, on_budget_change=changed.append)
    budget = await audited.set_budget(OPS, "acme", "day", Decimal("2.5"))
    assert budget.label == "tenant acme, daily, $2.50"
    await audited.set_budget(OPS, "acme", "month", Decimal(10), key.key_id)
    await audited.delete_budget(OPS, "acme", "day")
    assert [b.period for b in await audited.budgets.list_budgets("acme")] == ["month"]
    with pytest.raises(NotFound):
        await audited.delete_budget(OPS, "acme", "day")
    assert changed == ["acme", "acme", "acme"]
    entries = await audited.audit.search(tenant_id="acme", action="budget.")
    assert [e.action for e in entries] == ["budget.delete", "budget.set", "budget.set"]
    assert entries[1].details == {"period": "month", "usd": "10", "key_id": key.key_id}


async def test_audit_search_filters_and_pages(admin: TenantAdmin) -> None:
    for tenant in ("a", "b", "c"):
        await admin.create_tenant(CLI, tenant, None)
    await admin.set_disabled(CLI, "b", True)
    log = admin.audit
    assert [e.tenant_id for e in await log.search(action="tenant.create")] == ["c", "b", "a"]
    assert [e.action for e in await log.search(tenant_id="b")] == [
        "tenant.disable",
        "tenant.create",
    ]
    page = await log.search(limit=2, offset=1)
    assert [(e.action, e.tenant_id) for e in page] == [
        ("tenant.create", "c"),
        ("tenant.create", "b"),
    ]
    assert await log.search(since=utcnow() + timedelta(minutes=1)) == []
    assert len(await log.search(since=utcnow() - timedelta(minutes=1))) == 4
    assert await log.search(action="tenant") == []  # exact unless it ends in "."
    with pytest.raises(ValueError, match="secrets"):
        await log.record("key.create", CLI, tenant_id="a", details={"key_hash": "x"})
