"""Fault profiles of the fake provider: how each model misbehaves, typed and validated.

A :class:`FaultProfile` says how one model misbehaves: latency (fixed part plus an optional
random part), errors by HTTP status, 429s with ``Retry-After``, hanging, streams cut after N
chunks, and first-token / inter-token delays of streams. A :class:`FaultTable` holds the
default profile (models without their own) and the per-model ones; it is what
``FakeProviderSettings`` configure and what the fake provider's control endpoint reads and
replaces. Configuration only: the draws live in :mod:`agent_runtime.fake.faults`.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Every delay the fake provider sleeps (drawn latency, directive, stream delays) is capped here.
MAX_DELAY_MS = 60_000.0
# Per-model random streams kept; calls of further models share one stream.
MAX_MODEL_STREAMS = 1024
_Z99 = NormalDist().inv_cdf(0.99)
_STANDARD = NormalDist()

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
