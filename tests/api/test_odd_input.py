"""Odd input that once slipped past the checks or answered 500: bodies with a byte-order
mark or in UTF-16, out-of-range delays and TTLs (1e12, inf, NaN, negative), and event ids
that only look like numbers. Each is a clear 422 in the runtime's error shape."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.api.admin_app import App
from tests.api.test_hardening import assert_error, make_app

JSON = {"content-type": "application/json"}


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    async for built in make_app(tmp_path):
        yield built


async def test_a_body_with_a_byte_order_mark_or_in_utf16_is_refused(app: App) -> None:
    key = await app.key("acme")
    # A NUL escape the byte checks refuse in plain UTF-8; each encoding below hid it.
    text = '{"metadata": {"a": "\\u0000"}}'
    async with app.http(key) as http:
        plain = await http.post("/threads", content=text.encode(), headers=JSON)
        for encoded in (
            text.encode("utf-8-sig"),
            text.encode("utf-16"),
            text.encode("utf-16-le"),
            text.encode("utf-32"),
        ):
            refused = await http.post("/threads", content=encoded, headers=JSON)
            body = assert_error(refused, 422, "invalid_request")
            assert "UTF-8 without a byte-order mark" in body["detail"]
        fine = await http.post("/threads", content=b'{"metadata": {"a": 1}}', headers=JSON)
    assert_error(plain, 422, "invalid_request")
    assert fine.status_code == 200, fine.text


@pytest.mark.parametrize("after", ["1e12", "-5", "Infinity", "NaN"])
async def test_a_run_delay_out_of_range_is_422(app: App, after: str) -> None:
    key = await app.key("acme")
    body = f'{{"assistant_id": "react", "after_seconds": {after}}}'
    async with app.http(key) as http:
        refused = await http.post("/runs", content=body, headers=JSON)
    assert_error(refused, 422, "invalid_request")
    assert "after_seconds" in refused.text


@pytest.mark.parametrize("ttl", ["1e12", "-5", "0", "Infinity", "NaN"])
async def test_a_thread_ttl_out_of_range_is_422(app: App, ttl: str) -> None:
    key = await app.key("acme")
    async with app.http(key) as http:
        refused = await http.post("/threads", content=f'{{"ttl": {{"ttl": {ttl}}}}}', headers=JSON)
    body = assert_error(refused, 422, "invalid_request")
    assert "ttl.ttl" in body["detail"]


async def test_an_event_id_that_only_looks_like_a_number_is_422(app: App) -> None:
    key = await app.key("acme")
    thread_id, run_id = uuid.uuid4(), uuid.uuid4()
    async with app.http(key) as http:
        refused = await http.get(
            f"/threads/{thread_id}/runs/{run_id}/stream",
            headers={"last-event-id": "²".encode("latin-1")},
        )
    body = assert_error(refused, 422, "invalid_request")
    assert "Last-Event-ID" in body["detail"]
