"""A change whose application fails part-way (a dropped connection, a cancellation) never
stops later ones: the rows kept in the catalogue survive the rollback, and the next
check rebuilds the snapshot, since a replay against a half-updated one recomputes too
little (a disabled endpoint would keep serving)."""

from __future__ import annotations

from typing import Any

import pytest

from relaygate.db.tables import Endpoint
from relaygate.loader import Loader
from tests.conftest import Upstream
from tests.support.gateway import Gateway
from tests.support.snapshots import describe

API = "/admin/api/v1"


def _fail_first_recompute(monkeypatch: pytest.MonkeyPatch) -> None:
    real = Loader._recompute
    calls = {"n": 0}

    async def flaky(self: Loader, snapshot: Any, names: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:  # stands for a dropped connection or a cancellation
            raise RuntimeError("transient failure while applying")
        await real(self, snapshot, names)

    monkeypatch.setattr(Loader, "_recompute", flaky)


def test_one_failed_apply_does_not_stop_later_changes(
    gateway: Gateway, upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = gateway.add_endpoint("a", upstream.url)
    user = gateway.create_user("u")
    key = gateway.create_key(name="k", user_id=user["id"])
    client = gateway.client_for(key["key"])
    assert client.get("/v1/models").status_code == 200
    store = gateway.ctx.snapshots

    _fail_first_recompute(monkeypatch)
    r = gateway.admin.patch(f"{API}/endpoints/{a['id']}", json={"timeouts": {"connect": 3}})
    assert r.status_code == 200, r.text
    # The failure was transient; this revocation and the log check should go through.
    assert gateway.admin.delete(f"{API}/keys/{key['id']}").status_code == 200
    gateway.on_loop(store.catch_up)  # raises DetachedInstanceError
    assert client.get("/v1/models").status_code == 401, "revoked key still works"


def test_the_replay_of_a_half_applied_change_recomputes_its_routes(
    gateway: Gateway, upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = gateway.add_endpoint("a", upstream.url)
    store = gateway.ctx.snapshots
    real_entry = Loader.endpoint_entry

    def detached_entry(self: Loader, row: Endpoint) -> Any:  # rows a rollback cannot expire
        copy = Endpoint(**{c.key: getattr(row, c.key) for c in Endpoint.__table__.columns})
        return real_entry(self, copy)

    monkeypatch.setattr(Loader, "endpoint_entry", detached_entry)
    _fail_first_recompute(monkeypatch)
    r = gateway.admin.patch(f"{API}/endpoints/{a['id']}", json={"enabled": False})
    assert r.status_code == 200, r.text
    gateway.on_loop(store.catch_up)  # the replay "succeeds"
    rebuilt = gateway.on_loop(store.rebuilt)
    assert store.current.version == rebuilt.version
    assert "gpt-test" not in rebuilt.models
    assert "gpt-test" not in store.current.models, "the disabled endpoint still serves"
    assert describe(store.current) == describe(rebuilt)
