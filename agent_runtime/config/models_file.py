"""The models file: providers, their models, aliases with fallback chains, breaker policy.

A YAML file (``AGENT_MODELS_FILE``) names the providers (an OpenAI-compatible base URL, or
the built-in fake), the environment variable that holds each one's key, their timeouts and
retry policy; the models (provider, provider-side id, price per million input and output
tokens, context window, most output tokens); and the aliases graphs ask for, each an
ordered fallback chain. :func:`load` validates it and names the file and the field of
every problem, e.g. ``models.yaml: aliases.smart[1]: unknown model 'gpt-5'``.

Without a file the runtime uses :func:`agent_runtime.config.builtin_models.builtin_config`,
built from the ``AGENT_PROVIDER_*`` settings as before; the repository's ``models.yaml`` is
that same default, written out.

Keys are read from the named environment variables once, when the config is loaded (in the
launcher), kept as ``SecretStr`` and never dumped (``api_key`` is excluded from
``model_dump``); the loaded object travels to every replica. This module imports nothing of
the runtime at run time (``agent_runtime.config.settings`` imports it).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)

from agent_runtime.config.pricing import ModelPrice

FAKE_KEY = "fake-key"  # what the built-in fake provider is sent when no key is configured


class ModelsConfigError(ValueError):
    """A models file that cannot be used; ``problems`` are ``file: field: what`` lines."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Timeouts(_Strict):
    """How long a provider may take; a stalled provider never hangs a run."""

    connect_s: float = Field(default=5.0, gt=0, description="TCP/TLS connect.")
    request_s: float = Field(default=30.0, gt=0, description="A whole non-streamed call.")
    first_token_s: float = Field(
        default=30.0, gt=0, description="A stream's first token (request and headers included)."
    )
    idle_s: float = Field(default=30.0, gt=0, description="Between two chunks of a stream.")


class RetryPolicy(_Strict):
    """Retries of the same model: bounded, jittered exponential backoff, one deadline."""

    max_retries: int = Field(default=1, ge=0, le=10, description="Tries after the first.")
    backoff_initial_s: float = Field(default=0.05, ge=0, le=60)
    backoff_max_s: float = Field(default=1.0, ge=0, le=60)
    retry_statuses: tuple[int, ...] = Field(
        default=(408, 429, 502, 503, 504), description="HTTP statuses worth another try."
    )
    retry_connection_errors: bool = True
    retry_timeouts: bool = Field(
        default=False, description="A timed-out model moves on to the next one by default."
    )
    retry_after_max_s: float = Field(
        default=2.0,
        ge=0,
        le=600,
        description="A 429's Retry-After up to this is waited for; longer: the next model.",
    )


class ProviderConfig(_Strict):
    """An OpenAI-compatible endpoint (``kind: openai``) or the built-in fake (``kind: fake``)."""

    kind: Literal["openai", "fake"] = "openai"
    base_url: str | None = Field(default=None, description="Ends in /v1; not for kind fake.")
    api_key_env: str | None = Field(
        default=None, description="The environment variable holding the key."
    )
    # Resolved from api_key_env by load(); never in the file, never dumped or logged.
    api_key: SecretStr | None = Field(default=None, exclude=True, repr=False)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    max_connections: int = Field(default=200, ge=1, le=10_000)

    @model_validator(mode="after")
    def _url_matches_kind(self) -> ProviderConfig:
        if self.kind == "fake" and self.base_url is not None:
            raise ValueError("base_url: the built-in fake provider has no base_url")
        if self.kind == "openai":
            if not self.base_url:
                raise ValueError("base_url: required for an OpenAI-compatible provider")
            if not self.base_url.startswith(("http://", "https://")):
                raise ValueError("base_url: must start with http:// or https://")
        return self

    def url(self, fake_base_url: str) -> str:
        """Where to send calls: the base URL, or the built-in fake's (known at deploy time)."""
        return (self.base_url or fake_base_url).rstrip("/")

    def key(self) -> str:
        return self.api_key.get_secret_value() if self.api_key is not None else FAKE_KEY


