"""Forwarding through relaygate with the official openai SDK as the client."""

from __future__ import annotations

import threading
import time

import httpx
import openai
import pytest

from tests.conftest import Upstream
from tests.support.gateway import Gateway


def test_chat_completion_reaches_upstream_with_provider_key(
    gateway: Gateway, upstream: Upstream
) -> None:
    """A chat completion is forwarded with the endpoint's key as Bearer, never the client's."""
    upstream.state.api_key = "sk-provider-secret-1234"
    gateway.add_endpoint("up", upstream.url, api_key="sk-provider-secret-1234")
    client = gateway.openai()
    reply = client.chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "hi"}]
    )
    assert reply.choices[0].message.content == "hello from upstream"
    seen = upstream.state.requests[-1]
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["authorization"] == "Bearer sk-provider-secret-1234"
    assert gateway.admin_key not in str(seen.headers)


def test_client_credentials_and_hop_by_hop_headers_stay_behind(
    gateway: Gateway, upstream: Upstream
) -> None:
    """x-api-key, cookies, hop-by-hop headers and any other outside the allow-list never
    reach the upstream; the allowed ones (an SDK's x-stainless-*, idempotency-key) do."""
    gateway.add_endpoint("up", upstream.url)
    response = httpx.post(
        gateway.url + "/v1/chat/completions",
        headers={
            "x-api-key": gateway.admin_key,
            "cookie": "session=abc",
            "te": "trailers",
            "connection": "keep-alive, x-custom",
            "openai-beta": "assistants=v2",
            "x-stainless-lang": "python",
            "idempotency-key": "k-1",
            "proxy-authorization": "Basic Zm9vOmJhcg==",
        },
        content=b'{"model": "gpt-test", "messages": []}',
    )
    assert response.status_code == 200
    seen = upstream.state.requests[-1].headers
    for name in ("x-api-key", "cookie", "te", "proxy-authorization", "authorization"):
        assert name not in seen, name
    assert gateway.admin_key not in str(seen)
    assert "openai-beta" not in seen and "x-custom" not in seen
    assert (seen["x-stainless-lang"], seen["idempotency-key"]) == ("python", "k-1")
    assert seen["content-type"] == "application/json"


def test_provider_refusing_its_key_is_502_not_401(gateway: Gateway, upstream: Upstream) -> None:
    """When the provider refuses the endpoint's key, the client's SDK must not see a 401."""
    gateway.add_endpoint("up", upstream.url)
    upstream.state.api_key = "sk-rotated-at-the-provider"
    with pytest.raises(openai.InternalServerError) as raised:
        gateway.openai().chat.completions.create(model="gpt-test", messages=[])
    assert raised.value.status_code == 502
    assert "rejected its provider API key" in raised.value.message


def test_sync_added_id_does_not_steal_an_alias(gateway: Gateway, upstream: Upstream) -> None:
    """An alias keeps its name when a later sync brings a model whose id is that name."""
    upstream.state.models = ["gpt-4-0613"]
    gateway.add_endpoint("up", upstream.url)
    model = gateway.admin.get("/admin/api/v1/models").json()[0]
    gateway.admin.patch(f"/admin/api/v1/models/{model['id']}", json={"alias": "gpt-4"})
    upstream.state.models = ["gpt-4-0613", "gpt-4"]
    assert gateway.admin.post("/admin/api/v1/endpoints/1/sync").json()["added"] == 1
    client = gateway.openai()
    assert [m.id for m in client.models.list()] == ["gpt-4"]
    for _ in range(2):
        client.chat.completions.create(model="gpt-4", messages=[])
    assert [r.json["model"] for r in upstream.state.requests] == ["gpt-4-0613", "gpt-4-0613"]


def test_alias_is_rewritten_to_upstream_id(gateway: Gateway, upstream: Upstream) -> None:
    """Clients use the alias; the upstream receives its own model id, the body otherwise intact."""
    endpoint = gateway.add_endpoint("up", upstream.url)
    model = gateway.admin.get(
        "/admin/api/v1/models", params={"endpoint_id": endpoint["id"]}
    ).json()[0]
    assert (
        gateway.admin.patch(
            f"/admin/api/v1/models/{model['id']}", json={"alias": "friendly"}
        ).status_code
        == 200
    )
    client = gateway.openai()
    assert [m.id for m in client.models.list()] == ["friendly"]
    client.chat.completions.create(
        model="friendly", messages=[{"role": "user", "content": "x"}], temperature=0.25
    )
    sent = upstream.state.requests[-1].json
    assert sent["model"] == "gpt-test"
    assert sent["temperature"] == 0.25
    assert sent["messages"] == [{"role": "user", "content": "x"}]


def test_stream_is_passed_through_chunk_by_chunk(gateway: Gateway, upstream: Upstream) -> None:
    """The first SSE chunk reaches the client while the upstream still holds the rest."""
    gateway.add_endpoint("up", upstream.url)
    hold = threading.Event()
    upstream.state.hold_stream = hold
    stream = gateway.openai().chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "x"}], stream=True
    )
    chunks = iter(stream)
    first = next(chunks)
    assert first.choices[0].delta.content == "c0 "
    assert not hold.is_set()
    hold.set()
    rest = [c.choices[0].delta.content for c in chunks]
    assert rest == ["c1 ", "c2 ", "c3 ", "c4 "]


