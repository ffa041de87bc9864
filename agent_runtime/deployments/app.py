"""The app builders: compose the deployments with ``.bind()``.

``serve run agent_runtime.deployments.app:build_app`` (or a Serve config file naming the same import
path, as ``serve_config.yaml`` does) builds the main application; without a model provider
configured its router serves the built-in fake in its own process, with no route to it.
The local stack (:func:`run_targets`: ``make run``, ``agent-runtime serve``, tests/e2e)
deploys the fake as its own application at ``/fake-provider`` instead
(``agent_runtime.deployments.app:build_fake_provider_app``), only when the models config
uses it. Either way a warning says at start that models are fake. Scaling comes from
``ServeSettings`` (``AGENT_INGRESS__MAX_REPLICAS=4`` ...) and a Serve config file's
``deployments:`` section overrides it, as Serve always does for options set in code.
"""

from __future__ import annotations

from typing import Any

from ray.serve import Application, RunTarget
from ray.serve.deployment import Deployment

from agent_runtime.config.provider_settings import FAKE_PROVIDER_ROUTE
from agent_runtime.config.serve_settings import DeploymentScaling
from agent_runtime.config.settings import RuntimeSettings
from agent_runtime.deployments.fake_provider_deployment import FakeProviderDeployment
from agent_runtime.deployments.ingress import IngressDeployment
from agent_runtime.deployments.orchestrator import OrchestratorDeployment
from agent_runtime.deployments.router_deployment import ModelRouterDeployment, warn_if_fake

# Serve's per-request access log costs ~20% throughput here; the runtime writes its own
# line per request (agent_runtime.api.middleware) with the request, tenant, thread and run ids.
# JSON: one object per line in each replica's log file (agent_runtime.replica.replica_logs).
LOGGING = {"enable_access_log": False, "encoding": "JSON"}


def logging_config(level: str = "INFO") -> dict[str, Any]:
    return {**LOGGING, "log_level": level}


def scaled(deployment: Any, scaling: DeploymentScaling, log_level: str = "INFO") -> Deployment:
    """Apply one deployment's validated scaling settings."""
    return deployment.options(
        autoscaling_config=scaling.autoscaling_config(),
        max_ongoing_requests=scaling.max_ongoing_requests,
        ray_actor_options={"num_cpus": scaling.num_cpus},
        logging_config=logging_config(log_level),
        graceful_shutdown_wait_loop_s=scaling.graceful_shutdown_wait_loop_s,
        graceful_shutdown_timeout_s=scaling.graceful_shutdown_timeout_s,
        health_check_period_s=scaling.health_check_period_s,
        health_check_timeout_s=scaling.health_check_timeout_s,
    )


def build_app(
    args: dict[str, Any] | None = None,
    settings: RuntimeSettings | None = None,
    *,
    fake_app: bool = False,
) -> Application:
    """The runtime: Ingress -> Orchestrator -> ModelRouter. ``args`` are Serve's builder
    args; ``fake_app``: the fake provider is deployed as its own application beside it."""
    settings = settings or RuntimeSettings.from_env()
    warn_if_fake(settings)
    serve_settings = settings.serve
    level = serve_settings.log_level
    in_process_fake = settings.models.uses_fake and not fake_app
    router = scaled(ModelRouterDeployment, serve_settings.router, level).bind(
        settings, in_process_fake
    )
    orchestrator = scaled(OrchestratorDeployment, serve_settings.orchestrator, level).bind(
        router, settings
    )
    ingress = scaled(IngressDeployment, serve_settings.ingress, level)
    return ingress.bind(orchestrator, router, settings)


def build_fake_provider_app(
    args: dict[str, Any] | None = None, settings: RuntimeSettings | None = None
) -> Application:
    settings = settings or RuntimeSettings.from_env()
    return scaled(FakeProviderDeployment, settings.serve.fake_provider).bind(settings.fake)


MAIN_APP = "agent-runtime"
FAKE_APP = "fake-provider"


def run_targets(settings: RuntimeSettings) -> list[RunTarget]:
    """The local stack's applications for ``serve.run_many`` (deploying them together
    starts faster): the runtime, and the fake provider when the models config uses it."""
    uses_fake = settings.models.uses_fake
    app = build_app(settings=settings, fake_app=uses_fake)
    targets = [RunTarget(target=app, name=MAIN_APP, route_prefix="/")]
    if uses_fake:
        fake = build_fake_provider_app(settings=settings)
        targets.insert(0, RunTarget(target=fake, name=FAKE_APP, route_prefix=FAKE_PROVIDER_ROUTE))
    return targets
