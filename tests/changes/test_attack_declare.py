"""A bulk statement on API keys must be declared as a change of those keys: declared as
a change of their user (whose apply does not read keys), it is refused and rolled back;
declared as the keys, it reaches the snapshot."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from relaygate.changes import ChangeOutsideUnit, declare, unit
from relaygate.db.tables import ApiKey, utcnow
from tests.conftest import Upstream
from tests.support.gateway import Gateway


def test_a_bulk_revocation_declared_as_its_user_is_applied(
    gateway: Gateway, upstream: Upstream
) -> None:
    gateway.add_endpoint("a", upstream.url)
    user = gateway.create_user("u")
    key = gateway.create_key(name="k", user_id=user["id"])
    ctx = gateway.ctx

    async def revoke_all_of_user() -> None:
        async with unit(ctx) as session:
            await session.execute(
                update(ApiKey).where(ApiKey.user_id == user["id"]).values(revoked_at=utcnow())
            )
            declare(session, "user", user["id"])  # accepted by _check_declared

    with pytest.raises(ChangeOutsideUnit):
        gateway.on_loop(revoke_all_of_user)
    client = gateway.client_for(key["key"])
    assert client.get("/v1/models").status_code == 200  # rolled back: still valid

    async def revoke_declared() -> None:
        async with unit(ctx) as session:
            await session.execute(
                update(ApiKey).where(ApiKey.user_id == user["id"]).values(revoked_at=utcnow())
            )
            declare(session, "key", key["id"])

    gateway.on_loop(revoke_declared)
    assert client.get("/v1/models").status_code == 401, "a revoked key still authenticates"
