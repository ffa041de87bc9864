"""langgraph.json: LangGraph CLI's schema, errors naming the file, the place and the problem,
and warnings for the CLI's Docker image options and for what the runtime does not apply."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from agent_runtime.user_app.config_sections import GraphDef
from agent_runtime.user_app.langgraph_json import (
    DOCKER_ONLY_KEYS,
    LangGraphJsonError,
    read_langgraph_json,
)
from tests.user_app.apps import write_app

ROOT = Path(__file__).resolve().parents[2]


def problems(folder: Path, config: dict[str, Any] | str) -> list[str]:
    with pytest.raises(LangGraphJsonError) as caught:
        read_langgraph_json(write_app(folder, config, {}))
    return caught.value.problems


def test_every_section_the_cli_documents_reads_into_its_type(tmp_path: Path) -> None:
    config_path = write_app(
        tmp_path,
        {
            "$schema": "https://langgra.ph/schema.json",
            "python_version": "3.12",
            "dependencies": ["langchain-openai", "."],
            "graphs": {
                "agent": "./src/agent.py:graph",
                "research": {"path": "my_pkg.research:make", "description": "Researches"},
            },
            "env": ".env",
            "store": {
                "index": {"embed": "openai:text-embedding-3-small", "dims": 1536, "fields": ["$"]},
                "ttl": {"default_ttl": 60, "sweep_interval_minutes": 5},
            },
            "checkpointer": {"ttl": {"strategy": "keep_latest", "default_ttl": 1440}},
            "auth": {"path": "./auth.py:auth", "openapi": {"security": [{"OAuth2": ["me"]}]}},
            "http": {"app": "./web.py:app", "cors": {"allow_origins": ["*"]}},
            "webhooks": {"url": {"require_https": True, "allowed_ports": [443]}},
        },
        {},
    )
    read = read_langgraph_json(config_path)
    config = read.config
    # Each key whose feature the runtime does not apply yet says so; so does the version.
    not_applied = [w.split(": ")[1] for w in read.warnings if "not applied" in w]
    assert not_applied == ["auth.openapi", "webhooks"]
    assert [w for w in read.warnings if "python_version" in w] == [
        f"langgraph.json: python_version: the app asks for 3.12; the runtime runs Python "
        f"{sys.version_info.major}.{sys.version_info.minor}"
    ] or sys.version_info[:2] == (3, 12)
    assert read.folder == tmp_path.resolve()
    assert config.graphs["agent"] == "./src/agent.py:graph"
    assert config.graphs["research"] == GraphDef(
        path="my_pkg.research:make", description="Researches"
    )
    assert config.env == ".env"
    assert config.store is not None and config.store.index is not None
    assert (config.store.index.dims, config.store.index.fields) == (1536, ["$"])
    assert config.store.ttl is not None and config.store.ttl.refresh_on_read is True
    assert config.checkpointer is not None and config.checkpointer.ttl is not None
    assert config.checkpointer.ttl.strategy == "keep_latest"
    assert config.auth is not None and config.auth.path == "./auth.py:auth"
    assert config.http is not None and config.http.cors is not None
    assert config.http.cors.allow_origins == ["*"]
    assert config.env == ".env" and config.dependencies == ["langchain-openai", "."]


def test_the_repositorys_own_example_config_is_valid() -> None:
    read = read_langgraph_json(ROOT / "langgraph.json")
    assert set(read.config.graphs) == {"multi_agent", "react", "memory", "approval"}
    assert read.warnings == []


def test_invalid_json_names_the_line_and_column(tmp_path: Path) -> None:
    found = problems(tmp_path, '{\n  "graphs": {\n    "agent": "./a.py:graph",\n  }\n}')
    assert found == [
        "langgraph.json: line 4, column 3: not valid JSON (Expecting property name "
        "enclosed in double quotes)"
    ]


def test_an_unknown_key_is_named_with_the_closest_known_one(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        {
            "graphs": {"a": "./a.py:g"},
            "dependecies": ["."],
            "store": {"index": {"embed": "openai:x", "dims": 3, "feilds": ["a"]}},
            "flux_capacitor": True,
        },
    )
    assert sorted(found) == [
        "langgraph.json: dependecies: unknown key (LangGraph CLI does not know it); "
        "did you mean 'dependencies'?",
        "langgraph.json: flux_capacitor: unknown key (LangGraph CLI does not know it)",
        "langgraph.json: store.index.feilds: unknown key (LangGraph CLI does not know it); "
        "did you mean 'fields'?",
    ]


def test_a_wrong_type_names_its_place(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        {
            "graphs": {"a": "./a.py:g", "b": 3},
            "store": {"index": {"embed": "openai:x", "dims": "3072"}},
            "env": ["A=1"],
            "checkpointer": {"ttl": {"strategy": "archive"}},
        },
    )
    assert found == [
        "langgraph.json: graphs.b: Input should be a valid string or Input should be an object",
        "langgraph.json: env: Input should be an object or Input should be a valid string",
        "langgraph.json: store.index.dims: Input should be a valid integer",
        "langgraph.json: checkpointer.ttl.strategy: Input should be 'delete' or 'keep_latest'",
    ]


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ({"graphs": {}}, "graphs: no graphs; add one"),
        ({"dependencies": ["."]}, "graphs: Field required"),
        ({"graphs": {"a": "./a.py"}}, "graphs.a: './a.py' is not '<module>:<attribute>'"),
        ({"graphs": {"a": {"description": "x"}}}, "graphs.a.path: Field required"),
        ({"graphs": {"ui": "./src/agent.ts:graph"}}, "graphs.ui: JavaScript graphs"),
        ({"graphs": {"a": "m:g"}, "python_version": "3.10"}, "python_version: 3.10 is not sup"),
        ({"graphs": {"a": "m:g"}, "python_version": "3.11.4"}, "python_version: '3.11.4' is not"),
        ({"graphs": {"a": "m:g"}, "auth": {"path": "./auth.py"}}, "auth.path: './auth.py' is not"),
        ({"graphs": {"a": "m:g"}, "project_root": ".."}, "project_root: no longer supported"),
        (
            {"graphs": {"a": "m:g"}, "store": {"index": {"embed": "openai:x"}}},
            "store.index.dims: Field required",
        ),
        (
            {"graphs": {"a": "m:g"}, "store": {"index": {"embed": "openai:x", "dims": 0}}},
            "store.index.dims: Input should be greater than or equal to 1",
        ),
        (
            {"graphs": {"a": "m:g"}, "store": {"index": {"embed": "openai:x", "dims": 20_000}}},
            "store.index.dims: Input should be less than or equal to 16000",
        ),
        (
            {"graphs": {"a": "m:g"}, "store": {"index": {"embed": "text-embedding", "dims": 8}}},
            "store.index.embed: 'text-embedding' is neither 'openai:<model>' nor a function "
            "('./path/file.py:embed' or 'package.module:embed')",
        ),
        (
            {"graphs": {"a": "m:g"}, "store": {"index": {"embed": "openai:", "dims": 8}}},
            "store.index.embed: 'openai:' is neither 'openai:<model>' nor a function",
        ),
        (
            {
                "graphs": {"a": "m:g"},
                "store": {"index": {"embed": "openai:x", "dims": 8, "fields": ["text", ""]}},
            },
            'store.index.fields: give at least one JSON path ("$": the whole value), none empty',
        ),
        ('{"graphs": {"a": "m:g"}, "graphs": {}}', "key 'graphs' appears twice"),
        ("[1, 2]", "the file must hold a JSON object"),
    ],
)
def test_each_rule_of_the_cli_is_an_error_naming_its_place(
    tmp_path: Path, config: dict[str, Any] | str, problem: str
) -> None:
    found = problems(tmp_path, config)
    assert len(found) == 1 and found[0].startswith(f"langgraph.json: {problem}"), found


def test_docker_image_options_are_warnings_naming_each(tmp_path: Path) -> None:
    read = read_langgraph_json(
        write_app(
            tmp_path,
            {
                "graphs": {"a": "m:g"},
                "dockerfile_lines": ["RUN apt-get install -y libmagic-dev"],
                "image_distro": "wolfi",
                "base_image": "langchain/langgraph-server:0.2",
                "pip_config_file": "pip.conf",
                "node_version": "20",
            },
            {},
        )
    )
    named = [warning.split(": ")[1] for warning in read.warnings]
    assert named == [
        "base_image",
        "dockerfile_lines",
        "image_distro",
        "node_version",
        "pip_config_file",
    ]
    assert set(named) <= set(DOCKER_ONLY_KEYS)
    assert all("Docker image option" in warning for warning in read.warnings)


def test_a_docker_option_of_the_wrong_type_is_still_an_error(tmp_path: Path) -> None:
    found = problems(tmp_path, {"graphs": {"a": "m:g"}, "image_distro": "alpine"})
    assert found == [
        "langgraph.json: image_distro: Input should be 'debian', 'wolfi', 'bullseye' or 'bookworm'"
    ]


def test_an_unreadable_file_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(LangGraphJsonError, match="cannot read the file"):
        read_langgraph_json(tmp_path / "missing" / "langgraph.json")
