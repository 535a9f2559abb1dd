"""The access log: one line per proxied request on ``relaygate.access``, and nothing of
a key, a prompt or a completion in it."""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import Upstream
from tests.support.gateway import Gateway
from tests.support.process import ServeProcess, cli_env

PROMPT = "the secret plan is " + secrets.token_hex(8)
MESSAGES = [{"role": "user", "content": PROMPT}]


def access_lines(caplog: pytest.LogCaptureFixture, count: int) -> list[logging.LogRecord]:
    """The access records once ``count`` are there (they are written as each answer
    ends, just after the client has it), or all of them after 5 s."""
    deadline = time.monotonic() + 5
    while True:
        found = [r for r in caplog.records if r.name == "relaygate.access"]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


def test_one_access_line_per_request(
    gateway: Gateway, upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    """A JSON answer, a stream, an unknown model and an upstream error each give exactly
    one info line naming user, key, model, endpoint, status, latency and tokens, and
    none holds the key, the prompt or the completion."""
    caplog.set_level(logging.INFO, logger="relaygate.access")
    gateway.add_endpoint("local", upstream.url)
    client = gateway.openai()
    me = gateway.admin.get("/admin/api/v1/me").json()
    client.chat.completions.create(model="gpt-test", messages=MESSAGES)  # type: ignore[arg-type]
    stream = client.chat.completions.create(
        model="gpt-test",
        messages=MESSAGES,  # type: ignore[arg-type]
        stream=True,
    )
    assert len(list(stream)) == 5
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=MESSAGES)  # type: ignore[arg-type]
    upstream.state.fail_status = 500
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="gpt-test", messages=MESSAGES)  # type: ignore[arg-type]

    lines = access_lines(caplog, 4)
    time.sleep(0.2)  # a second line for any request would be there by now
    lines = access_lines(caplog, 5)
    assert len(lines) == 4, [r.getMessage() for r in lines]
    plain, streamed, unknown, failed = lines
    for record in lines:
        assert record.levelno == logging.INFO
        assert record.user_id == me["user"]["id"] and record.key_id == me["key_id"]  # type: ignore[attr-defined]
        assert record.method == "POST" and record.path == "/v1/chat/completions"  # type: ignore[attr-defined]
        assert record.latency_ms > 0  # type: ignore[attr-defined]
        text = record.getMessage() + repr(record.__dict__)
        assert PROMPT not in text and gateway.admin_key not in text
        assert upstream.state.reply not in text and "c0 " not in text
    assert (plain.status, plain.model, plain.endpoint) == (200, "gpt-test", "local")  # type: ignore[attr-defined]
    assert (plain.prompt_tokens, plain.completion_tokens, plain.stream) == (3, 4, False)  # type: ignore[attr-defined]
    assert plain.getMessage().startswith("POST /v1/chat/completions 200 ")
    assert f"user={me['user']['id']} key={me['key_id']} model=gpt-test endpoint=local" in (
        plain.getMessage()
    )
    assert plain.getMessage().endswith("tokens=3/4")
    assert (streamed.status, streamed.stream) == (200, True)  # type: ignore[attr-defined]
    assert (streamed.prompt_tokens, streamed.completion_tokens) == (11, 5)  # type: ignore[attr-defined]
    assert streamed.getMessage().endswith("tokens=11/5 stream")
    assert (unknown.status, unknown.model, unknown.endpoint) == (404, "nope", None)  # type: ignore[attr-defined]
    assert unknown.upstream_id is None  # type: ignore[attr-defined]  # nothing went upstream
    assert "endpoint=- tokens=-/-" in unknown.getMessage()
    assert (failed.status, failed.endpoint) == (500, "local")  # type: ignore[attr-defined]


