"""Hostile clients against a real ``relaygate serve``: every input bounded before it is
buffered, checked by the answer and by the process's resident memory."""

from __future__ import annotations

import concurrent.futures
import socket
import time

import httpx
import pytest

from tests.adversarial.conftest import Start, read_answer

MB = 1024 * 1024
ROUTES = ["/v1/chat/completions", "/admin/api/v1/users", "/ui/login", "/healthz"]


def send_until_refused(sock: socket.socket, head: bytes, filler: bytes, total: int) -> bytes:
    """Send ``head`` then ``filler`` until ``total`` bytes went out or the server stopped
    reading; returns what the server answered."""
    sent = 0
    try:
        sock.sendall(head)
        while sent < total:
            sock.sendall(filler)
            sent += len(filler)
    except (BrokenPipeError, ConnectionResetError):
        pass
    return read_answer(sock, timeout=5)


@pytest.mark.parametrize("path", ROUTES)
def test_a_huge_header_is_refused_on_the_socket(serve: Start, path: str) -> None:
    """A 100 MB header gets 431 as soon as the head passes max_header_bytes, on every
    route family, and the process's memory does not grow with it."""
    served = serve()
    before = served.rss()
    with served.connect() as sock:
        head = f"GET {path} HTTP/1.1\r\nhost: x\r\nx-big: ".encode()
        answer = send_until_refused(sock, head, b"a" * 65536, 100 * MB)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert b"request_header_fields_too_large" in answer
    assert served.rss() - before < 8 * MB
    assert httpx.get(served.url + "/healthz", timeout=2).status_code == 200


def test_a_slow_head_is_closed_and_others_are_served(serve: Start) -> None:
    """Connections trickling their request head (or sending nothing) are answered 408 and
    closed after header_timeout; meanwhile others are served at once."""
    served = serve(header_timeout="2")
    key = served.user_key("patient")
    slow = [served.connect() for _ in range(200)]
    for index, sock in enumerate(slow):
        if index % 2:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nx-a: ")
    began = time.monotonic()
    response = served.chat(key)
    # Served well before the slow heads' timeout, with room for a loaded machine.
    assert response.status_code == 200 and time.monotonic() - began < 1.5
    answers = [read_answer(sock, timeout=6) for sock in slow]
    for index, answer in enumerate(answers):
        if index % 2:
            assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
        else:
            assert answer == b""  # nothing sent, closed without a word
    for sock in slow:
        sock.close()


def test_slow_bodies_of_one_user_do_not_starve_another(serve: Start) -> None:
    """One user's connections that never send their declared body hold at most
    max_concurrent_per_user slots (more get 429 at once) and are answered 408 after
    body_timeout; another user is served at once all the while."""
    served = serve(max_concurrent_requests="40", max_concurrent_per_user="10", body_timeout="2")
    mallory, alice = served.user_key("mallory"), served.user_key("alice")
    stuck = []
    for _ in range(30):
        sock = served.connect()
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
            b"authorization: Bearer " + mallory.encode() + b"\r\n"
            b"content-type: application/json\r\ncontent-length: 100\r\n\r\n"
        )
        stuck.append(sock)
    time.sleep(0.3)
    began = time.monotonic()
    response = served.chat(alice)
    assert response.status_code == 200 and time.monotonic() - began < 1.5
    answers = [read_answer(sock, timeout=6) for sock in stuck]
    statuses = sorted(answer[9:12] for answer in answers)
    assert statuses.count(b"429") == 20 and statuses.count(b"408") == 10, statuses
    assert all(b"concurrency_limit_exceeded" in a for a in answers if a[9:12] == b"429")
    for sock in stuck:
        sock.close()


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/admin/api/v1/users", "application/json"),
        ("/ui/login", "application/x-www-form-urlencoded"),
    ],
)
def test_admin_and_console_bodies_are_bounded(serve: Start, path: str, kind: str) -> None:
    """A body over max_admin_body_bytes outside /v1 is refused with 413 whether declared
    (refused before a byte is read) or streamed (refused at the chunk that passes the
    limit), unauthenticated, and memory does not grow with it."""
    served = serve()
    before = served.rss()
    with served.connect() as sock:
        head = (
            f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: {kind}\r\n"
            f"content-length: {400 * MB}\r\n\r\n"
        ).encode()
        answer = send_until_refused(sock, head, b"x" * 65536, 8 * MB)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]

    def chunks() -> object:
        for _ in range(200):
            yield b"x" * 65536

    streamed = httpx.post(
        served.url + path,
        content=chunks(),  # type: ignore[arg-type]
        headers={"content-type": kind},
        timeout=30,
    )
    assert streamed.status_code == 413
    assert streamed.json()["error"]["code"] == "request_too_large"
    assert served.rss() - before < 8 * MB


def test_a_client_writing_its_whole_body_first_reads_the_413(serve: Start) -> None:
    """A client that writes a 40 MiB body before reading (as urllib does, with
    Connection: close) reads relaygate's 413 rather than a reset connection."""
    served = serve()
    key = served.user_key("writer")
    body = b'{"model": "gpt-test", "input": "' + b"x" * (40 * MB) + b'"}'
    head = (
        "POST /v1/embeddings HTTP/1.1\r\nhost: x\r\nconnection: close\r\n"
        f"authorization: Bearer {key}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode()
    with served.connect() as sock:
        sock.sendall(head + body)
        answer = read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"request_too_large" in answer


def test_a_body_cut_by_a_disconnect_is_never_forwarded(serve: Start) -> None:
    """A client that sends half its body and leaves has nothing forwarded; the process
    goes on serving."""
    served = serve()
    key = served.user_key("leaver")
    body = b'{"model": "gpt-test", "messages": []}'
    with served.connect() as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
            b"authorization: Bearer " + key.encode() + b"\r\n"
            b"content-length: " + str(len(body) + 50).encode() + b"\r\n\r\n" + body
        )
        time.sleep(0.2)
    time.sleep(0.3)
    usage = served.admin.get("/admin/api/v1/usage", params={"group_by": "user"}).json()
    assert usage["total"]["requests"] == 0, usage
    assert httpx.get(served.url + "/healthz", timeout=2).status_code == 200


def test_many_concurrent_hostile_clients_leave_the_process_serving(serve: Start) -> None:
    """Huge headers, huge bodies and slow heads at once, from 60 clients: every one is
    refused, and a normal request is served right after."""
    served = serve(header_timeout="1")
    key = served.user_key("normal")

    def attack(kind: int) -> bytes:
        with served.connect() as sock:
            if kind == 0:
                return send_until_refused(
                    sock, b"GET /healthz HTTP/1.1\r\nx: ", b"a" * 65536, 4 * MB
                )
            if kind == 1:
                head = b"POST /admin/api/v1/users HTTP/1.1\r\ncontent-length: 99999999\r\n\r\n"
                return send_until_refused(sock, head, b"x" * 65536, 4 * MB)
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")
            return read_answer(sock, timeout=5)

    with concurrent.futures.ThreadPoolExecutor(max_workers=60) as pool:
        answers = list(pool.map(attack, [i % 3 for i in range(60)]))
    assert all(a[9:12] in (b"431", b"413", b"408") for a in answers), [a[:20] for a in answers]
    response = served.chat(key)
    assert response.status_code == 200
