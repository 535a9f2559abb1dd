"""What client input is checked with (the admin API's bodies, the config file's
endpoints): the base of input models (unknown fields refused; a PATCH's changes from the
fields it sent) and field types that keep a value within what the database can store.
Failures are pydantic's ``ValidationError``."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

ID_MAX = 2**31 - 1
"""The largest row id: ids are INTEGER columns, 32-bit on PostgreSQL."""

RowId = Annotated[int, Field(ge=1, le=ID_MAX)]
"""A row id in a path, a query or a body: anything else is a 400, not a database error."""


_CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f]")


def has_control_character(value: str) -> bool:
    """Whether ``value`` holds a control character (U+0000 to U+001F, U+007F): no model
    name or request id has one, and PostgreSQL refuses the NUL among them in text."""
    return _CONTROL_CHARACTER.search(value) is not None


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


InputT = TypeVar("InputT", bound="Input")


class Input(BaseModel):
    """A request body: unknown fields are refused. For a PATCH body, :meth:`changes`
    gives what it changes."""

    model_config = ConfigDict(extra="forbid")
    CLEARABLE: ClassVar[frozenset[str]] = frozenset()
    """The fields a PATCH may send as null to clear them; null elsewhere leaves the
    field as it is."""

    @classmethod
    def unchecked(cls: type[InputT], **fields: Any) -> InputT:
        """A body typed in the console or the CLI: ``fields`` as given, not checked here
        (the services check what they apply, with the messages a form shows). Raises
        :class:`TypeError` for a name that is not a field, as a misspelt keyword would."""
        unknown = sorted(set(fields) - set(cls.model_fields))
        if unknown:
            raise TypeError(f"{cls.__name__} has no field {', '.join(unknown)}")
        made = cls.model_construct(**fields)
        assert isinstance(made, cls)  # pydantic's plugin types it as the base class
        return made

    def changes(self) -> dict[str, Any]:
        """The fields this PATCH body sent, as a service's update applies them: a null
        one is dropped, unless it is :attr:`CLEARABLE` (it then clears)."""
        # The values as they are (a nested model stays one): a body built unchecked by
        # the console or the CLI (:meth:`unchecked`) may hold what its service checks.
        sent = {name: getattr(self, name) for name in self.model_fields_set}
        return {k: v for k, v in sent.items() if v is not None or k in self.CLEARABLE}


def given(**fields: Any) -> dict[str, Any]:
    """The fields of a change typed in the console or the CLI that were given (a value of
    None was not): ``X.unchecked(**given(...))`` makes the change; a field to clear is
    added as None beside it."""
    return {name: value for name, value in fields.items() if value is not None}
