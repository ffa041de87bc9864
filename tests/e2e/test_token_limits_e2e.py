"""A tenant's tokens per minute, enforced by the model router on the Serve stack: the
OpenAI gateway and graph runs alike are refused with 429 naming the limit once the
tenant's bucket is spent, and a request larger than the whole limit is refused outright."""

from __future__ import annotations

import httpx
import openai
import pytest
from langgraph_sdk import get_client

from agent_runtime.core.records import TenantLimits
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.tenancy.tenants import TenantStore
from tests.e2e.conftest import Stack, Tenant

pytestmark = pytest.mark.e2e

HELLO = [{"role": "user", "content": "hello tokens"}]
LIMIT = 400  # tokens per minute: room for one call bounded at 300 output tokens, not two


async def test_tokens_per_minute_refuse_the_tenants_model_calls(
    stack: Stack, tenant: Tenant, store: MetadataStore
) -> None:
    await TenantStore(store).set_limits(tenant.tenant_id, TenantLimits(tokens_per_minute=LIMIT))
    async with openai.AsyncOpenAI(
        base_url=stack.url + "/v1", api_key=tenant.api_key, max_retries=0, timeout=30.0
    ) as gateway:
        with pytest.raises(openai.APIStatusError) as too_large:
            await gateway.chat.completions.create(model="fast", messages=HELLO, max_tokens=500)
        assert too_large.value.status_code == 429
        assert "limit of 400 tokens per minute" in too_large.value.message

        # Each call reserves its prompt plus 300 and gives back what it did not use: the
        # calls go through until the tokens really used leave less than one reservation.
        used = 0
        for _ in range(40):
            try:
                answer = await gateway.chat.completions.create(
                    model="fast", messages=HELLO, max_tokens=300
                )
            except openai.APIStatusError as refused:
                spent = refused
                break
            assert answer.usage is not None
            used += answer.usage.total_tokens
        else:
            pytest.fail(f"40 calls ({used} tokens) and none refused")
        assert spent.status_code == 429
        assert "tokens per minute" in spent.message
        assert int(spent.response.headers["retry-after"]) >= 1
        assert 0 < used <= LIMIT

    # A graph's model call draws on the same bucket: its run fails on the refusal.
    sdk = get_client(url=stack.url, api_key=tenant.api_key)
    thread = await sdk.threads.create()
    with pytest.raises(httpx.HTTPStatusError) as run_refused:
        await sdk.runs.wait(thread["thread_id"], "react", input={"messages": HELLO})
    assert run_refused.value.response.status_code == 429
    assert run_refused.value.response.json()["error"] == "rate_limited"
