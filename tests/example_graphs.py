"""The example graphs (graphs/registry.py) as the runtime serves them, for tests that build
a replica or an ingress in process rather than load the repository's langgraph.json."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langgraph.graph import StateGraph

from agent_runtime.execution.graph_registry import GraphRegistry, ModelFactory, runtime_model
from agent_runtime.user_app.graph_loader import LoadedGraph
from agent_runtime.user_app.served_graphs import ServedGraphs
from graphs.registry import default_registry


def built(
    graph_id: str,
    build: Callable[[ModelFactory], StateGraph[Any]],
    description: str | None = None,
    models: ModelFactory = runtime_model,
) -> LoadedGraph:
    """``build``'s graph over ``models``, compiled and named ``graph_id``."""
    graph = build(models).compile(name=graph_id)
    return LoadedGraph.static(graph_id, description, f"test:{graph_id}", graph)


def registry_graphs(
    registry: GraphRegistry, models: ModelFactory = runtime_model
) -> list[LoadedGraph]:
    """The registry's graphs built over ``models``."""
    return [built(s.graph_id, s.build, s.description, models) for s in registry.specs()]


def example_graphs(*ids: str) -> ServedGraphs:
    """The example graphs (all, or those named) as an ingress serves them: inspected only."""
    graphs = registry_graphs(default_registry())
    return ServedGraphs(
        (g for g in graphs if not ids or g.graph_id in ids), checkpointer=None, store=None
    )
