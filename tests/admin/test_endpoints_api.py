"""The admin API's endpoint routes, on a real upstream."""

from __future__ import annotations

from tests.conftest import Upstream
from tests.support.gateway import Gateway

API = "/admin/api/v1"
SECRET = "sk-very-secret-provider-key-9876"


def test_create_shows_sync_state_and_never_the_key(gateway: Gateway, upstream: Upstream) -> None:
    """Creating an endpoint syncs it; the object carries has_api_key and a hint, not the key."""
    upstream.state.api_key = SECRET
    upstream.state.models = ["m1", "m2"]
    created = gateway.add_endpoint("openai-prod", upstream.url + "/", api_key=SECRET)
    assert created["url"] == upstream.url
    assert created["has_api_key"] is True
    assert created["api_key_hint"] == "…9876"
    assert created["sync"]["status"] == "ok"
    assert created["sync"]["models_online"] == 2
    for path in (f"{API}/endpoints", f"{API}/endpoints/{created['id']}", f"{API}/registry/status"):
        assert SECRET not in gateway.admin.get(path).text
    assert set(created) >= {
        "id",
        "name",
        "type",
        "url",
        "enabled",
        "has_api_key",
        "model_filter",
        "created_at",
        "updated_at",
        "sync",
    }


def test_bad_url_is_400(gateway: Gateway) -> None:
    """An endpoint URL that is not an http(s) URL is refused with a hint."""
    for url in ("not a url", "ftp://host/v1", "http://", "http://[::1", "http://h:port/v1"):
        response = gateway.admin.post(f"{API}/endpoints", json={"name": "x", "url": url})
        assert response.status_code == 400, url
        error = response.json()["error"]
        assert error["param"] == "url"
        assert "https://api.openai.com/v1" in error["message"]


def test_url_with_credentials_or_query_is_400(gateway: Gateway) -> None:
    """Credentials or a query in the URL are refused, so they never show up in clear."""
    for url, part in (("http://user:pw@h/v1", "credentials"), ("http://h/v1?key=s", "?query")):
        response = gateway.admin.post(f"{API}/endpoints", json={"name": "x", "url": url})
        assert response.status_code == 400
        assert part in response.json()["error"]["message"]
        assert "pw" not in response.text


def test_out_of_range_id_is_400(gateway: Gateway) -> None:
    """Ids outside the database's range are a 400, not a database error."""
    for method, path in (
        ("GET", "/endpoints/99999999999999999999999"),
        ("GET", "/users/0"),
        ("PATCH", "/models/-1"),
    ):
        response = gateway.admin.request(method, API + path, json={})
        assert response.status_code == 400, path
        assert response.json()["error"]["type"] == "invalid_request_error"


def test_duplicate_name_is_409(gateway: Gateway, upstream: Upstream) -> None:
    gateway.add_endpoint("dup", upstream.url)
    response = gateway.admin.post(f"{API}/endpoints", json={"name": "dup", "url": upstream.url})
    assert response.status_code == 409


