"""No API key, admin key or provider key reaches a log line or a response body.

Runs after the other e2e modules (alphabetical order), so the logs it reads hold their
traffic too: successful and failed runs, 401s, 429s, fallbacks and a replica crash.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import ray
from langgraph_sdk import get_client

from tests.e2e.conftest import ADMIN_SECRET, PROVIDER_SECRET, Stack, Tenant

pytestmark = pytest.mark.e2e


async def test_keys_never_reach_logs_or_bodies(
    stack: Stack, tenant: Tenant, http: httpx.AsyncClient
) -> None:
    forged = "ar_0123456789ab_" + "S3cretForgedKeyThatMustNotBeLogged00000000"
    bodies = []
    for key in (forged, tenant.api_key):
        for response in (
            await http.post("/threads", json={}, headers={"x-api-key": key}),
            await http.get("/threads/none", headers={"Authorization": f"Bearer {key}"}),
            await http.post(
                "/v1/chat/completions",
                json={"model": "broken", "messages": [{"role": "user", "content": "hi"}]},
                headers={"Authorization": f"Bearer {key}"},
            ),
        ):
            bodies.append(response.text)
    forged_admin = ADMIN_SECRET[::-1]
    for admin_key in (ADMIN_SECRET, forged_admin):
        for response in (
            await http.get("/admin/tenants", headers={"x-admin-key": admin_key}),
            await http.get("/admin/audit", headers={"Authorization": f"Bearer {admin_key}"}),
            await http.post(
                "/admin/tenants", json={"tenant_id": "bad id!"}, headers={"x-admin-key": admin_key}
            ),
        ):
            bodies.append(response.text)
    client = get_client(url=stack.url, api_key=tenant.api_key)
    thread = await client.threads.create()
    await client.runs.wait(
        thread["thread_id"], "react", input={"messages": [{"role": "user", "content": "1 + 1"}]}
    )

    secrets = [
        forged,
        tenant.api_key,
        tenant.api_key.split("_", 2)[2],
        PROVIDER_SECRET,
        ADMIN_SECRET,
        forged_admin,
    ]
    for body in bodies:
        assert not any(secret in body for secret in secrets), body
        assert "Traceback" not in body

    logs = Path(ray._private.worker._global_node.get_session_dir_path()) / "logs"
    files = [path for path in logs.rglob("*") if path.is_file()]
    assert files, "no Ray logs found"
    for path in files:
        text = path.read_text(errors="replace")
        leaked = [secret for secret in secrets if secret in text]
        assert not leaked, f"{path.name} contains a secret"
