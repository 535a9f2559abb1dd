"""What ``auto`` mode found about endpoints' APIs, written to their rows.

When an endpoint in ``auto`` mode answers a native Messages or Responses request with
404 or 405, the proxy translates instead and notes it here (and what worked natively,
and whether the endpoint has a tokenizer route). :func:`write_api_findings` stores the
notes in the endpoint's ``api_found`` off the request path, as a configuration change,
so every replica's snapshot and the endpoint object show them; the endpoint's next sync
clears them (:mod:`relaygate.sync.service`).
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import update

from relaygate.changes import declare, unit
from relaygate.context import Context
from relaygate.db.tables import Endpoint
from relaygate.pauses import wait_any

log = logging.getLogger(__name__)


class ApiFindings:
    """Findings waiting to be written: endpoint id → API → mode."""

    def __init__(self) -> None:
        self._pending: dict[int, dict[str, str]] = {}
        self.wake = asyncio.Event()

    def note(self, endpoint_id: int, api: str, mode: str) -> None:
        """Note that ``api`` (``messages``, ``count_tokens``, ``responses``,
        ``tokenize``) of the endpoint is ``mode`` (``native``, ``translate``,
        ``missing``)."""
        self._pending.setdefault(endpoint_id, {})[api] = mode
        self.wake.set()

    def take(self) -> dict[int, dict[str, str]]:
        """The waiting findings, now no longer waiting."""
        pending, self._pending = self._pending, {}
        return pending

    async def flush(self, ctx: Context) -> None:
        """Merge the waiting findings into their endpoints' ``api_found``; an endpoint
        deleted meanwhile is skipped. A row whose findings are already stored is left
        alone (no change is logged)."""
        for endpoint_id, found in self.take().items():
            async with unit(ctx) as session:
                row = await session.get(Endpoint, endpoint_id)
                if row is None:
                    continue
                merged = {**(row.api_found or {}), **found}
                if merged == (row.api_found or {}):
                    continue
                await session.execute(
                    update(Endpoint)
                    .where(Endpoint.id == endpoint_id)
                    .values(api_found=merged, updated_at=Endpoint.updated_at)
                )
                declare(session, "endpoint", endpoint_id)
                log.info("endpoint %r: auto mode found %s", row.name, found)


async def write_api_findings(ctx: Context, findings: ApiFindings, stop: asyncio.Event) -> None:
    """Write findings as they come until ``stop``; failures are logged, not retried (the
    proxy notes a finding again the next time it matters)."""
    while not stop.is_set():
        await wait_any(stop, findings.wake, 5.0)
        findings.wake.clear()
        try:
            await findings.flush(ctx)
        except Exception:
            log.exception("could not store what auto mode found about endpoints' APIs")
