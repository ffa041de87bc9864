"""Scale-out on a real multi-node cluster (issue 12): ``make cluster``'s fake multi-node
Ray cluster on this machine (cluster.local.yaml: a head with no CPU, worker nodes of 1 CPU,
2 to 3 of them), the chaos app deployed on it with PostgreSQL and Redis.

Its own pytest session (``make test`` runs ``pytest -m cluster`` after the main suite): the
cluster is started by ``python -m agent_runtime.cli.local_cluster up`` as a user would, and
``down`` stops every Ray process of the machine, so it cannot share a session with the
suite's single-node cluster.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
import ray
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient
from ray import serve

from agent_runtime.cli import local_cluster
from agent_runtime.cli.local_cluster import Replica, replicas, worker_nodes
from agent_runtime.config.settings import RuntimeSettings
from loadtests.bench_processes import free_port
from tests.e2e.support import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.cluster]

ROOT = Path(__file__).resolve().parents[2]
CHAOS_APP = ROOT / "tests" / "apps" / "chaos_app" / "langgraph.json"
# Each of the steps graph's three steps: long enough that a backlog outlasts a new node's
# start and its replica's (tens of seconds on 2 cores).
STEP_S = 4.0
BACKLOG = 20  # background runs: 10 replicas' worth at 2 each, past the 3 allowed
POLL_S = 1.0
UP_TIMEOUT_S = 420


@dataclass
class Cluster:
    url: str
    key: str
    address: str


def cluster_env(work: Path, postgres_url: str, redis_url: str, provider_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        AGENT_APP_CONFIG=str(CHAOS_APP),
        CHAOS_STEP_S=f"{STEP_S:g}",
        AGENT_DATABASE_URL=postgres_url,
        AGENT_REDIS_URL=redis_url,
        AGENT_PROVIDER_BASE_URL=provider_url,
        AGENT_DATA_DIR=str(work / "data"),
        AGENT_HTTP_HOST="127.0.0.1",
        AGENT_HTTP_PORT=str(free_port()),
        AGENT_METRICS_PORT=str(free_port()),
        AGENT_RATE_LIMIT_PER_SECOND="1000",
        AGENT_RATE_LIMIT_BURST="1000",
        AGENT_MAX_CONCURRENT_RUNS="none",
        # Two orchestrator replicas to start with, so that with the ingress and the router
        # the minimum fills both minimum workers (two 0.5-CPU replicas each); each takes 2
        # runs and aims at 2, up to 3 replicas: a backlog asks for one more than fits.
        AGENT_RUN_MAX_CONCURRENT="2",
        AGENT_ORCHESTRATOR__MIN_REPLICAS="2",
        AGENT_ORCHESTRATOR__MAX_REPLICAS="3",
        AGENT_ORCHESTRATOR__TARGET_RUNS="2",
        AGENT_ORCHESTRATOR__UPSCALE_DELAY_S="0",
        AGENT_ORCHESTRATOR__DOWNSCALE_DELAY_S="2",
        AGENT_ORCHESTRATOR__LOOK_BACK_PERIOD_S="11",
    )
    return env


@pytest.fixture(scope="module")
def cluster(
    postgres_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    work = tmp_path_factory.mktemp("cluster")
    port = free_port()
    provider = subprocess.Popen(
        [sys.executable, "-m", "loadtests.baseline_app", "--fake-provider", "--port", str(port)],
        cwd=ROOT,
    )
    env = cluster_env(work, postgres_url, redis_url, f"http://127.0.0.1:{port}/v1")
    command = [sys.executable, "-m", "agent_runtime.cli.local_cluster"]
    try:
        started = subprocess.run([*command, "up"], cwd=ROOT, env=env, timeout=UP_TIMEOUT_S)
        assert started.returncode == 0, "make cluster failed: see its output above"
        address = f"{local_cluster.node_ip()}:{local_cluster.RAY_PORT}"
        ray.init(address=address, namespace="agent-runtime-test", log_to_driver=False)
        key = (work / "data" / "dev-api-key").read_text().strip()
        yield Cluster(f"http://127.0.0.1:{env['AGENT_HTTP_PORT']}", key, address)
    finally:
        ray.shutdown()
        subprocess.run([*command, "down"], cwd=ROOT, env=env, timeout=120, check=False)
        provider.terminate()
        provider.wait(timeout=30)


@pytest.fixture
async def client(cluster: Cluster) -> AsyncIterator[LangGraphClient]:
    sdk = get_client(url=cluster.url, api_key=cluster.key)
    yield sdk
    await sdk.aclose()


async def placed() -> list[Replica]:
    return await asyncio.to_thread(replicas)


async def orchestrators() -> list[Replica]:
    return [r for r in await placed() if r.deployment == "Orchestrator"]


async def workers() -> list[str]:
    return await asyncio.to_thread(worker_nodes)


async def backlog(sdk: LangGraphClient, count: int) -> list[tuple[str, str]]:
    """``count`` background runs of the steps graph, each on its own thread."""
    runs = []
    for _ in range(count):
        thread_id = (await sdk.threads.create())["thread_id"]
        run = await sdk.runs.create(thread_id, "steps", input={"log": []})
        runs.append((thread_id, run["run_id"]))
    return runs


async def all_succeed(sdk: LangGraphClient, runs: list[tuple[str, str]], timeout_s: float) -> None:
    async def statuses() -> list[str]:
        return [(await sdk.runs.get(t, r))["status"] for t, r in runs]

    found = await eventually(
        statuses,
        lambda s: not {"pending", "running"} & set(s),
        timeout_s=timeout_s,
        interval_s=POLL_S,
    )
    assert found == ["success"] * len(runs), found
    for thread_id, _ in runs:  # each step once: a resumed run did not repeat a finished step
        state = await sdk.threads.get_state(thread_id)
        assert sorted(state["values"]["log"]) == ["a", "b", "c"], state["values"]


async def test_replicas_spread_over_the_worker_nodes_and_a_run_crosses_them(
    client: LangGraphClient,
) -> None:
    nodes = await workers()
    assert len(nodes) >= 2, nodes
    where = await placed()
    print("\nplacement:", sorted((r.deployment, r.node_id[-5:]) for r in where))
    assert {r.node_id for r in where} <= set(nodes)  # nothing on the head (no CPU there)
    runtime = {r.node_id for r in where if r.deployment in ("Orchestrator", "ModelRouter")}
    assert len(runtime) >= 2, where  # three 0.5-CPU replicas cannot share a 1-CPU node
    thread_id = (await client.threads.create())["thread_id"]
    result = await client.runs.wait(thread_id, "model_steps", input={"log": []})
    assert isinstance(result, dict) and sorted(result["log"]) == ["a", "b", "c"], result


async def test_a_backlog_adds_a_worker_node_and_the_idle_node_goes(
    client: LangGraphClient,
) -> None:
    assert len(await workers()) == 2
    runs = await backlog(client, BACKLOG)
    # Serve asks for a third orchestrator replica; it fits on no node, so Ray's autoscaler
    # starts a third worker for it.
    grown = await eventually(workers, lambda n: len(n) == 3, timeout_s=120, interval_s=POLL_S)
    await eventually(orchestrators, lambda r: len(r) == 3, timeout_s=120, interval_s=POLL_S)
    print(f"\nworker nodes after the backlog: {len(grown)}")
    await all_succeed(client, runs, timeout_s=180)
    # Drained: back to 2 replicas, and the node left idle goes after the idle timeout (1 min).
    await eventually(orchestrators, lambda r: len(r) == 2, timeout_s=120, interval_s=POLL_S)
    await eventually(workers, lambda n: len(n) == 2, timeout_s=240, interval_s=POLL_S)


def kill_node(node_id: str) -> int:
    """SIGKILL every process of a fake worker node (its raylet, agents and workers): the
    fake provider starts each node's processes with the node's id in their environment."""
    killed = 0
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("RAY_OVERRIDE_NODE_ID_FOR_TESTING") == node_id:
                proc.send_signal(signal.SIGKILL)
                killed += 1
        except psutil.Error:  # gone meanwhile, or not ours
            continue
    return killed


async def test_a_worker_node_killed_mid_run(client: LangGraphClient) -> None:
    runs = await backlog(client, 4)
    await eventually(
        lambda: asyncio.gather(*(client.runs.get(t, r) for t, r in runs)),
        lambda found: any(run["status"] == "running" for run in found),
        timeout_s=60,
        interval_s=POLL_S,
    )
    victim = (await orchestrators())[0].node_id
    assert kill_node(victim) > 0
    print(f"\nkilled worker node {victim[-5:]}")
    # Its replicas come back on other nodes, and its runs resume from their checkpoints.
    await eventually(
        orchestrators,
        lambda r: len(r) == 2 and victim not in {x.node_id for x in r},
        timeout_s=180,
        interval_s=POLL_S,
    )
    await all_succeed(client, runs, timeout_s=240)


async def test_sqlite_is_refused_on_several_nodes(cluster: Cluster) -> None:
    from agent_runtime.config.serve_settings import DeploymentScaling
    from agent_runtime.deployments.app import build_app

    settings = RuntimeSettings.from_env()
    storage = settings.storage.model_copy(update={"database_url": None})  # SQLite
    # 0 CPU: placed at once, even on the head, so that what fails is the replica's start.
    none = DeploymentScaling(num_cpus=0, min_replicas=1, max_replicas=1)
    serve_settings = settings.serve.model_copy(
        update={"ingress": none, "orchestrator": none, "router": none}
    )
    app = build_app(
        settings=settings.model_copy(update={"serve": serve_settings, "storage": storage})
    )
    with pytest.raises(RuntimeError, match="Deploying application sqlite failed"):
        await asyncio.to_thread(serve.run, app, name="sqlite", route_prefix="/sqlite")
    # Why, as `serve status` shows it: the replicas' own error.
    status = (await asyncio.to_thread(serve.status)).applications["sqlite"]
    said = " ".join([status.message, *(d.message for d in status.deployments.values())])
    assert "embedded SQLite database" in said and "AGENT_DATABASE_URL" in said, said
    await asyncio.to_thread(serve.delete, "sqlite")
    async with httpx.AsyncClient(timeout=10) as http:  # the cluster's app is unaffected
        assert (await http.get(f"{cluster.url}/ok")).status_code == 200
