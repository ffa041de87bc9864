"""The admin CLI on both backends: tenants, keys (shown once, scoped, rotated, revoked),
limits and the audit log it writes; and its two entry points."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from agent_runtime.cli.admin import main
from agent_runtime.config.settings import StorageSettings
from agent_runtime.core.errors import Unauthorized
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.tenancy.auth import Authenticator, parse_key


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


async def cli(*argv: str) -> int:
    # The CLI runs its own event loop, as it does from a shell.
    return await asyncio.to_thread(main, list(argv))


async def test_tenants_keys_limits_and_audit_from_the_cli(
    cli_env: None, storage_settings: StorageSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await cli("create-tenant", "--tenant", "acme", "--name", "Acme") == 0
    assert await cli("create-tenant", "--tenant", "acme") == 1  # exists: a message
    assert "already exists" in capsys.readouterr().err
    assert await cli("create-key", "--tenant", "acme", "--name", "ops", "--scope", "admin") == 0
    captured = capsys.readouterr()
    raw = captured.out.strip()
    assert "shown once" in captured.err and "scopes admin" in captured.err
    assert raw not in captured.err
    key_id = parse_key(raw)
    assert await cli("disable-tenant", "acme") == 0
    assert await cli("list-tenants") == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0] == "tenant_id\tname\tstate\tcreated_at"
    assert listing[1].startswith("acme\tAcme\tdisabled\t")
    assert await cli("enable-tenant", "acme") == 0

    assert await cli("rotate-key", key_id) == 0
    rotated = capsys.readouterr().out.strip()
    assert parse_key(rotated) == key_id and rotated != raw
    store = MetadataStore(storage_settings)
    await store.setup()
    try:
        auth = Authenticator(store, cache_ttl_s=0)
        assert (await auth.authenticate(rotated)).scopes == ("admin",)
        with pytest.raises(Unauthorized):
            await auth.authenticate(raw)
        record = await store.get_key(key_id)
        assert record is not None
        key_hash = record.key_hash
    finally:
        await store.close()

    assert await cli("list-keys", "--tenant", "acme") == 0
    keys = capsys.readouterr().out
    assert keys.splitlines()[0] == "key_id\tprefix\tname\tscopes\tcreated_at\tstate"
    fields = keys.splitlines()[1].split("\t")
    assert fields[:4] == [key_id, f"ar_{key_id}_...", "ops", "admin"]
    assert fields[5] == "active"
    for secret in (raw, rotated, key_hash, rotated.split("_", 2)[2]):
        assert secret not in keys

    assert await cli("set-limits", "--tenant", "acme", "--requests-per-minute", "600") == 0
    assert await cli("get-limits", "--tenant", "acme") == 0
    assert capsys.readouterr().out.splitlines() == [
        "requests_per_minute\ttokens_per_minute\tmax_concurrent_runs\tmax_queued_runs",
        "600\tdefault\tdefault\tdefault",
    ]
    assert await cli("get-limits", "--tenant", "nobody") == 1

    assert await cli("audit", "--tenant", "acme") == 0
    audit = capsys.readouterr().out
    actions = [line.split("\t")[4] for line in audit.splitlines()[1:]]
    assert actions == [
        "limits.set",
        "key.rotate",
        "tenant.enable",
        "tenant.disable",
        "key.create",
        "tenant.create",
    ]
    assert {line.split("\t")[2] for line in audit.splitlines()[1:]} == {"cli"}
    for secret in (raw, rotated, key_hash):
        assert secret not in audit
    assert await cli("audit", "--action", "key.", "--limit", "1") == 0
    assert [line.split("\t")[4] for line in capsys.readouterr().out.splitlines()[1:]] == [
        "key.rotate"
    ]


async def test_the_console_script_and_module_entry_point(tmp_path: Path) -> None:
    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["agent-runtime"] == "agent_runtime.cli.admin:main"
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "agent_runtime.cli.admin", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    assert done.returncode == 0, done.stderr
    for command in ("create-tenant", "rotate-key", "set-limits", "audit", "set-budget"):
        assert command in done.stdout
