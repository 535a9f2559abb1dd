"""The admin API's request and response bodies (the README, "Admin API"); answers are
the services' records, served as they are. Those of endpoints and the registry are in
:mod:`.endpoint_schemas`, of budgets in :mod:`.budget_schemas`, of batches in
:mod:`.batch_schemas`; the input field types in :mod:`relaygate.inputs`."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from relaygate.admin.budget_schemas import (
    PERIOD_FIELD,
    Amount,
    Period,
    budget_field,
)
from relaygate.inputs import Input, RowId, Text, Timestamp
from relaygate.ratelimit import MAX_LIMIT
from relaygate.services.budgets import OwnBudget
from relaygate.services.provider_keys import ProviderKeyInfo
from relaygate.services.usage import UsageRow
from relaygate.services.users import UserInfo


def _rpm(of: str) -> Any:
    return Field(
        default=None,
        gt=0,
        le=MAX_LIMIT,
        strict=True,
        description=f"Requests per minute {of}; null: no limit",
    )


def _tpm(of: str) -> Any:
    return Field(
        default=None,
        gt=0,
        le=MAX_LIMIT,
        strict=True,
        description=f"Tokens (prompt + completion) per minute {of}; null: no limit",
    )


class ModelUpdate(Input):
    """Only the fields sent are changed; any but ``enabled`` sent as null is cleared."""

    CLEARABLE = frozenset(
        (
            "alias",
            "input_cost_per_million_tokens",
            "output_cost_per_million_tokens",
            "fallback_model",
            "default_output_tokens",
        )
    )

    alias: Text | None = Field(default=None, max_length=500)
    enabled: bool | None = None
    input_cost_per_million_tokens: float | None = Field(
        default=None, ge=0, le=1e6, description="Price of a million prompt tokens; null clears"
    )
    output_cost_per_million_tokens: float | None = Field(
        default=None,
        ge=0,
        le=1e6,
        description="Price of a million completion tokens; null clears",
    )
    fallback_model: Text | None = Field(
        default=None,
        max_length=500,
        description="Public name of the model to try when every endpoint of this one fails",
    )
    default_output_tokens: int | None = Field(
        default=None,
        gt=0,
        le=10_000_000,
        strict=True,
        description="Completion tokens a budget reserves for a request stating no cap",
    )


class UserCreate(Input):
    name: Text = Field(min_length=1, max_length=200)
    email: Text | None = Field(default=None, max_length=320)
    role: Literal["admin", "user"] = "user"
    requests_per_minute: int | None = _rpm("of all the user's keys together")
    tokens_per_minute: int | None = _tpm("of all the user's keys together")
    budget: Amount | None = budget_field("of all the user's keys together")
    budget_period: Period | None = PERIOD_FIELD


class UserUpdate(Input):
    """Only the fields sent are changed; a limit sent as null is cleared."""

    CLEARABLE = frozenset(
        ("email", "requests_per_minute", "tokens_per_minute", "budget", "budget_period")
    )

    name: Text | None = Field(default=None, min_length=1, max_length=200)
    email: Text | None = Field(default=None, max_length=320)
    role: Literal["admin", "user"] | None = None
    requests_per_minute: int | None = _rpm("of all the user's keys together")
    tokens_per_minute: int | None = _tpm("of all the user's keys together")
    budget: Amount | None = budget_field("of all the user's keys together")
    budget_period: Period | None = PERIOD_FIELD
    disabled: bool | None = Field(
        default=None,
        strict=True,
        description="True revokes the user's API keys, ends their console sessions and "
        "refuses their sign-ins until set back to false",
    )


class KeyCreate(Input):
    name: Text = Field(default="key", max_length=200)
    user_id: RowId | None = None
    expires_at: Timestamp | None = None
    allowed_models: list[Text] | None = Field(
        default=None, description="Limit the key to these public model names"
    )
    requests_per_minute: int | None = _rpm("of this key")
    tokens_per_minute: int | None = _tpm("of this key")
    budget: Amount | None = budget_field("of this key")
    budget_period: Period | None = PERIOD_FIELD


class KeyUpdate(Input):
    """Only the fields sent are changed; a limit or budget sent as null is cleared."""

    CLEARABLE = frozenset(("requests_per_minute", "tokens_per_minute", "budget", "budget_period"))

    name: Text | None = Field(default=None, min_length=1, max_length=200)
    requests_per_minute: int | None = _rpm("of this key")
    tokens_per_minute: int | None = _tpm("of this key")
    budget: Amount | None = budget_field("of this key")
    budget_period: Period | None = PERIOD_FIELD


class OwnKeyCreate(Input):
    name: Text = Field(default="key", max_length=200)
    expires_at: Timestamp | None = None
    allowed_models: list[Text] | None = None
    requests_per_minute: int | None = _rpm(
        "of this key; at most (and by default) the calling key's and your user's"
    )
    tokens_per_minute: int | None = _tpm(
        "of this key; at most (and by default) the calling key's and your user's"
    )
    budget: Amount | None = budget_field("of this key (a key with a budget creates none)")
    budget_period: Period | None = PERIOD_FIELD


class GroupCreate(Input):
    name: Text = Field(min_length=1, max_length=200)
    description: Text | None = None
    budget: Amount | None = budget_field("shared by the group's members, on the models it grants")
    budget_period: Period | None = PERIOD_FIELD


class GroupUpdate(Input):
    CLEARABLE = frozenset(("description", "budget", "budget_period"))

    name: Text | None = Field(default=None, min_length=1, max_length=200)
    description: Text | None = None
    budget: Amount | None = budget_field("shared by the group's members, on the models it grants")
    budget_period: Period | None = PERIOD_FIELD


class ProviderKeySet(Input):
    api_key: Text = Field(min_length=1)


class MeOut(BaseModel):
    user: UserInfo
    groups: list[str]
    key_id: int
    models: list[str] = Field(description="Public names of the models this key may use")
    provider_keys: list[ProviderKeyInfo]
    budgets: list[OwnBudget] = Field(
        default_factory=list,
        description="The budgets that apply to this key: its own, its user's, its groups'",
    )


class UsageOut(BaseModel):
    group_by: str
    to: datetime
    rows: list[UsageRow]
    total: UsageRow
