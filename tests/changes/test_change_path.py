"""The one change path: a configuration write outside it is refused, other processes
apply the same changes from the log, a process that missed some rebuilds, and the event
loop's lag is measured."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import delete, event, select, update

from relaygate.changes import ChangeOutsideUnit, unit
from relaygate.context import open_context
from relaygate.db.tables import ApiKey, ConfigChange, Model, User, utcnow
from tests.conftest import Upstream
from tests.support.gateway import Gateway
from tests.support.polling import eventually
from tests.support.snapshots import describe


def test_a_write_outside_the_change_path_is_refused(gateway: Gateway, upstream: Upstream) -> None:
    """An ORM write or a bulk statement on a configuration table outside a unit, or a
    bulk statement in one left undeclared, raises and commits nothing; a key's last use
    and an endpoint's sync state are no configuration and pass."""
    gateway.add_endpoint("up", upstream.url)
    ctx = gateway.ctx

    async def orm_write() -> None:
        async with ctx.sessions.begin() as session:
            session.add(User(name="sneaky", role="admin"))

    async def bulk_write() -> None:
        async with ctx.sessions.begin() as session:
            await session.execute(update(ApiKey).values(revoked_at=utcnow()))

    async def undeclared() -> None:
        async with unit(ctx) as session:
            await session.execute(update(Model).values(enabled=False))

    for attempt in (orm_write, bulk_write, undeclared):
        with pytest.raises(ChangeOutsideUnit):
            gateway.on_loop(attempt)

    async def not_configuration() -> tuple[int, int]:
        async with ctx.sessions.begin() as session:
            await session.execute(update(ApiKey).values(last_used_at=utcnow()))
        async with ctx.sessions() as session:
            users = len((await session.scalars(select(User).where(User.name == "sneaky"))).all())
            disabled = (await session.scalars(select(Model).where(~Model.enabled))).all()
            return users, len(disabled)

    assert gateway.on_loop(not_configuration) == (0, 0)
    assert [m.id for m in gateway.openai().models.list()] == ["gpt-test"]


def test_another_process_applies_the_log_and_rebuilds_after_a_gap(gateway: Gateway) -> None:
    """A second process on the same database applies the changes the first logged, in
    place; when the entries it needs were pruned from the log, it rebuilds whole."""

    async def second_process() -> None:
        async with open_context(gateway.settings) as other:
            await other.snapshots.load()
            created = gateway.create_key(name="from the first")
            await other.snapshots.catch_up()
            assert describe(other.snapshots.current) == describe(await other.snapshots.rebuilt())
            assert created["id"] in {p.key_id for p in other.snapshots.current.keys.values()}
            assert other.snapshots.rebuilds == 1
            gateway.create_key(name="missed")
            async with other.sessions.begin() as session:  # as if pruned meanwhile
                await session.execute(delete(ConfigChange))
            gateway.create_key(name="after the gap")
            await other.snapshots.catch_up()
            assert other.snapshots.rebuilds == 2
            assert describe(other.snapshots.current) == describe(await other.snapshots.rebuilt())
            assert other.snapshots.current.version == gateway.ctx.snapshots.current.version

    asyncio.run(second_process())


def test_the_event_loop_lag_is_a_metric(gateway: Gateway) -> None:
    """``relaygate_event_loop_lag_seconds`` samples the loop's lag every 50 ms."""

    def samples() -> list[float]:
        text = gateway.admin.get("/metrics").text
        return [
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "relaygate_event_loop_lag_seconds_count"
        ]

    counts = eventually(samples, lambda counts: bool(counts) and counts[0] >= 3)
    assert counts and counts[0] >= 3


def test_a_whole_load_reads_one_view_of_the_database(gateway: Gateway, upstream: Upstream) -> None:
    """A whole load in another process reads every table as it was at its first read: an
    endpoint created with its models between the load's read of the endpoints and its read
    of the models is left out whole, not half seen. (On SQLite each SELECT used to see its
    own moment: the load met a model of an endpoint it had not read and failed, and so
    did a worker of ``serve --workers`` starting while the other synced an endpoint.)"""
    created: list[dict[str, Any]] = []

    def create_between(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if (
            not created
            and statement.lstrip().upper().startswith("SELECT")
            and ("FROM models" in statement)
        ):
            created.append(gateway.add_endpoint("up", upstream.url))

    async def second_process() -> None:
        async with open_context(gateway.settings) as other:
            event.listen(other.engine.sync_engine, "before_cursor_execute", create_between)
            try:
                loaded = await other.snapshots.load()
            finally:
                event.remove(other.engine.sync_engine, "before_cursor_execute", create_between)
            assert created, "the load never read the models"
            assert loaded.catalog is not None and loaded.catalog.endpoints == {}
            assert "gpt-test" not in loaded.models
            await other.snapshots.catch_up()  # the change log brings both in
            assert describe(other.snapshots.current) == describe(await other.snapshots.rebuilt())
            assert "gpt-test" in other.snapshots.current.models

    asyncio.run(second_process())
    assert [m.id for m in gateway.openai().models.list()] == ["gpt-test"]