Price = Annotated[Decimal, Field(ge=0, le=100_000)]


class ModelSpec(_Strict):
    """One provider model as the router may call it."""

    provider: str
    model_id: str | None = Field(default=None, description="Provider-side id; default: the name.")
    input_per_million_usd: Price | None = None
    output_per_million_usd: Price | None = None
    context_window: int | None = Field(default=None, ge=1)
    max_output_tokens: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _both_prices(self) -> ModelSpec:
        if (self.input_per_million_usd is None) != (self.output_per_million_usd is None):
            raise ValueError("give both input_per_million_usd and output_per_million_usd, or none")
        return self

    @property
    def price(self) -> ModelPrice | None:
        if self.input_per_million_usd is None or self.output_per_million_usd is None:
            return None
        return ModelPrice(self.input_per_million_usd, self.output_per_million_usd)


class UnlistedPrice(_Strict):
    """The price charged for a model name the config does not list (``default_provider``)."""

    input_per_million_usd: Price
    output_per_million_usd: Price

    @property
    def price(self) -> ModelPrice:
        return ModelPrice(self.input_per_million_usd, self.output_per_million_usd)


def _status_pattern(value: object) -> int | str:
    if value in ("4xx", "5xx"):
        return str(value)
    if isinstance(value, int) and not isinstance(value, bool) and 400 <= value <= 599:
        return value
    raise ValueError(f"{value!r} is not an HTTP error status (400-599) nor 4xx / 5xx")


StatusPattern = Annotated[int | str, BeforeValidator(_status_pattern)]


class BreakerPolicy(_Strict):
    """When a model's breaker opens, for how long, and which failures count."""

    fail_max: int = Field(default=5, ge=1, description="Consecutive counted failures to open.")
    reset_timeout_s: float = Field(default=30.0, gt=0, description="Open time before a trial.")
    count_statuses: tuple[StatusPattern, ...] = Field(
        default=("5xx", 401, 403, 408, 429),
        description='Statuses that count ("5xx" for all of them); 400/404/413/422 never do.',
    )
    count_timeouts: bool = True
    count_connection_errors: bool = True

    def counts_status(self, status: int) -> bool:
        family = f"{status // 100}xx"
        return status in self.count_statuses or family in self.count_statuses


