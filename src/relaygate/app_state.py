"""What one running gateway gives its HTTP handlers, reached through the request.

The FastAPI application (routes, error handlers, the console's templates:
:func:`relaygate.app.build_api`) holds nothing of one gateway, so one can serve several
(the test suite builds it once per process rather than once per gateway: building it
costs a few hundred milliseconds). Each gateway puts its :class:`AppState` in the ASGI
scope of every request it passes on, under :data:`SCOPE_KEY`; handlers read it with
:func:`state_of`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import HTTPConnection

from relaygate.files.upload import UploadSlots
from relaygate.metrics import Metrics

if TYPE_CHECKING:
    from relaygate.batches.runner import BatchRunner
    from relaygate.context import Context
    from relaygate.proxy import Proxy
    from relaygate.usage_records import UsageQueue

SCOPE_KEY = "relaygate"
"""The ASGI scope key holding the gateway's :class:`AppState`."""


class AppState:
    """One gateway's parts that handlers use: ``metrics`` and the upload slots from the
    start; the context, the proxy (the playground sends through it), the batch runner
    and the usage queue while it runs (None before its start-up and after its stop)."""

    def __init__(self, metrics: Metrics, uploads: UploadSlots):
        self.metrics = metrics
        self.uploads = uploads
        self.running: Context | None = None
        self.proxy: Proxy | None = None
        self.batch_runner: BatchRunner | None = None
        self.usage_queue: UsageQueue | None = None

    @property
    def ctx(self) -> Context:
        """The running gateway's context; raises :class:`RuntimeError` before its
        start-up (no request reaches a handler then)."""
        if self.running is None:
            raise RuntimeError("relaygate has not started")
        return self.running


def state_of(connection: HTTPConnection) -> AppState:
    """The :class:`AppState` of the gateway serving ``connection`` (a request)."""
    state: AppState = connection.scope[SCOPE_KEY]
    return state
