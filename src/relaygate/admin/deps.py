"""Dependencies shared by the admin routes: the context and the caller's principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from relaygate.app_state import state_of
from relaygate.audit import user_actor
from relaygate.auth import authenticate, key_from_headers
from relaygate.context import Context
from relaygate.errors import PermissionDenied
from relaygate.inputs import RowId
from relaygate.snapshot import Principal

Id = Annotated[RowId, Path()]
"""A row id in the path."""


def get_ctx(request: Request) -> Context:
    ctx: Context = state_of(request).ctx
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


async def attributed(request: Request) -> None:
    """Authenticate the caller and make them the actor of every change this request
    makes (:mod:`relaygate.audit`); async, so that the actor is set in the request's own
    task. Raises :class:`~relaygate.errors.AuthenticationFailed` (401) without a key."""
    principal = get_principal(request)
    get_ctx(request).audit.set(user_actor(principal.user_id, request))
