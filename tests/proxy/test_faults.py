"""Upstream faults: what the client sees, when relaygate fails over, and that nothing leaks.

Each test steers a fault-injecting upstream (tests/support/faults.py). ``pair`` serves
``gpt-test`` from it and from a healthy upstream; ``solo`` from it alone. After every
fault the next request is served normally, no upstream connection stays checked out
and no task is left behind.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import Upstream
from tests.support.faults import FaultServer
from tests.support.gateway import Gateway

CHAT = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def faulty() -> Iterator[FaultServer]:
    server = FaultServer().start()
    yield server
    server.stop()


@pytest.fixture
def solo(gateway: Gateway, faulty: FaultServer) -> Iterator[Gateway]:
    gateway.add_endpoint("faulty", faulty.url)
    tasks = warm_up(gateway)
    faulty.requests = 0
    yield gateway
    faulty.fault = "ok"
    check_recovers(gateway, tasks)


@pytest.fixture
def pair(gateway: Gateway, faulty: FaultServer, upstream: Upstream) -> Iterator[Gateway]:
    gateway.add_endpoint("faulty", faulty.url, pool="p")
    gateway.add_endpoint("healthy", upstream.url, pool="p")
    tasks = warm_up(gateway)
    chat(gateway)  # both targets served once: round-robin starts with the faulty one
    faulty.requests = 0
    yield gateway
    check_recovers(gateway, tasks)


def warm_up(gateway: Gateway) -> int:
    """Serve a request (the pools and tasks a normal request leaves); the task count."""
    response = chat(gateway)
    assert response.status_code == 200, response.text
    return gateway.resources()[1]


def check_recovers(gateway: Gateway, tasks: int) -> None:
    """relaygate serves the next request normally and has leaked nothing."""
    gateway.assert_settles(tasks)
    response = chat(gateway)
    assert response.status_code in (200, 503), response.text  # 503: cooling, not broken
    gateway.assert_settles(tasks)


def chat(gateway: Gateway, **extra: Any) -> httpx.Response:
    return gateway.admin.post("/v1/chat/completions", json={**CHAT, **extra})


def set_timeouts(gateway: Gateway, name: str, **timeouts: float) -> None:
    endpoint = gateway.endpoint(name)
    response = gateway.admin.patch(
        f"/admin/api/v1/endpoints/{endpoint['id']}", json={"timeouts": timeouts}
    )
    assert response.status_code == 200, response.text
    assert response.json()["timeouts"] == timeouts


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    error: dict[str, Any] = body["error"]
    return error


def test_refused_connection_fails_over_then_cools_down(
    pair: Gateway, faulty: FaultServer, upstream: Upstream
) -> None:
    """A target that refuses connections is skipped for the client, and after three
    failures in a row it is cooled down: visible in the admin API and registry status."""
    faulty.stop()
    for _ in range(8):
        response = chat(pair)
        assert response.status_code == 200
        assert response.headers["x-relaygate-endpoint"] == "healthy"
    health = pair.endpoint("faulty")["health"]
    assert health["state"] == "cooling_down"
    assert health["consecutive_failures"] == 3  # skipped once cooled down
    assert "refused" in health["last_error"]
    assert datetime.fromisoformat(health["cooldown_until"]) > datetime.now(UTC)
    assert pair.endpoint("healthy")["health"]["state"] == "healthy"
    status = pair.admin.get("/admin/api/v1/registry/status").json()
    by_name = {e["name"]: e["health"]["state"] for e in status["endpoints"]}
    assert by_name == {"faulty": "cooling_down", "healthy": "healthy"}


def test_lone_refusing_target_gets_502_then_503_while_cooling(
    solo: Gateway, faulty: FaultServer
) -> None:
    """Alone, a refusing target's error reaches the client (502); once it is cooling
    down relaygate answers 503 with Retry-After at once instead of trying it."""
    faulty.stop()
    for _ in range(3):
        response = chat(solo)
        assert response.status_code == 502
        assert "connection refused" in error_of(response)["message"]
    response = chat(solo)
    assert response.status_code == 503
    assert error_of(response)["code"] == "endpoints_cooling_down"
    assert 1 <= int(response.headers["retry-after"]) <= 5


@pytest.mark.parametrize("status", [500, 502, 503, 429])
@pytest.mark.parametrize("retry_after", [None, "30"], ids=["plain", "retry-after"])
def test_error_status_fails_over_and_cools_down(
    pair: Gateway, faulty: FaultServer, status: int, retry_after: str | None
) -> None:
    """5xx and 429 fail over to the healthy target. Without Retry-After the failing one
    is cooled down after three failures in a row; with it, at once and for that long. A
    429 (the endpoint key's own limit) cools it down for everyone at once; a 5xx, which
    one caller's input may cause, first for that caller alone, then for everyone once a
    second user's request fails too."""
    faulty.fault, faulty.status, faulty.retry_after = "status", status, retry_after
    for _ in range(8):
        response = chat(pair)
        assert response.status_code == 200
        assert response.headers["x-relaygate-endpoint"] == "healthy"
    assert faulty.requests == (1 if retry_after else 3)
    if status != 429:
        assert pair.endpoint("faulty")["health"]["state"] == "failing"
        other = pair.client_for(pair.create_key(user_id=pair.create_user("other")["id"])["key"])
        for _ in range(2):  # round-robin: one of the two tries the faulty target
            response = other.post("/v1/chat/completions", json=CHAT)
            assert response.headers["x-relaygate-endpoint"] == "healthy"
        assert faulty.requests == (2 if retry_after else 4)
    health = pair.endpoint("faulty")["health"]
    assert health["state"] == "cooling_down"
    assert health["last_error"] == f"HTTP {status}"
    left = (datetime.fromisoformat(health["cooldown_until"]) - datetime.now(UTC)).total_seconds()
    if retry_after:
        assert 25 < left <= 30
    else:
        assert 0 < left <= 5


def test_lone_target_error_and_retry_after_are_passed_on_and_honoured(
    solo: Gateway, faulty: FaultServer
) -> None:
    """Alone, a 429 with Retry-After reaches the client as sent; relaygate then keeps off
    the endpoint for that long, answering 503 with the time left."""
    faulty.fault, faulty.status, faulty.retry_after = "status", 429, "20"
    client = solo.openai()
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(model="gpt-test", messages=[])
    assert raised.value.response.headers["retry-after"] == "20"
    assert "faulty says 429" in raised.value.message
    response = chat(solo)
    assert response.status_code == 503
    assert 15 <= int(response.headers["retry-after"]) <= 20
    assert faulty.requests == 1


def test_stall_before_headers_times_out_and_fails_over(pair: Gateway, faulty: FaultServer) -> None:
    """A target that never answers is given up after its first-byte timeout, the
    request goes to the healthy one, and the stalled connection is closed."""
    set_timeouts(pair, "faulty", first_byte=0.5)
    faulty.fault = "stall"
    for _ in range(2):
        started = time.monotonic()
        response = chat(pair)
        assert response.status_code == 200
        assert response.headers["x-relaygate-endpoint"] == "healthy"
        assert time.monotonic() - started < 5
    assert faulty.requests >= 1
    assert faulty.wait_closed()
    assert "no response within 0.5 s" in pair.endpoint("faulty")["health"]["last_error"]


def test_lone_stalled_target_is_a_504(solo: Gateway, faulty: FaultServer) -> None:
    set_timeouts(solo, "faulty", first_byte=0.3)
    faulty.fault = "stall"
    response = chat(solo)
    assert response.status_code == 504
    error = error_of(response)
    assert error["code"] == "upstream_timeout"
    assert "no response within 0.3 s" in error["message"]
    assert faulty.wait_closed()


def test_slow_drip_within_idle_timeout_is_passed_whole(solo: Gateway, faulty: FaultServer) -> None:
    """Chunks arriving slower than usual but within the idle timeout all get through,
    even when the whole stream lasts longer than the idle timeout."""
    set_timeouts(solo, "faulty", idle=0.5)
    faulty.fault, faulty.chunks, faulty.drip_interval = "drip", 6, 0.2
    stream = solo.openai().chat.completions.create(model="gpt-test", messages=[], stream=True)
    words = [c.choices[0].delta.content for c in stream]
    assert words == [f"w{i} " for i in range(6)]
    assert solo.endpoint("faulty")["health"]["state"] == "healthy"


def test_idle_timeout_ends_the_stream_with_an_error_event(
    solo: Gateway, faulty: FaultServer
) -> None:
    """A stream that goes quiet past the idle timeout is ended cleanly with an error the
    openai SDK raises, after the chunks that did arrive; the failure is recorded."""
    set_timeouts(solo, "faulty", idle=0.3)
    faulty.fault, faulty.chunks, faulty.drip_interval = "drip", 4, 1.0
    stream = solo.openai().chat.completions.create(model="gpt-test", messages=[], stream=True)
    words = []
    with pytest.raises(openai.APIError) as raised:
        for chunk in stream:
            words.append(chunk.choices[0].delta.content)
    assert words == ["w0 "]
    assert "idle timeout" in raised.value.message
    health = solo.endpoint("faulty")["health"]
    assert health["state"] == "failing"
    assert "idle timeout" in health["last_error"]
    assert faulty.wait_closed()


def test_total_timeout_ends_a_long_stream(solo: Gateway, faulty: FaultServer) -> None:
    set_timeouts(solo, "faulty", total=0.5, idle=5)
    faulty.fault, faulty.chunks, faulty.drip_interval = "drip", 20, 0.1
    stream = solo.openai().chat.completions.create(model="gpt-test", messages=[], stream=True)
    words = []
    with pytest.raises(openai.APIError) as raised:
        for chunk in stream:
            words.append(chunk.choices[0].delta.content)
    assert 2 <= len(words) < 20
    assert "total timeout of 0.5 s" in raised.value.message


def test_stream_cut_in_the_middle_ends_with_an_error_event(
    solo: Gateway, faulty: FaultServer
) -> None:
    """An SSE stream whose connection drops before its end: the client gets the events
    that came, then an error its SDK raises, never a silently short answer."""
    faulty.fault, faulty.chunks = "cut_stream", 3
    stream = solo.openai().chat.completions.create(model="gpt-test", messages=[], stream=True)
    words = []
    with pytest.raises(openai.APIError) as raised:
        for chunk in stream:
            words.append(chunk.choices[0].delta.content)
    assert words == ["w0 ", "w1 ", "w2 "]
    assert "broke off" in raised.value.message
    assert solo.endpoint("faulty")["health"]["consecutive_failures"] == 1


def test_reset_mid_body_closes_the_client_connection(solo: Gateway, faulty: FaultServer) -> None:
    """A JSON body cut off by a reset cannot be failed over (its headers went out): the
    client's connection is closed so it sees an incomplete response, not a short one."""
    faulty.fault = "reset_body"
    with pytest.raises(httpx.RemoteProtocolError):
        chat(solo)
    assert solo.endpoint("faulty")["health"]["consecutive_failures"] == 1


def test_invalid_json_is_passed_through_untouched(solo: Gateway, faulty: FaultServer) -> None:
    """relaygate does not parse answers: a 200 whose body is not JSON reaches the client
    byte for byte (its SDK reports it), and is not a failover reason."""
    faulty.fault = "invalid_json"
    response = chat(solo)
    assert response.status_code == 200
    assert response.content == b'{"id": "chatcmpl-1", "choices": [ not json'
    with pytest.raises(ValueError):  # the SDK's JSON decoding error
        solo.openai().chat.completions.create(model="gpt-test", messages=[])


def test_very_large_response_streams_through_whole(solo: Gateway, faulty: FaultServer) -> None:
    faulty.fault, faulty.large_bytes = "large", 64 * 1024 * 1024
    digest = hashlib.sha256()
    size = 0
    with solo.admin.stream("POST", "/v1/chat/completions", json=CHAT) as response:
        assert response.status_code == 200
        for part in response.iter_raw():
            size += len(part)
            digest.update(part)
    assert size == 64 * 1024 * 1024
    expected = hashlib.sha256()
    block = b"x" * 65536
    for _ in range(1024):
        expected.update(block)
    assert digest.hexdigest() == expected.hexdigest()


def test_client_leaving_mid_stream_closes_the_upstream_connection(
    solo: Gateway, faulty: FaultServer
) -> None:
    faulty.fault, faulty.chunks, faulty.drip_interval = "drip", 50, 0.1
    with solo.admin.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as r:
        first = next(r.iter_raw())
        assert first.startswith(b"data: ")
    assert faulty.wait_closed()
    assert solo.endpoint("faulty")["health"]["state"] == "healthy"


def test_fallback_model_answers_when_every_target_fails(
    gateway: Gateway, faulty: FaultServer, upstream: Upstream
) -> None:
    """A model's fallback is tried when all its targets fail; the answer names it in
    x-relaygate-model and the upstream sees the fallback's own model id."""
    faulty_id = gateway.add_endpoint("faulty", faulty.url, pool="p")["id"]
    healthy_id = gateway.add_endpoint("healthy", upstream.url, pool="p")["id"]
    models = gateway.admin.get("/admin/api/v1/models").json()
    primary = next(m for m in models if m["endpoint_id"] == faulty_id)
    backup = next(m for m in models if m["endpoint_id"] == healthy_id)
    assert gateway.admin.patch(
        f"/admin/api/v1/models/{primary['id']}", json={"alias": "smart"}
    ).is_success
    assert gateway.admin.patch(
        f"/admin/api/v1/models/{backup['id']}", json={"alias": "backup"}
    ).is_success
    patched = gateway.admin.patch(
        f"/admin/api/v1/models/{primary['id']}", json={"fallback_model": "backup"}
    )
    assert patched.json()["fallback_model"] == "backup"
    faulty.fault, faulty.status = "status", 500
    response = chat(gateway, model="smart")
    assert response.status_code == 200, response.text
    assert response.headers["x-relaygate-endpoint"] == "healthy"
    assert response.headers["x-relaygate-model"] == "backup"
    assert upstream.state.requests[-1].json["model"] == "gpt-test"

    # A caller whose key may not use the fallback gets the primary's error instead.
    limited = gateway.create_key(allowed_models=["smart"])["key"]
    response = gateway.client_for(limited).post(
        "/v1/chat/completions", json={**CHAT, "model": "smart"}
    )
    assert response.status_code == 500
    assert "x-relaygate-model" not in response.headers

    # A fallback to the model itself is refused.
    response = gateway.admin.patch(
        f"/admin/api/v1/models/{primary['id']}", json={"fallback_model": "smart"}
    )
    assert response.status_code == 400


def test_fallback_serves_an_offline_model(
    gateway: Gateway, faulty: FaultServer, upstream: Upstream
) -> None:
    faulty_id = gateway.add_endpoint("faulty", faulty.url, pool="p")["id"]
    gateway.add_endpoint("healthy", upstream.url, pool="p")
    models = gateway.admin.get("/admin/api/v1/models").json()
    primary = next(m for m in models if m["endpoint_id"] == faulty_id)
    gateway.admin.patch(
        f"/admin/api/v1/models/{primary['id']}",
        json={"alias": "smart", "fallback_model": "gpt-test"},
    )
    faulty.stop()
    gateway.admin.post(f"/admin/api/v1/endpoints/{faulty_id}/sync")
    response = chat(gateway, model="smart")
    assert response.status_code == 200, response.text
    assert response.headers["x-relaygate-model"] == "gpt-test"


def test_concurrency_limit_answers_503_at_once(tmp_path: Any, faulty: FaultServer) -> None:
    """Past max_concurrent_requests, relaygate refuses at once with 503 and Retry-After
    rather than queueing without bound; capacity comes back as requests finish."""
    gateway = Gateway(tmp_path, max_concurrent_requests=2).start()
    try:
        gateway.add_endpoint("faulty", faulty.url, timeouts={"first_byte": 2})
        faulty.fault = "stall"
        results: list[int] = []

        def slow() -> None:
            results.append(chat(gateway).status_code)

        threads = [threading.Thread(target=slow) for _ in range(2)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 5
        while faulty.requests < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        started = time.monotonic()
        response = chat(gateway)
        assert time.monotonic() - started < 1.5  # the two held still stall (2 s)
        assert response.status_code == 503
        assert error_of(response)["code"] == "server_overloaded"
        assert response.headers["retry-after"] == "1"
        for thread in threads:
            thread.join()
        assert results == [504, 504]
        faulty.fault = "ok"
        assert chat(gateway).status_code == 200
    finally:
        gateway.stop()


def test_timeouts_are_validated(gateway: Gateway, upstream: Upstream) -> None:
    endpoint = gateway.add_endpoint("up", upstream.url, timeouts={"connect": 2})
    assert endpoint["timeouts"] == {"connect": 2}
    url = f"/admin/api/v1/endpoints/{endpoint['id']}"
    for bad in ({"idle": 0}, {"idle": -1}, {"sometimes": 3}, {"total": "soon"}):
        response = gateway.admin.patch(url, json={"timeouts": bad})
        assert response.status_code == 400, bad
    cleared = gateway.admin.patch(url, json={"timeouts": None})
    assert cleared.json()["timeouts"] == {}
