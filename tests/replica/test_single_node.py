"""SQLite on a cluster of several nodes is refused at a replica's start, with what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_runtime.config.settings import StorageSettings
from agent_runtime.replica.single_node import SingleNodeStorage, refuse_sqlite_across_nodes


def test_sqlite_is_refused_on_several_nodes_and_says_what_to_configure(tmp_path: Path) -> None:
    sqlite = StorageSettings(data_dir=tmp_path)
    refuse_sqlite_across_nodes(sqlite, nodes=1)
    with pytest.raises(SingleNodeStorage) as refused:
        refuse_sqlite_across_nodes(sqlite, nodes=3)
    assert "3 nodes" in refused.value.message
    assert "AGENT_DATABASE_URL=postgresql://" in refused.value.message


def test_postgres_serves_any_number_of_nodes(postgres_url: str) -> None:
    refuse_sqlite_across_nodes(StorageSettings(database_url=postgres_url), nodes=5)
