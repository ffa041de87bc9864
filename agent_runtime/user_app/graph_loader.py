"""The graphs a ``langgraph.json`` names, loaded as LangGraph's server loads them.

Each graph is ``"./path/file.py:attr"`` (imported from the file, see :mod:`.app_imports`) or
``"package.module:attr"``, resolved against the config's folder. ``attr`` may be, as
``langgraph_api.graph`` accepts:

- a compiled graph (``Pregel``, e.g. ``CompiledStateGraph``, an ``@entrypoint``);
- a ``StateGraph``, compiled once at load;
- a factory taking nothing, a ``RunnableConfig`` or a ``ServerRuntime``
  (:mod:`.server_runtime`), sync or async, returning either of those or a (sync or async)
  context manager yielding one: called for every use of the graph.

The runtime's checkpointer and store replace whatever the graph was compiled with, as
LangGraph Platform does (``graph.copy(update=...)``): a graph compiled with its own
``InMemorySaver`` is served with the runtime's persistence, and loading says so in a warning.
Every graph is imported at load (references followed by :mod:`.app_attributes`), and so are
``http.app`` and the store index's function (:mod:`.app_store_index`); all failures are
reported together, each with the graph id, its file or module and the traceback
(:class:`GraphLoadError`).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import ensure_config, var_child_runnable_config
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import StateGraph
from langgraph.pregel import Pregel
from langgraph.store.base import BaseStore
from starlette.types import ASGIApp

from agent_runtime.execution.store_index import StoreIndex
from agent_runtime.user_app import app_imports
from agent_runtime.user_app.app_attributes import Problem, attribute
from agent_runtime.user_app.app_store_index import load_store_index
from agent_runtime.user_app.auth_handlers import AppAuth, app_auth
from agent_runtime.user_app.config_sections import GraphDef
from agent_runtime.user_app.langgraph_json import ConfigFile, UserAppError, read_langgraph_json
from agent_runtime.user_app.server_runtime import (
    READ_SCHEMAS,
    FactoryArgument,
    FactorySignatureError,
    GraphUse,
    context_type,
    factory_argument,
    server_runtime,
)

Graph = Pregel[Any, Any, Any, Any]
Factory = Callable[..., Any]
_DEFAULT_NAME = "LangGraph"  # what compile() names a graph not named by its author


class GraphLoadError(UserAppError):
    """One or more graphs (or ``http.app``, or ``store.index.embed``) cannot be loaded; each
    problem names the graph, file and cause."""


@dataclass(frozen=True)
class LoadedGraph:
    """One graph of the app, ready to be bound to the runtime's persistence.

    A static graph (:attr:`is_factory` false) is bound once with :meth:`bind`; a factory's
    graph exists only inside :meth:`open`, which works for both.
    """

    graph_id: str
    description: str | None
    source: str
    """The graph's reference as ``langgraph.json`` writes it."""
    _graph: Graph | None = field(repr=False)
    _factory: Factory | None = field(repr=False)
    _argument: FactoryArgument = field(default="none", repr=False)
    _context_type: type | None = field(default=None, repr=False)

    @classmethod
    def static(
        cls, graph_id: str, description: str | None, source: str, graph: Graph
    ) -> LoadedGraph:
        """A graph that exists already (compiled), e.g. one of the runtime's examples."""
        return cls(graph_id, description, source, _graph=graph, _factory=None)

    @property
    def is_factory(self) -> bool:
        return self._factory is not None

    def bind(
        self, *, checkpointer: BaseCheckpointSaver[Any] | None, store: BaseStore | None
    ) -> Graph:
        """The static graph with the runtime's checkpointer and store."""
        if self._graph is None:
            raise TypeError(f"graph {self.graph_id!r} is a factory: use open()")
        return self._bound(self._graph, checkpointer, store)

    @asynccontextmanager
    async def open(
        self,
        config: RunnableConfig | None = None,
        *,
        checkpointer: BaseCheckpointSaver[Any] | None,
        store: BaseStore | None,
        use: GraphUse = READ_SCHEMAS,
    ) -> AsyncIterator[Graph]:
        """The graph for one ``use`` (a run, a state read, a schema), bound to the runtime's
        checkpointer and store; a factory is called with what it takes (``config``, or a
        ``ServerRuntime`` for ``use``) and, when it returns a context manager, left inside
        it until the block ends."""
        if self._factory is None:
            yield self.bind(checkpointer=checkpointer, store=store)
            return
        config = ensure_config(config)
        async with AsyncExitStack() as stack:
            # As LangGraph's server does: get_config() works inside the factory.
            token = var_child_runnable_config.set(config)
            try:
                made = self._call(self._factory, config, store, use)
                graph = await _enter(stack, made)
            finally:
                var_child_runnable_config.reset(token)
            if isinstance(graph, StateGraph):
                graph = graph.compile()
            if not isinstance(graph, Pregel):
                raise TypeError(
                    f"graph {self.graph_id!r} ({self.source}): the factory gave a "
                    f"{type(graph).__name__}, not a graph"
                )
            yield self._bound(graph, checkpointer, store)

    def _call(
        self, factory: Factory, config: RunnableConfig, store: BaseStore | None, use: GraphUse
    ) -> Any:
        if self._argument == "config":
            return factory(config)
        if self._argument == "runtime":
            return factory(server_runtime(use, config, store, self._context_type))
        return factory()

    def _bound(
        self, graph: Graph, checkpointer: BaseCheckpointSaver[Any] | None, store: BaseStore | None
    ) -> Graph:
        update: dict[str, Any] = {"checkpointer": checkpointer, "store": store}
        if graph.name == _DEFAULT_NAME:
            update["name"] = self.graph_id
        return graph.copy(update=update)


