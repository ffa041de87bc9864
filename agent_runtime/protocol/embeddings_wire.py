"""OpenAI Embeddings wire models: ``POST /v1/embeddings``'s body and its answer.

Pydantic only: :mod:`agent_runtime.gateway.openai_embeddings` turns the body into the
router's ``EmbeddingRequest`` and its result back into :class:`EmbeddingList`. ``input`` is a
string or a list of strings (OpenAI's token-id arrays are not accepted: the runtime does
not tokenize); ``encoding_format`` ``base64`` is what OpenAI's Python client asks for when
the caller names none.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_EMBEDDING_INPUTS = 2048  # OpenAI's limit of inputs per request
EncodingFormat = Literal["float", "base64"]


class EmbeddingsRequest(BaseModel):
    # Clients send fields this gateway does not use (user, ...): accept, ignore.
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    input: str | list[str] = Field(
        description=f"A text, or 1 to {MAX_EMBEDDING_INPUTS} texts; none may be empty."
    )
    dimensions: int | None = Field(default=None, ge=1)
    encoding_format: EncodingFormat = "float"

    @field_validator("input")
    @classmethod
    def _texts(cls, value: str | list[str]) -> str | list[str]:
        texts = [value] if isinstance(value, str) else value
        if not 1 <= len(texts) <= MAX_EMBEDDING_INPUTS:
            raise ValueError(f"give 1 to {MAX_EMBEDDING_INPUTS} inputs")
        if not all(texts):
            raise ValueError("an input is an empty string")
        return value

    @property
    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str = Field(description="Floats, or base64 little-endian float32.")


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage
