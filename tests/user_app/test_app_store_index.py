"""``store.index`` of an app's langgraph.json, loaded: ``"openai:<model>"`` for the model
router, or the app's own embedding function (sync, async, a LangChain ``Embeddings``) from
a file or a module; what cannot be loaded is named with the forms that can."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent_runtime.config.builtin_models import builtin_config
from agent_runtime.config.provider_settings import ProviderSettings
from agent_runtime.user_app.app_store_index import unserved_index_model
from agent_runtime.user_app.graph_loader import GraphLoadError, load_app
from agent_runtime.user_app.langgraph_json import read_langgraph_json
from tests.user_app.apps import STATE, write_app

GRAPH = {"graph.py": STATE + "\ngraph = builder().compile()\n"}
EMBED = """
def embed(texts):
    return [[float(len(text)), 1.0] for text in texts]


async def aembed(texts):
    return [[1.0, float(len(text))] for text in texts]


size = 2
"""
EMBEDDINGS_CLASS = """
from langchain_core.embeddings import Embeddings


class Lengths(Embeddings):
    def embed_documents(self, texts):
        return [[float(len(t)), 0.0] for t in texts]

    def embed_query(self, text):
        return [0.0, float(len(text))]


embedder = Lengths()
"""


def app_with(tmp_path: Path, index: dict[str, Any], files: dict[str, str] | None = None) -> Path:
    config = {"dependencies": ["."], "graphs": {"g": "./graph.py:graph"}, "store": {"index": index}}
    return write_app(tmp_path, config, {**GRAPH, **(files or {})})


def load_problems(config: Path) -> list[str]:
    with pytest.raises(GraphLoadError) as raised:
        load_app(config)
    return raised.value.problems


def test_openai_model_is_embedded_by_the_router(tmp_path: Path) -> None:
    app = load_app(app_with(tmp_path, {"embed": "openai:fake-embed", "dims": 256}))
    index = app.store_index
    assert index is not None
    assert (index.model, index.dims, index.fields, index.embeddings) == (
        "fake-embed", 256, ("$",), None,
    )  # fmt: skip
    assert index.embedder_id == "openai:fake-embed/256"
    plain = write_app(tmp_path / "none", {"graphs": {"g": "./graph.py:graph"}}, GRAPH)
    assert load_app(plain).store_index is None


@pytest.mark.parametrize(
    ("embed", "documents", "query"),
    [
        ("./embed.py:embed", [[1.0, 1.0], [2.0, 1.0]], [3.0, 1.0]),
        ("./embed.py:aembed", [[1.0, 1.0], [1.0, 2.0]], [1.0, 3.0]),
        ("emb_pkg.lengths:embedder", [[1.0, 0.0], [2.0, 0.0]], [0.0, 3.0]),
    ],
)
async def test_the_apps_function_sync_async_or_langchain_embeddings(
    tmp_path: Path, embed: str, documents: list[list[float]], query: list[float]
) -> None:
    files = {"embed.py": EMBED, "emb_pkg/__init__.py": "", "emb_pkg/lengths.py": EMBEDDINGS_CLASS}
    index = load_app(
        app_with(tmp_path, {"embed": embed, "dims": 2, "fields": ["text", "title"]}, files)
    ).store_index
    assert index is not None and index.model is None and index.embeddings is not None
    assert index.fields == ("text", "title")
    assert await index.embeddings.aembed_documents(["a", "bb"]) == documents
    assert await index.embeddings.aembed_query("ccc") == query


@pytest.mark.parametrize(
    ("embed", "problem"),
    [
        ("./nope.py:embed", "'./nope.py:embed': no such file"),
        ("./embed.py:embd", "has no 'embd'; did you mean embed"),
        ("./embed.py:size", "'./embed.py:size' is a int, not a function from texts to vectors"),
        ("cohere:embed-english-v3.0", "'cohere:embed-english-v3.0' (module cohere) failed to"),
    ],
)
def test_what_cannot_be_loaded_is_named(tmp_path: Path, embed: str, problem: str) -> None:
    config = app_with(tmp_path, {"embed": embed, "dims": 2}, {"embed.py": EMBED})
    [found] = load_problems(config)
    assert found.startswith("langgraph.json: store.index.embed: "), found
    assert problem in found
    if "size" not in embed:  # a reference that cannot be followed: the forms that can
        assert 'store.index.embed is "openai:<model>"' in found


def test_a_model_the_models_configuration_does_not_serve_is_named_at_start(
    tmp_path: Path,
) -> None:
    models = builtin_config(ProviderSettings(_env_file=None))
    served = read_langgraph_json(app_with(tmp_path, {"embed": "openai:fake-embed", "dims": 8}))
    assert unserved_index_model(served.config, models) is None
    other = read_langgraph_json(app_with(tmp_path, {"embed": "openai:ada-003", "dims": 8}))
    problem = unserved_index_model(other.config, models)
    assert problem is not None
    assert problem.startswith("store.index.embed: 'openai:ada-003': the models configuration")
    assert "fake-embed" in problem and "AGENT_EMBEDDING_MODELS" in problem
    function = read_langgraph_json(app_with(tmp_path, {"embed": "./embed.py:embed", "dims": 8}))
    assert unserved_index_model(function.config, models) is None
