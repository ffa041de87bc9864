"""Cost controls on the Serve stack: a budget refuses model calls (402) from the OpenAI
gateway and from graph runs alike, and every call lands in the usage ledger."""

from __future__ import annotations

import httpx
import openai
import pytest
from langgraph_sdk import get_client

from agent_runtime.db.metadata import MetadataStore
from agent_runtime.tenancy.budget_rows import BudgetStore
from tests.e2e.conftest import Stack, Tenant

pytestmark = pytest.mark.e2e

HELLO = [{"role": "user", "content": "hello budget"}]


async def test_a_spent_budget_refuses_gateway_and_run_calls(
    stack: Stack, tenant: Tenant, store: MetadataStore
) -> None:
    budgets = BudgetStore(store)
    # Too little for one call's worst case (the whole prompt plus 4096 output tokens).
    await budgets.set_budget(tenant.tenant_id, "day", "0.001")
    async with openai.AsyncOpenAI(
        base_url=stack.url + "/v1", api_key=tenant.api_key, max_retries=0, timeout=30.0
    ) as gateway:
        with pytest.raises(openai.APIStatusError) as refused:
            await gateway.chat.completions.create(model="fast", messages=HELLO)
    assert refused.value.status_code == 402
    assert "daily" in refused.value.message and "resets at" in refused.value.message

    sdk = get_client(url=stack.url, api_key=tenant.api_key)
    thread = await sdk.threads.create()
    with pytest.raises(httpx.HTTPStatusError) as run_refused:
        await sdk.runs.wait(thread["thread_id"], "react", input={"messages": HELLO})
    assert run_refused.value.response.status_code == 402
    assert run_refused.value.response.json()["error"] == "budget_exceeded"


async def test_calls_are_metered_per_run_and_reported(stack: Stack, tenant: Tenant) -> None:
    sdk = get_client(url=stack.url, api_key=tenant.api_key)
    thread = await sdk.threads.create()
    await sdk.runs.wait(thread["thread_id"], "react", input={"messages": HELLO})
    headers = {"x-api-key": tenant.api_key}
    async with httpx.AsyncClient(base_url=stack.url, timeout=30.0) as http:
        usage = (await http.get("/usage", params={"period": "day"}, headers=headers)).json()
    # react's one model call goes through "smart": fake-down fails, fake-smart answers.
    by_model = {row["model"]: row for row in usage["rows"]}
    assert by_model["fake-smart"]["calls"] == 1
    assert by_model["fake-smart"]["cost_usd"] > 0
    assert usage["totals"]["calls"] >= 1
