"""The admin API against its own OpenAPI description (schemathesis): whatever a client
sends, valid or not, relaygate answers without a 5xx, and its 4xx errors are OpenAI-shaped.

The run uses a live gateway on loopback whose upstream HTTP client connects to loopback
only: generated endpoint URLs name any host, and nothing may leave this machine.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from pydantic import TypeAdapter, ValidationError
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.core.transport import Response
from schemathesis.specs.openapi.schemas import OpenApiSchema

from tests.conftest import Upstream
from tests.support.gateway import Gateway

API = "/admin/api/v1"
HOSTILE = ["\x00", "a\x00b", "x" * 3000, "9999-12-31T23:59:59-10:00", 2**31, 2**63, 1e300]
"""Values databases refuse or overflow on: NUL, longer than any VARCHAR column, a time that
leaves year 9999 in UTC, ids past 32 and 64 bits, a number past any interval."""
URLS = ["https://api.openai.com/v1", "http://127.0.0.1:9/v1", "http://127.0.0.1/\x00"]
"""Endpoint URLs that pass the URL check (one with a NUL), so that generated endpoints get
past it: random strings never do."""
SETTINGS = settings(  # 15 examples an operation: about 30 s a backend
    max_examples=15,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
_INT = TypeAdapter(int)


@dataclass(frozen=True)
class Run:
    """The gateway under test and the ids behind the admin key the run sends."""

    gateway: Gateway
    user_id: int
    key_id: int


def _is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address((host or "").strip("[]")).is_loopback
    except ValueError:
        return False


async def _refuse_other_hosts(
    _: aiohttp.ClientSession, __: Any, params: aiohttp.TraceRequestStartParams
) -> None:
    if not _is_loopback(params.url.host):
        raise aiohttp.ClientConnectionError(f"the test refuses to connect to {params.url.host!r}")


def _run_on_server(gateway: Gateway, work: Coroutine[Any, Any, None]) -> None:
    loop = gateway.server.loop
    assert loop is not None
    asyncio.run_coroutine_threadsafe(work, loop).result(timeout=10)


def _loopback_only(gateway: Gateway) -> None:
    """Swap the gateway's upstream HTTP client for one that connects to loopback only."""
    ctx = gateway.ctx

    async def swap() -> None:
        trace = aiohttp.TraceConfig()
        trace.on_request_start.append(_refuse_other_hosts)
        old, ctx.http = ctx.http, aiohttp.ClientSession(trace_configs=[trace])
        await old.close()

    _run_on_server(gateway, swap())


@pytest.fixture
def run(tmp_path: Path, upstream: Upstream) -> Iterator[Run]:
    """A gateway with rows for generated ids to land on: an endpoint with three models,
    a user with a key, a group."""
    gateway = Gateway(tmp_path).start()
    try:
        _loopback_only(gateway)
        upstream.state.models = ["m1", "m2", "m3"]
        gateway.add_endpoint("seed", upstream.url)
        user = gateway.create_user("seed-user")
        gateway.create_key(user_id=user["id"], name="seed-key")
        assert gateway.admin.post(f"{API}/groups", json={"name": "seed-group"}).is_success
        me = gateway.admin.get(f"{API}/me").json()
        yield Run(gateway, user_id=me["user"]["id"], key_id=me["key_id"])
    finally:
        _run_on_server(gateway, gateway.ctx.http.close())
        gateway.stop()


def _config(spec: dict[str, Any]) -> SchemathesisConfig:
    """Schemathesis' defaults, with :data:`HOSTILE` values mixed into every parameter and
    top-level body field (random generation alone finds them too rarely for a short run)
    and :data:`URLS` into endpoint URLs."""
    fields = {
        name
        for component in spec["components"]["schemas"].values()
        for name in component.get("properties", {})
    }
    sometimes = {"dictionary": "hostile", "probability": 0.25}
    parameters = {f"body.{name}": sometimes for name in sorted(fields)}
    parameters["body.url"] = {"dictionary": "urls", "probability": 0.5}
    return SchemathesisConfig.from_dict(
        {
            "dictionaries": {"hostile": {"values": HOSTILE}, "urls": {"values": URLS}},
            "generation": {
                "dictionaries": dict.fromkeys(("string", "integer", "number"), sometimes)
            },
            "parameters": parameters,
        }
    )


@pytest.fixture
def admin_api(run: Run) -> OpenApiSchema:
    """The running gateway's OpenAPI description, calls authenticated as its admin."""
    spec = run.gateway.admin.get("/admin/openapi.json").json()
    schema = schemathesis.openapi.from_dict(spec, config=_config(spec))
    schema.config.update(
        base_url=run.gateway.url,
        headers={"authorization": f"Bearer {run.gateway.admin_key}"},
    )
    return schema


def openai_shaped_error(_: Any, response: Response, __: Case) -> bool | None:
    """A 4xx answer carries OpenAI's error object."""
    if 400 <= response.status_code < 500:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}, error
        assert isinstance(error["message"], str) and error["message"]
        assert isinstance(error["type"], str) and error["type"]
    return None


def keeps_access(_: Any, response: Response, __: Case) -> bool | None:
    """The run's admin key still works: after a 401 every answer would be meaningless."""
    assert response.status_code != 401, "the run lost its admin access"
    return None


def _names(case: Case, parameter: str, id_: int) -> bool:
    """Does the path parameter, parsed as the API parses it, name ``id_``?"""
    try:
        return _INT.validate_python((case.path_parameters or {}).get(parameter)) == id_
    except ValidationError:
        return False


def _revokes_own_access(case: Case, run: Run) -> bool:
    """Would ``case`` delete or demote the run's admin user, or revoke its key?"""
    path = case.operation.path
    if path == f"{API}/users/{{user_id}}" and case.method in ("DELETE", "PATCH"):
        return _names(case, "user_id", run.user_id)
    if path in (f"{API}/keys/{{key_id}}", f"{API}/me/keys/{{key_id}}"):
        return _names(case, "key_id", run.key_id)
    return False


def _call(case: Case, run: Run) -> None:
    if _revokes_own_access(case, run):
        return
    case.call_and_validate(
        checks=[not_a_server_error, keeps_access, openai_shaped_error], timeout=30
    )


admin = schemathesis.pytest.from_fixture("admin_api").exclude(path_regex=r"^/ui(/|$)")


@admin.exclude(method="DELETE").parametrize()
@SETTINGS
def test_no_server_errors(case: Case, run: Run) -> None:
    """No generated request but a DELETE, in or out of the schema, gets a 5xx, and 4xx
    errors are OpenAI-shaped. (Requests that would revoke the run's own admin access are
    not sent.)"""
    _call(case, run)


@admin.include(method="DELETE").parametrize()
@SETTINGS
def test_no_server_errors_deleting(case: Case, run: Run) -> None:
    """The same for DELETE requests, on a gateway of their own: run with the others, they
    would delete the rows the others' generated ids are meant to find."""
    _call(case, run)
