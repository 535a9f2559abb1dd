"""Claude Code, the real CLI, through relaygate to an endpoint that serves only chat completions.

Claude Code speaks Anthropic Messages (``POST /v1/messages?beta=true``, streamed); relaygate
translates to ``/chat/completions`` and back. The CLI comes from npm (``scripts/e2e-tools``
installs it into ``.e2e-tools/``) and runs offline: everything stays on loopback.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.gateway import Gateway
from tests.support.scripted import Script, ScriptedUpstream, Turn

CLAUDE = Path(__file__).resolve().parents[2] / ".e2e-tools" / "node_modules" / ".bin" / "claude"
# CI sets RELAYGATE_TEST_REQUIRE_TOOLS: there a missing binary fails the test, never skips it.
pytestmark = pytest.mark.skipif(
    not os.access(CLAUDE, os.X_OK) and not os.environ.get("RELAYGATE_TEST_REQUIRE_TOOLS"),
    reason=f"Claude Code is not installed at {CLAUDE}: run scripts/e2e-tools",
)

UPSTREAM_MODEL = "qwen3-coder"
ALIAS = "claude-sonnet-5-5"
"""A current Claude name (an older one makes Claude Code warn it was retired)."""
FINAL = "The marker is written; relaygate carried every turn."
TIMEOUT = 120
CHAT_ONLY = {("GET", "/v1/models"), ("POST", "/v1/chat/completions")}


@pytest.fixture
def scripted() -> Iterator[ScriptedUpstream]:
    server = ScriptedUpstream(Script([UPSTREAM_MODEL])).start()
    yield server
    server.stop()


def user_key(gateway: Gateway, upstream: ScriptedUpstream) -> str:
    """Add ``upstream`` as an ``openai`` endpoint, give its model the Claude alias and return
    a new user's key."""
    endpoint = gateway.add_endpoint("chat-only", upstream.url)
    models = gateway.admin.get("/admin/api/v1/models", params={"endpoint_id": endpoint["id"]})
    [model] = models.json()
    renamed = gateway.admin.patch(f"/admin/api/v1/models/{model['id']}", json={"alias": ALIAS})
    assert renamed.status_code == 200, renamed.text
    user = gateway.create_user("claude-coder")
    key: str = gateway.create_key(name="claude-code", user_id=user["id"])["key"]
    return key


def run_claude(
    gateway: Gateway, key: str, prompt: str, home: Path, cwd: Path
) -> subprocess.CompletedProcess[str]:
    """``claude -p PROMPT`` against relaygate, offline, with a HOME of its own."""
    home.mkdir()
    cwd.mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": gateway.url,
        "ANTHROPIC_API_KEY": key,
        # The side calls' models (a small/fast one for titles and summaries).
        "ANTHROPIC_SMALL_FAST_MODEL": ALIAS,
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": ALIAS,
        # No telemetry, update check or connectivity probe (a HEAD to the base URL).
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        # Fail at once rather than back off through the SDK's retries.
        "CLAUDE_CODE_MAX_RETRIES": "0",
    }
    # As root, --dangerously-skip-permissions is refused; allowing Bash is enough.
    command = [str(CLAUDE), "-p", prompt, "--model", ALIAS, "--allowedTools", "Bash"]
    return subprocess.run(
        [*command, "--output-format", "json"],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def report(result: subprocess.CompletedProcess[str], upstream: ScriptedUpstream) -> str:
    """What to read when the run failed: the CLI's output and what the upstream saw."""
    return (
        f"claude exited {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n"
        f"{result.stderr}\n--- upstream saw {upstream.script.routes()}\n"
        f"--- upstream refused {upstream.script.problems}"
    )


def test_claude_code_runs_a_bash_tool_loop_through_relaygate(
    gateway: Gateway, scripted: ScriptedUpstream, tmp_path: Path
) -> None:
    """Claude Code runs the Bash command a chat-completions model asked for through relaygate,
    sends its output back as a tool result and prints the model's final answer."""
    marker = tmp_path / "work" / "marker"
    command = f"echo relaygate-ok | tee {marker}"
    script = scripted.script
    script.when(lambda r: not r.tool_names, Turn.say("Relaygate check"))
    script.when(lambda r: bool(r.tool_outputs("Bash")), Turn.say(FINAL))
    script.then(Turn.call("Bash", command=command, description="Write the marker file"))
    key = user_key(gateway, scripted)

    result = run_claude(
        gateway, key, "Write the marker file, then say done.", tmp_path / "home", marker.parent
    )

    assert result.returncode == 0, report(result, scripted)
    assert marker.exists(), report(result, scripted)
    assert marker.read_text() == "relaygate-ok\n"
    answer = json.loads(result.stdout)
    assert answer["is_error"] is False, report(result, scripted)
    assert FINAL in answer["result"]
    outputs = [out for r in script.chat_requests() for out in r.tool_outputs("Bash")]
    assert any("relaygate-ok" in out for out in outputs), report(result, scripted)
    assert {r.body["model"] for r in script.chat_requests()} == {UPSTREAM_MODEL}
    # In the endpoint's default ``auto`` mode relaygate may first try the route natively;
    # after that 404 it translates, and the upstream sees nothing but chat completions
    others = [route for route in script.routes() if route not in CHAT_ONLY]
    # (the client's request, then relaygate's own empty probe confirming the route).
    assert others in ([], [("POST", "/v1/messages")] * 2), report(result, scripted)
    assert not script.problems
