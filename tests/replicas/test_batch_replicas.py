"""Two relaygate processes on one PostgreSQL database share one batch, row by row."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from tests.batches.conftest import BatchUpstream, chat_lines, output_lines, upload, wait_for
from tests.support import databases
from tests.support.process import ServeProcess, cli_env

pytestmark = pytest.mark.skipif(
    databases.SERVER_URL is None, reason="RELAYGATE_TEST_DATABASE_URL is not set"
)


@pytest.fixture
def upstream() -> Iterator[BatchUpstream]:
    server = BatchUpstream().start()
    server.counts.delay = 0.02
    yield server
    server.stop()


def completed_here(server: ServeProcess) -> float:
    """Batch requests this process completed, from its /metrics."""
    text = httpx.get(server.url + "/metrics").text
    found = re.search(r'relaygate_batch_requests_total\{outcome="completed"\} ([0-9.e+]+)', text)
    return float(found.group(1)) if found else 0.0


def test_two_replicas_share_one_batch_and_send_each_request_once(
    tmp_path: Path, upstream: BatchUpstream
) -> None:
    """A batch created on replica A is run by A and B together (each completes some of
    it), every request is answered once at the upstream, and both read the same result."""
    url = databases.create_postgres_database()
    admin_key = "rg-" + secrets.token_urlsafe(32)
    env = cli_env(
        tmp_path,
        RELAYGATE_DATABASE_URL=url,
        RELAYGATE_ADMIN_KEY=admin_key,
        RELAYGATE_SECRET_KEY=secrets.token_urlsafe(32),
        RELAYGATE_FILES_DIR=str(tmp_path / "files"),
        RELAYGATE_BATCH_POLL_INTERVAL="0.05",
        RELAYGATE_BATCH_MAX_IN_FLIGHT="8",
    )
    a = ServeProcess(tmp_path, env).wait_ready()
    b = ServeProcess(tmp_path, env).wait_ready()
    try:
        httpx.post(
            a.url + "/admin/api/v1/endpoints",
            json={"name": "local", "url": upstream.url},
            headers={"authorization": f"Bearer {admin_key}"},
        ).raise_for_status()
        with (
            OpenAI(base_url=a.url + "/v1", api_key=admin_key, max_retries=0) as on_a,
            OpenAI(base_url=b.url + "/v1", api_key=admin_key, max_retries=0) as on_b,
        ):
            batch = on_a.batches.create(
                input_file_id=upload(on_a, chat_lines(300)),
                endpoint="/v1/chat/completions",
                completion_window="24h",
            )
            done = wait_for(on_b, batch.id, ("completed",), seconds=120)
            lines = output_lines(on_b, done.output_file_id)
            assert lines == output_lines(on_a, done.output_file_id)
        assert done.request_counts.completed == 300
        assert len({x["custom_id"] for x in lines}) == 300
        assert set(upstream.counts.completed.values()) == {1}
        assert len(upstream.counts.completed) == 300
        by_a, by_b = completed_here(a), completed_here(b)
        assert by_a > 0 and by_b > 0, (by_a, by_b)
        assert by_a + by_b == 300
    finally:
        a.stop()
        b.stop()
        databases.drop(url)
