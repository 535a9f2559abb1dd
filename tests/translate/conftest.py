"""Fixtures of the translation tests: a chat-completions-only upstream, and relaygate's
own records read straight from its database."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from relaygate.db.tables import UsageRecord
from tests.support.gateway import Gateway
from tests.support.scripted import Script, ScriptedUpstream

MODEL = "local-model"


@pytest.fixture
def scripted() -> Iterator[ScriptedUpstream]:
    """An upstream serving ``local-model`` with chat completions only (anything else 404)."""
    server = ScriptedUpstream(Script([MODEL])).start()
    yield server
    server.stop()


def usage_records(gateway: Gateway) -> list[dict[str, Any]]:
    """Every usage record relaygate wrote, oldest first, as column → value."""

    async def read() -> list[dict[str, Any]]:
        async with gateway.ctx.sessions() as session:
            rows = (await session.scalars(select(UsageRecord).order_by(UsageRecord.id))).all()
            return [
                {c.name: getattr(row, c.name) for c in UsageRecord.__table__.columns}
                for row in rows
            ]

    return gateway.on_loop(read)


def user_key(gateway: Gateway, name: str) -> str:
    """A new user's key (the user is in ``everyone``, granted every endpoint added with
    the default groups)."""
    user = gateway.create_user(name)
    key: str = gateway.create_key(name=name, user_id=user["id"])["key"]
    return key


def posts(upstream: ScriptedUpstream) -> list[tuple[str, str]]:
    """The routes the upstream was sent requests on, listings (syncs) left out."""
    return [route for route in upstream.script.routes() if route != ("GET", "/v1/models")]
