"""The reduced chaos suite (issue 13): faults injected under a steady load, and what the
runtime promises through them: an accepted run ends, exactly once, or says why.

A Serve app of its own (``tests/apps/chaos_app``: three slow steps, each logged once) runs
beside the main stack, on the same PostgreSQL reached through a TCP proxy the test can cut
(:class:`~tests.tcp_proxy.TcpProxy`), so an outage needs no control of the server itself.

- an orchestrator replica killed mid-run: every run resumes from its last checkpoint and
  ends with each step logged once;
- PostgreSQL unreachable for a while: refusals are 503 with ``Retry-After`` (never a 500),
  the app recovers within 10 s of the database coming back without a restart, and every
  run it acknowledged ends: in success, or (a run the outage broke) in a clear
  ``DependencyUnavailable`` error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import ray

from agent_runtime.config.settings import RuntimeSettings
from agent_runtime.db.metadata import MetadataStore
from tests.e2e.chaos_support import (
    DEPLOYMENTS,
    POLL_S,
    TERMINAL,
    Load,
    chaos_app,
    logs,
    replicas,
    statuses,
    user,
)
from tests.e2e.chaos_support import healths as app_healths
from tests.e2e.conftest import Stack
from tests.e2e.support import eventually, open_api
from tests.tcp_proxy import TcpProxy, proxied_url

pytestmark = pytest.mark.e2e

NAME = "app-chaos"
OUTAGE_S = 4.0  # how long the database stays unreachable
RECOVERY_TARGET_S = 10.0
USERS = 4


@dataclass
class Chaos:
    url: str
    proxy: TcpProxy


@pytest.fixture(scope="module")
def chaos(
    stack: Stack,
    stack_settings: RuntimeSettings,
    postgres_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Chaos]:
    proxy = TcpProxy.to_url(postgres_url)
    storage = stack_settings.storage.model_copy(
        update={"database_url": proxied_url(postgres_url, proxy)}
    )
    # Health checks fail after 1 s without the database here (60 s by default), so that the
    # outage below shows it; Serve calls them every 10 s and replaces after 3 failures.
    serve_settings = stack_settings.serve.model_copy(update={"health_dependency_grace_s": 1.0})
    settings = stack_settings.model_copy(update={"storage": storage, "serve": serve_settings})
    folder = tmp_path_factory.mktemp("chaos")
    try:
        with chaos_app(NAME, stack.url, settings, folder) as served:
            yield Chaos(served.url, proxy)
    finally:
        proxy.close()


async def healths() -> list[str]:
    return await app_healths(NAME)


async def test_runs_resume_after_their_orchestrator_is_killed(
    chaos: Chaos, store: MetadataStore
) -> None:
    api = await open_api(chaos.url, store)
    threads = [(await api.sdk.threads.create())["thread_id"] for _ in range(6)]
    runs = []
    for thread_id in threads:
        run = await api.sdk.runs.create(thread_id, "steps", input={"log": []})
        runs.append((thread_id, run["run_id"]))
    await eventually(
        lambda: statuses(api, runs),
        lambda found: found.count("running") >= 2,
        timeout_s=30,
        interval_s=POLL_S,
    )
    names = replicas(NAME, "Orchestrator")
    assert names, "no orchestrator replica of the chaos app"
    for name in names:
        ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)
    killed = time.monotonic()

    ended = await eventually(
        lambda: statuses(api, runs),
        lambda found: set(found) <= TERMINAL,
        timeout_s=150,
        interval_s=POLL_S,
    )
    recovered_s = time.monotonic() - killed
    assert ended == ["success"] * len(runs), ended  # lost: 0, failed: 0
    # Run once: each step is in the thread's state once, the interrupted one included.
    assert await logs(api, threads) == [["a", "b", "c"]] * len(threads)
    print(f"orchestrator killed: {len(runs)} runs resumed, all ended in {recovered_s:.1f} s")
    await api.aclose()


async def test_a_database_outage_is_a_503_with_retry_after_and_nothing_is_lost(
    chaos: Chaos, store: MetadataStore
) -> None:
    api = await open_api(chaos.url, store)
    threads = [(await api.sdk.threads.create())["thread_id"] for _ in range(USERS)]
    load = Load()
    users = [asyncio.create_task(user(api, thread_id, load)) for thread_id in threads]
    await eventually(lambda: asyncio.sleep(0, result=len(load.acknowledged)), lambda n: n >= USERS)

    assert await healths() == ["ok"] * len(DEPLOYMENTS)
    down_at = time.monotonic()
    chaos.proxy.down()
    # Past the grace (1 s here) every deployment's health check names the database.
    unhealthy = await eventually(
        healths,
        lambda found: all("database unreachable" in h for h in found),
        timeout_s=OUTAGE_S,
        interval_s=0.25,
    )
    # Whatever the users' requests were doing when it began, a request now is refused so.
    probe = await api.http.get(f"/threads/{threads[0]}")
    assert probe.status_code == 503 and "retry-after" in probe.headers, probe.text
    # The outage itself: the database stays away this long.
    await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))
    chaos.proxy.up()
    up_at = time.monotonic()
    served_after = len(load.acknowledged)
    await eventually(
        lambda: asyncio.sleep(0, result=len(load.acknowledged)),
        lambda n: n >= served_after + USERS,
        timeout_s=60,
    )
    load.stop.set()
    await asyncio.gather(*users)
    await eventually(healths, lambda found: found == ["ok"] * len(DEPLOYMENTS), timeout_s=30)

    statuses_seen = {status for _, status, _ in load.answers}
    assert statuses_seen <= {200, 503}, statuses_seen  # never a 500 or a broken connection
    refused = [(at, retry) for at, status, retry in load.answers if status == 503]
    assert refused, "the outage refused nothing: it was not seen"
    assert all(retry is not None for _, retry in refused)
    recovered = min(at for at, status, _ in load.answers if status == 200 and at >= up_at)
    recovery_s = recovered - up_at
    assert recovery_s <= RECOVERY_TARGET_S, recovery_s
    # Every acknowledged run ended (none lost, none stuck past its lease).
    ended = await eventually(
        lambda: statuses(api, load.acknowledged),
        lambda found: set(found) <= TERMINAL,
        timeout_s=60,
        interval_s=POLL_S,
    )
    # A run the outage broke failed with a clear error, never a driver's text.
    failed = [
        run for run, status in zip(load.acknowledged, ended, strict=True) if status != "success"
    ]
    for _, run_id in failed:
        assert load.errors.get(run_id) == "DependencyUnavailable", (run_id, load.errors)
    print(
        f"database down {OUTAGE_S:g} s at +{down_at - load.answers[0][0]:.1f} s: "
        f"{len(refused)} refused with 503, {len(load.acknowledged)} runs acknowledged "
        f"({len(failed)} failed with DependencyUnavailable, 0 lost), "
        f"recovered {recovery_s:.1f} s after it came back; health checks said: {unhealthy[1]}"
    )
    await api.aclose()
