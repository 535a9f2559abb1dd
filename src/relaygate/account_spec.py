"""The fields of users, API keys and groups, defined once with their bounds: what a
create may send and what a change may send (only the fields a change sent are applied:
:meth:`relaygate.inputs.Input.changes`). The admin API takes them as its bodies; the
console and the CLI build them from their forms and options; the services apply them.
README: "Admin API", "Budgets", "Rate limits"."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from relaygate.budget import MAX_BUDGET
from relaygate.inputs import Input, RowId, Text, Timestamp
from relaygate.ratelimit import MAX_LIMIT

Amount = Annotated[float, Field(strict=True)] | Annotated[int, Field(strict=True)]
"""A number (a JSON boolean or string is refused)."""


def budget_field(of: str) -> Any:
    """A body's ``budget`` field, its description saying whose spend it bounds (``of``)."""
    return Field(
        default=None,
        ge=0,
        le=MAX_BUDGET,
        allow_inf_nan=False,
        description=f"Most spend per budget_period {of}, in the prices' currency; null: none",
    )


Period = Literal["daily", "weekly", "monthly", "total"]
PERIOD_FIELD = Field(
    default=None,
    description="daily, weekly (from Monday), monthly (calendar, UTC) or total; default monthly",
)


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


USER_SCOPE = "of all the user's keys together"
KEY_SCOPE = "of this key"
GROUP_SCOPE = "shared by the group's members, on the models it grants"


class UserLimits(Input):
    """A user's rate limits and budget, as a create or a change sends them."""

    requests_per_minute: int | None = _rpm(USER_SCOPE)
    tokens_per_minute: int | None = _tpm(USER_SCOPE)
    budget: Amount | None = budget_field(USER_SCOPE)
    budget_period: Period | None = PERIOD_FIELD


class UserCreate(UserLimits):
    """A new user; a limit or budget left out is none (an admin's own limits aside)."""

    name: Text = Field(min_length=1, max_length=200)
    email: Text | None = Field(default=None, max_length=320)
    role: Literal["admin", "user"] = "user"


class UserUpdate(UserLimits):
    """Only the fields sent are changed; a limit sent as null is cleared."""

    CLEARABLE = frozenset(
        ("email", "requests_per_minute", "tokens_per_minute", "budget", "budget_period")
    )

    name: Text | None = Field(default=None, min_length=1, max_length=200)
    email: Text | None = Field(default=None, max_length=320)
    role: Literal["admin", "user"] | None = None
    disabled: bool | None = Field(
        default=None,
        strict=True,
        description="True revokes the user's API keys, ends their console sessions and "
        "refuses their sign-ins until set back to false",
    )


class KeyLimits(Input):
    """A key's rate limits and budget, as an admin's create or change sends them."""

    requests_per_minute: int | None = _rpm(KEY_SCOPE)
    tokens_per_minute: int | None = _tpm(KEY_SCOPE)
    budget: Amount | None = budget_field(KEY_SCOPE)
    budget_period: Period | None = PERIOD_FIELD


class NewKey(Input):
    """What any new key is made with besides its limits."""

    name: Text = Field(default="key", max_length=200)
    expires_at: Timestamp | None = None
    allowed_models: list[Text] | None = Field(
        default=None, description="Limit the key to these public model names"
    )


class KeyCreate(NewKey, KeyLimits):
    """An admin's new key, for ``user_id`` (default: the admin's own user)."""

    user_id: RowId | None = None


class KeyUpdate(KeyLimits):
    """Only the fields sent are changed; a limit or budget sent as null is cleared."""

    CLEARABLE = frozenset(("requests_per_minute", "tokens_per_minute", "budget", "budget_period"))

    name: Text | None = Field(default=None, min_length=1, max_length=200)


OWN_KEY_SCOPE = "of this key; at most (and by default) the calling key's and your user's"


class OwnKeyCreate(NewKey):
    """A key a user makes for themselves (``/me/keys``)."""

    requests_per_minute: int | None = _rpm(OWN_KEY_SCOPE)
    tokens_per_minute: int | None = _tpm(OWN_KEY_SCOPE)
    budget: Amount | None = budget_field("of this key (a key with a budget creates none)")
    budget_period: Period | None = PERIOD_FIELD


class GroupBudget(Input):
    """A group's budget, as a create or a change sends it."""

    budget: Amount | None = budget_field(GROUP_SCOPE)
    budget_period: Period | None = PERIOD_FIELD


class GroupCreate(GroupBudget):
    """A new group, with no members or grants yet."""

    name: Text = Field(min_length=1, max_length=200)
    description: Text | None = None


class GroupUpdate(GroupBudget):
    """Only the fields sent are changed; a description or budget sent as null is cleared."""

    CLEARABLE = frozenset(("description", "budget", "budget_period"))

    name: Text | None = Field(default=None, min_length=1, max_length=200)
    description: Text | None = None
