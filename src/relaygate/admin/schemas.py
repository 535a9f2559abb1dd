"""The admin API's request and response bodies (the README, "Admin API"), and the
field types that keep what a client sends within what the database can store. Those of
endpoints and the registry are in :mod:`.endpoint_schemas`, of budgets in
:mod:`.budget_schemas`, of batches in :mod:`.batch_schemas`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from relaygate.admin.budget_schemas import (
    PERIOD_FIELD,
    Amount,
    BudgetOut,
    OwnBudgetOut,
    Period,
    budget_field,
)
from relaygate.ratelimit import MAX_LIMIT

ID_MAX = 2**31 - 1
"""The largest row id: ids are INTEGER columns, 32-bit on PostgreSQL."""

RowId = Annotated[int, Field(ge=1, le=ID_MAX)]
"""A row id in a path, a query or a body: anything else is a 400, not a database error."""


def _storable(value: str) -> str:
    if "\x00" in value:
        raise PydanticCustomError("string_nul", "must not contain NUL (\\u0000) characters")
    return value


Text = Annotated[str, AfterValidator(_storable)]
"""A string any supported database can store: PostgreSQL refuses NUL characters. Give
a field stored in a VARCHAR column its length too (``Field(max_length=...)``)."""


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise PydanticCustomError(
            "datetime_range", "must fall within the years 1 to 9999 in UTC"
        ) from None


Timestamp = Annotated[datetime, AfterValidator(_utc)]
"""A point in time, converted to UTC (one without a zone is taken as UTC): a time whose
conversion leaves Python's years 1 to 9999 is a 400, not an OverflowError."""


class Input(BaseModel):
    """A request body: unknown fields are refused. For a PATCH body, :meth:`changes`
    gives what it changes."""

    model_config = ConfigDict(extra="forbid")
    CLEARABLE: ClassVar[frozenset[str]] = frozenset()
    """The fields a PATCH may send as null to clear them; null elsewhere leaves the
    field as it is."""

    def changes(self) -> dict[str, Any]:
        """The fields this PATCH body sent, as keyword arguments of a service's update:
        a null one is dropped, unless it is :attr:`CLEARABLE` (it then clears)."""
        sent = self.model_dump(include=self.model_fields_set)
        return {k: v for k, v in sent.items() if v is not None or k in self.CLEARABLE}


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


class ModelConflictOut(BaseModel):
    """Another endpoint's model holds this model's public name, so this one serves nothing."""

    name: str = Field(description="The public name in dispute")
    held_by_model_id: int
    held_by_endpoint_id: int
    held_by_endpoint_name: str


class ModelOut(BaseModel):
    id: int
    endpoint_id: int
    upstream_id: str
    alias: str | None
    status: Literal["online", "offline"]
    enabled: bool
    owned_by: str | None
    display_name: str | None
    context_window: int | None
    max_output_tokens: int | None
    created: datetime | None
    capabilities: list[str]
    fallback_model: str | None
    input_cost_per_million_tokens: float | None
    output_cost_per_million_tokens: float | None
    default_output_tokens: int | None = None
    first_seen_at: datetime
    last_seen_at: datetime
    conflict: ModelConflictOut | None = Field(
        description="Set when the model serves nothing: another endpoint's model holds its "
        "public name (give both one alias, or their endpoints one pool, to pool them)"
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


class UserOut(BudgetOut):
    id: int
    name: str
    email: str | None
    role: str
    disabled: bool = False
    created_at: datetime
    requests_per_minute: int | None
    tokens_per_minute: int | None


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


class KeyOut(BudgetOut):
    id: int
    name: str
    user_id: int
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    allowed_models: list[str] | None
    requests_per_minute: int | None
    tokens_per_minute: int | None


class KeyCreated(KeyOut):
    key: str = Field(description="The API key itself, shown this once")


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


class GroupOut(BudgetOut):
    id: int
    name: str
    description: str | None
    builtin: bool
    created_at: datetime
    users: list[int]
    models: list[int]
    endpoints: list[int]


class ProviderKeySet(Input):
    api_key: Text = Field(min_length=1)


class ProviderKeyOut(BaseModel):
    endpoint_id: int
    endpoint_name: str
    api_key_hint: str | None
    created_at: datetime
    updated_at: datetime


class MeOut(BaseModel):
    user: UserOut
    groups: list[str]
    key_id: int
    models: list[str] = Field(description="Public names of the models this key may use")
    provider_keys: list[ProviderKeyOut]
    budgets: list[OwnBudgetOut] = Field(
        default_factory=list,
        description="The budgets that apply to this key: its own, its user's, its groups'",
    )


class UsageRowOut(BaseModel):
    """One group: ``group`` is the user, key or endpoint id, the model name or the day."""

    group: int | str | None
    name: str | None
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: float
    audio_seconds: float = 0.0


class UsageOut(BaseModel):
    group_by: str
    to: datetime
    rows: list[UsageRowOut]
    total: UsageRowOut
