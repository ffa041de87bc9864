"""A langgraph.json's thread and item TTLs and CORS origins become the runtime's settings,
unless the operator's AGENT_* variables say otherwise."""

from __future__ import annotations

import json
from pathlib import Path

from agent_runtime.config.http_settings import HttpSettings
from agent_runtime.config.run_settings import RunSettings
from agent_runtime.config.settings import ItemStoreSettings
from agent_runtime.user_app.app_defaults import apply_settings_env, settings_env
from agent_runtime.user_app.langgraph_json import LangGraphJson, read_langgraph_json
from tests.user_app.apps import write_app

GRAPHS = {"agent": "./agent.py:graph"}


def test_the_ttls_become_agent_variables_in_the_clis_units(tmp_path: Path) -> None:
    config = {
        "graphs": GRAPHS,
        "checkpointer": {
            "ttl": {
                "strategy": "keep_latest",
                "default_ttl": 1440,
                "sweep_interval_minutes": 10,
                "sweep_limit": 500,
            }
        },
        "store": {"ttl": {"default_ttl": 2.5, "refresh_on_read": False}},
    }
    read = read_langgraph_json(write_app(tmp_path, config, {}))
    assert read.warnings == []  # both apply: neither is "not applied"
    assert settings_env(read.config) == {
        "AGENT_THREAD_TTL_STRATEGY": "keep_latest",
        "AGENT_THREAD_TTL_MINUTES": "1440",
        "AGENT_THREAD_SWEEP_INTERVAL_S": "600",
        "AGENT_THREAD_SWEEP_LIMIT": "500",
        "AGENT_STORE_REFRESH_ON_READ": "false",
        "AGENT_STORE_DEFAULT_TTL_MINUTES": "2.5",
    }


def test_the_settings_read_them_and_the_operators_values_win(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    config = LangGraphJson.model_validate(
        {
            "graphs": GRAPHS,
            "checkpointer": {"ttl": {"strategy": "keep_latest", "default_ttl": 60}},
            "store": {"ttl": {"default_ttl": 30, "sweep_interval_minutes": 2}},
        }
    )
    for name in settings_env(config):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AGENT_THREAD_TTL_MINUTES", "5")  # the operator's
    environ: dict[str, str] = {"AGENT_THREAD_TTL_MINUTES": "5"}
    applied = apply_settings_env(config, environ)
    assert "AGENT_THREAD_TTL_MINUTES" not in applied
    for name, value in applied.items():
        monkeypatch.setenv(name, value)
    runs, items = RunSettings(), ItemStoreSettings()
    assert runs.default_thread_ttl == ("keep_latest", 5.0)
    assert (items.default_ttl_minutes, items.sweep_interval_minutes) == (30.0, 2.0)


def test_cors_origins_apply_and_its_other_options_are_warnings(
    tmp_path: Path,
    monkeypatch,  # type: ignore[no-untyped-def]
) -> None:
    origins = ["https://smith.langchain.com", "http://localhost:3000"]
    cors = {"allow_origins": origins, "max_age": 60}
    read = read_langgraph_json(write_app(tmp_path, {"graphs": GRAPHS, "http": {"cors": cors}}, {}))
    env = settings_env(read.config)
    assert env == {"AGENT_CORS_ORIGINS": json.dumps(origins)}
    monkeypatch.setenv("AGENT_CORS_ORIGINS", env["AGENT_CORS_ORIGINS"])
    assert HttpSettings().cors_origins == origins
    assert [w.split(": ")[1] for w in read.warnings] == ["http.cors.max_age"]


def test_an_app_without_ttls_sets_nothing() -> None:
    assert settings_env(LangGraphJson.model_validate({"graphs": GRAPHS})) == {}
