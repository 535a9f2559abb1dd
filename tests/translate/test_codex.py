"""Codex CLI, the real binary, through relaygate to an endpoint that serves only chat completions.

Codex speaks OpenAI Responses (``POST /v1/responses``, streamed, ``store: false``);
relaygate translates to ``/chat/completions`` and back. The CLI comes from npm
(``scripts/e2e-tools`` installs it into ``.e2e-tools/``) and runs offline: everything
stays on loopback.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.gateway import Gateway
from tests.support.scripted import Script, ScriptedUpstream, Turn

CODEX = Path(__file__).resolve().parents[2] / ".e2e-tools" / "node_modules" / ".bin" / "codex"
# CI sets RELAYGATE_TEST_REQUIRE_TOOLS: there a missing binary fails the test, never skips it.
pytestmark = pytest.mark.skipif(
    not os.access(CODEX, os.X_OK) and not os.environ.get("RELAYGATE_TEST_REQUIRE_TOOLS"),
    reason=f"Codex CLI is not installed at {CODEX}: run scripts/e2e-tools",
)

MODEL = "qwen3-coder"
"""A name Codex has no metadata for, like any self-hosted model's: Codex then offers plain
function tools (for its own models it sends a JavaScript "code mode" tool instead)."""
SHELL = "exec_command"
"""Codex's shell tool, a function taking ``{"cmd": "..."}``."""
FINAL = "The marker is written; relaygate carried every turn."
TIMEOUT = 120
CHAT_ONLY = {("GET", "/v1/models"), ("POST", "/v1/chat/completions")}

CONFIG = """\
model = "{model}"
model_provider = "relaygate"
approval_policy = "never"
sandbox_mode = "danger-full-access"
check_for_update_on_startup = false

[analytics]
enabled = false

# Plugins sync a marketplace from github.com at start-up: the one thing that goes online.
[features]
plugins = false

[model_providers.relaygate]
name = "relaygate"
base_url = "{base_url}"
env_key = "RELAYGATE_API_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
"""


@pytest.fixture
def scripted() -> Iterator[ScriptedUpstream]:
    server = ScriptedUpstream(Script([MODEL])).start()
    yield server
    server.stop()


def user_key(gateway: Gateway, upstream: ScriptedUpstream) -> str:
    """Add ``upstream`` as an ``openai`` endpoint and return a new user's key."""
    gateway.add_endpoint("chat-only", upstream.url)
    user = gateway.create_user("codex-coder")
    key: str = gateway.create_key(name="codex", user_id=user["id"])["key"]
    return key


def run_codex(
    gateway: Gateway, key: str, prompt: str, home: Path, cwd: Path
) -> tuple[subprocess.CompletedProcess[str], str]:
    """``codex exec PROMPT`` against relaygate, offline, with a CODEX_HOME of its own;
    returns the finished process and the last message Codex wrote (``-o``)."""
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True)
    cwd.mkdir()
    (codex_home / "config.toml").write_text(
        CONFIG.format(model=MODEL, base_url=gateway.url + "/v1")
    )
    last_message = home / "last-message.txt"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "CODEX_HOME": str(codex_home),
        "RELAYGATE_API_KEY": key,
    }
    command = [str(CODEX), "exec", "--strict-config", "--skip-git-repo-check", "--ephemeral"]
    result = subprocess.run(
        [*command, "--color", "never", "-C", str(cwd), "-o", str(last_message), prompt],
        cwd=cwd,
        env=env,
        # With stdin open, codex exec waits to read more of the prompt from it.
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    return result, last_message.read_text() if last_message.exists() else ""


def report(result: subprocess.CompletedProcess[str], upstream: ScriptedUpstream) -> str:
    """What to read when the run failed: the CLI's output and what the upstream saw."""
    return (
        f"codex exited {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n"
        f"{result.stderr}\n--- upstream saw {upstream.script.routes()}\n"
        f"--- upstream refused {upstream.script.problems}"
    )


def test_codex_runs_a_shell_tool_loop_through_relaygate(
    gateway: Gateway, scripted: ScriptedUpstream, tmp_path: Path
) -> None:
    """Codex runs the shell command a chat-completions model asked for through relaygate's
    Responses translation, returns its output as the call's result and ends with the
    model's final answer."""
    marker = tmp_path / "work" / "marker"
    script = scripted.script
    script.when(lambda r: bool(r.tool_outputs(SHELL)), Turn.say(FINAL))
    script.then(Turn.call(SHELL, cmd=f"echo relaygate-ok | tee {marker}"))
    key = user_key(gateway, scripted)

    result, last_message = run_codex(
        gateway, key, "Write the marker file, then say done.", tmp_path / "home", marker.parent
    )

    assert result.returncode == 0, report(result, scripted)
    assert marker.exists(), report(result, scripted)
    assert marker.read_text() == "relaygate-ok\n"
    assert FINAL in last_message, report(result, scripted)
    assert FINAL in result.stdout
    outputs = [out for r in script.chat_requests() for out in r.tool_outputs(SHELL)]
    assert any("relaygate-ok" in out for out in outputs), report(result, scripted)
    # In the endpoint's default ``auto`` mode relaygate may first try the route natively;
    # after that 404 it translates, and the upstream sees nothing but chat completions
    others = [route for route in script.routes() if route not in CHAT_ONLY]
    # (the client's request, then relaygate's own empty probe confirming the route).
    assert others in ([], [("POST", "/v1/responses")] * 2), report(result, scripted)
    assert not script.problems
