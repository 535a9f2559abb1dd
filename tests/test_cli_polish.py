"""The CLI's help, names, refusals and warnings, and what a new operator sees first."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from relaygate import __version__
from tests.conftest import Upstream
from tests.support import databases
from tests.support.gateway import Gateway
from tests.support.process import ServeProcess, cli_env, relaygate
from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
MISSING = "RG_POLISH_MISSING_API_KEY"
"""An api_key_env the test process (so the in-process server) never has."""


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    url = databases.database_url(tmp_path, "cli.db")
    yield cli_env(
        tmp_path,
        RELAYGATE_DATABASE_URL=url,
        RELAYGATE_SECRET_KEY=secrets.token_urlsafe(32),
        RELAYGATE_PORT=str(free_port()),  # no server there: nothing to wait for
    )
    databases.drop(url)


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    assert MISSING not in os.environ
    running = Gateway(tmp_path).start()
    yield running
    running.stop()


def gateway_env(tmp_path: Path, gateway: Gateway, **extra: str) -> dict[str, str]:
    """The CLI's environment for the database and address of ``gateway``."""
    return cli_env(
        tmp_path,
        RELAYGATE_DATABASE_URL=gateway.settings.database_url,
        RELAYGATE_SECRET_KEY=gateway.settings.secret_key or "",
        RELAYGATE_PORT=gateway.url.rsplit(":", 1)[1],
        **extra,
    )


def ok(tmp_path: Path, env: dict[str, str], *args: str, input: str | None = None) -> str:
    result = relaygate(tmp_path, *args, env=env, input=input)
    assert result.returncode == 0, result.stderr
    return result.stdout


def refused(tmp_path: Path, env: dict[str, str], *args: str, input: str | None = None) -> str:
    """The one line a refused command prints (exit code 1)."""
    result = relaygate(tmp_path, *args, env=env, input=input)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize(
    "command",
    [
        (),
        ("endpoints", "add"),
        ("endpoints", "update"),
        ("models", "update"),
        ("models", "alias"),
        ("keys", "create"),
        ("groups", "grant"),
        ("serve",),
    ],
    ids=lambda c: " ".join(c) or "relaygate",
)
def test_help_has_no_type_markers_braces_or_markup(tmp_path: Path, command: tuple[str]) -> None:
    """--help shows no `<bool>`/`<str>` markers, no `{name}` arguments, no ``markup``."""
    result = relaygate(tmp_path, *command, "--help", env=cli_env(tmp_path, COLUMNS="200"))
    assert result.returncode == 0, result.stderr
    for bad in ("<bool>", "<str>", "<int>", "<float>", "{", "``", "--no-disabled"):
        assert bad not in result.stdout, (bad, result.stdout)


def test_help_names_arguments_readably(tmp_path: Path) -> None:
    """Arguments read as NAME URL in the usage line; a valued option shows one word."""
    out = relaygate(tmp_path, "endpoints", "add", "--help", env=cli_env(tmp_path, COLUMNS="200"))
    assert "endpoints add [OPTIONS] NAME URL" in out.stdout
    assert "--api-key-stdin " in out.stdout and "--timeout" in out.stdout
    update = relaygate(tmp_path, "models", "update", "--help", env=cli_env(tmp_path))
    assert "[OPTIONS] MODEL" in update.stdout and "--clear-price" in update.stdout


def test_version_flag(tmp_path: Path) -> None:
    """`relaygate --version` prints the version and exits 0, like `relaygate version`."""
    result = relaygate(tmp_path, "--version", env=cli_env(tmp_path))
    assert (result.returncode, result.stdout.strip()) == (0, f"relaygate {__version__}")