@dataclass(frozen=True)
class LoadedApp:
    """A user's app: its config file, its graphs in the file's order, its own HTTP app
    (``http.app``: an ASGI app, e.g. FastAPI, mounted beside the API), its own auth
    (``auth.path``: a ``langgraph_sdk.Auth``) and its store's semantic-search index
    (``store.index``) if it has them, and the warnings (settings without effect here,
    persistence replaced, names taken) to log at start."""

    config_file: ConfigFile
    graphs: dict[str, LoadedGraph]
    warnings: list[str]
    http_app: ASGIApp | None = None
    auth: AppAuth | None = None
    store_index: StoreIndex | None = None


def load_app(config_path: str | Path) -> LoadedApp:
    """Read ``langgraph.json``, set its ``env`` (where the process has not), put its code on
    the import path and load every graph it names.

    Raises :class:`~agent_runtime.user_app.langgraph_json.UserAppError` (a
    ``LangGraphJsonError``, ``AppImportError`` or :class:`GraphLoadError`) naming each problem.
    """
    config_file = read_langgraph_json(config_path)
    name = config_file.path.name
    warnings = list(config_file.warnings)
    roots = app_imports.app_roots(config_file)
    kept = app_imports.apply_environment(app_imports.app_environment(config_file))
    warnings += [f"{name}: env: {var} is already set; the process's value is kept" for var in kept]
    warnings += app_imports.activate(roots)
    graphs: dict[str, LoadedGraph] = {}
    problems: list[str] = []
    modules: dict[str, ModuleType] = {}
    for graph_id, spec in config_file.config.graphs.items():
        source = spec.path if isinstance(spec, GraphDef) else spec
        description = spec.description if isinstance(spec, GraphDef) else None
        try:
            graph = _load(config_file, graph_id, source, description, modules, warnings)
        except Problem as problem:
            problems.append(f"{name}: graphs.{graph_id}: {problem}")
            continue
        graphs[graph_id] = graph
    http_app = None
    http = config_file.config.http
    if http is not None and http.app is not None:
        try:
            http_app = _http_app(config_file, http.app, modules)
        except Problem as problem:
            problems.append(f"{name}: http.app: {problem}")
    auth = None
    auth_path = config_file.config.auth.path if config_file.config.auth is not None else None
    if auth_path is not None:
        try:
            auth = app_auth(attribute(config_file, auth_path, modules), auth_path)
        except (Problem, ValueError) as problem:
            problems.append(f"{name}: auth.path: {problem}")
        else:
            warnings += _uncovered(name, auth)
    store_index = None
    try:
        store_index = load_store_index(config_file, modules)
    except Problem as problem:
        problems.append(f"{name}: store.index.embed: {problem}")
    if problems:
        raise GraphLoadError(problems)
    return LoadedApp(config_file, graphs, warnings, http_app, auth, store_index)


def _uncovered(name: str, auth: AppAuth) -> list[str]:
    uncovered = auth.uncovered()
    if not uncovered:
        return []
    return [
        f"{name}: auth.path: no handler covers {', '.join(uncovered)}: those requests are "
        "allowed unfiltered (add a global @auth.on handler that returns False to deny them)"
    ]


def _http_app(config_file: ConfigFile, source: str, modules: dict[str, ModuleType]) -> ASGIApp:
    value = attribute(config_file, source, modules)
    if isinstance(value, type) or not callable(value):
        raise Problem(f"{source!r} is a {type(value).__name__}, not an ASGI app (e.g. FastAPI())")
    return cast(ASGIApp, value)


def _load(
    config_file: ConfigFile,
    graph_id: str,
    source: str,
    description: str | None,
    modules: dict[str, ModuleType],
    warnings: list[str],
) -> LoadedGraph:
    value = attribute(config_file, source, modules)
    if isinstance(value, StateGraph):
        value = value.compile()
    if isinstance(value, Pregel):
        own = [
            f"{part} ({type(getattr(value, part)).__name__})"
            for part in ("checkpointer", "store")
            if isinstance(getattr(value, part), BaseCheckpointSaver | BaseStore)
        ]
        if own:
            warnings.append(
                f"{config_file.path.name}: graphs.{graph_id}: compiled with its own "
                f"{' and '.join(own)}; the runtime's replaces it"
            )
        return LoadedGraph.static(graph_id, description, source, value)
    if callable(value) and not isinstance(value, type):
        try:
            argument = factory_argument(value)
        except FactorySignatureError as exc:
            raise Problem(f"{source!r}: {exc}") from exc
        return LoadedGraph(
            graph_id,
            description,
            source,
            None,
            _factory=value,
            _argument=argument,
            _context_type=context_type(value) if argument == "runtime" else None,
        )
    raise Problem(
        f"{source!r}: {source.rpartition(':')[2]!r} is a {type(value).__name__}, not a "
        "compiled graph, a StateGraph or a graph factory"
    )


async def _enter(stack: AsyncExitStack, made: Any) -> Any:
    """What a factory gave, resolved: awaited, or entered as a context manager."""
    if inspect.isawaitable(made):
        made = await made
    if hasattr(made, "__aenter__") and hasattr(made, "__aexit__"):
        return await stack.enter_async_context(made)
    if hasattr(made, "__enter__") and hasattr(made, "__exit__"):
        return stack.enter_context(made)
    return made
