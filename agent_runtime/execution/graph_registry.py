"""The one interface graphs of this runtime see: the model factory; and a registry of
graphs built over one.

A :data:`ModelFactory` turns a model alias ("fast", "smart") into a chat model.
:func:`runtime_model` is the one a served graph uses: its calls go through the runtime's
model router (fallback chains, breakers, budgets, usage) of the run in progress. A user's
graph may use it, or call its models itself (``ChatOpenAI``...). A :class:`GraphSpec`'s
``build`` returns the *uncompiled* graph over a given factory: evaluations and tests build
the example graphs over models of their own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel
from langgraph.graph import StateGraph

from agent_runtime.core.errors import NotFound
from agent_runtime.execution.chat_model import RouterChatModel

ModelFactory = Callable[[str], BaseChatModel]
"""Model alias ("fast", "smart") -> chat model."""


def runtime_model(alias: str) -> BaseChatModel:
    """``alias`` through the runtime's model router, reached from the run in progress."""
    return RouterChatModel(alias=alias)


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
