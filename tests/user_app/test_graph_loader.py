"""Loading the graphs a langgraph.json names, in every form LangGraph's server accepts, and
binding them to the runtime's checkpointer and store (real LangGraph, in-memory savers)."""

from __future__ import annotations

import os
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.store.memory import InMemoryStore

from agent_runtime.user_app.app_imports import AppImportError
from agent_runtime.user_app.graph_loader import GraphLoadError, LoadedGraph, load_app
from tests.user_app.apps import STATE, write_app

THREAD: RunnableConfig = {"configurable": {"thread_id": "t1"}}


async def run_twice(graph: LoadedGraph, saver: InMemorySaver, config: Any = None) -> list[str]:
    """The log after two runs on one thread: both runs' words if the saver kept the first."""
    result: dict[str, Any] = {}
    for _ in range(2):
        async with graph.open(config, checkpointer=saver, store=InMemoryStore()) as compiled:
            result = await compiled.ainvoke({"log": []}, THREAD)
    return list(result["log"])


async def test_file_module_and_stategraph_forms_load_and_run_on_the_runtimes_saver(
    tmp_path: Path,
) -> None:
    config = write_app(
        tmp_path,
        {
            "dependencies": ["."],
            "graphs": {
                "compiled": "./agents/compiled.py:graph",
                "builder": {"path": "./agents/builder.py:builder", "description": "Says hi"},
                "from_module": "my_pkg.agent:graph",
            },
        },
        {
            "state.py": STATE,
            "agents/compiled.py": "from state import builder\ngraph = builder('one').compile()",
            "agents/builder.py": "from state import builder as make\nbuilder = make('two')",
            "my_pkg/__init__.py": "",
            "my_pkg/agent.py": "from state import builder\ngraph = builder('three').compile()",
        },
    )
    app = load_app(config)
    assert list(app.graphs) == ["compiled", "builder", "from_module"]
    assert app.warnings == []
    assert app.graphs["builder"].description == "Says hi"
    assert not any(graph.is_factory for graph in app.graphs.values())
    for graph_id, word in (("compiled", "one"), ("builder", "two"), ("from_module", "three")):
        saver = InMemorySaver()
        assert await run_twice(app.graphs[graph_id], saver) == [word, word]
        bound = app.graphs[graph_id].bind(checkpointer=saver, store=None)
        assert bound.name == graph_id  # the author gave none: the graph id, as the Platform
        assert bound.checkpointer is saver


async def test_a_graph_compiled_with_its_own_saver_runs_on_the_runtimes(tmp_path: Path) -> None:
    config = write_app(
        tmp_path,
        {"graphs": {"own": "./own.py:graph"}},
        {
            "state.py": STATE,
            "own.py": """
                from langgraph.checkpoint.memory import InMemorySaver
                from state import builder
                OWN = InMemorySaver()
                graph = builder().compile(checkpointer=OWN, name="Own")
            """,
        },
    )
    app = load_app(config)
    assert app.warnings == [
        "langgraph.json: graphs.own: compiled with its own checkpointer (InMemorySaver); "
        "the runtime's replaces it"
    ]
    runtime_saver = InMemorySaver()
    assert await run_twice(app.graphs["own"], runtime_saver) == ["hello", "hello"]
    assert runtime_saver.get_tuple(THREAD) is not None
    own_saver = app.graphs["own"]._graph.checkpointer  # type: ignore[union-attr]
    assert isinstance(own_saver, InMemorySaver) and own_saver.get_tuple(THREAD) is None
    assert app.graphs["own"].bind(checkpointer=runtime_saver, store=None).name == "Own"


async def test_a_factory_taking_the_config_is_called_for_each_use(tmp_path: Path) -> None:
    config = write_app(
        tmp_path,
        {"graphs": {"greeter": "./factory.py:make_graph", "plain": "./factory.py:plain"}},
        {
            "state.py": STATE,
            "factory.py": """
                from langchain_core.runnables import RunnableConfig
                from langgraph.config import get_config
                from state import builder

                def make_graph(config: RunnableConfig):
                    assert get_config() is config
                    return builder(config["configurable"].get("word", "default"))

                async def plain():
                    return builder("async").compile()
            """,
        },
    )
    app = load_app(config)
    greeter = app.graphs["greeter"]
    assert greeter.is_factory and app.graphs["plain"].is_factory
    with pytest.raises(TypeError, match="is a factory"):
        greeter.bind(checkpointer=None, store=None)
    words = {"configurable": {"word": "bonjour"}}
    assert await run_twice(greeter, InMemorySaver(), words) == ["bonjour", "bonjour"]
    assert await run_twice(greeter, InMemorySaver()) == ["default", "default"]
    assert await run_twice(app.graphs["plain"], InMemorySaver()) == ["async", "async"]
    # Both graphs come from one file, imported once under a name of its own.
    user_modules = [name for name in sys.modules if name.startswith("_user_app_")]
    assert len([name for name in user_modules if name.endswith("_factory")]) == 1


