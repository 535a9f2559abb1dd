"""``/v1/files`` owned by relaygate, through the openai SDK and raw HTTP, from the side
of a user reaching for another's files and of malformed or oversized uploads."""

from __future__ import annotations

import io
import json
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy import update

from relaygate.db.tables import StoredFile
from relaygate.services.files import ORPHAN_GRACE_SECONDS, prune_once
from tests.batches.conftest import MODEL, BatchUpstream, chat_lines, upload
from tests.support.gateway import Gateway


def user_key(gateway: Gateway, name: str) -> str:
    user = gateway.create_user(name)
    key: str = gateway.create_key(name=name, user_id=user["id"])["key"]
    return key


def line(custom_id: str, model: str = MODEL, **extra: Any) -> str:
    item = {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": model, "messages": [{"role": "user", "content": custom_id}]},
    }
    item.update(extra)
    return json.dumps(item)


def stored(gateway: Gateway) -> list[str]:
    """The names in the files directory (contents and leftovers)."""
    root = Path(gateway.settings.files_path)
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_a_file_is_uploaded_listed_read_and_deleted(gateway: Gateway) -> None:
    """An uploaded batch file is listed, described and read back byte for byte; deleting
    it removes its contents from the files directory, and it is then 404."""
    client = gateway.openai(user_key(gateway, "alice"))
    data = chat_lines(3)
    created = client.files.create(file=("jobs.jsonl", io.BytesIO(data)), purpose="batch")
    assert created.filename == "jobs.jsonl"
    assert created.bytes == len(data)
    assert created.purpose == "batch"
    assert created.id.startswith("file-")
    assert [f.id for f in client.files.list()] == [created.id]
    assert client.files.retrieve(created.id).bytes == len(data)
    assert client.files.content(created.id).content == data
    assert created.id in stored(gateway)
    assert client.files.delete(created.id).deleted is True
    assert created.id not in stored(gateway)
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(created.id)


def test_another_user_gets_404_for_a_file_its_content_and_its_batch(gateway: Gateway) -> None:
    """A file and a batch are their owner's alone: another user (even knowing the ids)
    gets 404 reading, downloading, deleting or cancelling them, and lists none of them."""
    alice = gateway.openai(user_key(gateway, "alice"))
    mallory = gateway.openai(user_key(gateway, "mallory"))
    file_id = upload(alice, chat_lines(2))
    batch = alice.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    for attempt in (
        lambda: mallory.files.retrieve(file_id),
        lambda: mallory.files.content(file_id),
        lambda: mallory.files.delete(file_id),
        lambda: mallory.batches.retrieve(batch.id),
        lambda: mallory.batches.cancel(batch.id),
        lambda: mallory.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
        ),
    ):
        with pytest.raises(openai.NotFoundError):
            attempt()
    assert list(mallory.files.list()) == []
    assert list(mallory.batches.list()) == []
    assert alice.files.retrieve(file_id).id == file_id  # still there


@pytest.mark.parametrize(
    ("lines", "number", "words"),
    [
        ([line("a"), "{not json", line("c")], 2, "not valid JSON"),
        ([line("a"), line("b"), line("a")], 3, "custom_id 'a' is used on an earlier line"),
        ([line("a"), line("b", method="GET")], 2, "'method' must be 'POST'"),
        ([line("a"), line("b", url="/v1/files")], 2, "'url' must be one of"),
        ([line("a"), line("b", url="/v1/embeddings")], 2, "a batch goes to one route"),
        ([line("a"), line("b", model="nope")], 2, "the model 'nope' does not exist"),
        ([line("a"), json.dumps({"custom_id": "b", "method": "POST"})], 2, "'url' must be"),
        ([line("a", body={"model": MODEL, "stream": True})], 1, "not streamed"),
        ([line("a"), "[1, 2]"], 2, "must be a JSON object"),
        # A NUL, which PostgreSQL refuses in text, once left the batch validating for good.
        ([line("a"), line("b\x00")], 2, "'custom_id' must not contain control characters"),
        ([line("a", model="gpt\x1b[31m")], 1, "'body.model' must not contain control"),
    ],
)
def test_a_malformed_batch_file_is_refused_naming_its_line(
    gateway: Gateway, lines: list[str], number: int, words: str
) -> None:
    """A batch input file is checked line by line at upload: the first bad line is
    refused (400 invalid_batch_line) by its number, and nothing is kept."""
    client = gateway.openai(user_key(gateway, "alice"))
    with pytest.raises(openai.BadRequestError) as refused:
        upload(client, ("\n".join(lines) + "\n").encode())
    error = refused.value.body
    assert isinstance(error, dict)
    assert error["code"] == "invalid_batch_line"
    assert error["message"].startswith(f"line {number}: "), error
    assert words in error["message"]
    assert stored(gateway) == []
    assert list(client.files.list()) == []


