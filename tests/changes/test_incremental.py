"""Every configuration change reaches the snapshot through the one change path, applied
in place: after each change made through the admin API, the running snapshot equals one
rebuilt whole from the database, and no rebuild happened."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Upstream
from tests.support.gateway import Gateway
from tests.support.snapshots import describe

API = "/admin/api/v1"


class Checked:
    """The gateway, checking after every change that the snapshot equals a rebuilt one."""

    def __init__(self, gateway: Gateway):
        self.gateway = gateway
        self.changes = 0

    def check(self) -> None:
        store = self.gateway.ctx.snapshots
        rebuilt = self.gateway.on_loop(store.rebuilt)
        assert describe(store.current) == describe(rebuilt)
        assert store.current.version == rebuilt.version
        assert store.rebuilds == 1, "a change rebuilt the whole snapshot"
        self.changes += 1

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.gateway.admin.request(method, API + path, **kwargs)
        assert response.status_code < 300, response.text
        self.check()
        return response.json() if response.content else None


@pytest.fixture
def checked(gateway: Gateway) -> Iterator[Checked]:
    yield Checked(gateway)


def test_every_kind_of_change_is_applied_in_place(
    checked: Checked, upstream: Upstream, second_upstream: Upstream
) -> None:
    """Endpoints, syncs, models, groups, grants, users, keys and own provider keys: each
    change leaves the snapshot as a rebuild would, without a rebuild."""
    call = checked.call
    upstream.state.models = ["m1", "m2", "m3"]
    second_upstream.state.models = ["m1", "x1"]
    a = call("POST", "/endpoints", json={"name": "a", "url": upstream.url})
    b = call("POST", "/endpoints", json={"name": "b", "url": second_upstream.url, "groups": []})
    models = {(m["endpoint_id"], m["upstream_id"]): m["id"] for m in call("GET", "/models")}
    team = call("POST", "/groups", json={"name": "team"})
    groups = call("GET", "/groups")
    everyone = next(g for g in groups if g["name"] == "everyone")
    call("PUT", f"/groups/{team['id']}/models/{models[(a['id'], 'm2')]}")
    call("PUT", f"/groups/{team['id']}/endpoints/{b['id']}")
    call("DELETE", f"/groups/{everyone['id']}/endpoints/{a['id']}")
    call("PUT", f"/groups/{everyone['id']}/models/{models[(a['id'], 'm1')]}")
    u1 = call("POST", "/users", json={"name": "u1"})
    u2 = call("POST", "/users", json={"name": "u2", "requests_per_minute": 1000})
    call("PUT", f"/groups/{team['id']}/users/{u2['id']}")
    k1 = call("POST", "/keys", json={"name": "k1", "user_id": u1["id"]})
    call("POST", "/keys", json={"name": "k2", "user_id": u2["id"], "allowed_models": ["m2", "m1"]})
    k3 = call("POST", "/keys", json={"name": "k3", "user_id": u2["id"], "tokens_per_minute": 9})
    call("PATCH", f"/keys/{k3['id']}", json={"requests_per_minute": 50})
    call("PATCH", f"/users/{u2['id']}", json={"tokens_per_minute": 77})
    # Aliases pool two endpoints' models; a fallback reserves its name.
    call("PATCH", f"/models/{models[(a['id'], 'm3')]}", json={"alias": "shared"})
    call("PATCH", f"/models/{models[(b['id'], 'x1')]}", json={"alias": "shared"})
    call("PATCH", f"/models/{models[(a['id'], 'm2')]}", json={"fallback_model": "shared"})
    call("PATCH", f"/models/{models[(a['id'], 'm2')]}", json={"input_cost_per_million_tokens": 3})
    call("PATCH", f"/models/{models[(a['id'], 'm3')]}", json={"enabled": False})
    call("PATCH", f"/models/{models[(a['id'], 'm3')]}", json={"enabled": True})
    # Endpoints: a pool, disabled and enabled, a sync that changes the catalogue.
    call("PATCH", f"/endpoints/{a['id']}", json={"pool": "p"})
    call("PATCH", f"/endpoints/{b['id']}", json={"pool": "p"})
    call("PATCH", f"/endpoints/{b['id']}", json={"enabled": False})
    call("PATCH", f"/endpoints/{b['id']}", json={"enabled": True})
    upstream.state.models = ["m1", "m2", "m4"]
    call("POST", f"/endpoints/{a['id']}/sync")
    call("PATCH", f"/endpoints/{a['id']}", json={"timeouts": {"connect": 3}})
    call("PATCH", f"/endpoints/{a['id']}", json={"extra_routes": ["POST /tokenize"]})
    # Own provider keys, and an endpoint that takes only them.
    own = checked.gateway.client_for(k1["key"])
    call("PATCH", f"/endpoints/{b['id']}", json={"requires_user_key": True})
    call("PUT", f"/groups/{everyone['id']}/endpoints/{b['id']}")
    response = own.put(f"{API}/me/provider-keys/{b['id']}", json={"api_key": "sk-own"})
    assert response.status_code == 200, response.text
    checked.check()
    call("PATCH", f"/endpoints/{b['id']}", json={"auth_header": "api-key"})
    assert own.delete(f"{API}/me/provider-keys/{b['id']}").status_code == 204
    checked.check()
    # Roles, revocation and deletions.
    call("PATCH", f"/users/{u1['id']}", json={"role": "admin"})
    call("PATCH", f"/users/{u1['id']}", json={"role": "user"})
    call("DELETE", f"/keys/{k1['id']}")
    call("DELETE", f"/groups/{team['id']}/users/{u2['id']}")
    call("DELETE", f"/groups/{team['id']}")
    call("DELETE", f"/users/{u1['id']}")
    call("DELETE", f"/endpoints/{b['id']}")
    assert checked.changes > 40


def test_an_empty_change_records_nothing(checked: Checked, upstream: Upstream) -> None:
    """A PATCH that changes nothing is no change: the counter does not move."""
    checked.gateway.add_endpoint("a", upstream.url)
    key = checked.gateway.create_key(name="k")
    before = checked.gateway.ctx.snapshots.current.version
    checked.call("PATCH", f"/keys/{key['id']}", json={})
    checked.call("PATCH", f"/endpoints/{checked.gateway.endpoint('a')['id']}", json={})
    assert checked.gateway.ctx.snapshots.current.version == before
