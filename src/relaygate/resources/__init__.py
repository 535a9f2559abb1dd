"""The OpenAI resources relaygate keeps per user, under ``/v1``: files
(:mod:`.files`) and batches (:mod:`.batches`). Each belongs to the user whose key made
it and is invisible (404) to every other user, admins included: admins see batches
through the admin API."""

from __future__ import annotations

from fastapi import APIRouter

from relaygate.resources import batches, files

FILES_PATH = "/v1/files"
BATCHES_PATH = "/v1/batches"


def resources_router() -> APIRouter:
    """The ``/v1/files`` and ``/v1/batches`` routes."""
    router = APIRouter(prefix="/v1")
    router.include_router(files.router)
    router.include_router(batches.router)
    return router
