"""A relaygate process killed mid-batch (SIGKILL) and started again: the batch completes
with every request answered once at the upstream, none lost and none sent again once
answered."""

from __future__ import annotations

import secrets
import signal
import time
from pathlib import Path

import httpx
from openai import OpenAI

from tests.batches.conftest import BatchUpstream, chat_lines, output_lines, upload, wait_for
from tests.support import databases
from tests.support.process import ServeProcess, cli_env


def test_a_killed_process_resumes_its_batch_without_sending_an_answered_request_again(
    tmp_path: Path, upstream: BatchUpstream
) -> None:
    """relaygate killed with requests in flight and restarted finishes the batch: 200
    output lines, one per custom_id, and each request completed exactly once at the
    upstream (the ones cut off by the kill are sent again; answered ones never)."""
    admin_key = "rg-" + secrets.token_urlsafe(32)
    url = databases.database_url(tmp_path)
    env = cli_env(
        tmp_path,
        RELAYGATE_DATABASE_URL=url,
        RELAYGATE_ADMIN_KEY=admin_key,
        RELAYGATE_SECRET_KEY=secrets.token_urlsafe(32),
        RELAYGATE_FILES_DIR=str(tmp_path / "files"),
        RELAYGATE_BATCH_POLL_INTERVAL="0.05",
        RELAYGATE_BATCH_LEASE_SECONDS="2",
        RELAYGATE_BATCH_CONCURRENCY="8",
    )
    first = ServeProcess(tmp_path, env).wait_ready()
    second: ServeProcess | None = None
    try:
        headers = {"authorization": f"Bearer {admin_key}"}
        httpx.post(
            first.url + "/admin/api/v1/endpoints",
            json={"name": "local", "url": upstream.url},
            headers=headers,
        ).raise_for_status()
        upstream.counts.hold_after = 60
        with OpenAI(base_url=first.url + "/v1", api_key=admin_key, max_retries=0) as client:
            batch = client.batches.create(
                input_file_id=upload(client, chat_lines(200)),
                endpoint="/v1/chat/completions",
                completion_window="24h",
            )
            # Wait until 60 are answered and recorded, with more held in flight upstream.
            deadline = time.monotonic() + 60
            while (
                client.batches.retrieve(batch.id).request_counts.completed < 60
                or upstream.counts.in_flight == 0
            ):
                assert time.monotonic() < deadline, upstream.counts
                time.sleep(0.05)
        held = upstream.counts.in_flight
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(10)
        deadline = time.monotonic() + 10
        while upstream.counts.in_flight:  # the held requests see their client gone
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert sum(upstream.counts.completed.values()) == 60
        upstream.counts.hold_after = None

        second = ServeProcess(tmp_path, env).wait_ready()
        with OpenAI(base_url=second.url + "/v1", api_key=admin_key, max_retries=0) as client:
            done = wait_for(client, batch.id, ("completed",), seconds=90)
            lines = output_lines(client, done.output_file_id)
        assert done.request_counts.completed == 200
        assert sorted(x["custom_id"] for x in lines) == sorted(f"req-{n}" for n in range(200))
        completed = upstream.counts.completed
        assert len(completed) == 200
        assert set(completed.values()) == {1}, "a request completed twice at the upstream"
        resent = [tag for tag, n in upstream.counts.received.items() if n > 1]
        assert 0 < len(resent) <= held  # only those cut off in flight went again
    finally:
        first.stop()
        if second is not None:
            second.stop()
        databases.drop(url)
