"""An app's own auth (``auth.path``) on threads and their runs, over real databases: the
runtime's API key first, then the app's ``authenticate`` (401 without a user token), then
its handlers: a thread is its creator's, another user's is *not found* (404, never 403) on
every route, searches and counts show one's own, runs carry the user in their config."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.api.auth_app import CALLS, AuthApi, auth_api
from tests.backends import BACKENDS

RUN = {"assistant_id": "steps", "input": {"steps": [], "mode": "ok"}}


@pytest.fixture(params=BACKENDS)
async def api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AuthApi]:
    async with auth_api(request.param, tmp_path) as app:
        yield app


async def test_the_api_key_comes_first_then_the_apps_authenticate(api: AuthApi) -> None:
    async with api.client() as no_user, api.client("alice-token", key="ar_wrong") as no_key:
        anonymous = await no_user.post("/threads", json={})
        bad_key = await no_key.post("/threads", json={})
    assert anonymous.status_code == 401
    assert anonymous.json() == {"detail": "Invalid or missing token", "error": "unauthorized"}
    assert anonymous.headers["www-authenticate"] == "Bearer"
    # The app's handler never sees a request whose runtime key is wrong.
    assert bad_key.status_code == 401 and bad_key.json()["detail"] == "invalid API key"
    async with api.client("nobody-token") as stranger:
        assert (await stranger.post("/threads/search", json={})).status_code == 401


async def test_the_keys_scopes_still_apply_under_the_apps_auth(api: AuthApi) -> None:
    read_only = await api.new_key("read")
    async with api.client("alice-token", key=read_only) as alice:
        refused = await alice.post("/threads", json={})
        listed = await alice.post("/threads/search", json={})
    assert refused.status_code == 403 and refused.json()["missing_scope"] == "run"
    assert listed.status_code == 200
    assert "threads.create" not in CALLS  # the scope is checked before any handler runs


async def test_create_stamps_the_owner_whatever_the_client_sends(api: AuthApi) -> None:
    async with api.client("alice-token") as alice:
        made = await alice.post("/threads", json={"metadata": {"owner": "bob", "topic": "x"}})
    assert made.status_code == 200, made.text
    assert made.json()["metadata"] == {"owner": "alice", "topic": "x"}


async def test_another_users_thread_is_not_found_on_every_route(api: AuthApi) -> None:
    async with api.client("alice-token") as alice, api.client("bob-token") as bob:
        thread = (await alice.post("/threads", json={})).json()["thread_id"]
        waited = await alice.post(f"/threads/{thread}/runs/wait", json=RUN)
        assert waited.status_code == 200, waited.text
        run = (await alice.get(f"/threads/{thread}/runs")).json()[0]["run_id"]
        t, r = f"/threads/{thread}", f"/threads/{thread}/runs/{run}"
        attempts = {
            "get": await bob.get(t),
            "patch": await bob.patch(t, json={"metadata": {"owner": "bob"}}),
            "delete": await bob.delete(t),
            "copy": await bob.post(f"{t}/copy"),
            "state": await bob.get(f"{t}/state"),
            "update state": await bob.post(f"{t}/state", json={"values": {"steps": ["x"]}}),
            "history": await bob.post(f"{t}/history", json={}),
            "list runs": await bob.get(f"{t}/runs"),
            "run": await bob.get(r),
            "join": await bob.get(f"{r}/join"),
            "trace": await bob.get(f"{r}/trace"),
            "cancel": await bob.post(f"{r}/cancel"),
            "delete run": await bob.delete(r),
            "new run": await bob.post(f"{t}/runs/wait", json=RUN),
            "stream": await bob.post(f"{t}/runs/stream", json=RUN),
            "cancel by ids": await bob.post(
                "/runs/cancel", json={"thread_id": thread, "run_ids": [run]}
            ),
        }
        unknown = await bob.get("/threads/00000000-0000-4000-8000-000000000000")
        # alice still has all of it, untouched
        mine = await alice.get(t)
        state = await alice.get(f"{t}/state")
    for route, answer in attempts.items():
        assert answer.status_code == 404, f"{route}: {answer.status_code} {answer.text}"
        assert answer.json()["error"] == "not_found", route
    assert attempts["get"].json()["detail"] == f"Thread with ID {thread} not found"
    assert unknown.status_code == 404  # the same answer as for a thread that does not exist
    assert mine.json()["metadata"]["owner"] == "alice"
    assert state.status_code == 200 and state.json()["values"]["steps"] == ["first", "second"]


async def test_searches_and_counts_show_only_ones_own_threads(api: AuthApi) -> None:
    async with api.client("alice-token") as alice, api.client("bob-token") as bob:
        alices = {(await alice.post("/threads", json={})).json()["thread_id"] for _ in range(3)}
        bobs = {(await bob.post("/threads", json={})).json()["thread_id"]}
        found = await alice.post("/threads/search", json={"limit": 10})
        asked_for_bobs = await alice.post("/threads/search", json={"metadata": {"owner": "bob"}})
        counted = await alice.post("/threads/count", json={})
        bob_found = await bob.post("/threads/search", json={})
    assert {t["thread_id"] for t in found.json()} == alices
    assert found.headers["x-pagination-total"] == "3"
    assert asked_for_bobs.json() == []  # the client's own filter cannot widen the app's
    assert counted.json() == 3
    assert {t["thread_id"] for t in bob_found.json()} == bobs


async def test_owners_use_their_threads_and_runs_carry_the_user(api: AuthApi) -> None:
    async with api.client("alice-token") as alice:
        thread = (await alice.post("/threads", json={})).json()["thread_id"]
        body = {**RUN, "config": {"configurable": {"langgraph_auth_user_id": "mallory"}}}
        waited = await alice.post(f"/threads/{thread}/runs/wait", json=body)
        (run,) = (await alice.get(f"/threads/{thread}/runs")).json()
        stored = await api.services.runs.get("acme", run["run_id"], thread)
        stateless = await alice.post("/runs/wait", json=RUN)
        copied = await alice.post(f"/threads/{thread}/copy")
        deleted = await alice.delete(f"/threads/{thread}")
        gone = await alice.get(f"/threads/{thread}")
    assert waited.status_code == 200 and stateless.status_code == 200, stateless.text
    assert run["metadata"]["owner"] == "alice"  # threads.create_run stamped the run too
    configurable = stored.kwargs["config"]["configurable"]
    assert configurable["langgraph_auth_user_id"] == "alice"  # not the client's "mallory"
    assert configurable["langgraph_auth_permissions"] == ["assistants:create"]
    assert configurable["langgraph_auth_user"] == {
        "org": "acme",
        "identity": "alice",
        "display_name": "Alice",
        "is_authenticated": True,
        "permissions": ["assistants:create"],
    }
    assert copied.status_code == 200 and copied.json()["metadata"]["owner"] == "alice"
    assert deleted.status_code == 204 and gone.status_code == 404


async def test_a_run_that_creates_its_thread_gives_it_to_the_user(api: AuthApi) -> None:
    fresh = "9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d"
    async with api.client("alice-token") as alice, api.client("bob-token") as bob:
        made = await alice.post(
            f"/threads/{fresh}/runs/wait", json={**RUN, "if_not_exists": "create"}
        )
        hers = await alice.get(f"/threads/{fresh}")
        not_his = await bob.get(f"/threads/{fresh}")
    assert made.status_code == 200, made.text
    assert hers.json()["metadata"]["owner"] == "alice"
    assert not_his.status_code == 404


async def test_a_thread_id_taken_by_another_user_is_a_conflict(api: AuthApi) -> None:
    async with api.client("alice-token") as alice, api.client("bob-token") as bob:
        thread = (await alice.post("/threads", json={})).json()["thread_id"]
        taken = await bob.post("/threads", json={"thread_id": thread, "if_exists": "do_nothing"})
        pruned = await bob.post("/threads/prune", json={"thread_ids": [thread]})
        kept = await alice.get(f"/threads/{thread}")
    assert taken.status_code == 409  # never alice's thread handed to bob
    assert pruned.json() == {"pruned_count": 0}  # bob cannot prune what he cannot see
    assert kept.status_code == 200
