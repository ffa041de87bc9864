"""What the assistants API shows of a graph: its drawing, JSON schemas and subgraphs.

Built from the served graphs the way langgraph-api builds them from a compiled graph, so
``GET /assistants/{id}/graph|schemas|subgraphs`` answer as Platform does. Drawing a graph
never runs it (the ingress's graphs have no checkpointer, and a ``runtime_model`` outside a
run refuses to be called). A schema that cannot be derived is ``null`` (Platform logs and
does the same), e.g. input/output schemas of a ``typing.TypedDict`` state on Python 3.11.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Any, cast

from langchain_core.utils.pydantic import create_model
from langgraph.pregel import Pregel
from pydantic import TypeAdapter

from agent_runtime.core.errors import InvalidRequest
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.runs.assistants import AssistantStore
from agent_runtime.user_app.served_graphs import ServedGraphs

logger = logging.getLogger("agent_runtime.graph_info")

# Keys of ``configurable`` the runtime fills itself; langgraph-api hides them too.
EXCLUDED_CONFIG_KEYS = (
    "__pregel_checkpointer",
    "__pregel_store",
    "checkpoint_id",
    "checkpoint_ns",
    "thread_id",
)
NO_VISUALIZATION = "The graph does not support visualization"


def assistant_store(store: MetadataStore, graphs: ServedGraphs) -> AssistantStore:
    """The assistants of the served graphs; defaults carry each graph's description."""
    return AssistantStore(store, graphs.ids(), descriptions=graphs.descriptions())


def parse_xray(value: str | None) -> bool | int:
    """The ``xray`` query parameter: true/false, or a positive depth; else 422."""
    if not value or value in ("false", "False"):
        return False
    if value in ("true", "True"):
        return True
    try:
        depth = int(value)
    except ValueError:
        raise InvalidRequest("Invalid xray value") from None
    if depth <= 0:
        raise InvalidRequest("Invalid xray value")
    return depth


async def drawing(graphs: ServedGraphs, graph_id: str, xray: bool | int = False) -> dict[str, Any]:
    """The drawable graph's JSON, without the class path each node's data carries."""
    try:
        async with graphs.open(graph_id) as graph:
            drawable = await graph.aget_graph(xray=xray)
    except NotImplementedError:
        raise InvalidRequest(NO_VISUALIZATION) from None
    body = drawable.to_json()
    for node in body.get("nodes", []):
        data = node.get("data")
        if isinstance(data, dict):
            data.pop("id", None)
    return body


async def schemas(graphs: ServedGraphs, graph_id: str) -> dict[str, Any]:
    """``GET /assistants/{id}/schemas``: graph id plus the five schemas."""
    async with graphs.open(graph_id) as graph:
        return {"graph_id": graph_id, **_graph_schemas(graph)}


async def subgraphs(
    graphs: ServedGraphs, graph_id: str, namespace: str | None, recurse: bool
) -> dict[str, Any]:
    """Schemas of each subgraph by namespace (``{}`` for a graph without any)."""
    try:
        async with graphs.open(graph_id) as graph:
            return {
                ns: _graph_schemas(cast(Pregel[Any, Any, Any, Any], sub))
                async for ns, sub in graph.aget_subgraphs(namespace=namespace, recurse=recurse)
            }
    except NotImplementedError:
        raise InvalidRequest(NO_VISUALIZATION) from None


def _graph_schemas(graph: Pregel[Any, Any, Any, Any]) -> dict[str, Any]:
    return {
        "input_schema": _try(graph, "input", graph.get_input_jsonschema),
        "output_schema": _try(graph, "output", graph.get_output_jsonschema),
        "state_schema": _try(graph, "state", lambda: _state_schema(graph)),
        "config_schema": _try(graph, "config", lambda: _configurable_schema(graph)),
        "context_schema": _try(graph, "context", graph.get_context_jsonschema),
    }


def _try(graph: Pregel[Any, Any, Any, Any], kind: str, make: Any) -> Any:
    try:
        return make()
    except Exception as error:  # a schema the graph's types cannot give is null
        logger.warning("no %s schema for graph %s (%s)", kind, graph.name, type(error).__name__)
        return None


def _state_schema(graph: Pregel[Any, Any, Any, Any]) -> dict[str, Any]:
    """Every stream channel as an optional field; a channel whose type has no JSON
    schema becomes ``Any`` rather than failing the whole schema."""
    fields: dict[str, Any] = {}
    for key in _channels(graph.stream_channels_list):
        update_type = getattr(graph.channels[key], "UpdateType", Any)
        try:
            create_model(key, __root__=(update_type, None)).model_json_schema()
            fields[key] = (update_type, None)
        except Exception:  # see the docstring
            fields[key] = (Any, None)
    schema: dict[str, Any] = create_model(graph.get_name("State"), **fields).model_json_schema()
    return schema


def _channels(names: Sequence[str] | str) -> list[str]:
    return [names] if isinstance(names, str) else list(names)


def _configurable_schema(graph: Pregel[Any, Any, Any, Any]) -> dict[str, Any]:
    """The ``configurable`` part of the config schema, as langgraph-api shows it."""
    with warnings.catch_warnings():
        # Deprecated in LangGraph 1.0, still what langgraph-api reads ``configurable`` from.
        warnings.simplefilter("ignore")
        config_schema = graph.config_schema()
    field = config_schema.model_fields.get("configurable")
    if field is None or field.annotation is None:
        return {}
    schema: dict[str, Any] = TypeAdapter(field.annotation).json_schema()
    for key in EXCLUDED_CONFIG_KEYS:
        schema.get("properties", {}).pop(key, None)
    config_type = getattr(graph, "config_type", None)
    if config_type is not None and hasattr(config_type, "__name__"):
        schema["title"] = config_type.__name__
    return schema
