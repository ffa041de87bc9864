"""Every dashboard panel and alert rule has data in a real Prometheus scraping the stack.

A Prometheus (Debian's package; `make test` installs it when missing) scrapes the session's
stack every second with the shipped alert rules. Traffic then exercises every metric: runs
with tool calls and a fallback, a failing model, a stream (time to first token), a rate-limit
refusal, a budget refusal, a database error, a background run. Each PromQL expression of
each dashboard panel must then return at least one series, and so must each alert's
expression without its threshold (alerts stay quiet in normal traffic: what is checked is
that the expression evaluates over series that exist). The key panels are rendered to a
PNG as `python -m observability.render` does.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from agent_runtime.db.metadata import MetadataStore
from agent_runtime.tenancy.budget_rows import BudgetStore
from observability import prometheus, render
from tests.e2e.conftest import BURST, Stack, free_port
from tests.e2e.support import Api, msg

pytestmark = pytest.mark.e2e

RATE_INTERVAL = "1m"  # what the test puts in for Grafana's $__rate_interval
DEADLINE_S = 60.0
# An alert is "<expression> <comparison> <number>": the expression alone must have data.
THRESHOLD = re.compile(r"^(?P<inner>.+?)\s*(?:>=|<=|==|!=|>|<)\s*-?[0-9.]+(?:e-?\d+)?\s*$", re.S)


def dashboard_queries() -> dict[str, str]:
    """``"<dashboard> / <panel> [<ref>]"`` -> PromQL, for every target of every panel."""
    queries = {}
    for (name, title), panel in render.load_panels().items():
        assert panel.get("targets"), f"{name} / {title} has no query"
        for target in panel["targets"]:
            expr = render.grafana_to_promql(target["expr"], RATE_INTERVAL)
            queries[f"{name} / {title} [{target['refId']}]"] = expr
    return queries


def alert_queries() -> dict[str, str]:
    rules = yaml.safe_load(prometheus.ALERT_RULES.read_text())
    queries = {}
    for group in rules["groups"]:
        for rule in group["rules"]:
            match = THRESHOLD.match(" ".join(rule["expr"].split()))
            assert match, f"alert {rule['alert']} is not '<expression> <op> <number>'"
            queries[f"alert {rule['alert']}"] = match.group("inner")
    return queries


@pytest.fixture(scope="module")
def prometheus_url(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("prometheus")
    target = f"127.0.0.1:{stack.settings.serve.metrics_port}"
    # 2 s: a scrape may take no longer than its interval, and on 2 busy cores Ray's metrics
    # endpoint has taken more than 1 s to answer (the target then never came up).
    config = prometheus.write_config(workdir / "prometheus.yml", [target], scrape_interval="2s")
    port = free_port()
    log = workdir / "prometheus.log"
    process = prometheus.start(config, workdir / "data", port, log)
    url = f"http://127.0.0.1:{port}"
    try:
        prometheus.wait_ready(url, timeout_s=30)
        # Ready is not scraped: traffic before the first scrape leaves latency histograms
        # without a rate (NaN quantiles), and the rendered panel empty.
        wait_scraped(url, timeout_s=60)
        yield url
    except TimeoutError as exc:
        raise AssertionError(f"{exc}; its log:\n{log.read_text()[-2000:]}") from None
    finally:
        prometheus.stop(process)


def wait_scraped(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=url, timeout=5.0) as client:
        while time.monotonic() < deadline:
            result = client.get("/api/v1/query", params={"query": "up == 1"}).json()
            if result["data"]["result"]:
                return
            time.sleep(0.5)
        targets = client.get("/api/v1/targets").json()["data"]["activeTargets"]
    errors = [(t["scrapeUrl"], t["lastError"]) for t in targets]
    raise TimeoutError(f"Prometheus scraped no target within {timeout_s} s: {errors}")


async def traffic(stack: Stack, api: Api, store: MetadataStore, spender: Api) -> None:
    """One round of requests that touches every metric."""
    sdk = api.sdk
    thread = await sdk.threads.create()
    # react: "smart" falls back from fake-down to fake-smart; the calculator tool runs.
    await sdk.runs.wait(thread["thread_id"], "react", input=msg("what is 12 * 7"))
    await sdk.runs.wait(None, "multi_agent", input=msg("compare 2 + 2 and 3"))
    background = await sdk.runs.create(thread["thread_id"], "react", input=msg("and 3 + 4"))
    await sdk.runs.join(thread["thread_id"], background["run_id"])
    # The same thread id twice: the second insert is a database error (409 to the client).
    taken = str(uuid.uuid4())
    for _ in range(2):
        await api.http.post("/threads", json={"thread_id": taken})
    async with openai.AsyncOpenAI(
        base_url=stack.url + "/v1", api_key=api.api_key, max_retries=0, timeout=30.0
    ) as client:
        await client.chat.completions.create(model="fast", messages=msg("hi")["messages"])
        stream = await client.chat.completions.create(
            model="fast", messages=msg("stream please")["messages"], stream=True
        )
        async for _ in stream:
            pass
        with pytest.raises(openai.APIStatusError):  # every model of the chain fails
            await client.chat.completions.create(model="broken", messages=msg("x")["messages"])
    async with openai.AsyncOpenAI(
        base_url=stack.url + "/v1", api_key=spender.api_key, max_retries=0, timeout=30.0
    ) as client:
        with pytest.raises(openai.APIStatusError) as refused:
            await client.chat.completions.create(model="fast", messages=msg("hi")["messages"])
        assert refused.value.status_code == 402
    # One key, twice its burst at once: some are refused (429).
    async with httpx.AsyncClient(base_url=stack.url, timeout=30.0) as http:
        headers = {"x-api-key": spender.api_key}
        answers = await asyncio.gather(
            *(http.get("/assistants/react", headers=headers) for _ in range(2 * BURST))
        )
    assert 429 in {answer.status_code for answer in answers}


async def empty_queries(url: str, queries: dict[str, str]) -> dict[str, str]:
    """The queries (of ``queries``) that return no series; a failed query raises."""
    empty = {}
    async with httpx.AsyncClient(base_url=url, timeout=10.0) as client:
        for name, expr in queries.items():
            body = (await client.get("/api/v1/query", params={"query": expr})).json()
            assert body["status"] == "success", f"{name}: {expr}: {body.get('error')}"
            # NaN everywhere (a quantile of rates that did not move) is no data either.
            values = [item["value"][1] for item in body["data"]["result"]]
            if not any(value.lower() not in ("nan", "+inf", "-inf") for value in values):
                empty[name] = expr
    return empty


async def test_every_panel_and_alert_has_data(
    stack: Stack,
    prometheus_url: str,
    make_api: Callable[[], Awaitable[Api]],
    store: MetadataStore,
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    api, spender = await make_api(), await make_api()
    await BudgetStore(store).set_budget(spender.tenant_id, "day", "0.000001")
    queries = {**dashboard_queries(), **alert_queries()}
    # Two rounds: the first creates the series, the second moves them, so rates are > 0.
    await traffic(stack, api, store, spender)
    await asyncio.sleep(2.5)
    await traffic(stack, api, store, spender)

    empty = await empty_queries(prometheus_url, queries)
    rounds = 0
    while empty and time.monotonic() - started < DEADLINE_S:
        await asyncio.sleep(1.0)
        empty = await empty_queries(prometheus_url, empty)
        if empty and rounds < 3 and time.monotonic() - started > DEADLINE_S / 3:
            rounds += 1  # a slow first export can hide the rates: move them again
            await traffic(stack, api, store, spender)
    assert not empty, "queries without data:\n" + json.dumps(empty, indent=2)

    async with httpx.AsyncClient(base_url=prometheus_url, timeout=10.0) as client:
        groups = (await client.get("/api/v1/rules")).json()["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert len(rules) == len(alert_queries())
    assert all(rule["health"] in ("ok", "unknown") for rule in rules), rules

    panels = render.fetch(prometheus_url, minutes=3, step_s=2, rate_interval=RATE_INTERVAL)
    assert all(panel.series for panel in panels), [p.title for p in panels if not p.series]
    picture = render.draw(panels, tmp_path / "observability.png")
    assert picture.stat().st_size > 20_000
