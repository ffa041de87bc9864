"""Fault injection of the fake provider: typed, validated profiles and seeded, reproducible draws.

A :class:`FaultProfile` says how one model misbehaves: latency (fixed part plus an optional
random part), errors by HTTP status, 429s with ``Retry-After``, hanging, streams cut after N
chunks, and first-token / inter-token delays of streams. A :class:`FaultTable` holds the
default profile (models without their own) and the per-model ones; it is what
``FakeProviderSettings`` configure (:func:`configured_faults`) and what the fake provider's
control endpoint reads and replaces.

:class:`FaultInjector` turns the table into one :class:`FaultPlan` per call, when the call
starts. Every call of a model draws exactly three uniforms (latency, rate limit, error) from
that model's own ``random.Random`` seeded with ``f"{seed}/{model}"``: the k-th call of a
model gets the same plan whatever other models are called in between, and changing the table
restarts the streams of the models it touches, so a test that sets a profile then makes N
calls sees the same outcomes on every run. This module is pure (no HTTP, no clock).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

if TYPE_CHECKING:
    from runtime.settings import FakeProviderSettings

# Every delay the fake provider sleeps (drawn latency, directive, stream delays) is capped here.
MAX_DELAY_MS = 60_000.0
# Per-model random streams kept; calls of further models share one stream.
MAX_MODEL_STREAMS = 1024
_Z99 = NormalDist().inv_cdf(0.99)
_STANDARD = NormalDist()
_EPSILON = 1e-12

DelayMs = Annotated[float, Field(ge=0, le=MAX_DELAY_MS)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UniformLatency(_Strict):
    """Extra latency drawn uniformly from ``[low_ms, high_ms]``."""

    kind: Literal["uniform"]
    low_ms: DelayMs = 0.0
    high_ms: DelayMs

    @model_validator(mode="after")
    def _ordered(self) -> UniformLatency:
        if self.high_ms < self.low_ms:
            raise ValueError("high_ms must be >= low_ms")
        return self

    def draw(self, u: float) -> float:
        return self.low_ms + u * (self.high_ms - self.low_ms)


class NormalLatency(_Strict):
    """Extra latency from a normal distribution; a draw below 0 counts as 0."""

    kind: Literal["normal"]
    mean_ms: DelayMs
    stddev_ms: float = Field(gt=0, le=MAX_DELAY_MS)

    def draw(self, u: float) -> float:
        return max(0.0, self.mean_ms + self.stddev_ms * _STANDARD.inv_cdf(u))


class LognormalLatency(_Strict):
    """Extra latency from a lognormal distribution given by its median and 99th percentile.

    ``ln(delay)`` is normal with ``mu = ln(median_ms)`` and
    ``sigma = ln(p99_ms / median_ms) / 2.326`` (the 99th percentile of the standard normal).
    """

    kind: Literal["lognormal"]
    median_ms: float = Field(gt=0, le=MAX_DELAY_MS)
    p99_ms: float = Field(gt=0, le=MAX_DELAY_MS)

    @model_validator(mode="after")
    def _ordered(self) -> LognormalLatency:
        if self.p99_ms <= self.median_ms:
            raise ValueError("p99_ms must be > median_ms")
        return self

    @property
    def sigma(self) -> float:
        return math.log(self.p99_ms / self.median_ms) / _Z99

    def draw(self, u: float) -> float:
        return self.median_ms * math.exp(self.sigma * _STANDARD.inv_cdf(u))


LatencyDistribution = Annotated[
    UniformLatency | NormalLatency | LognormalLatency, Field(discriminator="kind")
]


class RateLimit(_Strict):
    """Answer 429 with probability ``rate`` (1: every call), telling the client to wait."""

    rate: float = Field(default=1.0, ge=0, le=1)
    retry_after_s: float = Field(
        default=1.0, ge=0, le=3600, description="Sent as Retry-After (ceil) and retry-after-ms."
    )


class FaultProfile(_Strict):
    """How one model (or every model without its own profile) misbehaves; no fault by default.

    Order within a call: ``hang``; else sleep ``latency_ms`` + a draw of
    ``latency_distribution`` (+ the request's ``[delay:<ms>]``); then 429 if ``rate_limit``
    fires, else a status of ``error_rates`` if one fires, else the answer. A streamed answer
    then waits ``first_token_delay_ms`` before its first chunk and ``inter_token_delay_ms``
    before each later one, and with ``cut_after_chunks`` closes the connection after that
    many chunks, without ``data: [DONE]``. Non-streaming answers ignore the last three.
    """

    latency_ms: DelayMs = Field(default=0.0, description="Fixed latency before the response.")
    latency_distribution: LatencyDistribution | None = Field(
        default=None, description="Random latency added to latency_ms."
    )
    error_rates: dict[int, float] = Field(
        default_factory=dict,
        description='Status -> probability, e.g. {"500": 0.1, "503": 0.05}; at most 1 in all.',
    )
    rate_limit: RateLimit | None = None
    hang: bool = Field(default=False, description="Never answer until the client disconnects.")
    cut_after_chunks: int | None = Field(
        default=None, ge=0, description="Streams: close the connection after N chunks."
    )
    first_token_delay_ms: DelayMs = 0.0
    inter_token_delay_ms: DelayMs = 0.0

    @field_validator("error_rates")
    @classmethod
    def _valid_rates(cls, rates: dict[int, float]) -> dict[int, float]:
        for status, rate in rates.items():
            if status == 429:
                raise ValueError("429 is set with rate_limit (it carries Retry-After)")
            if not 400 <= status <= 599:
                raise ValueError(f"status {status} is not an HTTP error status (400-599)")
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"rate of status {status} must be within 0..1")
        if sum(rates.values()) > 1.0 + 1e-9:
            raise ValueError("error rates add up to more than 1")
        return dict(sorted(rates.items()))


class FaultTable(_Strict):
    """The default profile and the per-model ones; a model with a profile uses only that one."""

    default: FaultProfile = Field(default_factory=FaultProfile)
    models: dict[Annotated[str, Field(min_length=1, max_length=256)], FaultProfile] = Field(
        default_factory=dict
    )

    def profile(self, model: str) -> FaultProfile:
        return self.models.get(model, self.default)

    def with_model(self, model: str, profile: FaultProfile) -> FaultTable:
        return FaultTable(default=self.default, models={**self.models, model: profile})


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """What one call does, drawn when it starts (later table changes do not touch it)."""

    hang: bool = False
    delay_ms: float = 0.0
    status: int | None = None
    retry_after_s: float | None = None
    cut_after_chunks: int | None = None
    first_token_delay_ms: float = 0.0
    inter_token_delay_ms: float = 0.0


def plan_call(profile: FaultProfile, u_latency: float, u_limit: float, u_error: float) -> FaultPlan:
    """The plan for one call of a model with ``profile``, from its three uniform draws."""
    delay_ms = profile.latency_ms
    if profile.latency_distribution is not None:
        u = min(max(u_latency, _EPSILON), 1.0 - _EPSILON)
        delay_ms += profile.latency_distribution.draw(u)
    status: int | None = None
    retry_after_s: float | None = None
    if profile.rate_limit is not None and u_limit < profile.rate_limit.rate:
        status, retry_after_s = 429, profile.rate_limit.retry_after_s
    else:
        # One draw, disjoint intervals in status order: each status has exactly its rate.
        threshold = 0.0
        for candidate, rate in profile.error_rates.items():
            threshold += rate
            if u_error < threshold:
                status = candidate
                break
    return FaultPlan(
        hang=profile.hang,
        delay_ms=min(delay_ms, MAX_DELAY_MS),
        status=status,
        retry_after_s=retry_after_s,
        cut_after_chunks=profile.cut_after_chunks,
        first_token_delay_ms=profile.first_token_delay_ms,
        inter_token_delay_ms=profile.inter_token_delay_ms,
    )


class FaultInjector:
    """The live fault table of one fake provider instance and its per-model random streams."""

    def __init__(self, configured: FaultTable, seed: int = 0) -> None:
        self._configured = configured
        self._table = configured
        self._seed = seed
        self._streams: dict[str, random.Random] = {}
        self._shared = random.Random(f"{seed}/*")

    @property
    def table(self) -> FaultTable:
        return self._table

    @property
    def configured(self) -> FaultTable:
        return self._configured

    def replace(self, table: FaultTable) -> None:
        """Use ``table`` from the next call on; every model's stream restarts."""
        self._table = table
        self._streams.clear()
        self._shared = random.Random(f"{self._seed}/*")

    def set_model(self, model: str, profile: FaultProfile) -> None:
        """Give ``model`` its own profile from the next call on; its stream restarts."""
        self._table = self._table.with_model(model, profile)
        self._streams.pop(model, None)

    def reset(self) -> None:
        """Back to the configured table, streams restarted."""
        self.replace(self._configured)

    def plan(self, model: str) -> FaultPlan:
        stream = self._stream(model)
        draws = stream.random(), stream.random(), stream.random()
        return plan_call(self._table.profile(model), *draws)

    def _stream(self, model: str) -> random.Random:
        stream = self._streams.get(model)
        if stream is None:
            if len(self._streams) >= MAX_MODEL_STREAMS:
                return self._shared
            # A str seed is hashed with SHA-512: the same stream in every process.
            stream = self._streams[model] = random.Random(f"{self._seed}/{model}")
        return stream


def configured_faults(settings: FakeProviderSettings) -> FaultTable:
    """The fault table the settings describe.

    The default profile is ``default_profile`` if set, else the one the flat settings
    describe: ``latency_ms``, ``jitter_ms`` (uniform 0..jitter), ``fail_rate`` of
    ``fail_status`` (a 429 becomes a ``rate_limit``). ``failing_models`` get the default
    profile failing every call with ``fail_status``; ``hanging_models`` hang. Entries of
    ``models`` win over both lists.
    """
    default = settings.default_profile or _flat_default(settings)
    models: dict[str, FaultProfile] = {}
    for model in settings.failing_models:
        models[model] = _always_failing(default, settings.fail_status)
    for model in settings.hanging_models:
        models[model] = FaultProfile(hang=True)
    models.update(settings.models)
    return FaultTable(default=default, models=models)


def _flat_default(settings: FakeProviderSettings) -> FaultProfile:
    distribution = (
        UniformLatency(kind="uniform", high_ms=settings.jitter_ms) if settings.jitter_ms else None
    )
    return _failing(
        FaultProfile(latency_ms=settings.latency_ms, latency_distribution=distribution),
        settings.fail_status,
        settings.fail_rate,
    )


def _always_failing(default: FaultProfile, status: int) -> FaultProfile:
    return _failing(default.model_copy(update={"error_rates": {}, "rate_limit": None}), status, 1.0)


def _failing(profile: FaultProfile, status: int, rate: float) -> FaultProfile:
    if rate <= 0:
        return profile
    if status == 429:
        return profile.model_copy(update={"rate_limit": RateLimit(rate=rate)})
    return profile.model_copy(update={"error_rates": {status: rate}})
