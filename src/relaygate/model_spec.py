"""A model's fields that an admin may change, defined once with their bounds
(:class:`ModelUpdate`): the admin API's PATCH body, and what the console and the CLI
build; the service applies the fields a change sent. README: "Admin API", "Budgets"."""

from __future__ import annotations

from pydantic import Field

from relaygate.inputs import Input, Text


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