def test_a_line_naming_a_model_the_user_may_not_use_is_refused(
    gateway: Gateway, upstream: BatchUpstream
) -> None:
    """A user granted no model of an endpoint cannot queue requests to it: the line
    naming it is refused at upload."""
    gateway.admin.post("/admin/api/v1/groups", json={"name": "nothing"}).raise_for_status()
    user = gateway.create_user("outsider")
    everyone = next(
        g for g in gateway.admin.get("/admin/api/v1/groups").json() if g["name"] == "everyone"
    )
    endpoint = gateway.endpoint("local")
    gateway.admin.delete(
        f"/admin/api/v1/groups/{everyone['id']}/endpoints/{endpoint['id']}"
    ).raise_for_status()
    key = gateway.create_key(name="k", user_id=user["id"])["key"]
    client = gateway.openai(key)
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    assert refused.value.status_code == 403
    with pytest.raises(openai.BadRequestError) as bad:
        upload(client, (line("a") + "\n").encode())
    assert "line 1: you do not have access to the model" in str(bad.value)


def test_an_upload_over_the_size_limit_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    """A file over ``max_file_bytes`` is refused 413, whether its size is declared or
    found while it streams, and no partial contents stay in the files directory."""
    gateway = Gateway(tmp_path, max_file_bytes=2000).start()
    try:
        client = gateway.openai()
        with pytest.raises(openai.APIStatusError) as refused:
            upload(client, chat_lines(40))
        assert refused.value.status_code == 413
        assert stored(gateway) == []
    finally:
        gateway.stop()


def test_the_per_user_quota_bounds_the_files_kept(tmp_path: Path, upstream: BatchUpstream) -> None:
    """Files one user keeps are bounded by ``file_quota_bytes``: an upload past it is
    refused 413 file_quota_exceeded, and deleting a file makes room again."""
    data = chat_lines(3)
    gateway = Gateway(tmp_path, file_quota_bytes=len(data) * 2 + 10).start()
    try:
        gateway.add_endpoint("local", upstream.url)
        client = gateway.openai(user_key(gateway, "alice"))
        first = upload(client, data)
        upload(client, data)
        with pytest.raises(openai.APIStatusError) as refused:
            upload(client, data)
        assert refused.value.status_code == 413
        assert isinstance(refused.value.body, dict)
        assert refused.value.body["code"] == "file_quota_exceeded"
        client.files.delete(first)
        upload(client, data)
    finally:
        gateway.stop()


def test_uploads_that_are_not_batch_files_are_refused(gateway: Gateway) -> None:
    """Only ``purpose=batch`` is kept; a JSON body instead of a form is 415; a form
    without a file or with a cut-off body is 400."""
    key = user_key(gateway, "alice")
    client = gateway.openai(key)
    with pytest.raises(openai.BadRequestError) as wrong:
        client.files.create(file=("x.jsonl", io.BytesIO(chat_lines(1))), purpose="assistants")
    assert "purpose 'assistants' is not supported" in str(wrong.value)
    http = gateway.client_for(key)
    response = http.post("/v1/files", json={"purpose": "batch"})
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"
    response = http.post("/v1/files", data={"purpose": "batch"}, files={"other": ("a", b"x")})
    assert response.status_code == 400
    assert "no 'file' part" in response.json()["error"]["message"]
    cut = b'--b\r\ncontent-disposition: form-data; name="purpose"\r\n\r\nbatch\r\n--b\r\n'
    response = http.post(
        "/v1/files", content=cut, headers={"content-type": "multipart/form-data; boundary=b"}
    )
    assert response.status_code == 400
    assert stored(gateway) == []


