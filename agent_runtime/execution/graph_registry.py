"""The graphs a replica can run, by id, and the one interface graphs see: the model factory.

A graph never builds its own model clients: it gets a :data:`ModelFactory` that turns a
model alias ("fast", "smart") into a chat model. In production that is the model router's
client; in tests, a client of the fake provider. A :class:`GraphSpec`'s ``build`` returns the
*uncompiled* graph so the orchestrator can compile it with its own checkpointer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel
from langgraph.graph import StateGraph

from agent_runtime.core.errors import NotFound

ModelFactory = Callable[[str], BaseChatModel]
"""Model alias ("fast", "smart") -> chat model."""


@dataclass(frozen=True)
class GraphSpec:
    graph_id: str
    description: str
    build: Callable[[ModelFactory], StateGraph[Any]]


class GraphRegistry:
    """Graph specs by id, in registration order."""

    def __init__(self, specs: Iterable[GraphSpec] = ()) -> None:
        self._specs: dict[str, GraphSpec] = {}
        for spec in specs:
            self.register(spec)

    def register(self, spec: GraphSpec) -> None:
        if spec.graph_id in self._specs:
            raise ValueError(f"graph {spec.graph_id!r} is already registered")
        self._specs[spec.graph_id] = spec

    def get(self, graph_id: str) -> GraphSpec:
        spec = self._specs.get(graph_id)
        if spec is None:
            known = ", ".join(self._specs) or "none"
            raise NotFound(f"graph {graph_id!r} not found; known graphs: {known}")
        return spec

    def ids(self) -> list[str]:
        return list(self._specs)

    def specs(self) -> list[GraphSpec]:
        return list(self._specs.values())

    def __contains__(self, graph_id: object) -> bool:
        return graph_id in self._specs
