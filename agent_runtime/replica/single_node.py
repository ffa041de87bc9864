"""SQLite is one file on one machine: refuse it when the Ray cluster has several nodes.

Every replica opens the embedded database under its own node's ``data_dir``, so replicas on
two nodes would each hold a different copy of tenants, keys, threads and runs: a thread
made through one would not exist for the other. Each replica checks at start (the
autoscaler may add nodes later; a replica placed on a new node then refuses to start, and
Serve says why) and stops with an error that says what to configure instead.
"""

from __future__ import annotations

import ray

from agent_runtime.config.settings import StorageSettings
from agent_runtime.core.errors import AgentRuntimeError


class SingleNodeStorage(AgentRuntimeError):
    """The embedded SQLite database was configured on a cluster of several nodes."""

    code = "single_node_storage"


def alive_nodes() -> int:
    nodes: list[dict[str, object]] = ray.nodes()  # type: ignore[no-untyped-call]
    return len([node for node in nodes if node.get("Alive")])


def refuse_sqlite_across_nodes(storage: StorageSettings, nodes: int) -> None:
    """Raise :class:`SingleNodeStorage` when ``storage`` is SQLite and ``nodes`` > 1."""
    if storage.is_postgres or nodes <= 1:
        return
    raise SingleNodeStorage(
        f"this Ray cluster has {nodes} nodes, and the embedded SQLite database "
        f"({storage.sqlite_path}) lives on one machine: replicas on other nodes would each "
        "see a different copy. Set AGENT_DATABASE_URL=postgresql://... (and AGENT_REDIS_URL) "
        "to serve on several nodes, or run on a single node.",
        nodes=nodes,
    )
