"""The app builders: every deployment gets validated scaling, overridable by config."""

from __future__ import annotations

from pathlib import Path

import yaml
from ray.serve.schema import ServeDeploySchema

from agent_runtime.config.fake_provider_settings import FakeProviderSettings
from agent_runtime.config.provider_settings import ProviderSettings
from agent_runtime.config.serve_settings import DeploymentScaling, ServeSettings
from agent_runtime.config.settings import LimitSettings, RuntimeSettings, StorageSettings
from agent_runtime.deployments.app import build_app, build_fake_provider_app

ROOT = Path(__file__).resolve().parents[2]


def settings(**serve: DeploymentScaling) -> RuntimeSettings:
    return RuntimeSettings(
        storage=StorageSettings(),
        limits=LimitSettings(),
        provider=ProviderSettings(),
        fake=FakeProviderSettings(),
        serve=ServeSettings(**serve),
    )


def deployments_of(app: object) -> dict[str, object]:
    """Walk a bound application's graph: deployment name -> Deployment."""
    found: dict[str, object] = {}
    pending = [app]
    while pending:
        node = pending.pop()
        deployment = node._bound_deployment  # type: ignore[attr-defined]
        found[deployment.name] = deployment
        args = [*deployment.init_args, *deployment.init_kwargs.values()]
        pending.extend(a for a in args if hasattr(a, "_bound_deployment"))
    return found


def test_every_deployment_autoscales_with_explicit_concurrency() -> None:
    app = build_app(settings=settings())
    found = deployments_of(app)
    assert set(found) == {"Ingress", "Orchestrator", "ModelRouter"}
    for deployment in found.values():
        config = deployment._deployment_config  # type: ignore[attr-defined]
        assert config.autoscaling_config is not None
        assert config.autoscaling_config.max_replicas >= 1
        # Serve's default of 5 collapses under load; it must be set explicitly.
        assert config.max_ongoing_requests == DeploymentScaling().max_ongoing_requests
        assert config.logging_config["enable_access_log"] is False


def test_scaling_comes_from_settings() -> None:
    tuned = DeploymentScaling(max_replicas=7, max_ongoing_requests=300, min_replicas=2)
    found = deployments_of(build_app(settings=settings(orchestrator=tuned)))
    config = found["Orchestrator"]._deployment_config  # type: ignore[attr-defined]
    assert config.max_ongoing_requests == 300
    assert config.autoscaling_config.max_replicas == 7
    assert config.autoscaling_config.min_replicas == 2
    assert config.autoscaling_config.initial_replicas == 2


def test_a_stopping_replica_checks_often_that_it_is_idle() -> None:
    # Serve's default (2 s) made `make stop` wait 2 s per deployment.
    found = deployments_of(build_app(settings=settings()))
    for deployment in found.values():
        config = deployment._deployment_config  # type: ignore[attr-defined]
        assert config.graceful_shutdown_wait_loop_s == 0.2
        assert config.graceful_shutdown_timeout_s == 20.0


def test_scaling_is_read_from_the_environment(monkeypatch: object) -> None:
    import pytest

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    monkeypatch.setenv("AGENT_ROUTER__MAX_REPLICAS", "5")
    monkeypatch.setenv("AGENT_ROUTER__MAX_ONGOING_REQUESTS", "64")
    assert ServeSettings().router.max_replicas == 5
    assert ServeSettings().router.max_ongoing_requests == 64


def test_fake_provider_is_its_own_application() -> None:
    found = deployments_of(build_fake_provider_app(settings=settings()))
    assert set(found) == {"FakeProvider"}


def test_serve_config_file_is_valid_and_names_the_builders() -> None:
    config = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    schema = ServeDeploySchema.parse_obj(config)
    paths = {app.name: app.import_path for app in schema.applications}
    assert paths == {
        "fake-provider": "agent_runtime.deployments.app:build_fake_provider_app",
        "agent-runtime": "agent_runtime.deployments.app:build_app",
    }
    overrides = {d["name"] for d in config["applications"][1]["deployments"]}
    assert overrides == {"Ingress", "Orchestrator", "ModelRouter"}
