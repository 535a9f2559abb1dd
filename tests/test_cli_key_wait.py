"""`keys create` waits for the running server without handing the new key to whatever
answers on the configured address (another program on the port, an HTTP proxy)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support import databases
from tests.support.process import cli_env, relaygate
from tests.support.servers import ServerThread


@pytest.fixture
def stranger() -> Iterator[tuple[ServerThread, list[str]]]:
    """Some other program listening where relaygate's port is configured: it answers
    every GET with 200 and remembers every header it was sent."""
    seen: list[str] = []

    async def anything(request: Request) -> Response:
        seen.extend(f"{name}: {value}" for name, value in request.headers.items())
        seen.append(str(request.url))
        return JSONResponse({"status": "ready"})

    server = ServerThread(
        Starlette(routes=[Route("/{path:path}", anything, methods=["GET", "POST"])])
    ).start()
    yield server, seen
    server.stop()


def test_keys_create_never_sends_the_new_key_to_the_configured_port(
    tmp_path: Path, stranger: tuple[ServerThread, list[str]]
) -> None:
    """A program that is not relaygate listening on the configured port (or a proxy the
    environment names) never receives the key `keys create` just made."""
    server, seen = stranger
    url = databases.database_url(tmp_path, "cli.db")
    env = cli_env(
        tmp_path,
        RELAYGATE_DATABASE_URL=url,
        RELAYGATE_SECRET_KEY=secrets.token_urlsafe(32),
        RELAYGATE_PORT=str(server.port),
        HTTP_PROXY=server.url,
        http_proxy=server.url,
        NO_PROXY="",
        no_proxy="",
    )
    try:
        made = relaygate(tmp_path, "users", "add", "alice", env=env)
        assert made.returncode == 0, made.stderr
        result = relaygate(tmp_path, "keys", "create", "--user", "alice", env=env)
        assert result.returncode == 0, result.stderr
        key = result.stdout.strip()
        assert key and not any(key in line for line in seen), seen
    finally:
        databases.drop(url)
