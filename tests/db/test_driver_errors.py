"""Driver exceptions are found wherever they sit in an exception's chain."""

from __future__ import annotations

import sqlite3

import psycopg
from redis.exceptions import ConnectionError as RedisConnectionError

from agent_runtime.db.driver_errors import driver_error


def test_a_driver_error_is_found_itself_or_as_a_cause_or_context() -> None:
    direct = psycopg.OperationalError("server at 10.0.0.1 refused")
    assert driver_error(direct) is direct
    try:
        try:
            raise sqlite3.OperationalError("database is locked")
        except sqlite3.OperationalError as inner:
            raise RuntimeError("the checkpoint write failed") from inner
    except RuntimeError as outer:
        assert isinstance(driver_error(outer), sqlite3.OperationalError)
    try:
        try:
            raise RedisConnectionError("redis://cache:6379 unreachable")
        except RedisConnectionError:
            raise ValueError("while handling it")  # noqa: B904 - the implicit context
    except ValueError as outer:
        assert isinstance(driver_error(outer), RedisConnectionError)


def test_other_errors_are_not_drivers() -> None:
    assert driver_error(ValueError("a graph's own bug")) is None
    assert driver_error(ConnectionError("a tool's own HTTP call")) is None
