"""An app's auth filters (``MetadataFilter``) read the same in SQL, on Postgres and SQLite,
as in Python: ``$eq`` and plain values are exact, ``$contains`` wants a list holding each
element, JSON types are told apart; anything else is refused by name."""

from __future__ import annotations

import re
from typing import Any

import pytest

from agent_runtime.config.settings import StorageSettings
from agent_runtime.core.metadata_filter import MetadataFilter
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.runs.crons import CronCount, CronStore
from agent_runtime.runs.thread_rows import ThreadStore

ROWS: dict[str, dict[str, Any]] = {
    "ada-list": {"owner": "ada", "users": ["ada", "bob"], "n": 1, "flag": True},
    "ada-str": {"owner": "ada", "users": "ada", "n": 1.0, "flag": 1},
    "bob": {"owner": "bob", "users": ["bob"], "n": 2, "flag": False},
    "none": {"owner": None},
    "bare": {},
}
CASES: list[tuple[dict[str, Any], set[str]]] = [
    ({"owner": "ada"}, {"ada-list", "ada-str"}),
    ({"owner": {"$eq": "bob"}}, {"bob"}),
    ({"owner": None}, {"none"}),
    ({"users": {"$contains": "ada"}}, {"ada-list"}),  # a string is not a list
    ({"users": {"$contains": ["ada", "bob"]}}, {"ada-list"}),
    ({"users": {"$contains": "bob"}, "owner": "bob"}, {"bob"}),
    ({"n": 1}, {"ada-list", "ada-str"}),  # 1 is 1.0
    ({"flag": True}, {"ada-list"}),  # true is not 1
    ({"owner": "nobody"}, set()),
]


@pytest.mark.parametrize(("raw", "wanted"), CASES)
async def test_sql_and_python_agree(
    storage_settings: StorageSettings, raw: dict[str, Any], wanted: set[str]
) -> None:
    allowed = MetadataFilter.parse(raw)
    assert allowed is not None
    store = MetadataStore(storage_settings)
    await store.setup()
    try:
        names = {}
        for name, metadata in ROWS.items():
            record = await store.create_thread("t", metadata=metadata)
            names[record.thread_id] = name
        await store.create_thread("other-tenant", metadata={"owner": "ada"})
        found, _ = await ThreadStore(store).search("t", limit=100, allowed=allowed)
        counted = await ThreadStore(store).count("t", allowed=allowed)
    finally:
        await store.close()
    assert {names[t.thread_id] for t in found} == wanted
    assert counted == len(wanted)
    assert {name for name, metadata in ROWS.items() if allowed.matches(metadata)} == wanted


async def test_cron_searches_take_the_filter_too(storage_settings: StorageSettings) -> None:
    store = MetadataStore(storage_settings)
    await store.setup()
    try:
        crons = CronStore(store)
        counted = await crons.count("t", CronCount(), MetadataFilter.parse({"owner": "ada"}))
    finally:
        await store.close()
    assert counted == 0


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ({"$or": [{"a": "b"}, {"a": "c"}]}, "filter key '$or' is not supported"),
        ({"a": {"$ne": "b"}}, "one operator of $eq, $contains expected"),
        ({"a": {"$eq": {"nested": 1}}}, "not a dict"),
        ({"a": ["b"]}, "not a list"),
        (["a"], "a filter is a dict, not a list"),
    ],
)
def test_other_filters_are_refused_by_name(raw: Any, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        MetadataFilter.parse(raw)


def test_an_empty_filter_filters_nothing() -> None:
    assert MetadataFilter.parse({}) is None
