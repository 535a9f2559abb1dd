"""relaygate as a trust boundary, tried as an attacker: a user key with one model grant
reaching past it, and upstreams trying to steer relaygate. Every upstream here records
what it received, so "refused" means nothing arrived there."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy import select

from relaygate.db.tables import UsageRecord
from tests.proxy.api_routes import (
    ANSWERED_BY_RELAYGATE,
    ANTHROPIC_FORWARDED,
    ANTHROPIC_OPENAI_COMPAT,
    ANTHROPIC_ROUTES,
    OPENAI_FORWARDED,
    OPENAI_ROUTES,
    SELF_HOSTED_EXTRA,
    concrete,
)
from tests.support.gateway import Gateway
from tests.support.hostile import RecordingUpstream, Reply, bounce_to, chat_reply, json_reply
from tests.support.polling import eventually
from tests.support.upstream import Seen

BODY = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def collector() -> Iterator[RecordingUpstream]:
    """Where a hostile upstream tries to send relaygate: it must receive nothing."""
    server = RecordingUpstream()
    yield server
    server.stop()


def user_with_one_grant(gateway: Gateway, endpoint_id: int, model: str) -> str:
    """A user key whose only grant is ``model`` of the endpoint; returns the key."""
    user = gateway.create_user("mallory")
    group = gateway.admin.post("/admin/api/v1/groups", json={"name": "one-model"}).json()
    gateway.admin.put(f"/admin/api/v1/groups/{group['id']}/users/{user['id']}").raise_for_status()
    models = gateway.admin.get("/admin/api/v1/models", params={"endpoint_id": endpoint_id}).json()
    model_id = next(m["id"] for m in models if m["upstream_id"] == model)
    gateway.admin.put(f"/admin/api/v1/groups/{group['id']}/models/{model_id}").raise_for_status()
    key: str = gateway.create_key(user_id=user["id"], name="attacker")["key"]
    return key


def check_routes(
    client: httpx.Client,
    routes: tuple[tuple[str, str], ...],
    forwarded: frozenset[tuple[str, str]],
    upstream: Any,
    model: str,
) -> list[str]:
    """Send every route with a JSON body naming ``model``; returns what went wrong."""
    wrong = []
    for method, path in routes:
        sent = concrete(path)
        before = len(upstream.requests)
        response = client.request(method, sent, json={"model": model, "input": "x"})
        arrived = upstream.requests[before:]
        if (method, path) in ANSWERED_BY_RELAYGATE:
            # Its own answer: found, not found (another user's or no such id), or this
            # body refused (a file upload is multipart, a batch names its input file).
            if response.status_code not in (200, 400, 404, 415) or arrived:
                wrong.append(f"{method} {path}: {response.status_code}, {len(arrived)} upstream")
        elif (method, path) in forwarded:
            if [(s.method, s.path) for s in arrived] != [(method, sent)]:
                wrong.append(f"{method} {path} was not forwarded: {response.text[:200]}")
        else:
            code = response.json()["error"]["code"] if response.status_code >= 400 else None
            if arrived or code not in ("unsupported_route", "method_not_allowed"):
                wrong.append(f"{method} {path} was not refused: {response.status_code} {code}")
    return wrong


def test_only_openai_inference_routes_are_forwarded(
    gateway: Gateway, recorder: RecordingUpstream
) -> None:
    """Of every route in the OpenAI API reference (and self-hosted servers' extensions),
    only the inference routes reach an openai endpoint; files, batches, fine-tuning,
    organisation and every other resource are refused before reaching it."""
    endpoint = gateway.add_endpoint("openai", recorder.url, api_key="sk-operator-secret")
    key = user_with_one_grant(gateway, endpoint["id"], "gpt-test")
    routes = OPENAI_ROUTES + SELF_HOSTED_EXTRA
    wrong = check_routes(
        gateway.client_for(key), routes, OPENAI_FORWARDED, recorder.state, "gpt-test"
    )
    assert not wrong, "\n".join(wrong)
    assert {seen.headers["authorization"] for seen in recorder.state.requests} == {
        "Bearer sk-operator-secret"
    }


def test_only_anthropic_inference_routes_are_forwarded(
    gateway: Gateway, recorder: RecordingUpstream
) -> None:
    """Of every route in the Anthropic API (its SDK's resources, beta included), only
    messages, count_tokens and the OpenAI-compatible chat route reach an anthropic
    endpoint: message batches, files and the rest are refused before reaching it."""
    recorder.state.models = ["claude-test"]
    endpoint = gateway.add_endpoint("claude", recorder.url, type="anthropic", api_key="sk-ant-x")
    key = user_with_one_grant(gateway, endpoint["id"], "claude-test")
    routes = ANTHROPIC_ROUTES + ANTHROPIC_OPENAI_COMPAT
    wrong = check_routes(
        gateway.client_for(key), routes, ANTHROPIC_FORWARDED, recorder.state, "claude-test"
    )
    assert not wrong, "\n".join(wrong)


def test_files_and_batches_never_reach_the_operators_account(
    gateway: Gateway, recorder: RecordingUpstream
) -> None:
    """The openai SDK listing files or creating a batch gets relaygate's own Files and
    Batch APIs, never the provider account behind the operator's key: the user lists
    only their own files (none), a batch naming a file that is not theirs is 404
    file_not_found, and the endpoint is never asked."""
    endpoint = gateway.add_endpoint("openai", recorder.url, api_key="sk-operator-secret")
    client = gateway.openai(user_with_one_grant(gateway, endpoint["id"], "gpt-test"))
    assert list(client.files.list()) == []
    assert list(client.batches.list()) == []
    with pytest.raises(openai.NotFoundError) as refused:
        client.batches.create(
            completion_window="24h", endpoint="/v1/chat/completions", input_file_id="file-1"
        )
    assert refused.value.code == "file_not_found"
    assert recorder.state.requests == []


def test_embeddings_to_an_anthropic_endpoint_are_refused(
    gateway: Gateway, recorder: RecordingUpstream
) -> None:
    """A route that some provider type takes, sent for a model whose endpoint does not
    take it (embeddings to an anthropic endpoint), is refused, not forwarded."""
    recorder.state.models = ["claude-test"]
    gateway.add_endpoint("claude", recorder.url, type="anthropic", api_key="sk-ant-x")
    client = gateway.openai()
    with pytest.raises(openai.NotFoundError) as refused:
        client.embeddings.create(model="claude-test", input="hi")
    assert refused.value.code == "unsupported_route"
    assert recorder.state.requests == []


def test_operator_allows_more_routes_per_endpoint(
    gateway: Gateway, recorder: RecordingUpstream
) -> None:
    """An endpoint's extra_routes ("METHOD /path", '*' for a segment) are forwarded for it
    alone; malformed ones are refused with a message saying how to write them."""
    bad = gateway.admin.post(
        "/admin/api/v1/endpoints",
        json={"name": "x", "url": recorder.url, "extra_routes": ["/no-method"], "sync": False},
    )
    assert bad.status_code == 400 and "METHOD /path" in bad.json()["error"]["message"]
    for attempt in ("POST /../files", "POST /a*/b", "FETCH /x", "POST /x?y=1"):
        refused = gateway.admin.post(
            "/admin/api/v1/endpoints",
            json={"name": "x", "url": recorder.url, "extra_routes": [attempt], "sync": False},
        )
        assert refused.status_code == 400, attempt
    endpoint = gateway.add_endpoint("custom", recorder.url, extra_routes=["POST /v2/*/infer"])
    assert endpoint["extra_routes"] == ["POST /v2/*/infer"]
    client = gateway.client_for(gateway.admin_key)
    assert client.post("/v1/v2/gpt/infer", json=BODY).status_code == 200
    assert client.post("/v1/v2/gpt/other", json=BODY).json()["error"]["code"] == (
        "unsupported_route"
    )
    cleared = gateway.admin.patch(
        f"/admin/api/v1/endpoints/{endpoint['id']}", json={"extra_routes": None}
    )
    assert cleared.json()["extra_routes"] == []
    assert client.post("/v1/v2/gpt/infer", json=BODY).status_code == 404
    assert [seen.path for seen in recorder.state.requests] == ["/v1/v2/gpt/infer"]


def test_upstream_redirect_is_never_followed(
    gateway: Gateway, recorder: RecordingUpstream, collector: RecordingUpstream
) -> None:
    """A 307 from an endpoint is answered 502 upstream_error saying it redirected; the
    provider key and the prompt never reach the redirect's target, nor does relaygate's
    own /metrics page reach the user."""
    gateway.add_endpoint("redirecting", recorder.url, api_key="sk-operator-secret")
    for target in (collector.url + "/chat/completions", gateway.url + "/metrics"):

        async def redirect(seen: Seen, target: str = target) -> Reply:
            return 307, [(b"location", target.encode())], b""

        recorder.state.answer = redirect
        key = gateway.admin_key
        response = gateway.client_for(key).post("/v1/chat/completions", json=BODY)
        assert response.status_code == 502
        assert response.json()["error"]["code"] == "upstream_error"
        assert "redirected" in response.json()["error"]["message"]
        assert "relaygate_" not in response.text
    assert collector.state.requests == [] and collector.state.listings == []


def test_listing_redirect_is_a_sync_error_naming_the_target(
    gateway: Gateway, recorder: RecordingUpstream, collector: RecordingUpstream
) -> None:
    """A model listing that redirects fails the sync with a message naming the target,
    and the endpoint's key is not sent there."""

    async def redirect(seen: Seen) -> Reply:
        return 302, [(b"location", (collector.url + "/models").encode())], b""

    recorder.state.listing = redirect
    endpoint = gateway.add_endpoint(
        "redirecting", recorder.url, type="anthropic", api_key="sk-ant-secret"
    )
    assert endpoint["sync"]["status"] == "error"
    assert collector.url + "/models" in endpoint["sync"]["error"]
    assert "redirect" in endpoint["sync"]["error"]
    assert collector.state.listings == [] and collector.state.requests == []


HOSTILE_HEADERS = [
    (b"content-type", b"application/json"),
    (b"strict-transport-security", b"max-age=31536000; includeSubDomains"),
    (b"access-control-allow-origin", b"*"),
    (b"location", b"https://evil.example/"),
    (b"set-cookie", b"session=stolen"),
    (b"x-relaygate-endpoint", b"spoofed"),
    (b"x-request-id", b"upstream-id"),
    (b"server-timing", b"upstream;dur=0"),
    (b"connection", b"x-ratelimit-limit-requests"),
    (b"x-ratelimit-limit-requests", b"hop-by-hop"),
    (b"x-ratelimit-remaining-tokens", b"42"),
    (b"openai-processing-ms", b"7"),
    (b"openai-organization", b"operator-org"),
    (b"request-id", b"req_123"),
]


def test_response_headers_pass_by_allow_list(gateway: Gateway, recorder: RecordingUpstream) -> None:
    """Only content, retry, rate-limit and provider request-id/timing headers reach the
    client; HSTS, CORS, Location, cookies, the operator's organisation, headers the
    upstream's Connection names, and spoofed relaygate headers do not; x-request-id and
    x-relaygate-endpoint appear once, as relaygate set them."""

    async def hostile(seen: Seen) -> Reply:
        return 200, HOSTILE_HEADERS, chat_reply("gpt-test")[2]

    recorder.state.answer = hostile
    gateway.add_endpoint("hostile", recorder.url)
    response = gateway.client_for(gateway.admin_key).post(
        "/v1/chat/completions", json=BODY, headers={"x-request-id": "client-id-1"}
    )
    assert response.status_code == 200
    names = [name.lower() for name, _ in response.headers.raw]
    for dropped in (
        b"strict-transport-security",
        b"access-control-allow-origin",
        b"location",
        b"set-cookie",
        b"x-ratelimit-limit-requests",
        b"openai-organization",
    ):
        assert dropped not in names, dropped
    assert response.headers.get_list("x-request-id") == ["client-id-1"]
    assert response.headers.get_list("x-relaygate-endpoint") == ["hostile"]
    assert len(response.headers.get_list("server-timing")) == 1
    assert response.headers["x-ratelimit-remaining-tokens"] == "42"
    assert response.headers["openai-processing-ms"] == "7"
    assert response.headers["request-id"] == "req_123"


def test_own_key_failure_cools_down_only_its_user(
    gateway: Gateway, recorder: RecordingUpstream
) -> None:
    """A 429 with Retry-After: 300 answered to one user's own provider key cools that
    user's use of the endpoint down, never the shared key's health or other users'."""

    async def refuse_one_key(seen: Seen) -> Reply:
        if seen.headers.get("authorization") == "Bearer sk-users-own":
            return json_reply(
                429, {"error": {"message": "quota", "type": "x"}}, (b"retry-after", b"300")
            )
        return chat_reply("gpt-test")

    recorder.state.answer = refuse_one_key
    endpoint = gateway.add_endpoint("shared", recorder.url, api_key="sk-shared")
    own = gateway.create_user("byok")
    own_key = gateway.create_key(user_id=own["id"])["key"]
    other_key = gateway.create_key(user_id=gateway.create_user("other")["id"])["key"]
    byok = gateway.client_for(own_key)
    put = byok.put(
        f"/admin/api/v1/me/provider-keys/{endpoint['id']}", json={"api_key": "sk-users-own"}
    )
    assert put.status_code == 200, put.text
    assert byok.post("/v1/chat/completions", json=BODY).status_code == 429
    for _ in range(3):
        assert (
            gateway.client_for(other_key).post("/v1/chat/completions", json=BODY).status_code == 200
        )
    assert gateway.endpoint("shared")["health"]["state"] == "healthy"
    cooled = byok.post("/v1/chat/completions", json=BODY)
    assert cooled.status_code == 503 and cooled.json()["error"]["code"] == "endpoints_cooling_down"


@pytest.mark.parametrize(
    "body",
    [
        b'{"model": "secret-model", "model": "gpt-test", "messages": []}',
        b'{"model": "secret-model", "\\u006dodel": "gpt-test", "messages": []}',
    ],
)
def test_a_second_model_key_cannot_smuggle_a_model(
    gateway: Gateway, recorder: RecordingUpstream, body: bytes
) -> None:
    """A body naming a granted model in one copy of 'model' and a forbidden one in the
    other is refused; the forbidden model never reaches the upstream."""
    recorder.state.models = ["gpt-test", "secret-model"]
    endpoint = gateway.add_endpoint("up", recorder.url)
    key = user_with_one_grant(gateway, endpoint["id"], "gpt-test")
    response = gateway.client_for(key).post(
        "/v1/chat/completions", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400 and response.json()["error"]["param"] == "model"
    assert recorder.state.requests == []


def test_stream_as_a_string_cannot_dodge_token_counting(
    gateway: Gateway, recorder: RecordingUpstream
) -> None:
    """ "stream": "true" (which type-coercing servers stream) is refused, so a stream can
    never go out without the usage relaygate counts."""
    gateway.add_endpoint("up", recorder.url)
    key = gateway.create_key(user_id=gateway.create_user("u")["id"], tokens_per_minute=10)["key"]
    for value in ('"true"', "1", '"yes"'):
        body = b'{"model": "gpt-test", "messages": [], "stream": ' + value.encode() + b"}"
        response = gateway.client_for(key).post(
            "/v1/chat/completions", content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code == 400, value
        assert response.json()["error"]["param"] == "stream"
    assert recorder.state.requests == []


def test_a_request_coming_back_is_refused_as_a_loop(
    gateway: Gateway, recorder: RecordingUpstream
) -> None:
    """An endpoint that leads back to relaygate (here through a proxy that passes every
    header on) gets 508 loop_detected on the second pass instead of recursing."""
    recorder.state.answer = bounce_to(gateway.url)
    gateway.add_endpoint("loop", recorder.url)
    response = gateway.client_for(gateway.admin_key).post("/v1/chat/completions", json=BODY)
    assert response.status_code == 508
    assert response.json()["error"]["code"] == "loop_detected"
    assert len(recorder.state.requests) == 1
    via = recorder.state.requests[0].headers["x-relaygate-via"]
    assert re.fullmatch(r"[0-9a-f]{16}", via)
    # Another relaygate in front (a different mark) is not a loop.
    chained = gateway.client_for(gateway.admin_key).get(
        "/v1/models", headers={"x-relaygate-via": "0123456789abcdef"}
    )
    assert chained.status_code == 200


def test_user_cannot_pick_the_operators_organisation(
    gateway: Gateway, recorder: RecordingUpstream
) -> None:
    """OpenAI-Organization and OpenAI-Project from a client never reach the upstream: they
    would choose another organisation or project of the operator's key."""
    gateway.add_endpoint("openai", recorder.url, api_key="sk-operator-secret")
    client = gateway.openai(
        gateway.create_key(user_id=gateway.create_user("u")["id"])["key"],
        organization="org-someone-else",
        project="proj-billing",
    )
    client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "x"}])
    (seen,) = recorder.state.requests
    assert "openai-organization" not in seen.headers and "openai-project" not in seen.headers


def test_the_path_goes_out_as_escaped_and_only_known_query_parameters(
    gateway: Gateway, recorder: RecordingUpstream
) -> None:
    """The path reaches the endpoint byte for byte as the client escaped it (an escaped
    character stays escaped), and of the query only api-version and beta do."""
    gateway.add_endpoint("custom", recorder.url, extra_routes=["POST /v2/*/infer"])
    client = gateway.client_for(gateway.admin_key)
    answer = client.post(
        "/v1/v2/a%7Eb/infer?api-version=2024-10-21&key=other&beta=true&x=%3F", json=BODY
    )
    assert answer.status_code == 200, answer.text
    assert recorder.state.raw_paths == [b"/v1/v2/a%7Eb/infer"]
    assert recorder.state.requests[0].query == "api-version=2024-10-21&beta=true"


def test_token_counts_out_of_range_are_not_recorded(
    gateway: Gateway, recorder: RecordingUpstream
) -> None:
    """An endpoint reporting 2**40 prompt and -5 completion tokens gets its request
    recorded with no token counts: a negative count would credit a budget, and a count
    past the columns' range could not be written (on PostgreSQL the record was lost: the
    batch holding it failed). The answer after it is recorded as usual."""
    usage = iter([{"prompt_tokens": 2**40, "completion_tokens": -5}, None])

    async def lying(seen: Seen) -> Reply:
        status, headers, body = chat_reply("gpt-test")
        told = next(usage)
        if told is None:
            return status, headers, body
        return json_reply(200, {**json.loads(body), "usage": told})

    recorder.state.answer = lying
    gateway.add_endpoint("liar", recorder.url)
    client = gateway.openai()
    for _ in range(2):
        client.chat.completions.create(model="gpt-test", messages=[])

    async def read() -> list[tuple[Any, ...]]:
        async with gateway.ctx.engine.connect() as connection:
            rows = await connection.execute(
                select(UsageRecord.prompt_tokens, UsageRecord.completion_tokens)
                .where(UsageRecord.status == 200)
                .order_by(UsageRecord.id)
            )
            return [tuple(row) for row in rows]

    recorded = eventually(lambda: gateway.on_loop(read), lambda rows: len(rows) == 2)
    assert recorded == [(None, None), (1, 1)]
