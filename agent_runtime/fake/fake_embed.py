"""The fake provider's embeddings: deterministic vectors in which similar texts lie close.

:func:`fake_embedding` hashes features of the text into ``dimensions`` coordinates (the
"hashing trick"): every word, and every character trigram of the words, adds a signed
weight to the coordinate its hash picks; the vector is then scaled to length 1. The same
text always gets the same vector (the hash is BLAKE2, not Python's salted ``hash``), texts
sharing words or spellings share coordinates, so their cosine similarity is higher, and
unrelated texts land near 0. Good enough to rank memories in tests; not a language model.

The wire side (:class:`EmbeddingsBody`, :func:`embeddings_json`) follows OpenAI's
``POST /v1/embeddings``: ``input`` a string or a list of them, ``dimensions``,
``encoding_format`` ``float`` or ``base64`` (little-endian float32, what OpenAI's Python
client asks for by default).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import struct
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agent_runtime.fake.fake_model import count_tokens

DEFAULT_DIMENSIONS = 256
MAX_DIMENSIONS = 8192
MAX_INPUTS = 2048  # OpenAI's limit of inputs per request
WORD_WEIGHT = 1.0
TRIGRAM_WEIGHT = 0.5
_WORD = re.compile(r"\w+")


def _features(text: str) -> list[tuple[str, float]]:
    words = _WORD.findall(text.lower())
    features = [(f"w:{word}", WORD_WEIGHT) for word in words]
    for word in words:
        padded = f" {word} "
        features += [(f"c:{padded[i : i + 3]}", TRIGRAM_WEIGHT) for i in range(len(padded) - 2)]
    return features or [(f"t:{text}", WORD_WEIGHT)]  # no word at all: the text itself


def fake_embedding(text: str, dimensions: int = DEFAULT_DIMENSIONS) -> list[float]:
    """``text``'s vector of length ``dimensions``, unit length."""
    vector = [0.0] * dimensions
    for feature, weight in _features(text):
        digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
        slot = int.from_bytes(digest[:4], "little") % dimensions
        vector[slot] += weight if digest[4] & 1 else -weight
    norm = math.sqrt(sum(value * value for value in vector))
    if norm == 0.0:  # features that cancelled out: any fixed unit vector will do
        return [1.0] + [0.0] * (dimensions - 1)
    return [value / norm for value in vector]


class EmbeddingsBody(BaseModel):
    """The parts of an embeddings request the fake checks; other fields are ignored."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    input: str | list[str]
    dimensions: int | None = Field(default=None, ge=1, le=MAX_DIMENSIONS)
    encoding_format: str = "float"

    @field_validator("input")
    @classmethod
    def _texts(cls, value: str | list[str]) -> str | list[str]:
        texts = [value] if isinstance(value, str) else value
        if not texts or len(texts) > MAX_INPUTS:
            raise ValueError(f"give 1 to {MAX_INPUTS} inputs")
        if not all(texts):
            raise ValueError("an input is an empty string")
        return value

    @field_validator("encoding_format")
    @classmethod
    def _format(cls, value: str) -> str:
        if value not in ("float", "base64"):
            raise ValueError("must be 'float' or 'base64'")
        return value

    @property
    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else self.input


def embeddings_json(
    model: str, vectors: Sequence[list[float]], prompt_tokens: int, encoding_format: str
) -> bytes:
    """OpenAI's ``list`` of ``embedding`` objects, vectors as floats or base64."""
    data = [
        {
            "object": "embedding",
            "index": index,
            "embedding": _base64(vector) if encoding_format == "base64" else vector,
        }
        for index, vector in enumerate(vectors)
    ]
    usage = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
    return json.dumps({"object": "list", "data": data, "model": model, "usage": usage}).encode()


def fake_embeddings(body: EmbeddingsBody) -> bytes:
    """The answer to ``body``: its texts' vectors and their token count."""
    dimensions = body.dimensions or DEFAULT_DIMENSIONS
    texts = body.texts
    vectors = [fake_embedding(text, dimensions) for text in texts]
    tokens = sum(count_tokens(len(text)) for text in texts)
    return embeddings_json(body.model, vectors, tokens, body.encoding_format)


def _base64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
