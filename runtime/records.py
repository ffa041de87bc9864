"""Typed records the metadata store returns and the API layer serialises."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

ThreadStatus = Literal["idle", "busy", "interrupted", "error"]
RunStatus = Literal["pending", "running", "success", "error", "timeout", "interrupted"]


class Tenant(BaseModel):
    tenant_id: str
    name: str
    disabled: bool = False
    created_at: datetime


class ApiKeyRecord(BaseModel):
    """A stored key: only its public id (the prefix users see) and the hash of the whole key."""

    key_id: str
    tenant_id: str
    key_hash: str
    name: str = ""
    revoked: bool = False
    created_at: datetime


class Principal(BaseModel):
    """Who is calling: the authenticated key and its tenant."""

    tenant_id: str
    key_id: str


class ThreadRecord(BaseModel):
    thread_id: str
    tenant_id: str
    graph_id: str | None = None
    status: ThreadStatus = "idle"
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    updated_at: datetime


class RunRecord(BaseModel):
    run_id: str
    thread_id: str | None
    tenant_id: str
    assistant_id: str
    status: RunStatus = "pending"
    metadata: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    created_at: datetime
    updated_at: datetime
