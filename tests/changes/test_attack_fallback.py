"""A caller's fallback is that of the first copy of the model it may use: a copy on an
endpoint it was not granted never chooses where its failed requests go."""

from __future__ import annotations

from tests.conftest import Upstream
from tests.support.gateway import Gateway

API = "/admin/api/v1"


def test_the_fallback_is_the_callers_models_one(
    gateway: Gateway, upstream: Upstream, second_upstream: Upstream
) -> None:
    upstream.state.models = ["m", "fa"]
    second_upstream.state.models = ["m", "fb"]
    a = gateway.add_endpoint("a", upstream.url, groups=[])
    b = gateway.add_endpoint("b", second_upstream.url, groups=[])
    models = {
        (m["endpoint_id"], m["upstream_id"]): m["id"]
        for m in gateway.admin.get(f"{API}/models").json()
    }
    everyone = next(g for g in gateway.admin.get(f"{API}/groups").json() if g["name"] == "everyone")

    def call(method: str, path: str, **kw: object) -> None:
        r = gateway.admin.request(method, API + path, **kw)  # type: ignore[arg-type]
        assert r.status_code < 300, r.text

    # Both endpoints' "m" aliased alike: one pooled name; each falls back to its own.
    call("PATCH", f"/models/{models[(a['id'], 'm')]}", json={"alias": "m", "fallback_model": "fa"})
    call("PATCH", f"/models/{models[(b['id'], 'm')]}", json={"alias": "m", "fallback_model": "fb"})
    # The user may use b's m, and both fallbacks.
    for model in (models[(b["id"], "m")], models[(a["id"], "fa")], models[(b["id"], "fb")]):
        call("PUT", f"/groups/{everyone['id']}/models/{model}")
    user = gateway.create_user("u")
    key = gateway.create_key(name="k", user_id=user["id"])

    snapshot = gateway.ctx.snapshots.current
    principal = next(p for p in snapshot.keys.values() if p.key_id == key["id"])
    route = snapshot.route_for(principal, "m")
    assert route is not None
    assert [t.endpoint_name for t in route.targets if principal.user.access.allows(t)] == ["b"]
    # The fallback of the copy the caller reaches (b's), not of a's, which it may not use.
    assert principal.user.access.fallback_of(route) == "fb"
