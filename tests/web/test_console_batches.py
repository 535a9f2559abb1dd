"""Batches in the console: every user's on the admin Batches page (with a cancel button
for those still running), a user's own on "My account", and an endpoint's batch
concurrency on its edit form."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from openai import OpenAI

from tests.batches.conftest import chat_lines, upload
from tests.conftest import Upstream
from tests.support.gateway import Gateway
from tests.web.conftest import console, csrf_of, table_rows

HEAD = [
    "Batch",
    "User",
    "Endpoint",
    "Status",
    "Progress",
    "Errors",
    "Tokens",
    "Cost",
    "Created",
    "",
]


@pytest.fixture
def idle(tmp_path: Path, upstream: Upstream) -> Iterator[Gateway]:
    """relaygate with endpoint ``local`` whose batch runner looks for work only at
    start-up: batches created later stay ``validating``."""
    running = Gateway(tmp_path, batch_poll_interval=3600).start()
    # Nothing wakes the runner early: it sleeps out its hour-long poll.
    running.app.state.batch_runner = None
    running.add_endpoint("local", upstream.url)
    yield running
    running.stop()


def user(gateway: Gateway, name: str) -> tuple[str, OpenAI]:
    """A new user's API key and SDK client."""
    key = gateway.create_key(user_id=gateway.create_user(name)["id"])["key"]
    return key, gateway.openai(key)


def start_batch(client: OpenAI, lines: int = 2) -> str:
    file_id = upload(client, chat_lines(lines, model="gpt-test"))
    return client.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    ).id


def test_admin_batches_page_lists_every_users_batch_and_cancels_one(idle: Gateway) -> None:
    """The Batches page lists two users' batches newest first with owner, endpoint,
    status and progress, each with a cancel button; cancelling one from the page leaves
    it ``cancelling`` without its button."""
    _, ann = user(idle, "ann")
    _, bob = user(idle, "bob")
    first = start_batch(ann, 2)
    second = start_batch(bob, 3)
    with console(idle) as client:
        page = client.get("/ui/batches")
        assert page.status_code == 200
        assert 'href="/ui/batches" class="on"' in page.text
        rows = table_rows(page.text, "batches")
        assert rows[0] == HEAD
        assert rows[1][:8] == [
            second,
            "bob",
            "/v1/chat/completions",
            "validating",
            "0 / 3",
            "0",
            "0",
            "0",
        ]
        assert rows[2][:5] == [first, "ann", "/v1/chat/completions", "validating", "0 / 2"]
        assert page.text.count('class="danger">Cancel</button>') == 2
        refused = client.post(f"/ui/batches/{first}/cancel", data={})
        assert refused.status_code == 403
        done = client.post(f"/ui/batches/{first}/cancel", data={"csrf": csrf_of(client)})
        assert done.status_code == 303 and "cancelling" in done.headers["location"]
        after = client.get("/ui/batches")
        unknown = client.post(
            "/ui/batches/batch_nope/cancel", data={"csrf": csrf_of(client)}, follow_redirects=True
        )
        only_open = client.get("/ui/batches", params={"status": "validating"})
    assert ann.batches.retrieve(first).status == "cancelling"
    assert [row[3] for row in table_rows(after.text, "batches")[1:]] == ["validating", "cancelling"]
    assert after.text.count('class="danger">Cancel</button>') == 1
    assert f"/ui/batches/{second}/cancel" in after.text
    assert "no batch" in unknown.text
    assert [row[0] for row in table_rows(only_open.text, "batches")[1:]] == [second]


def test_account_lists_own_batches_and_not_anothers(tmp_path: Path, upstream: Upstream) -> None:
    """My account lists the user's own batch with its status, progress and output file,
    never another user's; a user without batches gets no batches section."""
    gateway = Gateway(tmp_path, batch_poll_interval=0.05).start()
    try:
        gateway.add_endpoint("local", upstream.url)
        ann_key, ann = user(gateway, "ann")
        _, bob = user(gateway, "bob")
        cal_key, _ = user(gateway, "cal")
        mine = start_batch(ann, 2)
        theirs = start_batch(bob, 1)
        deadline = time.monotonic() + 30
        while (done := ann.batches.retrieve(mine)).status != "completed":
            assert time.monotonic() < deadline, done
            time.sleep(0.05)
        with console(gateway, ann_key) as client:
            page = client.get("/ui/account").text
        with console(gateway, cal_key) as client:
            empty = client.get("/ui/account").text
    finally:
        gateway.stop()
    rows = table_rows(page, "own-batches")
    assert rows[0] == ["Batch", "Status", "Progress", "Created", "Output file", "Error file"]
    assert [row[:3] for row in rows[1:]] == [[mine, "completed", "2 / 2"]]
    assert rows[1][4:] == [done.output_file_id, "—"]
    assert theirs not in page
    assert 'id="my-batches"' not in empty


def test_user_cannot_reach_the_batches_page(idle: Gateway) -> None:
    """A plain user gets 403 on the Batches page and its cancel form (their own batch
    stays as it was), and sees no Batches link."""
    key, client_sdk = user(idle, "ann")
    batch_id = start_batch(client_sdk)
    with console(idle, key) as client:
        page = client.get("/ui/batches")
        cancel = client.post(f"/ui/batches/{batch_id}/cancel", data={"csrf": csrf_of(client)})
        account = client.get("/ui/account")
    assert page.status_code == 403 and "administrators" in page.text
    assert cancel.status_code == 403
    assert 'href="/ui/batches"' not in account.text
    assert client_sdk.batches.retrieve(batch_id).status == "validating"


def test_endpoint_form_sets_and_clears_batch_concurrency(idle: Gateway, upstream: Upstream) -> None:
    """The endpoint edit form sets ``batch_concurrency``; blank goes back to the
    setting's, and a value out of range is refused with the reason."""
    endpoint = idle.endpoint("local")
    form = {"name": "local", "url": upstream.url}
    with console(idle) as client:
        csrf = csrf_of(client, "/ui/endpoints")
        url = f"/ui/endpoints/{endpoint['id']}/edit"
        client.post(url, data={**form, "csrf": csrf, "batch_concurrency": "6"})
        assert idle.endpoint("local")["batch_concurrency"] == 6
        assert (
            'name="batch_concurrency" min="1" max="1000" value="6"'
            in client.get("/ui/endpoints").text
        )
        wrong = client.post(
            url, data={**form, "csrf": csrf, "batch_concurrency": "0"}, follow_redirects=True
        )
        assert "batch_concurrency must be a whole number from 1 to 1000" in wrong.text
        words = client.post(
            url, data={**form, "csrf": csrf, "batch_concurrency": "six"}, follow_redirects=True
        )
        assert "must be a whole number" in words.text
        assert idle.endpoint("local")["batch_concurrency"] == 6
        client.post(url, data={**form, "csrf": csrf, "batch_concurrency": ""})
    assert idle.endpoint("local")["batch_concurrency"] is None