class ModelsConfig(_Strict):
    """The whole models file; see the module docstring and ``docs/models.openai.yaml``."""

    providers: dict[str, ProviderConfig] = Field(min_length=1)
    models: dict[str, ModelSpec] = Field(default_factory=dict)
    aliases: dict[str, list[str]] = Field(default_factory=dict)
    breaker: BreakerPolicy = Field(default_factory=BreakerPolicy)
    deadline_s: float = Field(
        default=60.0, gt=0, le=3600, description="One request: every try, wait and fallback."
    )
    default_provider: str | None = Field(
        default=None,
        description="Where a model name that is neither an alias nor a model goes; unset: 404.",
    )
    default_price: UnlistedPrice | None = Field(
        default=None,
        description="What those unlisted models cost: required with default_provider.",
    )

    @model_validator(mode="after")
    def _references(self) -> ModelsConfig:
        problems = []
        for name, spec in self.models.items():
            if spec.provider not in self.providers:
                problems.append(f"models.{name}.provider: unknown provider {spec.provider!r}")
        for alias, chain in self.aliases.items():
            if not chain:
                problems.append(f"aliases.{alias}: an empty fallback chain")
            if alias in self.models:
                problems.append(f"aliases.{alias}: also the name of a model")
            for index, model in enumerate(chain):
                if model not in self.models:
                    problems.append(f"aliases.{alias}[{index}]: unknown model {model!r}")
            if len(set(chain)) != len(chain):
                problems.append(f"aliases.{alias}: a model appears twice")
        if self.default_provider is not None and self.default_provider not in self.providers:
            problems.append(f"default_provider: unknown provider {self.default_provider!r}")
        elif self.default_provider is not None and self.default_price is None:
            problems.append(
                "default_provider: passing unlisted model names through needs a default_price "
                "(input_per_million_usd, output_per_million_usd): unpriced, their calls would "
                "cost nothing in the ledger and pass every budget"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def uses_fake(self) -> bool:
        return any(provider.kind == "fake" for provider in self.providers.values())

    def prices(self) -> dict[str, ModelPrice]:
        """``{model: price}`` of every priced model."""
        return {name: spec.price for name, spec in self.models.items() if spec.price is not None}

    def public_names(self) -> list[str]:
        """What ``GET /v1/models`` lists: the aliases, then every configured model."""
        return [*self.aliases, *(name for name in self.models if name not in self.aliases)]


# -- loading ---------------------------------------------------------------------------


def load(
    path: str | Path, env: Mapping[str, str] | None = None, *, require_keys: bool = True
) -> ModelsConfig:
    """Read and validate a models file; keys come from ``env`` (default: the environment).

    Raises :class:`ModelsConfigError` listing every problem as ``<file>: <field>: <what>``.
    A provider of kind ``openai`` whose key variable is unset is an error unless
    ``require_keys`` is false (then it is sent no key).
    """
    name = Path(path).name
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ModelsConfigError([f"{path}: cannot read the models file ({exc.strerror})"]) from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ModelsConfigError([f"{name}: {where}{problem}"]) from exc
    if not isinstance(raw, dict):
        raise ModelsConfigError([f"{name}: the file must hold a mapping (providers, models, ...)"])
    problems = [f"{name}: {problem}" for problem in _inline_keys(raw)]
    if problems:
        raise ModelsConfigError(problems)
    try:
        config = ModelsConfig.model_validate(raw)
    except ValidationError as exc:
        raise ModelsConfigError(
            [f"{name}: {problem}" for problem in _validation_problems(exc)]
        ) from exc
    return with_keys(config, os.environ if env is None else env, name, require_keys=require_keys)


def with_keys(
    config: ModelsConfig, env: Mapping[str, str], source: str = "models", *, require_keys: bool
) -> ModelsConfig:
    """``config`` with every provider's ``api_key`` read from its ``api_key_env``."""
    providers: dict[str, ProviderConfig] = {}
    problems = []
    for name, provider in config.providers.items():
        value = env.get(provider.api_key_env, "") if provider.api_key_env else ""
        if value:
            key: SecretStr | None = SecretStr(value)
        elif provider.kind == "fake":
            key = SecretStr(FAKE_KEY)
        else:
            key = None
            if require_keys:
                what = (
                    f"environment variable {provider.api_key_env} is not set"
                    if provider.api_key_env
                    else "no api_key_env: name the environment variable that holds the key"
                )
                problems.append(f"{source}: providers.{name}.api_key_env: {what}")
        providers[name] = provider.model_copy(update={"api_key": key})
    if problems:
        raise ModelsConfigError(problems)
    return config.model_copy(update={"providers": providers})


def _inline_keys(raw: dict[Any, Any]) -> list[str]:
    providers = raw.get("providers")
    if not isinstance(providers, dict):
        return []
    return [
        f"providers.{name}.api_key: keys are never read from the file; "
        "put the key in an environment variable and name it in api_key_env"
        for name, provider in providers.items()
        if isinstance(provider, dict) and "api_key" in provider
    ]


def _validation_problems(error: ValidationError) -> list[str]:
    problems = []
    for item in error.errors():
        path = _field_path(item["loc"])
        message = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        if not path:
            # ModelsConfig's own checks: each already names its field from the top.
            problems.extend(message.split("; "))
        elif _FIELD_MESSAGE.match(message):
            # A model's check about one of its fields: "base_url: required ..."
            problems.append(f"{path}.{message}")
        else:
            problems.append(f"{path}: {message}")
    return problems


_FIELD_MESSAGE = re.compile(r"^[a-z_]+: ")


def _field_path(loc: Sequence[int | str]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.startswith(("function-", "constrained-")) or part in ("int", "str"):
            continue  # pydantic's names of validators and union members, not fields
        else:
            path += f".{part}" if path else part
    return path
