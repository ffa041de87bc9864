"""cluster.yaml is checked offline against Ray's own schema and defaults (no cloud access)."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def raw_config() -> dict[str, Any]:
    config = yaml.safe_load((REPO_ROOT / "cluster.yaml").read_text())
    assert isinstance(config, dict)
    return config


@pytest.fixture(scope="module")
def prepared(raw_config: dict[str, Any]) -> dict[str, Any]:
    """What `ray up` works with: merged with the AWS defaults, setup commands merged per role."""
    config = prepare_config(copy.deepcopy(raw_config))
    validate_config(config)
    return config


def _all_commands(config: dict[str, Any]) -> list[str]:
    keys = (
        "initialization_commands",
        "setup_commands",
        "head_setup_commands",
        "worker_setup_commands",
        "head_start_ray_commands",
        "worker_start_ray_commands",
    )
    return [command for key in keys for command in config.get(key, [])]


def test_matches_ray_schema_on_aws(prepared: dict[str, Any]) -> None:
    assert prepared["provider"]["type"] == "aws"
    region = prepared["provider"]["region"]
    zones = prepared["provider"]["availability_zone"].split(",")
    assert zones
    assert all(zone.startswith(region) for zone in zones)


def test_schema_validation_rejects_unknown_keys(raw_config: dict[str, Any]) -> None:
    """Proves the validation above has teeth: a misspelt top-level key fails."""
    broken = copy.deepcopy(raw_config)
    broken["head_start_ray_command"] = broken["head_start_ray_commands"]
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(broken))


def test_head_and_worker_node_types(prepared: dict[str, Any]) -> None:
    node_types = prepared["available_node_types"]
    head_type = prepared["head_node_type"]
    assert head_type in node_types
    assert node_types[head_type]["max_workers"] == 0
    workers = {name: spec for name, spec in node_types.items() if name != head_type}
    assert workers, "a worker node type is needed for replicas to scale out"
    for spec in workers.values():
        assert 0 <= spec["min_workers"] <= spec["max_workers"] <= prepared["max_workers"]
        assert spec["node_config"]["InstanceType"]


def test_setup_ships_and_installs_the_project(
    raw_config: dict[str, Any], prepared: dict[str, Any]
) -> None:
    assert raw_config["file_mounts"] == {"~/agent-runtime": "."}
    assert ".gitignore" in raw_config["rsync_filter"]  # keeps .venv and local data off nodes
    for role in ("head_setup_commands", "worker_setup_commands"):
        installs = [c for c in prepared[role] if "pip install -c constraints.txt -e ." in c]
        assert len(installs) == 1, role
        assert installs[0].startswith("cd ~/agent-runtime &&")


def test_files_the_cluster_needs_are_in_the_repo(raw_config: dict[str, Any]) -> None:
    """The setup and deploy commands read these from the synced working tree."""
    commands = " ".join(_all_commands(raw_config))
    for name in ("constraints.txt", "serve_config.yaml", "pyproject.toml"):
        assert (REPO_ROOT / name).is_file(), name
    assert "constraints.txt" in commands
    assert "serve_config.yaml" in commands


def test_start_commands_avoid_redis_port_and_deploy_serve(prepared: dict[str, Any]) -> None:
    head = prepared["head_start_ray_commands"]
    workers = prepared["worker_start_ray_commands"]
    assert not any("6379" in command for command in _all_commands(prepared))

    start_index = next(i for i, c in enumerate(head) if "ray start --head" in c)
    start = head[start_index]
    assert "--port=6380" in start
    assert "RAY_AUTH_MODE=disabled" in start
    assert "--metrics-export-port=8085" in start
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in start

    deploy_index = next(i for i, c in enumerate(head) if "serve deploy serve_config.yaml" in c)
    assert deploy_index > start_index, "the app can only be deployed once Ray is up"
    assert head[deploy_index].startswith("cd ~/agent-runtime &&")

    worker_start = next(c for c in workers if "ray start" in c)
    assert "--address=$RAY_HEAD_IP:6380" in worker_start
    assert "RAY_AUTH_MODE=disabled" in worker_start


def test_commands_are_valid_bash(prepared: dict[str, Any]) -> None:
    bash = shutil.which("bash")
    assert bash is not None
    for command in _all_commands(prepared):
        checked = subprocess.run(
            [bash, "-n", "-c", command], capture_output=True, text=True, timeout=10, check=False
        )
        assert checked.returncode == 0, (command, checked.stderr)
