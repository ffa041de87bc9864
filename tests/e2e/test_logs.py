"""Every log line of a request, on every hop, is JSON naming its request, tenant, thread
and run; the request id comes back in the ``x-request-id`` header.

Serve writes each replica's lines to ``logs/serve/replica_<app>_<deployment>_<id>.log``
in the Ray session directory (JSON, see ``agent_runtime.replica.replica_logs``): the test reads
them back, as tests/e2e/test_secrets.py reads Ray's logs.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray

from tests.e2e.conftest import Stack, Tenant
from tests.e2e.support import msg

pytestmark = pytest.mark.e2e


def replica_lines(request_id: str) -> list[dict[str, Any]]:
    session = Path(ray._private.worker._global_node.get_session_dir_path())
    found = []
    for path in sorted((session / "logs" / "serve").glob("replica_*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if request_id not in line:
                continue
            record = json.loads(line)  # every line is one JSON object
            if record.get("request_id") == request_id:
                found.append(record)
    return found


def hops(lines: list[dict[str, Any]]) -> set[str]:
    """Serve names a replica's deployment ``<app>_<deployment>``."""
    return {str(line.get("deployment", "")).rsplit("_", 1)[-1] for line in lines}


async def test_a_runs_lines_carry_its_ids_across_the_hops(
    stack: Stack, tenant: Tenant, http: httpx.AsyncClient
) -> None:
    request_id = f"e2e-logs-{uuid.uuid4().hex}"
    headers = {"x-api-key": tenant.api_key}
    thread_id = (await http.post("/threads", json={}, headers=headers)).json()["thread_id"]
    run = {"assistant_id": "react", "input": msg("what is 6 * 7")}
    # Serve logs a handle's creation on its first use, before the run exists (no run id
    # yet): run once first, as any earlier traffic would.
    warm = await http.post(f"/threads/{thread_id}/runs/wait", json=run, headers=headers)
    assert warm.status_code == 200
    response = await http.post(
        f"/threads/{thread_id}/runs/wait", json=run, headers={**headers, "x-request-id": request_id}
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == request_id
    run_id = response.headers["content-location"].rsplit("/", 1)[-1]

    # Ingress (the request's line), orchestrator (the run's start and end), router (the
    # model call): each replica writes its own file and flushes on its own, the
    # orchestrator's "run ended" line possibly after its other lines. Wait for the three
    # lines themselves, not for any line of each hop.
    expected = (
        "POST /threads/{thread_id}/runs/wait 200",
        "run ended: graph react, status success",
        "model request smart: ok by fake-smart",
    )

    def missing(lines: list[dict[str, Any]]) -> list[str]:
        messages = [str(line.get("message", "")) for line in lines]
        return [e for e in expected if not any(m.startswith(e) for m in messages)]

    deadline = time.monotonic() + 15
    lines = replica_lines(request_id)
    while missing(lines):
        assert time.monotonic() < deadline, f"never logged {missing(lines)}: {lines}"
        await asyncio.sleep(0.2)  # polling Serve's log files, with the deadline above
        lines = replica_lines(request_id)

    assert hops(lines) == {"Ingress", "Orchestrator", "ModelRouter"}
    for line in lines:
        ids = {name: line.get(name) for name in ("tenant_id", "thread_id", "run_id")}
        assert ids == {"tenant_id": tenant.tenant_id, "thread_id": thread_id, "run_id": run_id}, (
            line
        )
