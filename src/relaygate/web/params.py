"""The console's bounded ids: the same :data:`~relaygate.inputs.RowId` bound as the admin
API's, so an id past what the database stores never reaches it. Past the bound, an id in
a page's path is the 404 page, one in a form field or a filter a 400 page naming it."""

from __future__ import annotations

from typing import Annotated

from fastapi import Form, Path

from relaygate.errors import BadRequest
from relaygate.inputs import ID_MAX, RowId

Id = Annotated[RowId, Path()]
"""A row id in the path."""

FormId = Annotated[RowId, Form()]
"""A row id sent in a form."""


def id_in(text: str | None, name: str, most: int = ID_MAX) -> int | None:
    """An id typed in a query (absent or blank: None) as a whole number from 1 to
    ``most``; raises :class:`BadRequest` naming ``name`` otherwise."""
    if text is None or not text.strip():
        return None
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 19 or not 1 <= int(text) <= most:
        raise BadRequest(f"{name} must be a whole number from 1 to {most}", param=name)
    return int(text)