def test_client_disconnect_cancels_upstream(gateway: Gateway, upstream: Upstream) -> None:
    """A client that leaves mid-stream makes relaygate drop the upstream request."""
    gateway.add_endpoint("up", upstream.url)
    upstream.state.hold_stream = threading.Event()
    with (
        httpx.Client(timeout=10) as client,
        client.stream(
            "POST",
            gateway.url + "/v1/chat/completions",
            headers={"authorization": f"Bearer {gateway.admin_key}"},
            json={"model": "gpt-test", "stream": True, "messages": []},
        ) as response,
    ):
        assert response.status_code == 200
        next(response.iter_raw())
    assert upstream.state.stream_cancelled.wait(5), "upstream stream was not cancelled"


def test_same_name_in_one_pool_is_listed_once_and_round_robined(
    gateway: Gateway, upstream: Upstream, second_upstream: Upstream
) -> None:
    """Two endpoints of one pool serving one public name share its traffic; /v1/models
    lists it once."""
    gateway.add_endpoint("first", upstream.url, pool="gpt")
    gateway.add_endpoint("second", second_upstream.url, pool="gpt")
    client = gateway.openai()
    assert [m.id for m in client.models.list()] == ["gpt-test"]
    served = []
    for _ in range(4):
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-test", messages=[{"role": "user", "content": "x"}]
        )
        served.append(raw.headers["x-relaygate-endpoint"])
    assert sorted(served) == ["first", "first", "second", "second"]
    assert len(upstream.state.requests) == 2 and len(second_upstream.state.requests) == 2


def test_models_list_and_retrieve(gateway: Gateway, upstream: Upstream) -> None:
    """/v1/models uses OpenAI's list shape with owned_by = endpoint name; retrieve works."""
    upstream.state.models = ["a-model", "b-model"]
    gateway.add_endpoint("local", upstream.url)
    client = gateway.openai()
    listed = client.models.list()
    assert sorted(m.id for m in listed) == ["a-model", "b-model"]
    assert {m.owned_by for m in listed} == {"local"}
    assert client.models.retrieve("b-model").id == "b-model"


def test_query_string_and_other_routes_are_forwarded(gateway: Gateway, upstream: Upstream) -> None:
    """Another inference route with a JSON model (embeddings here) goes to {url}/<path>,
    query kept; the upstream's own headers outside the allow-list stay behind."""
    gateway.add_endpoint("up", upstream.url)
    response = gateway.admin.post(
        "/v1/embeddings?api-version=2", json={"model": "gpt-test", "input": "x"}
    )
    assert response.status_code == 200
    seen = upstream.state.requests[-1]
    assert (seen.path, seen.query) == ("/v1/embeddings", "api-version=2")
    assert "x-upstream" not in response.headers
    assert "keep-alive" not in response.headers.get("connection", "")


def test_unreachable_upstream_is_502(gateway: Gateway, upstream: Upstream) -> None:
    """When the endpoint stops answering, the client gets an OpenAI-shaped 502 quickly."""
    gateway.add_endpoint("up", upstream.url)
    upstream.stop()
    time.sleep(0.2)
    response = gateway.admin.post("/v1/chat/completions", json={"model": "gpt-test"})
    assert response.status_code == 502
    assert "unreachable" in response.json()["error"]["message"]


def test_new_model_name_of_another_endpoint_draws_none_of_its_traffic(
    gateway: Gateway, upstream: Upstream, second_upstream: Upstream
) -> None:
    """When a second endpoint's listing newly reports a name the first already serves, its
    copy is a conflict: requests for that name keep going to the first endpoint only."""
    first = gateway.add_endpoint("first", upstream.url)
    second_upstream.state.models = ["own-model"]
    second = gateway.add_endpoint("second", second_upstream.url)
    second_upstream.state.models = ["own-model", "gpt-test"]
    synced = gateway.admin.post(f"/admin/api/v1/endpoints/{second['id']}/sync")
    assert synced.json()["added"] == 1
    client = gateway.openai()
    listed = {m.id: m.owned_by for m in client.models.list()}
    assert listed == {"gpt-test": "first", "own-model": "second"}
    for _ in range(4):
        client.chat.completions.create(
            model="gpt-test", messages=[{"role": "user", "content": "x"}]
        )
    client.chat.completions.create(model="own-model", messages=[])
    assert [seen.json["model"] for seen in upstream.state.requests] == ["gpt-test"] * 4
    assert [seen.json["model"] for seen in second_upstream.state.requests] == ["own-model"]
    [claimed] = [
        m
        for m in gateway.admin.get(
            "/admin/api/v1/models", params={"endpoint_id": second["id"]}
        ).json()
        if m["upstream_id"] == "gpt-test"
    ]
    assert claimed["conflict"]["held_by_endpoint_id"] == first["id"]
