"""The admin API's request and response bodies (the README, "Admin API"); answers are
the services' records, served as they are. Those of endpoints and the registry are in
:mod:`.endpoint_schemas`, of batches in :mod:`.batch_schemas`; the bodies that create or
change users, keys and groups in :mod:`relaygate.account_spec`, of models in
:mod:`relaygate.model_spec`; the input field types in :mod:`relaygate.inputs`."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from relaygate.inputs import Input, Text
from relaygate.services.budgets import OwnBudget
from relaygate.services.provider_keys import ProviderKeyInfo
from relaygate.services.usage import UsageRow
from relaygate.services.users import UserInfo


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
