"""The built-in models config: what the ``AGENT_PROVIDER_*`` settings describe when no models
file is named, and the choice between that default and the file (:func:`configured`).

With no setting changed, :func:`builtin_config` equals the repository's ``models.yaml``: the
built-in fake provider and its models, priced like small and large hosted models.
"""

from __future__ import annotations

from collections.abc import Mapping

from agent_runtime.config.models_file import (
    BreakerPolicy,
    ModelsConfig,
    ModelSpec,
    ProviderConfig,
    RetryPolicy,
    Timeouts,
    load,
)
from agent_runtime.config.pricing import ModelPrice
from agent_runtime.config.provider_settings import ProviderSettings

FAKE_PROVIDER = "fake"
ENV_PROVIDER = "provider"  # the provider of a config built from AGENT_PROVIDER_BASE_URL
# The fake provider's models, priced like small and large hosted models (nominal: enough
# for budgets to be exercised), with the limits models.yaml gives them.
FAKE_MODELS: dict[str, tuple[str, str]] = {
    "fake-fast": ("0.15", "0.60"),
    "fake-smart": ("2.50", "10.00"),
    "fake-fallback": ("0.15", "0.60"),
}
FAKE_CONTEXT_WINDOW = 128_000
FAKE_MAX_OUTPUT_TOKENS = 4096
# Its embedding model, priced like a small hosted one (input only: nothing is generated).
FAKE_EMBEDDING_MODELS: dict[str, tuple[str, str]] = {"fake-embed": ("0.02", "0")}
FAKE_EMBEDDING_CONTEXT_WINDOW = 8192


def builtin_config(
    provider: ProviderSettings,
    prices: Mapping[str, ModelPrice] | None = None,
    base_url: str | None = None,
) -> ModelsConfig:
    """The config the ``AGENT_PROVIDER_*`` / ``AGENT_MODEL_ALIASES`` settings describe.

    One provider: the built-in fake (``fake``) unless ``AGENT_PROVIDER_BASE_URL`` (or
    ``base_url``) names one (``provider``). Its models are those of the alias chains and the
    embedding models (``AGENT_EMBEDDING_MODELS``), priced from ``prices`` (the budgets'
    ``AGENT_MODEL_PRICES``); any other model name is refused (404 ``model_not_found``):
    unlisted, it would be unpriced. With no setting changed this equals the repository's
    ``models.yaml``.
    """
    url = base_url or provider.provider_base_url
    fake = not url
    name = FAKE_PROVIDER if fake else ENV_PROVIDER
    timeout_s = provider.provider_timeout_s
    provider_config = ProviderConfig(
        kind="fake" if fake else "openai",
        base_url=None if fake else url,
        api_key_env="AGENT_PROVIDER_API_KEY",
        api_key=provider.provider_api_key,
        timeouts=Timeouts(
            connect_s=min(5.0, timeout_s),
            request_s=timeout_s,
            first_token_s=timeout_s,
            idle_s=timeout_s,
        ),
        retry=RetryPolicy(max_retries=provider.provider_max_retries),
    )
    table = prices if prices is not None else _fake_prices()
    models: dict[str, ModelSpec] = {}
    chains = [model for chain in provider.model_aliases.values() for model in chain]
    for model in [*chains, *provider.embedding_models]:
        if model not in models:
            models[model] = _builtin_model(name, model, table.get(model))
    return ModelsConfig(
        providers={name: provider_config},
        models=models,
        aliases={alias: list(chain) for alias, chain in provider.model_aliases.items()},
        breaker=BreakerPolicy(
            fail_max=provider.breaker_fail_max, reset_timeout_s=provider.breaker_reset_timeout_s
        ),
        deadline_s=provider.router_deadline_s,
    )


def _fake_prices() -> dict[str, ModelPrice]:
    table = {**FAKE_MODELS, **FAKE_EMBEDDING_MODELS}
    return {model: ModelPrice(inp, out) for model, (inp, out) in table.items()}


def _builtin_model(provider: str, model: str, price: ModelPrice | None) -> ModelSpec:
    known = model in FAKE_MODELS
    context_window = FAKE_CONTEXT_WINDOW if known else None
    if model in FAKE_EMBEDDING_MODELS:
        context_window = FAKE_EMBEDDING_CONTEXT_WINDOW
    return ModelSpec(
        provider=provider,
        input_per_million_usd=price.input_per_million_usd if price is not None else None,
        output_per_million_usd=price.output_per_million_usd if price is not None else None,
        context_window=context_window,
        max_output_tokens=FAKE_MAX_OUTPUT_TOKENS if known else None,
    )


def fake_models_warning(config: ModelsConfig) -> str | None:
    """What to say, loudly, at start when models are answered by the built-in fake
    provider (made-up answers): all of them (no provider configured), or those a models
    file gives it; None when no model is fake."""
    fake = [
        name
        for name, spec in config.models.items()
        if config.providers[spec.provider].kind == "fake"
    ]
    if not fake:
        return None
    if all(provider.kind == "fake" for provider in config.providers.values()):
        return (
            "MODELS ARE FAKE: no model provider is configured (AGENT_PROVIDER_BASE_URL or "
            "AGENT_MODELS_FILE), so the built-in fake provider makes up every model answer. "
            "Configure a provider before anyone relies on this deployment."
        )
    return (
        f"SOME MODELS ARE FAKE: {', '.join(fake)} are answered by the built-in fake provider "
        "(the models file names it)."
    )


def configured(
    provider: ProviderSettings, prices: Mapping[str, ModelPrice] | None = None
) -> ModelsConfig:
    """The file ``AGENT_MODELS_FILE`` names, else :func:`builtin_config`."""
    if provider.models_file is not None:
        return load(provider.models_file)
    return builtin_config(provider, prices)