def test_a_request_without_a_valid_key_is_logged_without_a_user(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    """A request with a wrong key is logged (401, no user, no key id), and the key it
    tried is not in the line."""
    caplog.set_level(logging.INFO, logger="relaygate.access")
    wrong = "rg-" + secrets.token_urlsafe(32)
    response = gateway.client_for(wrong).post(
        "/v1/chat/completions", json={"model": "gpt-test", "messages": []}
    )
    assert response.status_code == 401
    [line] = access_lines(caplog, 1)
    assert line.status == 401 and line.user_id is None and line.key_id is None  # type: ignore[attr-defined]
    assert "user=- key=-" in line.getMessage()
    assert wrong not in line.getMessage() + repr(line.__dict__)


def test_a_forged_model_name_stays_on_one_quoted_line(
    gateway: Gateway, upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    """A client's model name cannot forge a second access line or another field: one
    holding a line break is refused (400, no control character in a model name) and its
    line has no break; one forging fields with quotes is quoted (JSON-escaped) and cut to
    200 characters."""
    caplog.set_level(logging.INFO, logger="relaygate.access")
    forged = "x\n2031-01-01 00:00:00 INFO relaygate.access [-]: POST /v1/admin 200" + "y" * 500
    response = gateway.admin.post(
        "/v1/chat/completions", json={"model": forged, "messages": MESSAGES}
    )
    assert response.status_code == 400
    fields = 'x" status=200 endpoint="admin' + "y" * 500
    response = gateway.admin.post(
        "/v1/chat/completions", json={"model": fields, "messages": MESSAGES}
    )
    assert response.status_code == 404
    first, second = access_lines(caplog, 2)
    assert "\n" not in first.getMessage() and "2031-01-01" not in first.getMessage()
    message = second.getMessage()
    assert "\n" not in message and 'model="x\\" status=200 endpoint=\\"admin' in message
    assert "y" * 201 not in message


def test_the_setting_turns_the_access_log_off(
    tmp_path: Path, upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    """With ``access_log: false`` no access line is written for any request."""
    caplog.set_level(logging.INFO, logger="relaygate.access")
    gateway = Gateway(tmp_path, access_log=False).start()
    try:
        gateway.add_endpoint("local", upstream.url)
        gateway.openai().chat.completions.create(model="gpt-test", messages=MESSAGES)  # type: ignore[arg-type]
        gateway.admin.post("/v1/chat/completions", json={"model": "nope", "messages": []})
        time.sleep(0.3)
        assert [r for r in caplog.records if r.name == "relaygate.access"] == []
    finally:
        gateway.stop()


LINE = re.compile(
    r"^\S+ \S+ INFO relaygate\.access \[trace-7\]: POST /v1/chat/completions 200 [\d.]+ms "
    r"user=\d+ key=\d+ model=gpt-test endpoint=local tokens=3/4 "
    r"upstream_id=[0-9a-f-]{36}$",
    re.MULTILINE,
)


@pytest.mark.parametrize("enabled", [True, False])
def test_relaygate_serve_writes_the_access_line_unless_turned_off(
    tmp_path: Path, upstream: Upstream, enabled: bool
) -> None:
    """``relaygate serve`` writes the README's access line on stderr (text format, the
    client's request id in brackets), and none with RELAYGATE_ACCESS_LOG=false."""
    admin_key = "rg-" + secrets.token_urlsafe(32)
    extra = {} if enabled else {"RELAYGATE_ACCESS_LOG": "false"}
    env = cli_env(tmp_path, RELAYGATE_ADMIN_KEY=admin_key, **extra)
    server = ServeProcess(tmp_path, env).wait_ready()
    try:
        admin = httpx.Client(
            base_url=server.url, headers={"authorization": f"Bearer {admin_key}"}, timeout=30
        )
        made = admin.post("/admin/api/v1/endpoints", json={"name": "local", "url": upstream.url})
        assert made.status_code == 201, made.text
        answer = admin.post(
            "/v1/chat/completions",
            json={"model": "gpt-test", "messages": MESSAGES},
            headers={"x-request-id": "trace-7"},
        )
        assert answer.status_code == 200, answer.text
        admin.close()
    finally:
        server.stop()
    found = LINE.findall(server.output)
    assert len(found) == (1 if enabled else 0), server.output
    assert PROMPT not in server.output and admin_key not in server.output


def test_json_access_lines_carry_the_fields_as_keys(tmp_path: Path, upstream: Upstream) -> None:
    """With RELAYGATE_LOG_FORMAT=json the access line is one JSON object whose keys are
    the line's fields."""
    admin_key = "rg-" + secrets.token_urlsafe(32)
    env = cli_env(tmp_path, RELAYGATE_ADMIN_KEY=admin_key, RELAYGATE_LOG_FORMAT="json")
    server = ServeProcess(tmp_path, env).wait_ready()
    try:
        admin = httpx.Client(
            base_url=server.url, headers={"authorization": f"Bearer {admin_key}"}, timeout=30
        )
        made = admin.post("/admin/api/v1/endpoints", json={"name": "local", "url": upstream.url})
        assert made.status_code == 201, made.text
        answer = admin.post("/v1/chat/completions", json={"model": "gpt-test", "messages": []})
        assert answer.status_code == 200, answer.text
        admin.close()
    finally:
        server.stop()
    objects = [json.loads(line) for line in server.output.splitlines() if line.startswith("{")]
    [line] = [o for o in objects if o["name"] == "relaygate.access"]
    assert line["request_id"] == answer.headers["x-request-id"]
    assert (line["status"], line["model"], line["endpoint"]) == (200, "gpt-test", "local")
    assert (line["prompt_tokens"], line["completion_tokens"], line["stream"]) == (3, 4, False)
    assert isinstance(line["user_id"], int) and isinstance(line["key_id"], int)
    assert line["upstream_id"] is None  # relaygate made the id: a UUID, sent as it is
