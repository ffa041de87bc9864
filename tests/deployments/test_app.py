"""The app builders: every deployment gets validated scaling, overridable by config."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml
from langchain_core.messages import HumanMessage
from ray.serve.schema import ServeDeploySchema

from agent_runtime.config.builtin_models import builtin_config
from agent_runtime.config.fake_provider_settings import FakeProviderSettings
from agent_runtime.config.provider_settings import ProviderSettings
from agent_runtime.config.serve_settings import DeploymentScaling, ServeSettings
from agent_runtime.config.settings import LimitSettings, RuntimeSettings, StorageSettings
from agent_runtime.core.types import ChatRequest
from agent_runtime.deployments.app import (
    FAKE_APP,
    MAIN_APP,
    build_app,
    build_fake_provider_app,
    run_targets,
)
from agent_runtime.deployments.router_deployment import fake_provider_route
from agent_runtime.gateway.model_router import ModelRouter

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
    # Regression (issue 13, defect 6): the production template deployed the fake provider,
    # unauthenticated, on the public port, whatever provider was configured.
    assert paths == {"agent-runtime": "agent_runtime.deployments.app:build_app"}
    (main,) = config["applications"]
    overrides = {d["name"] for d in main["deployments"]}
    assert overrides == {"Ingress", "Orchestrator", "ModelRouter"}
    # The fault-control dev flag is off, and says so where an operator looks.
    assert main["runtime_env"]["env_vars"]["AGENT_FAKE_CONTROL_ENABLED"] == "false"


def with_provider() -> RuntimeSettings:
    configured = settings()
    configured.provider = ProviderSettings(
        _env_file=None,
        provider_base_url="https://llm.example.test/v1",
        model_aliases={"fast": ["gpt-small"]},
    )
    return RuntimeSettings.model_validate(
        {**dict(configured), "models": builtin_config(configured.provider)}
    )


def router_fake(app: object) -> object:
    """How the app's router reaches the built-in fake (its bind argument)."""
    router = deployments_of(app)["ModelRouter"]
    return router.init_args[1]  # type: ignore[attr-defined]


def test_a_serve_config_serves_the_fake_in_process_only_without_a_provider(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # As `serve deploy serve_config.yaml` builds it: no fake application beside it, so
    # without a provider the router answers with the fake in its own process (no route).
    with caplog.at_level(logging.WARNING):
        assert router_fake(build_app(settings=settings())) is True
    assert "FAKE" in caplog.text and "AGENT_PROVIDER_BASE_URL" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert router_fake(build_app(settings=with_provider())) is False
    assert "FAKE" not in caplog.text


def test_the_local_stack_deploys_the_fake_application_only_without_a_provider() -> None:
    # `make run`, `agent-runtime serve` and tests/e2e: the fake is its own application at
    # /fake-provider (user apps and benchmarks call it over HTTP), the router calls it there.
    fake = run_targets(settings())
    assert [t.name for t in fake] == [FAKE_APP, MAIN_APP]
    assert router_fake(fake[1].target) is False
    real = run_targets(with_provider())
    assert [t.name for t in real] == [MAIN_APP]
    assert router_fake(real[0].target) is False


async def test_the_in_process_fake_answers_the_router_with_no_route_to_it() -> None:
    runtime = settings()
    base_url, transport = fake_provider_route(runtime, in_process=True)
    assert transport is not None
    router = ModelRouter(runtime.models, base_url, fake_transport=transport)
    try:
        result = await router.chat(ChatRequest(alias="fast", messages=[HumanMessage("hi")]))
    finally:
        await router.close()
    assert result.message.content == "[fake-fast] You said: hi"
    # Without in_process, the router goes to the fake application on this node's proxy.
    url, none = fake_provider_route(runtime, in_process=False)
    assert url.endswith("/fake-provider/v1") and none is None
