"""An app's own auth (``auth.path``) on assistants, crons and the store, how its handlers'
refusals and failures answer, the app's own routes (``http.enable_custom_route_auth``), and
the route table that says which handler each route asks (complete: a new route without an
entry fails here)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fastapi import FastAPI, Request

from agent_runtime.api.app_factory import create_api
from agent_runtime.api.route_auth import ROUTE_RULES
from agent_runtime.config.http_settings import HttpSettings
from tests.api.auth_app import AuthApi, auth_api
from tests.api.test_scopes import EXPECTED
from tests.backends import BACKENDS


@pytest.fixture(params=BACKENDS)
async def api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AuthApi]:
    async with auth_api(request.param, tmp_path) as app:
        yield app


async def test_assistants_are_their_creators(api: AuthApi) -> None:
    async with api.client("alice-token") as alice, api.client("bob-token") as bob:
        made = await alice.post("/assistants", json={"graph_id": "steps", "name": "mine"})
        assistant = made.json()["assistant_id"]
        refused = await bob.post("/assistants", json={"graph_id": "steps"})
        theirs = {
            "get": await bob.get(f"/assistants/{assistant}"),
            "patch": await bob.patch(f"/assistants/{assistant}", json={"name": "his"}),
            "schemas": await bob.get(f"/assistants/{assistant}/schemas"),
            "versions": await bob.post(f"/assistants/{assistant}/versions", json={}),
            "run with it": await bob.post(
                "/runs/wait", json={"assistant_id": assistant, "input": {"steps": []}}
            ),
        }
        alices = await alice.post("/assistants/search", json={})
        bobs = await bob.post("/assistants/search", json={})
        counted = await bob.post("/assistants/count", json={})
        deleted = await alice.delete(f"/assistants/{assistant}")
    assert made.json()["metadata"] == {"owner": "alice"}
    # The handler's own HTTPException: its status and detail, as JSON.
    assert refused.status_code == 403
    assert refused.json() == {"detail": "assistants:create is required", "error": "forbidden"}
    for route, answer in theirs.items():
        assert answer.status_code == 404, f"{route}: {answer.text}"
    # The global owner filter also hides the graphs' default assistants from searches,
    # as on the Platform (they have no owner); running with one by graph id still works.
    assert [a["assistant_id"] for a in alices.json()] == [assistant]
    assert bobs.json() == [] and counted.json() == 0
    # A handler answering False: 403, whatever the resource.
    assert deleted.status_code == 403
    assert deleted.json() == {"detail": "Forbidden", "error": "forbidden"}


async def test_crons_are_their_creators_and_a_failing_handler_is_a_500_without_its_trace(
    api: AuthApi,
) -> None:
    cron = {"assistant_id": "steps", "schedule": "0 0 * * *", "input": {"steps": []}}
    async with api.client("alice-token") as alice, api.client("bob-token") as bob:
        thread = (await alice.post("/threads", json={})).json()["thread_id"]
        made = await alice.post("/runs/crons", json=cron)
        on_her_thread = await bob.post(f"/threads/{thread}/runs/crons", json=cron)
        cron_id = made.json()["cron_id"]
        his_view = await bob.get(f"/runs/crons/{cron_id}")
        his_delete = await bob.delete(f"/runs/crons/{cron_id}")
        hers = await alice.get(f"/runs/crons/{cron_id}")
        searched = await alice.post("/runs/crons/search", json={})
    assert made.status_code == 200, made.text
    assert made.json()["metadata"] == {"owner": "alice"}
    assert on_her_thread.status_code == 404
    assert his_view.status_code == 404 and his_delete.status_code == 404
    assert hers.status_code == 200
    assert searched.status_code == 500
    assert searched.json() == {
        "detail": "the app's auth handler for crons.search failed; its error is in the "
        "server's log",
        "error": "auth_handler_error",
    }
    assert "hunter2" not in searched.text and "Traceback" not in searched.text


async def test_a_failing_authenticate_is_a_500_that_shows_nothing_of_it(api: AuthApi) -> None:
    async with api.client("broken-token") as broken:
        answer = await broken.post("/threads/search", json={})
    assert answer.status_code == 500
    assert answer.json()["error"] == "auth_handler_error"
    assert "hunter2" not in answer.text and "identity provider" not in answer.text


async def test_store_handlers_scope_each_users_items(api: AuthApi) -> None:
    note = {"namespace": ["notes"], "key": "k", "value": {"text": "hers"}}
    async with api.client("alice-token") as alice, api.client("bob-token") as bob:
        put = await alice.put("/store/items", json=note)
        hers = await alice.get("/store/items", params={"namespace": "notes", "key": "k"})
        his = await bob.get("/store/items", params={"namespace": "notes", "key": "k"})
        his_search = await bob.post("/store/items/search", json={"namespace_prefix": ["notes"]})
        her_search = await alice.post("/store/items/search", json={"namespace_prefix": []})
        namespaces = await alice.post("/store/namespaces", json={})
        await bob.request("DELETE", "/store/items", json={"namespace": ["notes"], "key": "k"})
        still = await alice.get("/store/items", params={"namespace": "notes", "key": "k"})
    assert put.status_code == 204
    # Stored where the handler put it: under alice's identity.
    assert hers.json()["namespace"] == ["alice", "notes"]
    assert his.json() is None and his_search.json() == {"items": []}
    assert [i["value"] for i in her_search.json()["items"]] == [{"text": "hers"}]
    assert namespaces.json() == {"namespaces": [["alice", "notes"]]}
    assert still.json()["value"] == {"text": "hers"}  # bob's delete reached his own namespace


def test_every_authenticated_route_says_which_handler_it_asks() -> None:
    """The table covers exactly the routes a key may call (test_scopes lists them all and
    checks that list against the app's routes)."""
    authenticated = {route for route, scope in EXPECTED.items() if scope is not None}
    assert set(ROUTE_RULES) == authenticated


async def test_custom_routes_that_ask_for_a_key_also_get_the_user(api: AuthApi) -> None:
    custom = FastAPI()

    @custom.get("/whoami")
    async def whoami(request: Request) -> dict[str, str | None]:
        user = request.state.principal.user
        return {"user": user.identity if user else None}

    api.services.settings.http = HttpSettings(custom_route_auth=True)
    api.app = create_api(api.services, custom)
    async with api.client("alice-token") as alice, api.client() as anonymous:
        hers = await alice.get("/whoami")
        refused = await anonymous.get("/whoami")
    assert hers.json() == {"user": "alice"}
    assert refused.status_code == 401 and refused.json()["detail"] == "Invalid or missing token"
