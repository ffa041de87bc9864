"""The router's resolved view of a models config: each name's chain of callable models."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from agent_runtime.config.models_file import ModelsConfig, ModelSpec, RetryPolicy, Timeouts
from agent_runtime.config.pricing import ModelPrice
from agent_runtime.core.types import ChatRequest, EmbeddingRequest
from agent_runtime.gateway.call_observer import PlannedModel
from agent_runtime.gateway.provider_client import ProviderClient


@dataclass(frozen=True, slots=True)
class Route:
    """One model of a chain, with the provider client that calls it."""

    name: str
    model_id: str
    client: ProviderClient
    max_output_tokens: int | None
    planned: PlannedModel

    @property
    def retry(self) -> RetryPolicy:
        return self.client.config.retry

    @property
    def timeouts(self) -> Timeouts:
        return self.client.config.timeouts

    def max_tokens(self, request: ChatRequest) -> int | None:
        """The completion bound sent: the request's, capped by the model's own maximum."""
        asked, most = request.max_tokens, self.max_output_tokens
        if asked is not None and most is not None:
            return min(asked, most)
        return asked if asked is not None else most

    def plan(self, request: ChatRequest | EmbeddingRequest) -> PlannedModel:
        if isinstance(request, EmbeddingRequest):
            return self.planned  # nothing is generated: no completion bound
        return replace(self.planned, max_tokens=self.max_tokens(request))

    @classmethod
    def of(cls, name: str, spec: ModelSpec | None, client: ProviderClient) -> Route:
        model_id = (spec.model_id if spec is not None else None) or name
        planned = PlannedModel(
            name=name,
            provider=client.name,
            model_id=model_id,
            price=spec.price if spec is not None else None,
            context_window=spec.context_window if spec is not None else None,
            max_tokens=None,
        )
        max_output = spec.max_output_tokens if spec is not None else None
        return cls(name, model_id, client, max_output, planned)

    @classmethod
    def unlisted(cls, name: str, client: ProviderClient, price: ModelPrice) -> Route:
        """A model name the config does not list, sent to the default provider as it is,
        at the config's default price."""
        route = cls.of(name, None, client)
        return replace(route, planned=replace(route.planned, price=price))


def build_routes(
    config: ModelsConfig, clients: Mapping[str, ProviderClient]
) -> dict[str, tuple[Route, ...]]:
    """Every alias's chain, and every configured model as a chain of its own."""
    single = {
        name: Route.of(name, spec, clients[spec.provider]) for name, spec in config.models.items()
    }
    routes: dict[str, tuple[Route, ...]] = {name: (route,) for name, route in single.items()}
    for alias, chain in config.aliases.items():
        routes[alias] = tuple(single[name] for name in chain)
    return routes
