"""SSE bytes parsed exactly as the official SDK parses them (its own line and event decoders)."""

from __future__ import annotations

from langgraph_sdk.schema import StreamPart
from langgraph_sdk.sse import BytesLineDecoder, SSEDecoder


def decode(stream: bytes, chunk_size: int | None = None) -> list[StreamPart]:
    """Parse bytes exactly as the SDK does, optionally fed in small pieces."""
    lines = BytesLineDecoder()
    events = SSEDecoder()
    pieces = (
        [stream]
        if chunk_size is None
        else [stream[i : i + chunk_size] for i in range(0, len(stream), chunk_size)]
    )
    parts: list[StreamPart] = []
    raw = [line for piece in pieces for line in lines.decode(piece)] + lines.flush()
    for line in [*raw, b""]:
        part = events.decode(line=bytes(line).rstrip(b"\n"))
        if part is not None and (part.event or events.has_data):
            parts.append(part)
    return parts