async def test_an_async_context_manager_factory_holds_its_resources_for_the_block(
    tmp_path: Path,
) -> None:
    config = write_app(
        tmp_path,
        {"graphs": {"managed": "./managed.py:graph"}},
        {
            "state.py": STATE,
            "managed.py": """
                from contextlib import asynccontextmanager
                from state import builder
                EVENTS = []

                @asynccontextmanager
                async def graph(config):
                    EVENTS.append("open")
                    yield builder("managed").compile()
                    EVENTS.append("close")
            """,
        },
    )
    managed = load_app(config).graphs["managed"]
    [module] = [m for name, m in sys.modules.items() if name.endswith("_managed")]
    events = module.EVENTS
    async with managed.open(checkpointer=InMemorySaver(), store=None) as graph:
        assert events == ["open"]
        result = await graph.ainvoke({"log": []}, THREAD)
    assert events == ["open", "close"]
    assert result["log"] == ["managed"]


async def test_an_app_with_its_own_graphs_package_gets_it_not_the_repositorys(
    tmp_path: Path,
) -> None:
    import graphs.registry  # the runtime's example graphs, already imported

    repo_graphs = sys.modules["graphs"]
    config = write_app(
        tmp_path,
        {"graphs": {"agent": "./graphs/agent.py:graph", "registry": "./registry.py:graph"}},
        {
            "state.py": STATE,
            "graphs/__init__.py": "",
            "graphs/words.py": "WORD = 'mine'",
            "graphs/agent.py": "from graphs.words import WORD\nfrom state import builder\n"
            "graph = builder(WORD).compile()",
            "registry.py": "from state import builder\ngraph = builder('registry').compile()",
        },
    )
    app = load_app(config)
    assert await run_twice(app.graphs["agent"], InMemorySaver()) == ["mine", "mine"]
    assert await run_twice(app.graphs["registry"], InMemorySaver()) == ["registry", "registry"]
    assert len(app.warnings) == 1 and "takes the name 'graphs' from" in app.warnings[0]
    assert sys.modules["graphs"] is not repo_graphs
    assert Path(sys.modules["graphs"].__file__ or "").parent == tmp_path / "graphs"
    assert graphs.registry.default_registry().ids()  # the runtime's copy still works


def test_an_app_module_named_like_an_imported_library_is_an_error(tmp_path: Path) -> None:
    import yaml  # noqa: F401 (the library the app's yaml.py would shadow)

    config = write_app(
        tmp_path,
        {"graphs": {"a": "./agent.py:graph"}},
        {"yaml.py": "", "json.py": "", "agent.py": "graph = None"},
    )
    with pytest.raises(AppImportError) as caught:
        load_app(config)
    yaml_folder = Path(sys.modules["yaml"].__file__ or "").parent
    assert [problem.split(": ", 1)[1] for problem in caught.value.problems] == [
        "the name 'json' is the standard library's; rename it",
        f"the name 'yaml' is already imported from {yaml_folder}; rename the app's module",
    ]


def test_failures_name_the_graph_the_file_and_the_traceback(tmp_path: Path) -> None:
    config = write_app(
        tmp_path,
        {
            "graphs": {
                "broken": "./broken.py:graph",
                "missing": "./state.py:grpah",
                "not_a_graph": "./state.py:State",
                "no_file": "./nowhere.py:graph",
                "no_module": "no_such_pkg.agent:graph",
                "two_params": "./factories.py:two",
            },
        },
        {
            "state.py": STATE + "\ngraph = builder().compile()\n",
            "broken.py": "import os\n\nraise RuntimeError('no API key')\n",
            "factories.py": "def two(config, other):\n    pass\n",
        },
    )
    with pytest.raises(GraphLoadError) as caught:
        load_app(config)
    found = caught.value.problems
    assert [problem.split(":")[1].strip() for problem in found] == [
        f"graphs.{graph_id}"
        for graph_id in ("broken", "missing", "not_a_graph", "no_file", "no_module", "two_params")
    ]
    broken = found[0]
    assert f"({tmp_path / 'broken.py'}) failed to import:\nTraceback" in broken
    assert f'File "{tmp_path / "broken.py"}", line 3' in broken
    assert broken.endswith("RuntimeError: no API key")
    assert "importlib" not in broken and "graph_loader" not in broken
    assert found[1].endswith("has no 'grpah'; graphs it has: graph")
    assert "'State' is a _TypedDictMeta, not a compiled graph" in found[2]
    assert f"no such file {tmp_path / 'nowhere.py'}" in found[3]
    assert "ModuleNotFoundError: No module named 'no_such_pkg'" in found[4]
    assert "the factory takes 2 parameters" in found[5]


