"""``make bench``'s load: what counts as a failed run."""

from __future__ import annotations

from typing import Any

import httpx

from loadtests.bench_load import run_error


def test_run_error_accepts_only_a_final_answer() -> None:
    request = httpx.Request("POST", "http://x/threads/t/runs/wait")

    def response(status: int, body: Any) -> httpx.Response:
        return httpx.Response(status, json=body, request=request)

    answer = {"messages": [{"type": "human", "content": "hi"}, {"type": "ai", "content": "yo"}]}
    assert run_error(response(200, answer)) is None
    assert run_error(response(503, {"detail": "down"})) == "HTTP 503"
    assert run_error(response(200, {"__error__": {"error": "X"}})) == (
        "no answer in the final values"
    )
    assert run_error(response(200, [1, 2])) == "body is not a JSON object"
