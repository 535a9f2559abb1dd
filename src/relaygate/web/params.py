"""The console's bounded route parameters: the same :data:`~relaygate.inputs.RowId` bound
as the admin API's, so an id past what the database stores is a 400 page, not an error
from the database."""

from __future__ import annotations

from typing import Annotated

from fastapi import Form, Path, Query

from relaygate.inputs import RowId

Id = Annotated[RowId, Path()]
"""A row id in the path."""

FormId = Annotated[RowId, Form()]
"""A row id sent in a form."""

QueryId = Annotated[RowId | None, Query()]
"""A row id in the query, optional."""