def test_env_is_set_before_the_graphs_import_but_never_over_the_process(tmp_path: Path) -> None:
    os.environ["APP_OPERATOR_SET"] = "operator"
    config = write_app(
        tmp_path,
        {"graphs": {"a": "./agent.py:graph"}, "env": ".env"},
        {
            ".env": "APP_FROM_FILE=file\nAPP_OPERATOR_SET=file\n",
            "state.py": STATE,
            "agent.py": "import os\nfrom state import builder\n"
            "graph = builder(os.environ['APP_FROM_FILE']).compile()",
        },
    )
    app = load_app(config)
    assert os.environ["APP_FROM_FILE"] == "file"
    assert os.environ["APP_OPERATOR_SET"] == "operator"
    assert app.warnings == [
        "langgraph.json: env: APP_OPERATOR_SET is already set; the process's value is kept"
    ]


def test_local_dependencies_go_on_the_path_and_must_exist(tmp_path: Path) -> None:
    config = write_app(
        tmp_path,
        {"dependencies": ["./lib"], "graphs": {"a": "./agent.py:graph"}},
        {
            "lib/pyproject.toml": "[project]\nname = 'helpers'\n",
            "lib/src/helpers/__init__.py": "WORD = 'lib'",
            "state.py": STATE,
            "agent.py": "from helpers import WORD\nfrom state import builder\n"
            "graph = builder(WORD).compile()",
        },
    )
    assert load_app(config).graphs["a"].bind(checkpointer=None, store=None) is not None
    assert sys.path[:3] == [str(tmp_path), str(tmp_path / "lib"), str(tmp_path / "lib" / "src")]
    missing = write_app(
        tmp_path / "other", {"dependencies": ["./gone"], "graphs": {"a": "m:g"}}, {}
    )
    with pytest.raises(AppImportError, match=r"dependencies: '\./gone' is not a folder"):
        load_app(missing)


def test_package_dependencies_must_be_installed_where_the_runtime_runs(tmp_path: Path) -> None:
    needs = [
        "langchain-openai>=1",  # installed with the runtime
        "no-such-distribution-xyz",
        "langgraph<0.1",
        "not a requirement!",
        "pywin32; sys_platform == 'win32'",  # not for this machine
    ]
    config = write_app(tmp_path, {"dependencies": needs, "graphs": {"a": "m:g"}}, {})
    with pytest.raises(AppImportError) as caught:
        load_app(config)
    version = metadata.version("langgraph")
    assert caught.value.problems == [
        "langgraph.json: dependencies: 'no-such-distribution-xyz' is not installed here: "
        "pip install 'no-such-distribution-xyz'",
        f"langgraph.json: dependencies: 'langgraph<0.1': {version} is installed: "
        "pip install 'langgraph<0.1'",
        "langgraph.json: dependencies: 'not a requirement!' is neither a local folder "
        "('./...') nor a package requirement",
    ]


def test_the_apps_own_http_app_is_loaded_with_its_graphs(tmp_path: Path) -> None:
    web = "from fastapi import FastAPI\n\napp = FastAPI()\nnot_an_app = 42\n"
    graph = "from state import builder\ngraph = builder('hi').compile()"
    files = {"state.py": STATE, "agent.py": graph, "web.py": web}
    graphs = {"a": "./agent.py:graph"}
    # One app per process: the same folder, its langgraph.json rewritten.
    assert load_app(write_app(tmp_path, {"graphs": graphs}, files)).http_app is None
    config = write_app(tmp_path, {"graphs": graphs, "http": {"app": "./web.py:app"}}, {})
    assert type(load_app(config).http_app).__name__ == "FastAPI"
    wrong = {"graphs": graphs, "http": {"app": "./web.py:not_an_app"}}
    with pytest.raises(GraphLoadError) as caught:
        load_app(write_app(tmp_path, wrong, {}))
    assert caught.value.problems == [
        "langgraph.json: http.app: './web.py:not_an_app' is a int, not an ASGI app (e.g. FastAPI())"
    ]