def test_expired_and_orphaned_contents_are_swept(gateway: Gateway) -> None:
    """A file past its expiry is 404 at once and its contents are deleted by the next
    sweep; so are the contents of a deleted user's files (their rows went with the user)."""
    alice = gateway.create_user("alice")
    alice_key = gateway.create_key(name="a", user_id=alice["id"])["key"]
    bob_key = user_key(gateway, "bob")
    kept = upload(gateway.openai(alice_key), chat_lines(1))
    expiring = upload(gateway.openai(bob_key), chat_lines(1))

    async def expire() -> None:
        async with gateway.ctx.sessions.begin() as session:
            await session.execute(
                update(StoredFile)
                .where(StoredFile.id == expiring)
                .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
            )

    gateway.on_loop(expire)
    with pytest.raises(openai.NotFoundError):
        gateway.openai(bob_key).files.retrieve(expiring)
    gateway.admin.delete(f"/admin/api/v1/users/{alice['id']}").raise_for_status()
    assert gateway.on_loop(lambda: prune_once(gateway.ctx)) == (1, 0)  # alice's is too new
    assert stored(gateway) == [kept]
    old = time.time() - ORPHAN_GRACE_SECONDS - 60
    os.utime(Path(gateway.settings.files_path) / kept, (old, old))
    assert gateway.on_loop(lambda: prune_once(gateway.ctx)) == (0, 1)
    assert stored(gateway) == []


def test_the_input_file_of_a_running_batch_cannot_be_deleted(gateway: Gateway) -> None:
    """Deleting the input file of a batch that has not ended is refused (409
    file_in_use); once the batch ended the file can go."""
    client = gateway.openai(user_key(gateway, "alice"))
    file_id = upload(client, chat_lines(2))
    gateway.app.state.batch_runner = None  # the batch stays validating until woken
    batch = client.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    with pytest.raises(openai.ConflictError) as refused:
        client.files.delete(file_id)
    assert isinstance(refused.value.body, dict)
    assert refused.value.body["code"] == "file_in_use"
    client.batches.cancel(batch.id)
    deadline = time.monotonic() + 30
    while client.batches.retrieve(batch.id).status != "cancelled":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert client.files.delete(file_id).deleted is True


def test_a_user_has_at_most_two_uploads_arriving_at_once(gateway: Gateway) -> None:
    """A third upload of one user while two are still arriving is refused 429; another
    user's upload is not held back, and once one ends the user may upload again."""
    key = user_key(gateway, "alice")
    release = threading.Event()
    head = (
        b'--b\r\ncontent-disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
        b'--b\r\ncontent-disposition: form-data; name="file"; filename="a.jsonl"\r\n\r\n'
    )
    tail = chat_lines(1) + b"\r\n--b--\r\n"

    def slow_body() -> Iterator[bytes]:
        yield head
        release.wait(20)
        yield tail

    def slow_upload() -> int:
        with httpx.Client(base_url=gateway.url, timeout=30) as http:
            return http.post(
                "/v1/files",
                content=slow_body(),
                headers={
                    "authorization": f"Bearer {key}",
                    "content-type": "multipart/form-data; boundary=b",
                },
            ).status_code

    with ThreadPoolExecutor(2) as pool:
        arriving = [pool.submit(slow_upload) for _ in range(2)]
        slots = gateway.app.state.uploads
        deadline = time.monotonic() + 10
        while sum(slots._by_user.values()) < 2:  # both are being read
            assert time.monotonic() < deadline
            time.sleep(0.02)
        third = gateway.client_for(key).post(
            "/v1/files", data={"purpose": "batch"}, files={"file": ("x", chat_lines(1))}
        )
        assert third.status_code == 429, third.text
        assert third.json()["error"]["code"] == "concurrency_limit_exceeded"
        assert upload(gateway.openai(user_key(gateway, "bob")), chat_lines(1))
        release.set()
        assert [f.result(30) for f in arriving] == [200, 200]
    assert upload(gateway.openai(key), chat_lines(1))
