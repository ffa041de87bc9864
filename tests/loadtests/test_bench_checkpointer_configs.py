"""``make bench-checkpointer``'s Postgres configurations: each in a schema of its own."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from loadtests.bench_checkpointer_configs import with_search_path


def test_search_path_goes_into_the_url_options() -> None:
    url = with_search_path("postgresql://u@h:5432/db?sslmode=disable", "bench_ckpt_x")
    query = parse_qs(urlsplit(url).query)
    assert query == {"sslmode": ["disable"], "options": ["-c search_path=bench_ckpt_x"]}
    assert urlsplit(url).path == "/db"
