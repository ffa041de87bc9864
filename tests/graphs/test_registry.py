from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from agent_runtime.core.errors import NotFound
from agent_runtime.execution.graph_registry import GraphRegistry, GraphSpec, ModelFactory
from graphs import multi_agent, react
from graphs.registry import default_registry

GRAPHS_DIR = Path(multi_agent.__file__).parent


def test_default_registry_ids() -> None:
    registry = default_registry()
    assert registry.ids() == ["multi_agent", "react", "memory", "approval"]
    assert [spec.graph_id for spec in registry.specs()] == registry.ids()
    assert all(spec.description for spec in registry.specs())
    assert "react" in registry
    assert "nope" not in registry


def test_get_known_graph() -> None:
    registry = default_registry()
    assert registry.get("multi_agent").build is multi_agent.build
    assert registry.get("react").build is react.build


def test_get_unknown_graph_lists_known_ones() -> None:
    with pytest.raises(NotFound) as raised:
        default_registry().get("nope")
    assert raised.value.message == (
        "graph 'nope' not found; known graphs: multi_agent, react, memory, approval"
    )


def test_empty_registry() -> None:
    with pytest.raises(NotFound, match="known graphs: none"):
        GraphRegistry().get("react")


def test_duplicate_ids_are_refused() -> None:
    spec = GraphSpec(graph_id="react", description="again", build=react.build)
    with pytest.raises(ValueError, match="already registered"):
        GraphRegistry([spec, spec])


def test_registries_are_independent() -> None:
    first = default_registry()
    first.register(GraphSpec(graph_id="extra", description="extra", build=react.build))
    assert "extra" not in default_registry()


def test_every_default_graph_builds_and_compiles(models: ModelFactory) -> None:
    for spec in default_registry().specs():
        compiled = spec.build(models).compile(checkpointer=InMemorySaver())
        assert "__start__" in compiled.get_graph().nodes


def test_langgraph_json_lists_the_default_graphs() -> None:
    config = json.loads((GRAPHS_DIR / "langgraph.json").read_text())
    registry = default_registry()
    assert sorted(config["graphs"]) == sorted(registry.ids())
    for graph_id, target in config["graphs"].items():
        # Paths are relative to langgraph.json, as the LangGraph CLI reads them.
        path, attribute = target.split(":")
        module_file = (GRAPHS_DIR / path).resolve()
        assert module_file.is_file()
        module = importlib.import_module(f"graphs.{module_file.stem}")
        assert getattr(module, attribute) is registry.get(graph_id).build
