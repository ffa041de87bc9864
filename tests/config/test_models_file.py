"""The models file: schema, errors that name the file and the field, keys from the
environment, and the built-in default (equal to the repository's models.yaml)."""

from __future__ import annotations

import pickle
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import SecretStr

from agent_runtime.config.builtin_models import builtin_config
from agent_runtime.config.fake_provider_settings import FakeProviderSettings
from agent_runtime.config.models_file import (
    ModelsConfig,
    ModelsConfigError,
    ModelSpec,
    ProviderConfig,
    load,
)
from agent_runtime.config.pricing import ModelPrice
from agent_runtime.config.provider_settings import ProviderSettings
from agent_runtime.config.serve_settings import ServeSettings
from agent_runtime.config.settings import (
    BudgetSettings,
    LimitSettings,
    RuntimeSettings,
    StorageSettings,
)

ROOT = Path(__file__).resolve().parents[2]
GOOD = """
providers:
  openai: {base_url: "https://api.openai.com/v1", api_key_env: TEST_OPENAI_KEY}
  fake: {kind: fake}
models:
  gpt-4o: {provider: openai, input_per_million_usd: 2.5, output_per_million_usd: 10}
  gpt-4o-mini: {provider: openai, model_id: gpt-4o-mini-2024-07-18}
  fake-fallback: {provider: fake}
aliases:
  smart: [gpt-4o, gpt-4o-mini, fake-fallback]
"""


