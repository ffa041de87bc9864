"""The built-in fake OpenAI-compatible provider, served as its own Serve application."""

from __future__ import annotations

from fastapi import FastAPI
from ray import serve

from runtime.fake_provider import create_fake_provider_app
from runtime.settings import FakeProviderSettings


@serve.deployment(name="FakeProvider")
@serve.ingress()
class FakeProviderDeployment:
    def __init__(self, settings: FakeProviderSettings) -> None:
        self._settings = settings

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_fake_provider_app(self._settings)
