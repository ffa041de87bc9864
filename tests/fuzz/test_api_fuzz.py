"""Fuzz the HTTP API against its own OpenAPI document (schemathesis).

Every operation of ``/openapi.json`` gets ``EXAMPLES`` generated requests that fit the
schema and ``EXAMPLES // 2`` that break it (at least ``MIN_CASES`` in all), sent over a
real socket to the real app and runtime (tests/fuzz/harness.py) with a valid key and the
admin key. Any 5xx, any status the document does not list, any body or content type that
breaks the documented schema fails the test, with a reproduction of each failure.

Bounded and repeatable: a fixed seed per operation, no example database, no shrinking
(the first failing example is reported as generated); about a minute on 2 cores.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import hypothesis
import hypothesis.errors
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.fuzz.harness import Served, served_stack

EXAMPLES = 16
MIN_CASES = 1000
SEED = 20261202
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def stack() -> Iterator[Served]:
    with served_stack() as served:
        yield served


def _run(operation: Any, mode: GenerationMode, examples: int, stack: Served) -> int:
    session = requests.Session()
    sent = 0

    @hypothesis.seed(SEED)
    @hypothesis.settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        derandomize=False,
    )
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def fuzz(case: schemathesis.Case) -> None:
        nonlocal sent
        sent += 1
        response = case.call(base_url=stack.url, session=session, headers=stack.headers, timeout=30)
        case.validate_response(response, checks=CHECKS, headers=stack.headers)

    try:
        fuzz()
    except hypothesis.errors.Unsatisfiable:
        if mode == GenerationMode.POSITIVE:
            raise  # (negative: an operation with nothing to break, e.g. GET /ok)
    finally:
        session.close()
    return sent


def _describe(failure: BaseException) -> str:
    if isinstance(failure, BaseExceptionGroup):
        return "; ".join(_describe(e) for e in failure.exceptions) + f"\n{failure}"
    return f"{type(failure).__name__}: {failure}"


def test_no_5xx_and_every_answer_fits_the_schema(stack: Served) -> None:
    schema = schemathesis.openapi.from_url(f"{stack.url}/openapi.json")
    started = time.monotonic()
    sent = 0
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 60
    for operation in operations:
        for mode, examples in (
            (GenerationMode.POSITIVE, EXAMPLES),
            (GenerationMode.NEGATIVE, EXAMPLES // 2),
        ):
            try:
                sent += _run(operation, mode, examples, stack)
            except (Exception, BaseExceptionGroup) as failure:  # report every operation
                failures.append(f"{operation.label} [{mode.value}]: {_describe(failure)}")
    elapsed = time.monotonic() - started
    assert not stack.errors, stack.errors
    assert not failures, "\n\n".join(failures)
    assert sent >= MIN_CASES, f"only {sent} cases in {elapsed:.0f} s"
    print(f"fuzz: {sent} cases over {len(operations)} operations in {elapsed:.0f} s")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        (
            "POST",
            "/v1/chat/completions",
            {"model": "fast", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        ),
        (
            "POST",
            "/runs/stream",
            {
                "assistant_id": "react",
                "input": {"messages": [{"role": "user", "content": "hi"}]},
                "stream_mode": ["values", "messages-tuple"],
            },
        ),
    ],
)
def test_streams_fit_the_documented_event_schema(
    stack: Served, method: str, path: str, body: dict[str, Any]
) -> None:
    # The random cases above reach a 200 stream only by chance; these always do, so a
    # stream that breaks its documented per-event schema fails on every run.
    schema = schemathesis.openapi.from_url(f"{stack.url}/openapi.json")
    case = schema[path][method].Case(body=body, media_type="application/json")
    with requests.Session() as session:
        response = case.call(base_url=stack.url, session=session, headers=stack.headers, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"][0].startswith("text/event-stream")
    assert response.text.count("data:") >= 2
    case.validate_response(response, checks=CHECKS, headers=stack.headers)
