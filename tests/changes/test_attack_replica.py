"""A process behind the log that applies "model m changed" after m's endpoint was
deleted forgets m's grants too: its snapshot ends as a rebuilt one would."""

from __future__ import annotations

import asyncio

from relaygate.context import open_context
from tests.conftest import Upstream
from tests.support.gateway import Gateway
from tests.support.snapshots import describe

API = "/admin/api/v1"


def test_a_replica_behind_forgets_the_grants_of_a_deleted_endpoint(
    gateway: Gateway, upstream: Upstream
) -> None:
    e = gateway.add_endpoint("a", upstream.url, groups=[])
    model = gateway.admin.get(f"{API}/models").json()[0]
    everyone = next(g for g in gateway.admin.get(f"{API}/groups").json() if g["name"] == "everyone")
    r = gateway.admin.put(f"{API}/groups/{everyone['id']}/models/{model['id']}")
    assert r.status_code == 200, r.text

    async def second_process() -> None:
        async with open_context(gateway.settings) as other:
            await other.snapshots.load()
            r = gateway.admin.patch(f"{API}/models/{model['id']}", json={"alias": "renamed"})
            assert r.status_code == 200, r.text
            r = gateway.admin.delete(f"{API}/endpoints/{e['id']}")
            assert r.status_code == 200, r.text
            await other.snapshots.catch_up()
            current = describe(other.snapshots.current)
            rebuilt = describe(await other.snapshots.rebuilt())
            assert current["grants"] == rebuilt["grants"], (current["grants"], rebuilt["grants"])
            assert current == rebuilt

    asyncio.run(second_process())