def test_models_and_endpoints_by_name(
    tmp_path: Path, env: dict[str, str], upstream: Upstream, second_upstream: Upstream
) -> None:
    """Models and endpoints are named by id or name in models and groups commands; a
    name two models share is refused in one line listing both ids."""
    upstream.state.models = ["shared", "only-first"]
    second_upstream.state.models = ["shared"]
    ok(tmp_path, env, "endpoints", "add", "first", upstream.url)
    ok(tmp_path, env, "endpoints", "add", "second", second_upstream.url)
    models = json.loads(ok(tmp_path, env, "models", "list", "--json"))
    ids = sorted(m["id"] for m in models if m["upstream_id"] == "shared")
    ambiguous = refused(tmp_path, env, "models", "update", "shared", "--disable")
    assert "ambiguous" in ambiguous and all(str(i) in ambiguous for i in ids)
    out = ok(tmp_path, env, "models", "update", "only-first", "--alias", "solo")
    assert out.startswith("updated model ") and "alias solo" in out
    assert "answers to solo-2" in ok(tmp_path, env, "models", "alias", "solo", "solo-2")
    assert "answers to" in ok(tmp_path, env, "models", "alias", str(ids[1]), "shared-2")
    second = json.loads(ok(tmp_path, env, "models", "list", "--endpoint", "second", "--json"))
    assert [m["alias"] for m in second] == ["shared-2"]
    assert "no model 'ghost'" in refused(tmp_path, env, "models", "update", "ghost", "--enable")
    ok(tmp_path, env, "groups", "add", "team")
    assert "granted model" in ok(tmp_path, env, "groups", "grant", "team", "--model", "solo-2")
    granted = ok(tmp_path, env, "groups", "grant", "team", "--endpoint", "second")
    assert "granted endpoint 'second'" in granted
    team = json.loads(ok(tmp_path, env, "groups", "show", "team", "--json"))
    assert team["endpoints"] == [2] and len(team["models"]) == 1
    assert "no endpoint 'ghost'" in refused(
        tmp_path, env, "groups", "grant", "team", "--endpoint", "ghost"
    )


def test_prices_are_set_cleared_explicitly_and_never_negative(
    tmp_path: Path, env: dict[str, str], upstream: Upstream
) -> None:
    """--input-price/--output-price set and echo prices; --clear-* remove them; a negative
    price is refused in one line and changes nothing."""
    upstream.state.models = ["m-1"]
    ok(tmp_path, env, "endpoints", "add", "local", upstream.url)
    out = ok(
        tmp_path, env, "models", "update", "m-1", "--input-price", "0.5", "--output-price", "2"
    )
    assert "input 0.5, output 2" in out
    negative = refused(tmp_path, env, "models", "update", "m-1", "--input-price", "-1")
    assert "--input-price must be 0 or more" in negative
    model = json.loads(ok(tmp_path, env, "models", "list", "--json"))[0]
    assert model["input_cost_per_million_tokens"] == 0.5
    out = ok(tmp_path, env, "models", "update", "m-1", "--clear-input-price")
    assert "input none, output 2" in out
    out = ok(tmp_path, env, "models", "update", "m-1", "--clear-price")
    assert "input none, output none" in out
    both = refused(tmp_path, env, "models", "update", "m-1", "--output-price", "1", "--clear-price")
    assert "not both" in both


def test_counts_are_singular_for_one(
    tmp_path: Path, env: dict[str, str], upstream: Upstream
) -> None:
    """One model is "1 model", never "1 models"."""
    upstream.state.models = ["m-1"]
    ok(tmp_path, env, "endpoints", "add", "local", upstream.url)
    assert "1 model (" in ok(tmp_path, env, "endpoints", "sync", "local")
    out = ok(tmp_path, env, "endpoints", "remove", "local", "--yes")
    assert out.strip() == "deleted endpoint 'local' and 1 model"


def test_empty_api_key_stdin_is_refused(
    tmp_path: Path, env: dict[str, str], upstream: Upstream
) -> None:
    """--api-key-stdin with nothing on stdin creates nothing and says so in one line."""
    line = refused(
        tmp_path, env, "endpoints", "add", "x", upstream.url, "--api-key-stdin", input=""
    )
    assert "--api-key-stdin read no key" in line
    assert json.loads(ok(tmp_path, env, "endpoints", "list", "--json")) == []