def test_unknown_fields_and_types_are_400(gateway: Gateway, upstream: Upstream) -> None:
    """A typo in a field name or an unsupported provider type is a 400, not silently ignored."""
    response = gateway.admin.post(
        f"{API}/endpoints", json={"name": "x", "url": upstream.url, "apikey": "k"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "apikey"
    response = gateway.admin.post(
        f"{API}/endpoints", json={"name": "x", "url": upstream.url, "type": "cohere"}
    )
    assert response.status_code == 400
    assert "openai" in response.json()["error"]["message"]


def test_patch_rotates_and_clears_key_then_resyncs(gateway: Gateway, upstream: Upstream) -> None:
    """PATCH replaces the key (and re-syncs with it), and api_key: null clears it."""
    upstream.state.api_key = "sk-old-key-000001"
    created = gateway.add_endpoint("up", upstream.url, api_key="sk-old-key-000001")
    upstream.state.api_key = "sk-new-key-000002"
    path = f"{API}/endpoints/{created['id']}"
    assert gateway.admin.post(path + "/sync").json()["status"] == "error"
    patched = gateway.admin.patch(path, json={"api_key": "sk-new-key-000002"}).json()
    assert patched["sync"]["status"] == "ok"
    assert patched["api_key_hint"] == "…0002"
    gateway.openai().chat.completions.create(model="gpt-test", messages=[])
    assert upstream.state.requests[-1].headers["authorization"] == "Bearer sk-new-key-000002"
    cleared = gateway.admin.patch(path, json={"api_key": None}).json()
    assert cleared["has_api_key"] is False
    assert cleared["sync"]["status"] == "error"


def test_disable_hides_models_and_enable_restores(gateway: Gateway, upstream: Upstream) -> None:
    """A disabled endpoint's models are neither listed nor routable; it is not synced."""
    created = gateway.add_endpoint("up", upstream.url)
    path = f"{API}/endpoints/{created['id']}"
    assert gateway.admin.patch(path, json={"enabled": False}).json()["enabled"] is False
    client = gateway.openai()
    assert client.models.list().data == []
    response = gateway.admin.post("/v1/chat/completions", json={"model": "gpt-test"})
    assert response.status_code == 404
    assert gateway.admin.post(path + "/sync").status_code == 409
    refreshed = gateway.admin.post(f"{API}/registry/refresh").json()
    assert refreshed["results"] == []
    gateway.admin.patch(path, json={"enabled": True})
    assert [m.id for m in client.models.list()] == ["gpt-test"]


def test_delete_removes_models(gateway: Gateway, upstream: Upstream) -> None:
    """DELETE removes the endpoint and its models, and says how many went."""
    upstream.state.models = ["a", "b", "c"]
    created = gateway.add_endpoint("up", upstream.url)
    response = gateway.admin.delete(f"{API}/endpoints/{created['id']}")
    assert response.json() == {"id": created["id"], "deleted": True, "models_deleted": 3}
    assert gateway.admin.get(f"{API}/models").json() == []
    assert gateway.admin.get(f"{API}/endpoints/{created['id']}").status_code == 404
    assert gateway.openai().models.list().data == []


def test_validate_saves_nothing(gateway: Gateway, upstream: Upstream) -> None:
    """validate lists the models or says why it could not, and stores no endpoint."""
    upstream.state.models = ["x1", "x2"]
    ok = gateway.admin.post(
        f"{API}/endpoints/validate", json={"type": "openai", "url": upstream.url}
    ).json()
    assert ok == {"ok": True, "models": ["x1", "x2"], "error": None}
    upstream.state.listing = "401"
    bad = gateway.admin.post(f"{API}/endpoints/validate", json={"url": upstream.url}).json()
    assert bad["ok"] is False and "HTTP 401" in bad["error"]
    assert gateway.admin.get(f"{API}/endpoints").json() == []


def test_user_key_on_admin_api_is_403(gateway: Gateway) -> None:
    """A key of a user (not admin) is refused on every admin route with 403."""
    user = gateway.create_user("alice")
    key = gateway.create_key(user_id=user["id"], name="alice")["key"]
    headers = {"authorization": f"Bearer {key}"}
    for method, path in (
        ("GET", "/endpoints"),
        ("POST", "/endpoints/validate"),
        ("GET", "/users"),
        ("POST", "/keys"),
        ("POST", "/registry/refresh"),
    ):
        response = gateway.admin.request(method, API + path, headers=headers, json={})
        assert response.status_code == 403, path
        assert response.json()["error"]["type"] == "permission_error"
    assert gateway.admin.get("/v1/registry/status", headers=headers).status_code == 403
    assert gateway.admin.get("/v1/models", headers=headers).status_code == 200


def test_unknown_route_and_missing_key_use_openai_error_shape(gateway: Gateway) -> None:
    response = gateway.admin.get("/admin/api/v1/nothing")
    assert response.status_code == 404
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    response = gateway.admin.get(f"{API}/endpoints", headers={"authorization": ""})
    assert response.status_code == 401


def test_model_alias_conflict_within_endpoint(gateway: Gateway, upstream: Upstream) -> None:
    """Two models of one endpoint may not share a public name (409)."""
    upstream.state.models = ["a", "b"]
    gateway.add_endpoint("up", upstream.url)
    models = {m["upstream_id"]: m for m in gateway.admin.get(f"{API}/models").json()}
    response = gateway.admin.patch(f"{API}/models/{models['b']['id']}", json={"alias": "a"})
    assert response.status_code == 409
    disabled = gateway.admin.patch(f"{API}/models/{models['b']['id']}", json={"enabled": False})
    assert disabled.json()["enabled"] is False
    assert [m.id for m in gateway.openai().models.list()] == ["a"]


def test_alias_pools_models_of_two_endpoints(
    gateway: Gateway, upstream: Upstream, second_upstream: Upstream
) -> None:
    """Giving models of two endpoints one alias makes them targets of one public model."""
    upstream.state.models = ["llama-3-8b"]
    second_upstream.state.models = ["meta-llama/Llama-3-8B"]
    gateway.add_endpoint("a", upstream.url)
    gateway.add_endpoint("b", second_upstream.url)
    for model in gateway.admin.get(f"{API}/models").json():
        gateway.admin.patch(f"{API}/models/{model['id']}", json={"alias": "llama3"})
    client = gateway.openai()
    assert [m.id for m in client.models.list()] == ["llama3"]
    for _ in range(2):
        client.chat.completions.create(model="llama3", messages=[])
    assert upstream.state.requests[-1].json["model"] == "llama-3-8b"
    assert second_upstream.state.requests[-1].json["model"] == "meta-llama/Llama-3-8B"


def test_alias_clash_names_the_other_model(gateway: Gateway, upstream: Upstream) -> None:
    upstream.state.models = ["one", "two"]
    gateway.add_endpoint("up", upstream.url)
    models = {m["upstream_id"]: m for m in gateway.admin.get(f"{API}/models").json()}
    gateway.admin.patch(f"{API}/models/{models['one']['id']}", json={"alias": "best"})
    clash = gateway.admin.patch(f"{API}/models/{models['two']['id']}", json={"alias": "best"})
    assert clash.status_code == 409
    assert "'one'" in clash.json()["error"]["message"]


def test_same_name_of_another_endpoint_is_a_conflict_until_pooled(
    gateway: Gateway, upstream: Upstream, second_upstream: Upstream
) -> None:
    """A model whose upstream id another endpoint's model already serves (no shared alias
    or pool) carries a conflict naming the holder; putting both endpoints in one pool
    clears it."""
    first = gateway.add_endpoint("first", upstream.url)
    second = gateway.add_endpoint("second", second_upstream.url)
    by_endpoint = {m["endpoint_id"]: m for m in gateway.admin.get(f"{API}/models").json()}
    held = by_endpoint[first["id"]]
    assert held["conflict"] is None
    assert by_endpoint[second["id"]]["conflict"] == {
        "name": "gpt-test",
        "held_by_model_id": held["id"],
        "held_by_endpoint_id": first["id"],
        "held_by_endpoint_name": "first",
    }
    for endpoint in (first, second):
        response = gateway.admin.patch(f"{API}/endpoints/{endpoint['id']}", json={"pool": "p"})
        assert response.status_code == 200, response.text
    assert [m["conflict"] for m in gateway.admin.get(f"{API}/models").json()] == [None, None]


def test_batch_concurrency_is_set_shown_and_cleared(gateway: Gateway, upstream: Upstream) -> None:
    """``batch_concurrency`` given at creation shows in the endpoint object, a PATCH
    changes it, and a PATCH to null follows the setting again (the object says null)."""
    created = gateway.add_endpoint("local", upstream.url, batch_concurrency=2)
    assert created["batch_concurrency"] == 2
    path = f"{API}/endpoints/{created['id']}"
    assert gateway.admin.get(path).json()["batch_concurrency"] == 2
    changed = gateway.admin.patch(path, json={"batch_concurrency": 1000})
    assert changed.status_code == 200 and changed.json()["batch_concurrency"] == 1000
    untouched = gateway.admin.patch(path, json={"pool": "p"})
    assert untouched.json()["batch_concurrency"] == 1000
    cleared = gateway.admin.patch(path, json={"batch_concurrency": None})
    assert cleared.status_code == 200 and cleared.json()["batch_concurrency"] is None
    assert gateway.admin.get(path).json()["batch_concurrency"] is None
    assert gateway.add_endpoint("other", upstream.url, pool="p")["batch_concurrency"] is None


def test_batch_concurrency_out_of_range_is_400(gateway: Gateway, upstream: Upstream) -> None:
    """0, 1001, a fraction, a string or a boolean is a 400 naming the field, on create
    and on PATCH, and changes nothing."""
    created = gateway.add_endpoint("local", upstream.url, batch_concurrency=3)
    for bad in (0, -1, 1001, 2.5, "4", True):
        for method, path, body in (
            ("POST", f"{API}/endpoints", {"name": "x", "url": upstream.url}),
            ("PATCH", f"{API}/endpoints/{created['id']}", {}),
        ):
            response = gateway.admin.request(method, path, json={**body, "batch_concurrency": bad})
            assert response.status_code == 400, (method, bad)
            assert response.json()["error"]["param"] == "batch_concurrency", response.text
    assert [e["batch_concurrency"] for e in gateway.admin.get(f"{API}/endpoints").json()] == [3]
