"""JSON log lines carry the request, tenant, thread and run of the code that wrote them."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest

from agent_runtime.core import logs


def capture(name: str = "agent_runtime.test_logs") -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    logs.install("DEBUG", [handler], loggers=[name])
    return logging.getLogger(name), stream


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_every_line_names_its_context_and_nothing_leaks_out() -> None:
    logger, stream = capture()
    logger.info("outside")
    with logs.bind(request_id="req-1", tenant_id="acme"):
        logger.info("request")
        with logs.bind(thread_id="th-1", run_id="run-1"):
            logger.warning("run %s", "step")
        logger.info("request again")
    logger.info("outside again")
    found = lines(stream)
    assert [line["message"] for line in found] == [
        "outside",
        "request",
        "run step",
        "request again",
        "outside again",
    ]
    ids = [tuple(line[name] for name in logs.ID_FIELDS) for line in found]
    assert ids == [
        (None, None, None, None),
        ("req-1", "acme", None, None),
        ("req-1", "acme", "th-1", "run-1"),
        ("req-1", "acme", None, None),
        (None, None, None, None),
    ]
    assert found[2]["level"] == "WARNING" and found[2]["logger"] == "agent_runtime.test_logs"
    assert str(found[0]["ts"]).endswith("Z")


async def test_ids_filled_in_by_another_task_reach_the_opener() -> None:
    """The ingress opens the context in its middleware; the key check (a dependency that
    FastAPI runs in a task of its own) fills in the tenant; the last line has it."""
    logger, stream = capture()

    async def authenticate() -> None:
        logs.update(tenant_id="acme", thread_id=None)

    with logs.bind(request_id="req-2"):
        await asyncio.create_task(authenticate())
        logger.info("done")
    assert lines(stream)[-1]["tenant_id"] == "acme"
    logs.update(tenant_id="nobody")  # outside any context: nothing to fill in
    assert logs.current() is None


def test_exceptions_are_one_line_and_unknown_fields_are_refused() -> None:
    logger, stream = capture()
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")
    (line,) = lines(stream)
    assert "ValueError: boom" in str(line["exc_info"])
    with pytest.raises(TypeError), logs.bind(user="x"):
        pass


def test_serve_set_request_id_is_kept_when_the_context_has_none() -> None:
    record = logging.LogRecord("ray.serve", logging.INFO, __file__, 1, "m", None, None)
    record.request_id = "from-serve"
    logs.ContextFilter().filter(record)
    assert record.request_id == "from-serve" and record.tenant_id is None  # type: ignore[attr-defined]
    with logs.bind(request_id="ours", tenant_id="acme"):
        logs.ContextFilter().filter(record)
    assert record.request_id == "ours" and record.tenant_id == "acme"  # type: ignore[attr-defined]


def test_install_is_idempotent() -> None:
    handler = logging.StreamHandler(io.StringIO())
    for _ in range(3):
        logs.install("INFO", [handler], loggers=["agent_runtime.idempotent"])
    logger = logging.getLogger("agent_runtime.idempotent")
    assert logger.handlers == [handler]
    assert sum(isinstance(f, logs.ContextFilter) for f in handler.filters) == 1
    assert not logger.propagate
