"""relaygate itself, in-process under uvicorn on loopback, with helpers for tests."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import httpx
from openai import OpenAI

from relaygate.app import RelaygateApp, create_app
from relaygate.context import Context
from relaygate.settings import load_settings
from tests.support import databases
from tests.support.servers import ServerThread


class Gateway:
    """A running relaygate on a fresh SQLite file, with a known admin key; ``overrides``
    are settings, ``server_options`` go to ``uvicorn.Config``."""

    def __init__(
        self, tmp_path: Path, server_options: dict[str, Any] | None = None, **overrides: Any
    ):
        self.admin_key = "rg-" + secrets.token_urlsafe(32)
        self._own_database = "database_url" not in overrides
        self.database_url = overrides.pop("database_url", None) or databases.database_url(tmp_path)
        values: dict[str, Any] = {
            "database_url": self.database_url,
            "admin_key": self.admin_key,
            "secret_key": "test-secret-" + secrets.token_hex(8),
            "sync_interval": 3600,
            "change_poll_interval": 0.2,
        }
        values.update(overrides)
        self.settings = load_settings(None, environ={}, **values)
        self.app: RelaygateApp = create_app(self.settings)
        self.server = ServerThread(self.app, **(server_options or {}))
        self.url = ""
        self._clients: list[httpx.Client] = []
        self._sdk_clients: list[OpenAI] = []

    def start(self) -> Gateway:
        self.server.start()
        self.url = self.server.url
        self.admin = httpx.Client(
            base_url=self.url, headers={"authorization": f"Bearer {self.admin_key}"}, timeout=30
        )
        return self

    def stop(self) -> None:
        for client in self._clients:
            client.close()
        for sdk in self._sdk_clients:
            sdk.close()
        self.admin.close()
        self.server.stop()
        if self._own_database:
            databases.drop(self.database_url)

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
        ctx: Context = self.app.api.state.ctx
        return ctx

    def openai(self, key: str | None = None, **kwargs: Any) -> OpenAI:
        """An openai SDK client for this gateway, closed when the gateway stops."""
        client = OpenAI(
            base_url=self.url + "/v1", api_key=key or self.admin_key, max_retries=0, **kwargs
        )
        self._sdk_clients.append(client)
        return client

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
