"""The built-in fake OpenAI-compatible provider, served as its own Serve application.

Its fault table (``/fake-provider/control/faults``, enabled by ``AGENT_FAKE_CONTROL_TOKEN``)
lives in each replica's app instance. The deployment runs one replica by default
(``AGENT_FAKE_PROVIDER__MAX_REPLICAS=1``); with more, a control call changes only the
replica that answers it, so set faults through the settings (``AGENT_FAKE_MODELS``,
``AGENT_FAKE_DEFAULT_PROFILE``), which every replica reads when it starts.
"""

from __future__ import annotations

from fastapi import FastAPI
from ray import serve

from agent_runtime.config.fake_provider_settings import FakeProviderSettings
from agent_runtime.fake.provider_app import create_fake_provider_app


@serve.deployment(name="FakeProvider")
@serve.ingress()
class FakeProviderDeployment:
    def __init__(self, settings: FakeProviderSettings) -> None:
        self._settings = settings

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_fake_provider_app(self._settings)
