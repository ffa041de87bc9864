"""``make cluster`` / ``make cluster-down``: a multi-node autoscaling Ray cluster on this one
machine, and the app deployed on it as on a real cluster.

    python -m agent_runtime.cli.local_cluster up [--config cluster.local.yaml]
    python -m agent_runtime.cli.local_cluster down

``up`` starts a Ray head with Ray's fake multi-node provider (``RAY_FAKE_CLUSTER=1 ray start
--head --autoscaling-config ...``): each worker node is a raylet of its own, with the
resources of its node type in ``cluster.local.yaml`` (which mirrors ``cluster.yaml``), added
and removed by Ray's autoscaler. It waits for the minimum workers, deploys the app (the one
``AGENT_APP_CONFIG`` names, as ``make run``) with PostgreSQL and Redis, prints where each
replica runs and returns, leaving the cluster up. ``down`` shuts Serve and every Ray process
of this machine down. Replicas use 0.5 CPU each and the head none, so the replicas spread
over the workers, and one more than fits makes the autoscaler add a node.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from agent_runtime.cli.launch import (
    LOCAL_DRAINING_S,
    dev_key,
    load_settings,
    models_summary,
    wait_until_ok,
)
from agent_runtime.config.settings import RuntimeSettings

DEFAULT_CONFIG = Path("cluster.local.yaml")
RAY_PORT = 6380  # Ray's default, 6379, is Redis's
HEAD_TYPE = "ray.head.default"
WORKERS_TIMEOUT_S = 180.0
COMMAND_TIMEOUT_S = 120.0
EXIT_NEEDS_SHARED_STORAGE = 2


@dataclass(frozen=True)
class Replica:
    """One Serve replica and the node it runs on."""

    app: str
    deployment: str
    node_id: str


def cluster_env() -> dict[str, str]:
    """The environment of ``ray start``, which every node (and replica) inherits."""
    env = dict(os.environ)
    # The fake provider refuses to start without it; the autoscaler then acts every second.
    env.update(RAY_FAKE_CLUSTER="1", AUTOSCALER_UPDATE_INTERVAL_S="1")
    env.setdefault("RAY_AUTH_MODE", "disabled")
    env.setdefault("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1")  # as make run (launch.deploy)
    env.setdefault("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", str(LOCAL_DRAINING_S))
    return env


def ray_command(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("ray")), *args]


def node_ip() -> str:
    import ray._private.services as services

    address: str = services.get_node_ip_address()  # type: ignore[no-untyped-call]
    return address


def autoscaling_config(source: Path, gcs_address: str) -> dict[str, Any]:
    """``source`` with the head's address, where the fake provider's nodes must join (it
    would otherwise assume port 6379, Redis's here)."""
    config: dict[str, Any] = yaml.safe_load(source.read_text())
    config["provider"]["gcs_address"] = gcs_address
    return config


def head_cpus(config: Mapping[str, Any]) -> int:
    return int(config["available_node_types"][HEAD_TYPE]["resources"].get("CPU", 0))


def min_workers(config: Mapping[str, Any]) -> int:
    types = config["available_node_types"]
    return sum(int(spec.get("min_workers", 0)) for name, spec in types.items() if name != HEAD_TYPE)


def start_head(config: dict[str, Any], data_dir: Path, metrics_port: int) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    written = data_dir / "cluster.local.json"
    written.write_text(json.dumps(config))
    command = ray_command(
        "start",
        "--head",
        f"--port={RAY_PORT}",
        f"--num-cpus={head_cpus(config)}",
        f"--autoscaling-config={written}",
        f"--metrics-export-port={metrics_port}",
        "--disable-usage-stats",
    )
    subprocess.run(command, env=cluster_env(), check=True, timeout=COMMAND_TIMEOUT_S)


def worker_nodes() -> list[str]:
    """The ids of the alive nodes other than the head."""
    import ray

    nodes: list[dict[str, Any]] = ray.nodes()  # type: ignore[no-untyped-call]
    return [
        str(node["NodeID"])
        for node in nodes
        if node.get("Alive") and "node:__internal_head__" not in node.get("Resources", {})
    ]


def wait_for_workers(count: int, timeout_s: float = WORKERS_TIMEOUT_S) -> list[str]:
    """Wait (printing progress) until ``count`` worker nodes have joined."""
    deadline = time.monotonic() + timeout_s
    seen = -1
    while True:
        workers = worker_nodes()
        if len(workers) != seen:
            seen = len(workers)
            print(f"  worker nodes up: {seen} of {count}", flush=True)
        if seen >= count:
            return workers
        if time.monotonic() > deadline:
            raise SystemExit(
                f"only {seen} of {count} worker nodes joined within {timeout_s:.0f} s; "
                "see the autoscaler's log: /tmp/ray/session_latest/logs/monitor.log"
            )
        time.sleep(1.0)


def replicas() -> list[Replica]:
    """Every alive Serve replica and its node (from Ray's state API)."""
    from ray.util.state import list_actors

    found = []
    for actor in list_actors(filters=[("state", "=", "ALIVE")], limit=10_000):
        name = actor.name or ""
        if name.startswith("SERVE_REPLICA::"):
            app, deployment, _ = name.removeprefix("SERVE_REPLICA::").split("#", 2)
            found.append(Replica(app, deployment, str(actor.node_id)))
    return found


def deploy(settings: RuntimeSettings) -> None:
    from ray import serve

    from agent_runtime.deployments.app import run_targets

    # One HTTP proxy, on the head: every fake node shares this machine's ports.
    serve.start(
        proxy_location="HeadOnly",
        http_options={"host": settings.serve.http_host, "port": settings.serve.http_port},
    )
    serve.run_many(run_targets(settings))


def shared_storage_problem(settings: RuntimeSettings) -> str | None:
    if not settings.storage.is_postgres:
        return (
            "make cluster needs AGENT_DATABASE_URL=postgresql://...: replicas on several "
            "nodes must share one database (the embedded SQLite lives on one node's disk)"
        )
    if not settings.limits.redis_url:
        return (
            "make cluster needs AGENT_REDIS_URL=redis://...: limits, breakers and stream "
            "caps must be shared by the replicas of every node"
        )
    return None


def up(config_path: Path) -> int:
    started = time.monotonic()
    settings = load_settings()
    if isinstance(settings, int):
        return settings
    problem = shared_storage_problem(settings)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_NEEDS_SHARED_STORAGE
    api_key = dev_key(settings, settings.storage.data_dir / "dev-api-key")
    address = f"{node_ip()}:{RAY_PORT}"
    config = autoscaling_config(config_path, address)
    print(f"Starting the Ray head ({config_path}: fake multi-node provider)...", flush=True)
    try:
        start_head(config, settings.storage.data_dir, settings.serve.metrics_port)
    except subprocess.CalledProcessError:
        print("error: `ray start` failed (its output is above)", file=sys.stderr)
        return 1
    import ray

    ray.init(address=address, namespace="agent-runtime", log_to_driver=False)
    try:
        print("Waiting for the autoscaler to start the minimum worker nodes...", flush=True)
        wait_for_workers(min_workers(config))
        print("Deploying the Serve applications...", flush=True)
        deploy(settings)
        url = f"http://{settings.serve.http_host}:{settings.serve.http_port}"
        wait_until_ok(url, timeout_s=120)
        placed: dict[str, list[str]] = {}
        for replica in replicas():
            placed.setdefault(replica.node_id, []).append(f"{replica.app}/{replica.deployment}")
        print(f"\nLocal cluster ready in {time.monotonic() - started:.1f} s")
        print(f"  URL:      {url}\n  API key:  {api_key}\n  Models:   {models_summary(settings)}")
        for node_id in worker_nodes():
            print(f"  node …{node_id[-8:]}: {', '.join(sorted(placed.get(node_id, []))) or '-'}")
        print(f"  Ray:      {address} (RAY_ADDRESS for `serve status`)")
        print("  Stop:     make cluster-down")
    finally:
        ray.shutdown()  # the driver leaves; the cluster and the applications stay
    return 0


def down() -> int:
    """Shut Serve down, then every Ray process of this machine."""
    import ray
    from ray import serve

    try:
        ray.init(address=f"{node_ip()}:{RAY_PORT}", log_to_driver=False)
    except ConnectionError:
        print("no local cluster is running", flush=True)
    else:
        serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()
    stopped = subprocess.run(
        ray_command("stop", "--force"), env=cluster_env(), check=False, timeout=COMMAND_TIMEOUT_S
    )
    return stopped.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("up", "down"))
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    args = parser.parse_args(argv)
    return up(args.config) if args.command == "up" else down()


if __name__ == "__main__":
    sys.exit(main())
