"""OpenAI Embeddings wire format <-> the router's ``EmbeddingRequest`` / ``EmbeddingResult``.

Framework-free, as :mod:`agent_runtime.gateway.openai_compat` is for chat: the ingress's
``POST /v1/embeddings`` validates the body with :class:`EmbeddingsRequest`, hands
:func:`to_embedding_request` to the router and answers :func:`embeddings_response`.
"""

from __future__ import annotations

import base64
import struct

from agent_runtime.core.types import EmbeddingRequest, EmbeddingResult
from agent_runtime.protocol.embeddings_wire import (
    Embedding,
    EmbeddingList,
    EmbeddingsRequest,
    EmbeddingUsage,
    EncodingFormat,
)


def to_embedding_request(
    body: EmbeddingsRequest, tenant_id: str | None = None, key_id: str | None = None
) -> EmbeddingRequest:
    """The router's request for a validated OpenAI body."""
    return EmbeddingRequest(
        alias=body.model,
        texts=body.texts,
        dimensions=body.dimensions,
        tenant_id=tenant_id,
        key_id=key_id,
    )


def embeddings_response(result: EmbeddingResult, encoding_format: EncodingFormat) -> EmbeddingList:
    """The ``list`` of embeddings; ``model`` is the one that answered."""
    tokens = result.usage.input_tokens
    return EmbeddingList(
        data=[
            Embedding(
                index=index,
                embedding=_base64(vector) if encoding_format == "base64" else vector,
            )
            for index, vector in enumerate(result.vectors)
        ],
        model=result.model,
        usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens),
    )


def _base64(vector: list[float]) -> str:
    """OpenAI's base64 form: the vector as little-endian float32."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
