"""The key CLI issues keys that authenticate, and revokes them, on both backends."""

from __future__ import annotations

import pytest

from runtime.admin import main
from runtime.auth import Authenticator, parse_key
from runtime.errors import Unauthorized
from runtime.settings import StorageSettings
from runtime.storage import MetadataStore


@pytest.fixture
def cli_env(storage_settings: StorageSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in storage_settings.model_dump(exclude_none=True).items():
        monkeypatch.setenv(f"AGENT_{name.upper()}", str(value))


async def test_create_then_revoke_key(
    cli_env: None, storage_settings: StorageSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    # The CLI runs its own event loop, as it does from a shell.
    assert await asyncio.to_thread(main, ["create-key", "--tenant", "acme", "--name", "ci"]) == 0
    raw = capsys.readouterr().out.strip()
    store = MetadataStore(storage_settings)
    await store.setup()
    try:
        principal = await Authenticator(store, cache_ttl_s=0).authenticate(raw)
        assert principal.tenant_id == "acme"
        assert await asyncio.to_thread(main, ["revoke-key", parse_key(raw)]) == 0
        with pytest.raises(Unauthorized):
            await Authenticator(store, cache_ttl_s=0).authenticate(raw)
    finally:
        await store.close()
