"""relaygate itself, in-process under uvicorn on loopback, with helpers for tests."""

from __future__ import annotations

import asyncio
import functools
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import anthropic
import httpx
from fastapi import FastAPI
from openai import OpenAI

from relaygate.app import RelaygateApp, build_api, create_app
from relaygate.context import Context
from relaygate.settings import load_settings
from tests.support import databases
from tests.support.servers import ServerThread
from tests.support.snapshots import describe

T = TypeVar("T")


class Clock:
    """A settable clock for budgets' periods: ``now`` (UTC) until moved."""

    def __init__(self, now: datetime | None = None):
        self.now = now or datetime(2031, 1, 15, 12, 0, tzinfo=UTC)  # a Wednesday noon

    def __call__(self) -> datetime:
        return self.now

    def move(self, **delta: float) -> None:
        """Move the clock by ``timedelta(**delta)``."""
        self.now += timedelta(**delta)


@functools.cache
def shared_api() -> FastAPI:
    """The one FastAPI application every gateway of this test process serves its HTTP
    routes with: building it is most of a gateway's start (see
    :mod:`relaygate.app_state`)."""
    return build_api()


class Gateway:
    """A running relaygate on a fresh SQLite file, with a known admin key; ``overrides``
    are settings, ``server_options`` go to ``uvicorn.Config``; ``clock`` (UTC
    datetimes) is the time budgets go by; ``environ`` the environment settings read
    (e.g. an OIDC client secret), empty by default."""

    def __init__(
        self,
        tmp_path: Path,
        server_options: dict[str, Any] | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
        environ: dict[str, str] | None = None,
        **overrides: Any,
    ):
        self.admin_key = "rg-" + secrets.token_urlsafe(32)
        self._own_database = "database_url" not in overrides
        self.database_url = overrides.pop("database_url", None) or databases.migrated_database_url(
            tmp_path
        )
        values: dict[str, Any] = {
            "database_url": self.database_url,
            "admin_key": self.admin_key,
            "secret_key": secrets.token_urlsafe(32),
            "sync_interval": 3600,
            "change_poll_interval": 0.2,
            "files_dir": str(tmp_path / "files"),
        }
        values.update(overrides)
        self.settings = load_settings(None, environ=environ or {}, **values)
        self.clock = clock
        # As `relaygate serve` runs it (start-up's heap frozen), which also keeps leaked
        # objects of earlier tests out of the collector's sight during this one.
        self.app: RelaygateApp = create_app(
            self.settings, clock=clock, freeze_heap=True, api=shared_api()
        )
        self.server = ServerThread(self.app, **(server_options or {}))
        self.url = ""
        self._clients: list[httpx.Client] = []
        self._sdk_clients: list[OpenAI] = []
        self._anthropic_clients: list[anthropic.Anthropic] = []
        self.checks_snapshot = True

    def start(self) -> Gateway:
        self.server.start()
        self.url = self.server.url
        self.admin = httpx.Client(
            base_url=self.url, headers={"authorization": f"Bearer {self.admin_key}"}, timeout=30
        )
        return self

    def stop(self) -> None:
        """Stop the server, first checking (unless ``checks_snapshot`` was turned off)
        that the snapshot it kept change by change equals one rebuilt whole now: every
        test so checks the change path."""
        try:
            if self.checks_snapshot:
                self.check_snapshot()
        finally:
            for client in self._clients:
                client.close()
            for sdk in self._sdk_clients:
                sdk.close()
            for claude in self._anthropic_clients:
                claude.close()
            self.admin.close()
            self.server.stop()
            if self._own_database:
                databases.drop(self.database_url)

    def check_snapshot(self) -> None:
        """Assert that the running snapshot, with every logged change applied, equals one
        rebuilt from the database (skipped when the server or database is gone)."""
        if self.server.loop is None or not self.server.loop.is_running():
            return
        try:
            store = self.ctx.snapshots
        except AttributeError:  # never started
            return
        if not store.loaded:
            return
        # A change may commit between the catch-up and the rebuild (a sync still running
        # as the test ends): then the next catch-up has it. A real divergence stays.
        for attempt in range(3):
            try:
                self.on_loop(store.catch_up)
                rebuilt = self.on_loop(store.rebuilt)
            except Exception:  # the test broke the database on purpose: nothing to compare
                return
            if describe(store.current) == describe(rebuilt) or attempt == 2:
                break
            time.sleep(0.2)
        assert describe(store.current) == describe(rebuilt), (
            "the snapshot kept change by change differs from a rebuilt one"
        )

    def dump(self) -> bytes:
        """All the database stores, to search for secrets in clear."""
        return databases.dump(self.database_url)

    def client_for(self, key: str) -> httpx.Client:
        """An HTTP client sending ``key`` as Bearer, closed when the gateway stops."""
        client = httpx.Client(
            base_url=self.url, headers={"authorization": f"Bearer {key}"}, timeout=30
        )
        self._clients.append(client)
        return client

    @property
    def ctx(self) -> Context:
        return self.app.state.ctx

    def anthropic(self, key: str | None = None, **kwargs: Any) -> anthropic.Anthropic:
        """An anthropic SDK client for this gateway (``key`` as its API key; the admin
        key by default), closed when the gateway stops."""
        if "auth_token" not in kwargs:
            kwargs["api_key"] = key or self.admin_key
        kwargs.setdefault("max_retries", 0)
        client = anthropic.Anthropic(base_url=self.url, **kwargs)
        self._anthropic_clients.append(client)
        return client

    def openai(self, key: str | None = None, **kwargs: Any) -> OpenAI:
        """An openai SDK client for this gateway, closed when the gateway stops."""
        client = OpenAI(
            base_url=self.url + "/v1", api_key=key or self.admin_key, max_retries=0, **kwargs
        )
        self._sdk_clients.append(client)
        return client

    def on_loop(self, make: Callable[[], Awaitable[T]]) -> T:
        """Run a coroutine on relaygate's own event loop and return its result."""
        assert self.server.loop is not None
        return asyncio.run_coroutine_threadsafe(make(), self.server.loop).result(10)

    def resources(self) -> tuple[int, int]:
        """(upstream connections checked out of the HTTP client's pool, tasks on the loop)."""

        acquired, tasks = self.on_loop(self._resources)
        return acquired, len(tasks)

    async def _resources(self) -> tuple[int, list[str]]:
        # aiohttp keeps checked-out connections in the connector's ``_acquired`` set.
        acquired = len(self.ctx.http.connector._acquired)  # type: ignore[union-attr]
        # Background loops wait on their stop event through short-lived wait_for tasks.
        tasks = [repr(task.get_coro()) for task in asyncio.all_tasks()]
        return acquired, [name for name in tasks if "Event.wait" not in name]

    def assert_settles(self, tasks: int, timeout: float = 5.0) -> None:
        """Wait until no upstream connection is checked out and at most ``tasks`` tasks
        run (the count before a test's requests): nothing leaked."""
        deadline = time.monotonic() + timeout
        while True:
            acquired, running = self.resources()
            if (acquired == 0 and running <= tasks) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert acquired == 0, f"{acquired} upstream connection(s) still checked out"
        if running > tasks:
            names = "\n".join(self.on_loop(self._resources)[1])
            raise AssertionError(f"{running} tasks running, {tasks} before:\n{names}")

    def endpoint(self, name: str) -> dict[str, Any]:
        """The endpoint named ``name`` as the admin API shows it."""
        response = self.admin.get("/admin/api/v1/endpoints")
        assert response.status_code == 200, response.text
        found: list[dict[str, Any]] = [e for e in response.json() if e["name"] == name]
        assert found, f"no endpoint named {name!r}"
        return found[0]

    def add_endpoint(self, name: str, url: str, **fields: Any) -> dict[str, Any]:
        response = self.admin.post(
            "/admin/api/v1/endpoints", json={"name": name, "url": url, **fields}
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    def create_user(self, name: str, role: str = "user") -> dict[str, Any]:
        response = self.admin.post("/admin/api/v1/users", json={"name": name, "role": role})
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    def create_key(self, **fields: Any) -> dict[str, Any]:
        response = self.admin.post("/admin/api/v1/keys", json=fields)
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body
