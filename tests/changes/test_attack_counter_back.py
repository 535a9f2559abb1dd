"""When the change counter goes back (the database restored from a backup, or a
PostgreSQL failover to a standby that had not received the last commits), the change
that reuses a number already applied is not skipped as applied: the replaced log entry
gives it away and the snapshot is rebuilt, so a revocation made then takes effect."""

from __future__ import annotations

from sqlalchemy import delete, update

from relaygate.changes import VERSION_KEY
from relaygate.db.tables import ConfigChange, Meta
from tests.conftest import Upstream
from tests.support.gateway import Gateway

API = "/admin/api/v1"


def test_a_revocation_after_the_counter_went_back_is_applied(
    gateway: Gateway, upstream: Upstream
) -> None:
    gateway.add_endpoint("a", upstream.url)
    user = gateway.create_user("u")
    key = gateway.create_key(name="k", user_id=user["id"])
    gateway.create_key(name="lost", user_id=user["id"])  # the commit the restore loses
    ctx = gateway.ctx
    seen = ctx.snapshots.current.version

    async def restore() -> None:  # as if restored to just before the last change
        async with ctx.sessions.begin() as session:
            await session.execute(
                update(Meta).where(Meta.key == VERSION_KEY).values(value=str(seen - 1))
            )
            await session.execute(delete(ConfigChange).where(ConfigChange.version == seen))

    gateway.on_loop(restore)
    r = gateway.admin.delete(f"{API}/keys/{key['id']}")  # logged as change `seen` again
    assert r.status_code == 200, r.text
    gateway.create_key(name="later", user_id=user["id"])  # change seen + 1: applied
    gateway.on_loop(ctx.snapshots.catch_up)
    assert ctx.snapshots.current.version == seen + 1
    r = gateway.client_for(key["key"]).get("/v1/models")
    assert r.status_code == 401, "the revoked key still authenticates"
