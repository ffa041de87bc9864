"""Pagination offsets past a database integer are 422 naming the field (found by fuzzing:
they reached the query and failed as 500s), on every route that pages, both backends."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_runtime.protocol.agent_protocol import MAX_OFFSET
from tests.api.admin_app import admin_app
from tests.backends import BACKENDS

HUGE = 167632059735362506292026970996736
THREAD = "00000000-0000-0000-0000-000000000001"


@pytest.mark.parametrize("backend", BACKENDS)
async def test_huge_offsets_are_422(backend: str, tmp_path: Path) -> None:
    async with admin_app(backend, tmp_path) as app:
        key = await app.key("acme")
        async with app.admin_http() as admin, app.http(key) as http:
            answers = [
                await admin.get("/admin/tenants", params={"offset": HUGE}),
                await admin.get("/admin/audit", params={"offset": MAX_OFFSET + 1}),
                await http.get(f"/threads/{THREAD}/runs", params={"offset": HUGE}),
                await http.post("/threads/search", json={"offset": HUGE}),
                await http.post("/assistants/search", json={"offset": HUGE}),
                await http.post("/store/items/search", json={"offset": HUGE}),
                await http.post("/store/namespaces", json={"offset": HUGE}),
            ]
            fine = await admin.get("/admin/tenants", params={"offset": MAX_OFFSET})
        for answer in answers:
            assert answer.status_code == 422, (answer.request.url, answer.text)
            assert answer.json()["error"] == "invalid_request"
            assert answer.json()["errors"][0]["field"] == "offset"
        assert fine.status_code == 200 and fine.json() == []
