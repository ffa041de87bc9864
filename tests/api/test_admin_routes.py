"""The admin API in process over real databases: tenants, keys (shown once, then only
their prefix), rotation, revocation, limits, budgets, the audit log, and who is admin."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent_runtime.tenancy.auth import parse_key
from tests.api.admin_app import App, admin_app
from tests.backends import BACKENDS

# A long cache: what this replica refuses at once, it refuses because the admin API told
# its authenticator, not because an entry expired.
CACHE_TTL_S = 60.0


@pytest.fixture(params=BACKENDS)
async def api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[App]:
    async with admin_app(request.param, tmp_path, cache_ttl_s=CACHE_TTL_S) as app:
        yield app


async def test_tenants_and_keys_through_the_admin_api(api: App) -> None:
    async with api.admin_http() as admin:
        created = await admin.post("/admin/tenants", json={"tenant_id": "acme", "name": "Acme"})
        assert created.status_code == 201, created.text
        assert created.json()["disabled"] is False
        assert (await admin.post("/admin/tenants", json={"tenant_id": "acme"})).status_code == 409
        bad = await admin.post("/admin/tenants", json={"tenant_id": "a b"})
        assert bad.status_code == 422
        assert (await admin.get("/admin/tenants/acme")).json()["name"] == "Acme"
        assert (await admin.get("/admin/tenants/nobody")).status_code == 404

        issued = await admin.post("/admin/tenants/acme/keys", json={"name": "ci"})
        assert issued.status_code == 201, issued.text
        body = issued.json()
        raw = body["key"]
        assert "shown once" in body["warning"]
        assert (body["scopes"], body["prefix"]) == (["read", "run"], f"ar_{body['key_id']}_")
        assert raw.startswith(body["prefix"]) and "key_hash" not in body
        scoped = await admin.post("/admin/tenants/acme/keys", json={"scopes": ["read"]})
        assert scoped.json()["scopes"] == ["read"]
        unknown = await admin.post("/admin/tenants/acme/keys", json={"scopes": ["write"]})
        assert unknown.status_code == 422
        assert (await admin.post("/admin/tenants/nobody/keys", json={})).status_code == 404

        listed = await admin.get("/admin/tenants/acme/keys")
        assert listed.status_code == 200
        keys = listed.json()
        assert [k["key_id"] for k in keys] == [body["key_id"], scoped.json()["key_id"]]
        assert set(keys[0]) == {
            "key_id",
            "prefix",
            "tenant_id",
            "name",
            "scopes",
            "created_at",
            "revoked",
        }
        record = await api.store.get_key(body["key_id"])
        assert record is not None
        assert raw not in listed.text and record.key_hash not in listed.text

    async with api.http(raw) as client:
        assert (await client.post("/threads/search", json={})).status_code == 200  # cached now
    async with api.admin_http() as admin:
        rotated = await admin.post(f"/admin/keys/{body['key_id']}/rotate")
        assert rotated.status_code == 200, rotated.text
        new_raw = rotated.json()["key"]
        assert parse_key(new_raw) == body["key_id"] and new_raw != raw
    async with api.http(raw) as client:
        assert (await client.post("/threads/search", json={})).status_code == 401
    async with api.http(new_raw) as client:
        assert (await client.post("/threads/search", json={})).status_code == 200
    async with api.admin_http() as admin:
        revoked = await admin.post(f"/admin/keys/{body['key_id']}/revoke")
        assert revoked.status_code == 200 and revoked.json()["revoked"] is True
        assert (await admin.post(f"/admin/keys/{body['key_id']}/rotate")).status_code == 409
        assert (await admin.post("/admin/keys/ffffffffffff/revoke")).status_code == 404
    async with api.http(new_raw) as client:
        assert (await client.post("/threads/search", json={})).status_code == 401

    async with api.admin_http() as admin:
        audit = (await admin.get("/admin/audit", params={"tenant_id": "acme"})).json()
    actions = [e["action"] for e in audit["entries"]]
    assert actions == ["key.revoke", "key.rotate", "key.create", "key.create", "tenant.create"]
    assert {e["actor"] for e in audit["entries"]} == {"admin-api-key"}
    for secret in (raw, new_raw, record.key_hash):
        assert secret not in json.dumps(audit)


async def test_disabling_a_tenant_refuses_its_keys_at_once(api: App) -> None:
    raw = await api.key("acme")
    async with api.http(raw) as client:
        assert (await client.post("/threads/search", json={})).status_code == 200
        async with api.admin_http() as admin:
            disabled = await admin.post("/admin/tenants/acme/disable")
            assert disabled.status_code == 200 and disabled.json()["disabled"] is True
            assert (await client.post("/threads/search", json={})).status_code == 401
            listed = (await admin.get("/admin/tenants")).json()
            assert [(t["tenant_id"], t["disabled"]) for t in listed] == [("acme", True)]
            assert (await admin.post("/admin/tenants/acme/enable")).json()["disabled"] is False
            assert (await admin.post("/admin/tenants/nobody/disable")).status_code == 404
        assert (await client.post("/threads/search", json={})).status_code == 200


async def test_limits_and_budgets_through_the_admin_api(api: App) -> None:
    await api.key("acme")
    async with api.admin_http() as admin:
        empty = (await admin.get("/admin/tenants/acme/limits")).json()
        assert empty == {
            "tenant_id": "acme",
            "requests_per_minute": None,
            "tokens_per_minute": None,
            "max_concurrent_runs": None,
            "max_queued_runs": None,
        }
        limits = {"requests_per_minute": 120, "max_concurrent_runs": 3}
        put = await admin.put("/admin/tenants/acme/limits", json=limits)
        assert put.status_code == 200, put.text
        got = (await admin.get("/admin/tenants/acme/limits")).json()
        assert (got["requests_per_minute"], got["max_concurrent_runs"]) == (120, 3)
        assert got["tokens_per_minute"] is None
        negative = await admin.put("/admin/tenants/acme/limits", json={"max_queued_runs": -1})
        assert negative.status_code == 422
        too_many = await admin.put("/admin/tenants/acme/limits", json={"max_queued_runs": 2**31})
        assert too_many.status_code == 422 and "max_queued_runs" in too_many.text
        assert (await admin.get("/admin/tenants/nobody/limits")).status_code == 404
        assert (await admin.put("/admin/tenants/nobody/limits", json={})).status_code == 404

        budget = await admin.put(
            "/admin/tenants/acme/budgets", json={"period": "day", "usd": "2.5"}
        )
        assert budget.status_code == 200, budget.text
        assert budget.json()["label"] == "tenant acme, daily, $2.50"
        weekly = await admin.put("/admin/tenants/acme/budgets", json={"period": "week", "usd": 1})
        assert weekly.status_code == 422
        # Past what the ledger's micro-dollar column holds (the fuzzer found the 500).
        huge = await admin.put("/admin/tenants/acme/budgets", json={"period": "day", "usd": 5e16})
        assert huge.status_code == 422 and "usd" in huge.text
        listed = (await admin.get("/admin/tenants/acme/budgets")).json()
        assert [(b["period"], b["limit_usd"]) for b in listed] == [("day", 2.5)]
        gone = await admin.delete("/admin/tenants/acme/budgets", params={"period": "day"})
        assert gone.status_code == 204
        again = await admin.delete("/admin/tenants/acme/budgets", params={"period": "day"})
        assert again.status_code == 404
        audit = await admin.get("/admin/audit", params={"action": "budget."})
        assert [e["action"] for e in audit.json()["entries"]] == ["budget.delete", "budget.set"]
        limited = await admin.get("/admin/audit", params={"action": "limits.set", "limit": 1})
        assert limited.json()["entries"][0]["details"]["requests_per_minute"] == 120
        later = await admin.get("/admin/audit", params={"since": "2999-01-01T00:00:00Z"})
        assert later.json() == {"entries": []}


async def test_who_is_admin_with_the_bootstrap_key_set(api: App) -> None:
    ops = await api.key("ops", "admin")
    plain = await api.key("acme")
    async with api.http() as anonymous:
        assert (await anonymous.get("/admin/tenants")).status_code == 401
        wrong = await anonymous.get("/admin/tenants", headers={"x-admin-key": "nope"})
        assert wrong.status_code == 401
        bearer = await anonymous.get(
            "/admin/tenants", headers={"authorization": "Bearer bootstrap-admin-key-for-tests"}
        )
        assert bearer.status_code == 200
    async with api.http(plain) as client:
        forbidden = await client.get("/admin/tenants")
        assert forbidden.status_code == 403 and forbidden.json()["missing_scope"] == "admin"
    async with api.http(ops) as client:
        created = await client.post("/admin/tenants", json={"tenant_id": "beta"})
        assert created.status_code == 201
        assert (await client.get("/admin/usage")).status_code == 200
        [entry] = (await client.get("/admin/audit", params={"tenant_id": "beta"})).json()["entries"]
    assert (entry["actor"], entry["key_id"]) == ("api-key", parse_key(ops))


async def test_without_the_bootstrap_key_only_admin_scoped_keys_see_admin_routes(
    tmp_path: Path,
) -> None:
    async with admin_app("sqlite", tmp_path, bootstrap=False) as api:
        ops = await api.key("ops", "admin")
        plain = await api.key("acme")
        async with api.http() as anonymous:
            assert (await anonymous.get("/admin/tenants")).status_code == 404
            other = await anonymous.get("/admin/tenants", headers={"x-admin-key": "anything"})
            assert other.status_code == 404
        async with api.http(plain) as client:
            assert (await client.get("/admin/tenants")).status_code == 404
            assert (await client.get("/admin/usage")).status_code == 404
        async with api.http("ar_0123456789ab_" + "x" * 43) as client:
            assert (await client.get("/admin/tenants")).status_code == 404
        async with api.http(ops) as client:
            assert (await client.get("/admin/tenants")).status_code == 200
            assert (await client.get("/admin/usage")).status_code == 200
