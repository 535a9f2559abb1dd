"""Dependencies shared by the admin routes: the context and the caller's principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from relaygate.admin.schemas import RowId
from relaygate.auth import authenticate, key_from_headers
from relaygate.context import Context
from relaygate.errors import PermissionDenied
from relaygate.snapshot import Principal

Id = Annotated[RowId, Path()]
"""A row id in the path."""


def get_ctx(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


def get_principal(request: Request) -> Principal:
    """The caller, authenticated from the snapshot like a proxied request (no query)."""
    ctx = get_ctx(request)
    return authenticate(ctx.snapshots.current, key_from_headers(request.scope["headers"]))


def require_admin(principal: Principal = Depends(get_principal)) -> Principal:
    """The caller, who must hold an admin key; raises :class:`PermissionDenied` (403)."""
    if not principal.is_admin:
        raise PermissionDenied("this route needs an admin API key")
    return principal
