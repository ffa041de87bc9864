"""The graphs one process serves, by id, bound to its checkpointer and store.

However the graphs were loaded (from an app's ``langgraph.json``, by
:func:`~agent_runtime.user_app.graph_loader.load_app`; in tests, also built from a
registry), the run executor, the thread service and the assistants API see one thing:
:meth:`ServedGraphs.open` yields the graph for one use. A static graph is bound once, here,
so a run pays nothing for it; a factory's graph is made for each use, as LangGraph's server
makes it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.store.base import BaseStore

from agent_runtime.core.errors import NotFound
from agent_runtime.user_app.graph_loader import Graph, LoadedGraph
from agent_runtime.user_app.server_runtime import READ_SCHEMAS, GraphUse


class ServedGraphs:
    """Graphs by id, in the order given, each bound to ``checkpointer`` and ``store``."""

    def __init__(
        self,
        graphs: Iterable[LoadedGraph],
        *,
        checkpointer: BaseCheckpointSaver[Any] | None,
        store: BaseStore | None,
    ) -> None:
        self._graphs: dict[str, LoadedGraph] = {}
        self._bound: dict[str, Graph] = {}
        self._checkpointer = checkpointer
        self._store = store
        for graph in graphs:
            if graph.graph_id in self._graphs:
                raise ValueError(f"graph {graph.graph_id!r} is served twice")
            self._graphs[graph.graph_id] = graph
            if not graph.is_factory:
                self._bound[graph.graph_id] = graph.bind(checkpointer=checkpointer, store=store)

    def ids(self) -> list[str]:
        return list(self._graphs)

    def descriptions(self) -> dict[str, str | None]:
        return {graph_id: graph.description for graph_id, graph in self._graphs.items()}

    def __contains__(self, graph_id: object) -> bool:
        return graph_id in self._graphs

    def get(self, graph_id: str) -> LoadedGraph:
        graph = self._graphs.get(graph_id)
        if graph is None:
            known = ", ".join(self._graphs) or "none"
            raise NotFound(f"graph {graph_id!r} not found; known graphs: {known}")
        return graph

    @asynccontextmanager
    async def open(
        self, graph_id: str, config: RunnableConfig | None = None, use: GraphUse = READ_SCHEMAS
    ) -> AsyncIterator[Graph]:
        """The graph ``graph_id`` for one ``use`` with ``config`` (a factory's sees them)."""
        bound = self._bound.get(graph_id)
        if bound is not None:
            yield bound
            return
        async with self.get(graph_id).open(
            config, checkpointer=self._checkpointer, store=self._store, use=use
        ) as graph:
            yield graph
