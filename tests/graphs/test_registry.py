from __future__ import annotations

from pathlib import Path

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from agent_runtime.core.errors import NotFound
from agent_runtime.execution.graph_registry import GraphRegistry, GraphSpec, ModelFactory
from agent_runtime.user_app.graph_loader import load_app
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


def test_the_repositorys_langgraph_json_serves_the_registrys_graphs(models: ModelFactory) -> None:
    """`make run` serves the examples from langgraph.json, as any app; tests and evals
    build them from the registry: both must be the same graphs."""
    app = load_app(GRAPHS_DIR.parent / "langgraph.json")
    registry = default_registry()
    assert list(app.graphs) == registry.ids()
    for graph_id, loaded in app.graphs.items():
        spec = registry.get(graph_id)
        assert loaded.description == spec.description
        served = loaded.bind(checkpointer=None, store=None)
        assert served.name == graph_id
        assert set(served.get_graph().nodes) == set(spec.build(models).compile().get_graph().nodes)
