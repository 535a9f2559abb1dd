"""The ``messages_api``, ``responses_api`` and ``chat_api`` modes of an endpoint, set and
shown through the admin API, the CLI and the config file's seed; nothing else goes in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.gateway import Gateway
from tests.support.process import cli_env, relaygate
from tests.support.scripted import ScriptedUpstream

API = "/admin/api/v1/endpoints"


def test_modes_are_set_shown_and_changed(gateway: Gateway, scripted: ScriptedUpstream) -> None:
    """An endpoint is created with its modes (``auto`` by default), shows them with what
    ``auto`` found, and a PATCH of one mode changes it alone."""
    made = gateway.add_endpoint("local", scripted.url, responses_api="translate")
    assert (made["messages_api"], made["responses_api"], made["chat_api"]) == (
        "auto",
        "translate",
        "auto",
    )
    assert made["api_found"] == {}
    changed = gateway.admin.patch(f"{API}/{made['id']}", json={"messages_api": "native"})
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["messages_api"], body["responses_api"]) == ("native", "translate")
    unchanged = gateway.admin.patch(f"{API}/{made['id']}", json={"messages_api": None})
    assert unchanged.json()["messages_api"] == "native"


@pytest.mark.parametrize("field", ["messages_api", "responses_api", "chat_api"])
@pytest.mark.parametrize("value", ["sometimes", "", "NATIVE", 1, ["auto"], "a" * 10_000])
def test_an_unknown_mode_is_refused(
    gateway: Gateway, scripted: ScriptedUpstream, field: str, value: object
) -> None:
    """A mode other than auto, native or translate is refused 400 naming the field, on
    create and on PATCH, and nothing is stored."""
    created = gateway.admin.post(
        API, json={"name": "x", "url": scripted.url, "sync": False, field: value}
    )
    assert created.status_code == 400
    assert field in json.dumps(created.json()["error"])
    made = gateway.add_endpoint("ok", scripted.url, sync=False)
    patched = gateway.admin.patch(f"{API}/{made['id']}", json={field: value})
    assert patched.status_code == 400
    assert gateway.endpoint("ok")[field] == "auto"
    assert [e["name"] for e in gateway.admin.get(API).json()] == ["ok"]


def test_a_user_key_cannot_change_modes(gateway: Gateway, scripted: ScriptedUpstream) -> None:
    """Modes are the operator's: a user's key cannot read or change an endpoint's."""
    made = gateway.add_endpoint("local", scripted.url, sync=False)
    user = gateway.create_user("mallory")
    key = gateway.create_key(user_id=user["id"], name="k")["key"]
    client = gateway.client_for(key)
    assert client.patch(f"{API}/{made['id']}", json={"messages_api": "native"}).status_code == 403
    assert gateway.endpoint("local")["messages_api"] == "auto"


def test_cli_and_config_seed_set_modes(tmp_path: Path, scripted: ScriptedUpstream) -> None:
    """``relaygate endpoints add|update --messages-api/--responses-api/--chat-api`` set
    the modes (a wrong one is a one-line error), and the config file seeds them."""
    env = cli_env(tmp_path)
    added = relaygate(
        tmp_path,
        "endpoints",
        "add",
        "local",
        scripted.url,
        "--messages-api",
        "translate",
        "--no-sync",
        "--json",
        env=env,
    )
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["apis"]["messages_api"] == "translate"
    updated = relaygate(
        tmp_path, "endpoints", "update", "local", "--chat-api", "native", "--json", env=env
    )
    assert updated.returncode == 0, updated.stderr
    apis = json.loads(updated.stdout)["apis"]
    assert (apis["messages_api"], apis["chat_api"]) == ("translate", "native")
    wrong = relaygate(tmp_path, "endpoints", "update", "local", "--responses-api", "x", env=env)
    assert wrong.returncode != 0
    assert "responses_api must be one of auto, native, translate" in wrong.stderr

    seeded = [{"name": "seeded", "url": scripted.url, "responses_api": "translate"}]
    running = Gateway(tmp_path / "seed", endpoints=seeded).start()
    try:
        assert running.endpoint("seeded")["responses_api"] == "translate"
    finally:
        running.stop()
