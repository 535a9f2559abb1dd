"""The request path reads only the in-memory snapshot (the README, "Layout")."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import event

from tests.conftest import Upstream
from tests.support.gateway import Gateway


def test_proxied_requests_run_no_sql(tmp_path: Path, upstream: Upstream) -> None:
    """Authenticating, listing, routing and forwarding 30 requests executes no statement."""
    gateway = Gateway(
        tmp_path,
        change_poll_interval=3600,
        key_usage_flush_interval=3600,
        usage_flush_interval=3600,
        batch_poll_interval=3600,
    ).start()
    try:
        gateway.add_endpoint("up", upstream.url)
        user_key = gateway.create_key(name="user")["key"]
        statements: list[str] = []

        def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            statements.append(statement)

        engine = gateway.ctx.engine.sync_engine
        event.listen(engine, "before_cursor_execute", record)
        try:
            # The background tasks' first looks (the scheduler's claim of the new
            # endpoint, the batch runner's) are over once half a second passes without a
            # statement; the next are due in an hour, so only the request path is measured.
            deadline = time.monotonic() + 15
            while True:
                statements.clear()
                time.sleep(0.5)
                if not statements or time.monotonic() > deadline:
                    break
            assert statements == [], "the background tasks never went quiet"
            client = gateway.openai(key=user_key)
            for _ in range(10):
                client.models.list()
                client.chat.completions.create(model="gpt-test", messages=[])
                list(client.chat.completions.create(model="gpt-test", messages=[], stream=True))
        finally:
            event.remove(engine, "before_cursor_execute", record)
        assert len(upstream.state.requests) == 20
        assert statements == []
    finally:
        gateway.stop()
