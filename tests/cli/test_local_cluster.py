"""``make cluster``'s parts that need no Ray: its config and its refusals (the cluster itself
is tested in tests/cluster)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from agent_runtime.cli import local_cluster
from agent_runtime.config.settings import RuntimeSettings

ROOT = Path(__file__).resolve().parents[2]


def test_the_local_config_mirrors_cluster_yaml_node_types() -> None:
    import yaml

    local = local_cluster.autoscaling_config(ROOT / "cluster.local.yaml", "10.0.0.1:6380")
    cloud = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    assert set(local["available_node_types"]) == set(cloud["available_node_types"])
    assert local["head_node_type"] == cloud["head_node_type"]
    # Where the fake nodes join: the head this module starts, not Ray's 6379 (Redis's).
    assert local["provider"] == {
        "type": "fake_multinode",
        "use_node_id_as_ip": True,
        "disable_node_updaters": True,
        "disable_launch_config_check": True,
        "gcs_address": "10.0.0.1:6380",
    }
    assert local_cluster.head_cpus(local) == 0
    assert local_cluster.min_workers(local) == 2


def test_it_needs_postgres_and_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENT_DATABASE_URL", raising=False)
    monkeypatch.delenv("AGENT_REDIS_URL", raising=False)
    sqlite = RuntimeSettings.from_env()
    problem = local_cluster.shared_storage_problem(sqlite)
    assert problem is not None and "AGENT_DATABASE_URL" in problem
    storage = sqlite.storage.model_copy(update={"database_url": "postgresql://u@db:5432/x"})
    no_redis = sqlite.model_copy(update={"storage": storage})
    problem = local_cluster.shared_storage_problem(no_redis)
    assert problem is not None and "AGENT_REDIS_URL" in problem
    limits = sqlite.limits.model_copy(update={"redis_url": SecretStr("redis://r:6379/0")})
    both = no_redis.model_copy(update={"limits": limits})
    assert local_cluster.shared_storage_problem(both) is None


def test_up_refuses_sqlite_before_starting_anything(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.delenv("AGENT_DATABASE_URL", raising=False)
    monkeypatch.setenv("AGENT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("AGENT_APP_CONFIG", str(ROOT / "langgraph.json"))
    assert local_cluster.main(["up"]) == local_cluster.EXIT_NEEDS_SHARED_STORAGE
    assert "AGENT_DATABASE_URL=postgresql://" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()  # no key, no Ray head
