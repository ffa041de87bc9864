"""Typed messages passed between the parts (and across Ray handles, which pickle them)."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage, AnyMessage
from pydantic import BaseModel, Field


class ChatRequest(BaseModel):
    """A model call as graphs and the OpenAI gateway hand it to the router."""

    alias: str = Field(description="Model alias (a fallback chain) or a provider model name.")
    messages: list[AnyMessage]
    tools: list[dict[str, Any]] = Field(
        default_factory=list, description="OpenAI-format tool schemas."
    )
    tool_choice: str | dict[str, Any] | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    stop: list[str] | None = None
    # Who the call is for (budgets, usage ledger, metrics): set by the gateway from the
    # caller's key, or from the run a graph's call belongs to (agent_runtime.core.identity).
    tenant_id: str | None = None
    key_id: str | None = None
    thread_id: str | None = None
    run_id: str | None = None
    # The HTTP request it serves, for log lines (agent_runtime.core.logs).
    request_id: str | None = None


class EmbeddingRequest(BaseModel):
    """Texts to embed, as the OpenAI gateway and the store's index hand them to the router."""

    alias: str = Field(description="Model alias (a fallback chain) or a provider model name.")
    texts: list[str]
    dimensions: int | None = Field(
        default=None, description="Length of the vectors asked for (None: the model's own)."
    )
    # Who the call is for, as for ChatRequest (budgets, usage ledger, metrics, logs).
    tenant_id: str | None = None
    key_id: str | None = None
    thread_id: str | None = None
    run_id: str | None = None
    request_id: str | None = None


class TokenUsage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class Attempt(BaseModel):
    """One model tried for a request, and what happened."""

    model: str
    outcome: str = Field(description="ok | error | circuit_open | rejected")
    error: str | None = None
    latency_ms: float = 0.0


class ChatResult(BaseModel):
    """The router's answer: the message, the model that answered, usage and timings."""

    message: AIMessage
    model: str
    usage: TokenUsage
    provider_ms: float = Field(description="Wall time spent in provider HTTP calls.")
    router_ms: float = Field(default=0.0, description="Wall time inside the router, all attempts.")
    attempts: list[Attempt] = Field(default_factory=list)
    cost_usd: float | None = Field(
        default=None, description="At the answering model's price (None: unpriced)."
    )


class EmbeddingResult(BaseModel):
    """The router's embeddings: one vector per text, in order, and who made them."""

    vectors: list[list[float]]
    model: str
    usage: TokenUsage
    provider_ms: float = Field(description="Wall time spent in provider HTTP calls.")
    router_ms: float = Field(default=0.0, description="Wall time inside the router, all attempts.")
    attempts: list[Attempt] = Field(default_factory=list)
    cost_usd: float | None = Field(
        default=None, description="At the answering model's price (None: unpriced)."
    )