def test_api_key_env_missing_on_the_server_is_said(
    tmp_path: Path, gateway: Gateway, upstream: Upstream
) -> None:
    """An --api-key-env variable set only in the CLI's shell: the running server syncs the
    endpoint, records that it lacks the variable, and the CLI warns; never "synced"."""
    env = gateway_env(tmp_path, gateway, **{MISSING: "sk-only-in-the-cli-shell"})
    result = relaygate(
        tmp_path, "endpoints", "add", "envkey", upstream.url, "--api-key-env", MISSING, env=env
    )
    assert result.returncode == 0, result.stderr
    assert "warning: the server does not have " + MISSING in result.stderr
    shown = gateway.admin.get("/admin/api/v1/endpoints").json()[0]
    assert shown["sync"]["status"] == "error" and MISSING in shown["sync"]["error"]


def test_api_key_env_with_no_server_warns(
    tmp_path: Path, env: dict[str, str], upstream: Upstream
) -> None:
    """With no server running, --api-key-env warns that a server syncs it when it starts,
    and that the variable is not set in this shell either."""
    result = relaygate(
        tmp_path, "endpoints", "add", "envkey", upstream.url, "--api-key-env", MISSING, env=env
    )
    assert result.returncode == 0, result.stderr
    assert "no running relaygate server synced endpoint 'envkey'" in result.stderr
    assert f"{MISSING} is not set in this shell either" in result.stderr


def test_key_created_by_the_cli_is_usable_at_once(tmp_path: Path, gateway: Gateway) -> None:
    """`keys create` returns once the running server accepts the key: the openai SDK can
    use it at once, with no sleep."""
    env = gateway_env(tmp_path, gateway)
    for n in range(3):
        key = ok(tmp_path, env, "keys", "create", "--user", "admin", "--name", f"k{n}").strip()
        assert gateway.openai(key=key).models.list() is not None


def test_key_created_by_the_admin_api_is_usable_at_once(gateway: Gateway) -> None:
    """A key the admin API just answered with is accepted by the same process at once."""
    for n in range(20):
        key = gateway.create_key(name=f"k{n}")["key"]
        assert gateway.openai(key=key).models.list() is not None


def test_root_redirects_to_the_console(gateway: Gateway) -> None:
    """`GET /` is a redirect to the console, not a JSON 404, and reveals nothing else."""
    answer = httpx.get(gateway.url + "/", follow_redirects=False)
    assert (answer.status_code, answer.headers["location"]) == (302, "/ui/")
    assert answer.content == b""


def test_start_up_names_the_console_and_the_next_command(tmp_path: Path) -> None:
    """`relaygate serve` prints the console URL and the next command, once."""
    env = cli_env(tmp_path, RELAYGATE_SECRET_KEY=secrets.token_urlsafe(32))
    server = ServeProcess(tmp_path, env).wait_ready()
    try:
        output = server.output
    finally:
        server.stop()
    assert output.count(f"console:  {server.url}/ui/") == 1
    assert "relaygate endpoints add NAME URL" in output
    assert f"{server.url}/v1" in output


def test_demo_refuses_a_busy_port_in_one_line() -> None:
    """scripts/demo checks its ports first: a busy one is one line naming it, no
    traceback, and an override via the environment is honoured."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                str(ROOT / "scripts" / "demo.py"),
                "--check-ports",
                "--port",
                str(port),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 1
        assert result.stderr.strip() == (
            f"demo: port {port} (relaygate) is busy; choose another with --port N "
            "or RELAYGATE_DEMO_PORT"
        )
        llama = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "demo.py"), "--check-ports"],
            capture_output=True,
            text=True,
            timeout=30,
            env={"RELAYGATE_DEMO_LLAMA_PORT": str(port), "RELAYGATE_DEMO_PORT": str(free_port())},
        )
        assert llama.returncode == 1 and f"port {port} (llama.cpp) is busy" in llama.stderr
        assert "Traceback" not in llama.stderr
