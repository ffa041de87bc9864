"""What the chaos suites share (issue 13): the chaos app deployed beside the main stack,
users looping ``runs/wait`` as clients should, and the counts each fault is judged by.

The chaos app (``tests/apps/chaos_app``) logs each step of a run in the thread's state, so
that a run done twice shows: a thread whose runs all ended has exactly one ``c`` per run
that succeeded. Replicas are found by their actor names and health-checked as Serve's
controller does it (the replica actor's ``check_health``).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import ray

from agent_runtime.config.app_settings import AppSettings
from agent_runtime.config.settings import RuntimeSettings
from tests.e2e.support import Api

APP = Path(__file__).resolve().parents[1] / "apps" / "chaos_app"
TERMINAL = {"success", "error", "timeout", "interrupted"}
DEPLOYMENTS = ("Ingress", "Orchestrator", "ModelRouter")
POLL_S = 0.5  # between status sweeps: each sweep is one GET per run


@dataclass
class ChaosApp:
    """The chaos app served as ``name`` beside the stack, at ``url``, with ``settings``."""

    name: str
    url: str
    settings: RuntimeSettings

    def deploy(self, settings: RuntimeSettings | None = None) -> None:
        """(Re)deploy it, as ``serve deploy`` of a changed config would: Serve replaces
        the replicas one by one; returns once the new version runs."""
        from ray import serve

        from agent_runtime.deployments.app import build_app

        if settings is not None:
            self.settings = settings.model_copy(update={"app": self.settings.app})
        app = build_app(settings=self.settings)
        serve.run(app, name=self.name, route_prefix=f"/apps/{self.name}")


@contextmanager
def chaos_app(
    name: str,
    base_url: str,
    settings: RuntimeSettings,
    folder: Path,
    env: dict[str, str] | None = None,
) -> Iterator[ChaosApp]:
    """The chaos app deployed with ``settings`` (its own copy of the project, ``env`` in
    its langgraph.json), then deleted."""
    from ray import serve

    project = shutil.copytree(APP, folder / "chaos_app")
    if env:
        config = json.loads((project / "langgraph.json").read_text())
        (project / "langgraph.json").write_text(json.dumps({**config, "env": env}))
    app_settings = AppSettings(config=project / "langgraph.json")
    served = ChaosApp(
        name, f"{base_url}/apps/{name}", settings.model_copy(update={"app": app_settings})
    )
    served.deploy()
    try:
        yield served
    finally:
        serve.delete(name)


def replicas(app: str, deployment: str) -> list[str]:
    """The named actors of ``app``'s replicas of ``deployment``."""
    return [
        actor["name"]
        for actor in ray.util.list_named_actors(all_namespaces=True)
        if actor["name"].startswith(f"SERVE_REPLICA::{app}#{deployment}#")
    ]


async def health(app: str, deployment: str) -> str:
    """What the deployment's replicas answer to ``check_health``, called as Serve's
    controller calls it: "ok", or why the first unhealthy one is not. Ray's lookups block,
    so they run in a thread: on the test's loop they would starve the users' requests."""
    for name in await asyncio.to_thread(replicas, app, deployment):
        try:
            actor = await asyncio.to_thread(ray.get_actor, name, namespace="serve")
            await actor.check_health.remote()
        except Exception as error:  # the replica's ReplicaUnhealthy, wrapped by Ray
            return str(error).strip().splitlines()[-1]  # its message, after Ray's trace
    return "ok"


async def healths(app: str) -> list[str]:
    return list(await asyncio.gather(*(health(app, d) for d in DEPLOYMENTS)))


async def get(api: Api, path: str) -> httpx.Response:
    """GET as a polite client: a 429 (the test polls hard) waits its Retry-After, then asks
    again; the API key limit is part of the stack under test, not something to switch off."""
    while True:
        response = await api.http.get(path)
        if response.status_code != 429:
            return response
        await asyncio.sleep(float(response.headers["retry-after"]))


async def statuses(api: Api, runs: list[tuple[str, str]]) -> list[str]:
    found = []
    for thread_id, run_id in runs:
        response = await get(api, f"/threads/{thread_id}/runs/{run_id}")
        found.append(response.json()["status"] if response.status_code == 200 else "missing")
    return found


async def logs(api: Api, thread_ids: list[str]) -> list[list[str]]:
    found = []
    for thread_id in thread_ids:
        response = await get(api, f"/threads/{thread_id}/state")
        response.raise_for_status()
        found.append(response.json()["values"].get("log", []))
    return found


async def thread_runs(api: Api, thread_id: str) -> list[dict[str, str]]:
    """Every run of the thread, whether or not its creation was acknowledged."""
    response = await get(api, f"/threads/{thread_id}/runs?limit=1000")
    response.raise_for_status()
    runs: list[dict[str, str]] = response.json()
    return runs


@dataclass
class Load:
    """What the users saw: each answer's start, status, Retry-After and run."""

    answers: list[tuple[float, int, str | None]] = field(default_factory=list)
    acknowledged: list[tuple[str, str]] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # run id -> the error it ended with
    durations: list[tuple[float, float]] = field(default_factory=list)  # 200s: start, seconds
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def durations_since(self, at: float) -> list[float]:
        return [seconds for started, seconds in self.durations if started >= at]

    def since(self, at: float) -> list[tuple[float, int, str | None]]:
        return [answer for answer in self.answers if answer[0] >= at]

    def first_success_after(self, at: float) -> float | None:
        """When the first request that started after ``at`` and succeeded started."""
        times = [started for started, status, _ in self.answers if status == 200 and started >= at]
        return min(times, default=None)


async def user(api: Api, thread_id: str, load: Load, graph: str = "steps") -> None:
    """Loop ``runs/wait`` on the thread; a 503 or 429 waits its ``Retry-After``, a broken
    connection (status 0) a short while, as a client should."""
    body = {"assistant_id": graph, "input": {"log": []}}
    while not load.stop.is_set():
        started = time.monotonic()
        try:
            response = await api.http.post(f"/threads/{thread_id}/runs/wait", json=body)
        except httpx.HTTPError:
            load.answers.append((started, 0, None))
            await asyncio.sleep(0.2)
            continue
        load.answers.append((started, response.status_code, response.headers.get("retry-after")))
        if response.status_code == 200:
            load.durations.append((started, time.monotonic() - started))
            run_id = response.headers["content-location"].rsplit("/", 1)[-1]
            load.acknowledged.append((thread_id, run_id))
            error = response.json().get("__error__")
            if error is not None:
                load.errors[run_id] = str(error.get("error"))
        elif response.status_code in (429, 503):
            await asyncio.sleep(float(response.headers.get("retry-after", "1")))
