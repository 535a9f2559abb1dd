"""The admin API's bodies for endpoints and the registry: what an operator sends to
create, change or test an endpoint, and the endpoint, sync and registry objects it gets
back."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from relaygate.endpoint_spec import EndpointSpec, EndpointUpdate
from relaygate.inputs import Input, Text
from relaygate.sync.service import SyncResult

__all__ = [
    "EndpointCreate",
    "EndpointDeleted",
    "EndpointUpdate",
    "EndpointValidate",
    "RegistryRefreshOut",
    "ValidationOut",
]


class EndpointCreate(EndpointSpec):
    """A new endpoint, and whether to sync it at once."""

    sync: bool = Field(default=True, description="Sync the endpoint's models right away")


class EndpointValidate(Input):
    type: Text = "openai"
    url: Text = Field(max_length=2000, examples=["https://api.openai.com/v1"])
    api_key: Text | None = None
    auth_header: Text | None = None
    auth_prefix: Text | None = None


class EndpointDeleted(BaseModel):
    id: int
    deleted: bool = True
    models_deleted: int


class ValidationOut(BaseModel):
    ok: bool
    models: list[str]
    error: str | None


class RegistryRefreshOut(BaseModel):
    refreshed_at: datetime
    results: list[SyncResult]