def write(tmp_path: Path, text: str, name: str = "models.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ModelsConfigError) as raised:
        load(write(tmp_path, text), env={"TEST_OPENAI_KEY": "sk-x"} if env is None else env)
    return raised.value.problems


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No AGENT_* variable of the machine leaks into the default settings."""
    for name in ("PROVIDER_BASE_URL", "PROVIDER_API_KEY", "MODEL_ALIASES", "MODELS_FILE"):
        monkeypatch.delenv(f"AGENT_{name}", raising=False)
    for name in ("PROVIDER_TIMEOUT_S", "PROVIDER_MAX_RETRIES", "ROUTER_DEADLINE_S"):
        monkeypatch.delenv(f"AGENT_{name}", raising=False)
    for name in ("BREAKER_FAIL_MAX", "BREAKER_RESET_TIMEOUT_S", "MODEL_PRICES"):
        monkeypatch.delenv(f"AGENT_{name}", raising=False)


def test_a_valid_file_loads_with_its_key_from_the_environment(tmp_path: Path) -> None:
    config = load(write(tmp_path, GOOD), env={"TEST_OPENAI_KEY": "sk-secret-123"})
    openai = config.providers["openai"]
    assert openai.api_key == SecretStr("sk-secret-123")
    assert "sk-secret-123" not in repr(config)
    assert "sk-secret-123" not in config.model_dump_json()
    assert config.providers["fake"].key() == "fake-key"
    assert config.models["gpt-4o"].price == ModelPrice("2.5", "10")
    assert config.models["gpt-4o-mini"].price is None
    assert config.models["gpt-4o-mini"].model_id == "gpt-4o-mini-2024-07-18"
    assert config.prices() == {"gpt-4o": ModelPrice("2.5", "10")}
    assert config.public_names() == ["smart", "gpt-4o", "gpt-4o-mini", "fake-fallback"]
    assert config.uses_fake
    # It travels to replicas by pickle, key included (Ray copies it to each one).
    assert pickle.loads(pickle.dumps(config)) == config


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            GOOD.replace("[gpt-4o, gpt-4o-mini, fake-fallback]", "[gpt-4o, gpt-5]"),
            ["models.yaml: aliases.smart[1]: unknown model 'gpt-5'"],
        ),
        (
            GOOD.replace("provider: openai, model_id", "provider: azure, model_id"),
            ["models.yaml: models.gpt-4o-mini.provider: unknown provider 'azure'"],
        ),
        (
            GOOD.replace("{provider: fake}", "{provider: fake, context_window: many}"),
            [
                "models.yaml: models.fake-fallback.context_window: "
                "Input should be a valid integer, unable to parse string as an integer"
            ],
        ),
        (
            GOOD.replace("{kind: fake}", "{kind: fake, colour: blue}"),
            ["models.yaml: providers.fake.colour: unknown field"],
        ),
        (
            GOOD.replace('base_url: "https://api.openai.com/v1", ', ""),
            ["models.yaml: providers.openai.base_url: required for an OpenAI-compatible provider"],
        ),
        (
            GOOD.replace("input_per_million_usd: 2.5, ", ""),
            [
                "models.yaml: models.gpt-4o: give both input_per_million_usd and "
                "output_per_million_usd, or none"
            ],
        ),
        (
            GOOD + "breaker: {count_statuses: [5xx, 700]}\n",
            [
                "models.yaml: breaker.count_statuses[1]: "
                "700 is not an HTTP error status (400-599) nor 4xx / 5xx"
            ],
        ),
        (
            GOOD.replace("smart:", "gpt-4o:"),
            ["models.yaml: aliases.gpt-4o: also the name of a model"],
        ),
        (
            GOOD + "default_provider: nowhere\n",
            ["models.yaml: default_provider: unknown provider 'nowhere'"],
        ),
        (
            GOOD + "default_provider: openai\n",
            [
                "models.yaml: default_provider: passing unlisted model names through needs a "
                "default_price (input_per_million_usd, output_per_million_usd): unpriced, their "
                "calls would cost nothing in the ledger and pass every budget"
            ],
        ),
        ("providers: [\n", None),
        ("- just a list\n", ["models.yaml: the file must hold a mapping (providers, models, ...)"]),
    ],
)
def test_errors_name_the_file_and_the_field(
    tmp_path: Path, text: str, expected: list[str] | None
) -> None:
    found = problems(tmp_path, text)
    if expected is None:
        assert found[0].startswith("models.yaml: line 2, column 1: "), found
    else:
        assert found == expected


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = GOOD.replace("[gpt-4o, gpt-4o-mini, fake-fallback]", "[gpt-5, gpt-6]")
    assert problems(tmp_path, text) == [
        "models.yaml: aliases.smart[0]: unknown model 'gpt-5'",
        "models.yaml: aliases.smart[1]: unknown model 'gpt-6'",
    ]


def test_keys_come_from_the_environment_only(tmp_path: Path) -> None:
    assert problems(tmp_path, GOOD, env={}) == [
        "models.yaml: providers.openai.api_key_env: environment variable TEST_OPENAI_KEY is not set"
    ]
    inline = GOOD.replace("api_key_env: TEST_OPENAI_KEY", "api_key: sk-in-the-file")
    (found,) = problems(tmp_path, inline)
    assert found.startswith("models.yaml: providers.openai.api_key: keys are never read")
    assert "sk-in-the-file" not in found
    lenient = load(write(tmp_path, GOOD), env={}, require_keys=False)
    assert lenient.providers["openai"].api_key is None


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelsConfigError, match=r"nope\.yaml: cannot read the models file"):
        load(tmp_path / "nope.yaml")


def test_the_shipped_models_yaml_is_the_builtin_default(clean_env: None) -> None:
    shipped = load(ROOT / "models.yaml", env={})
    settings = ProviderSettings(_env_file=None)
    assert shipped == builtin_config(settings)
    # ... with the budgets' default prices too (what RuntimeSettings passes).
    assert shipped == builtin_config(settings, BudgetSettings(_env_file=None).model_prices)
    assert shipped.models["fake-smart"].price == ModelPrice("2.50", "10.00")


def test_the_documented_openai_example_is_valid() -> None:
    config = load(ROOT / "docs" / "models.openai.yaml", env={"OPENAI_API_KEY": "sk-test"})
    assert config.aliases["smart"] == ["gpt-4o", "gpt-4o-mini", "fake-fallback"]
    assert config.providers["openai"].url("unused") == "https://api.openai.com/v1"
    assert (
        config.providers["fake"]
        .url("http://127.0.0.1:8000/fake-provider/v1")
        .endswith("/fake-provider/v1")
    )
    assert config.default_provider is None


def test_builtin_config_follows_the_provider_settings() -> None:
    settings = ProviderSettings(
        _env_file=None,
        provider_base_url="https://llm.example/v1",
        provider_api_key=SecretStr("sk-env"),
        provider_timeout_s=7,
        provider_max_retries=0,
        router_deadline_s=20,
        model_aliases={"smart": ["gpt-4o", "fake-fast"]},
        embedding_models=["text-embedding-3-small", "gpt-4o"],
        breaker_fail_max=3,
        breaker_reset_timeout_s=9,
    )
    config = builtin_config(settings)
    (name, provider), *_ = config.providers.items()
    assert (name, provider.kind, provider.base_url) == (
        "provider",
        "openai",
        "https://llm.example/v1",
    )
    assert provider.key() == "sk-env"
    assert (provider.timeouts.request_s, provider.timeouts.connect_s) == (7, 5)
    assert provider.retry.max_retries == 0
    assert (config.deadline_s, config.breaker.fail_max, config.breaker.reset_timeout_s) == (
        20,
        3,
        9,
    )
    # The chains' models, then the embedding models not among them.
    assert list(config.models) == ["gpt-4o", "fake-fast", "text-embedding-3-small"]
    assert config.models["gpt-4o"].price is None, "no price configured for it"
    assert config.default_provider is None, "unlisted names are refused, not passed unpriced"


def runtime_settings(**provider: object) -> RuntimeSettings:
    return RuntimeSettings(
        storage=StorageSettings(_env_file=None),
        limits=LimitSettings(_env_file=None),
        provider=ProviderSettings(_env_file=None, **provider),  # type: ignore[arg-type]
        fake=FakeProviderSettings(_env_file=None),
        serve=ServeSettings(_env_file=None),
    )


def test_runtime_settings_load_the_models_file_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_env: None
) -> None:
    monkeypatch.setenv("TEST_OPENAI_KEY", "sk-from-env")
    path = write(tmp_path, GOOD)
    monkeypatch.setenv("AGENT_MODELS_FILE", str(path))
    settings = RuntimeSettings.from_env()
    assert settings.provider.models_file == path
    assert settings.models.aliases == {"smart": ["gpt-4o", "gpt-4o-mini", "fake-fallback"]}
    assert settings.models.providers["openai"].key() == "sk-from-env"
    monkeypatch.setenv("TEST_OPENAI_KEY", "sk-changed")
    assert pickle.loads(pickle.dumps(settings)).models.providers["openai"].key() == "sk-from-env"


def test_runtime_settings_without_a_file_use_the_provider_settings(clean_env: None) -> None:
    settings = runtime_settings(model_aliases={"fast": ["fake-fast"]})
    assert settings.models.aliases == {"fast": ["fake-fast"]}
    assert settings.models.models["fake-fast"].price == ModelPrice("0.15", "0.60")
    with pytest.raises(ModelsConfigError, match="cannot read the models file"):
        runtime_settings(models_file="/nonexistent/models.yaml")


def test_a_config_can_be_built_in_code() -> None:
    config = ModelsConfig(
        providers={"p": ProviderConfig(base_url="http://llm:8000/v1")},
        models={
            "m": ModelSpec(provider="p", input_per_million_usd=Decimal(1), output_per_million_usd=2)
        },
        aliases={"a": ["m"]},
    )
    assert config.models["m"].price == ModelPrice(1, 2)
    with pytest.raises(ValueError, match="no base_url"):
        ProviderConfig(kind="fake", base_url="http://x/v1")
