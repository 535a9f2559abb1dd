"""The Batch API run by relaygate, through the official openai SDK: files in, batches
run over the endpoint's chat completions, output files in OpenAI's line format."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai
import pytest
from sqlalchemy import select

from relaygate.db.tables import BatchRequest
from tests.batches.conftest import (
    MODEL,
    BatchUpstream,
    chat_lines,
    end_window,
    output_lines,
    upload,
    wait_for,
)
from tests.support.gateway import Gateway
from tests.support.polling import eventually


def test_a_batch_of_200_requests_completes_with_one_output_line_each(
    gateway: Gateway, upstream: BatchUpstream
) -> None:
    """A 200-line batch runs to completed; its output file has one line per custom_id,
    each the upstream's answer in OpenAI's format, and each request was answered once."""
    client = gateway.openai()
    file_id = upload(client, chat_lines(200))
    batch = client.batches.create(
        input_file_id=file_id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"job": "nightly"},
    )
    assert batch.status == "validating"
    assert batch.metadata == {"job": "nightly"}
    done = wait_for(client, batch.id, ("completed", "failed", "expired"))
    assert done.status == "completed", done
    assert done.request_counts.total == 200
    assert done.request_counts.completed == 200
    assert done.request_counts.failed == 0
    assert done.error_file_id is None
    lines = output_lines(client, done.output_file_id)
    assert sorted(line["custom_id"] for line in lines) == sorted(f"req-{n}" for n in range(200))
    for line in lines:
        assert line["error"] is None
        assert line["id"].startswith("batch_req_")
        assert line["response"]["status_code"] == 200
        assert line["response"]["request_id"]
        body = line["response"]["body"]
        assert body["choices"][0]["message"]["content"] == "echo " + line["custom_id"]
        assert body["model"] == MODEL
    assert set(upstream.counts.completed.values()) == {1}
    assert len(upstream.counts.completed) == 200
    usage = done.usage
    assert usage is not None and usage.input_tokens == 7 * 200
    assert usage.output_tokens == 3 * 200


def test_a_failing_endpoint_fails_over_then_leaves_error_lines(
    tmp_path: Path, upstream: BatchUpstream
) -> None:
    """Batch requests fail over as live ones do: with the model's first endpoint failing,
    a second endpoint answers them all; with every endpoint failing, each request is
    retried ``batch_max_attempts`` times and ends as an error line carrying the answer."""
    broken = BatchUpstream().start()
    broken.counts.status = 500
    gateway = Gateway(
        tmp_path, batch_poll_interval=0.05, batch_retry_seconds=0.01, batch_max_attempts=2
    ).start()
    try:
        gateway.add_endpoint("broken", broken.url, pool="batch")
        gateway.add_endpoint("local", upstream.url, pool="batch")
        client = gateway.openai()
        batch = client.batches.create(
            input_file_id=upload(client, chat_lines(20)),
            endpoint="/v1/chat/completions",
            completion_window="24h",
        )
        done = wait_for(client, batch.id, ("completed",))
        assert done.request_counts.completed == 20
        assert len(output_lines(client, done.output_file_id)) == 20
        assert sum(upstream.counts.completed.values()) == 20
        assert sum(broken.counts.received.values()) >= 1  # tried, then failed over

        upstream.counts.status = 503
        failing = client.batches.create(
            input_file_id=upload(client, chat_lines(5, prefix="bad")),
            endpoint="/v1/chat/completions",
            completion_window="24h",
        )
        ended = wait_for(client, failing.id, ("completed",))
        assert ended.request_counts.failed == 5
        assert ended.output_file_id is None
        errors = output_lines(client, ended.error_file_id)
        assert sorted(e["custom_id"] for e in errors) == [f"bad-{n}" for n in range(5)]
        for error in errors:
            assert error["response"]["status_code"] in (500, 503)
            assert error["response"]["body"]["error"]
        for n in range(5):
            # Two attempts, each to at most both endpoints (a cooling one is skipped, and
            # with both cooling relaygate answers 503 itself without sending).
            tries = broken.counts.received[f"bad-{n}"] + upstream.counts.received[f"bad-{n}"]
            assert tries <= 4
    finally:
        gateway.stop()
        broken.stop()


def test_429_and_5xx_answers_are_retried_with_backoff(
    gateway: Gateway, upstream: BatchUpstream
) -> None:
    """A request answered 429 then 503 is sent again until it is answered; its line
    holds the final answer, and it was received three times, completed once."""
    upstream.counts.fail_with["req-3"] = [429, 503]
    client = gateway.openai()
    batch = client.batches.create(
        input_file_id=upload(client, chat_lines(6)),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    done = wait_for(client, batch.id, ("completed",))
    assert done.request_counts.completed == 6
    assert upstream.counts.received["req-3"] == 3
    assert upstream.counts.completed["req-3"] == 1
    line = next(x for x in output_lines(client, done.output_file_id) if x["custom_id"] == "req-3")
    assert line["response"]["status_code"] == 200


def test_a_cancelled_batch_stops_sending_and_keeps_what_was_done(
    tmp_path: Path, upstream: BatchUpstream
) -> None:
    """Cancelling mid-way sends nothing more: the batch ends cancelled, answered
    requests are in its output file, the others in its error file as batch_cancelled,
    and the upstream received only the answered ones."""
    upstream.counts.delay = 0.1
    gateway = Gateway(tmp_path, batch_poll_interval=0.05, batch_concurrency=2).start()
    try:
        gateway.add_endpoint("local", upstream.url)
        client = gateway.openai()
        batch = client.batches.create(
            input_file_id=upload(client, chat_lines(60)),
            endpoint="/v1/chat/completions",
            completion_window="24h",
        )
        deadline = time.monotonic() + 30
        while sum(upstream.counts.completed.values()) < 4:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        cancelling = client.batches.cancel(batch.id)
        assert cancelling.status in ("cancelling", "cancelled")
        done = wait_for(client, batch.id, ("cancelled",))
        answered = output_lines(client, done.output_file_id)
        unsent = output_lines(client, done.error_file_id)
        assert 4 <= len(answered) < 60
        assert len(answered) + len(unsent) == 60
        assert {e["error"]["code"] for e in unsent} == {"batch_cancelled"}
        assert sum(upstream.counts.received.values()) == len(answered)
        assert done.request_counts.completed == len(answered)
        assert upstream.counts.most_in_flight <= 2  # the endpoint's batch concurrency
    finally:
        gateway.stop()


def test_a_batch_past_its_window_expires_with_what_it_has_done(
    tmp_path: Path, upstream: BatchUpstream
) -> None:
    """Past its completion window a batch ends expired: answered requests in its output
    file, the rest in its error file as batch_expired."""
    upstream.counts.delay = 0.1
    gateway = Gateway(tmp_path, batch_poll_interval=0.05, batch_concurrency=1).start()
    try:
        gateway.add_endpoint("local", upstream.url)
        client = gateway.openai()
        batch = client.batches.create(
            input_file_id=upload(client, chat_lines(40)),
            endpoint="/v1/chat/completions",
            completion_window="24h",
        )
        deadline = time.monotonic() + 30
        while sum(upstream.counts.completed.values()) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.02)

        end_window(gateway, batch.id)
        done = wait_for(client, batch.id, ("expired",))
        answered = output_lines(client, done.output_file_id)
        late = output_lines(client, done.error_file_id)
        assert len(answered) >= 2
        assert len(answered) + len(late) == 40
        assert {e["error"]["code"] for e in late} == {"batch_expired"}
        assert done.expired_at is not None
    finally:
        gateway.stop()


def test_batches_are_refused_clear_errors(gateway: Gateway) -> None:
    """Creating a batch from a file of another route, with an unknown endpoint or
    window, or from an unknown file is refused with a clear 4xx."""
    client = gateway.openai()
    file_id = upload(client, chat_lines(2))
    for fields, words in (
        ({"endpoint": "/v1/embeddings"}, "go to /v1/chat/completions"),
        ({"endpoint": "/v1/files"}, "'endpoint' must be one of"),
        ({"completion_window": "1h"}, "'completion_window' must be '24h'"),
    ):
        arguments: dict[str, Any] = {
            "input_file_id": file_id,
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
            **fields,
        }
        with pytest.raises(openai.BadRequestError) as refused:
            client.batches.create(**arguments)
        assert words in str(refused.value)
    with pytest.raises(openai.NotFoundError):
        client.batches.create(
            input_file_id="file-" + "0" * 24,
            endpoint="/v1/chat/completions",
            completion_window="24h",
        )
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_nope")


def test_the_callers_rate_limit_holds_batch_requests_back_without_failing_them(
    gateway: Gateway, upstream: BatchUpstream
) -> None:
    """Batch requests count against their key's rate limits: past the key's requests per
    minute the rest wait (queued, no attempt spent) instead of failing."""
    user = gateway.create_user("limited")
    key = gateway.create_key(name="k", user_id=user["id"], requests_per_minute=3)["key"]
    client = gateway.openai(key)
    batch = client.batches.create(
        input_file_id=upload(client, chat_lines(5)),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    deadline = time.monotonic() + 20
    while sum(upstream.counts.completed.values()) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.05)

    async def waiting() -> list[tuple[str, int]]:
        async with gateway.ctx.sessions() as session:
            rows = await session.execute(
                select(BatchRequest.state, BatchRequest.attempts).where(
                    BatchRequest.batch_id == batch.id, BatchRequest.state != "done"
                )
            )
            return [(state, attempts) for state, attempts in rows]

    held_back = [("queued", 0), ("queued", 0)]
    # The third request's outcome is written just after the upstream answered it.
    assert eventually(lambda: gateway.on_loop(waiting), lambda rows: rows == held_back) == held_back
    time.sleep(0.5)  # several polls: the held-back requests stay queued
    assert sum(upstream.counts.received.values()) == 3
    assert gateway.on_loop(waiting) == held_back
    current = client.batches.retrieve(batch.id)
    assert current.status == "in_progress"
    assert current.request_counts.failed == 0


def test_an_answer_over_the_bound_ends_its_request_with_an_error(
    tmp_path: Path, upstream: BatchUpstream
) -> None:
    """An upstream cannot make relaygate hold more than ``batch_max_response_bytes`` of
    one answer: a larger answer ends its request as the error response_too_large."""
    gateway = Gateway(tmp_path, batch_poll_interval=0.05, batch_max_response_bytes=100).start()
    try:
        gateway.add_endpoint("local", upstream.url)
        client = gateway.openai()
        batch = client.batches.create(
            input_file_id=upload(client, chat_lines(3)),
            endpoint="/v1/chat/completions",
            completion_window="24h",
        )
        done = wait_for(client, batch.id, ("completed",))
        assert done.request_counts.failed == 3
        errors = output_lines(client, done.error_file_id)
        assert {e["error"]["code"] for e in errors} == {"response_too_large"}
        assert all(e["response"] is None for e in errors)
    finally:
        gateway.stop()


def test_batch_requests_yield_to_live_traffic_and_never_take_its_slots(
    tmp_path: Path, upstream: BatchUpstream
) -> None:
    """While live requests in flight are at ``batch_yield_at`` of the process's limit no
    batch request starts, and batch requests in flight never count against the live
    limit: a live request is served whatever the batch is doing."""
    gateway = Gateway(
        tmp_path,
        batch_poll_interval=0.05,
        max_concurrent_requests=4,
        batch_yield_at=0.5,
        batch_concurrency=8,
    ).start()
    pool = ThreadPoolExecutor(4)
    try:
        gateway.add_endpoint("local", upstream.url)
        client = gateway.openai()

        def live(tag: str) -> str | None:
            reply = client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": tag}]
            )
            return reply.choices[0].message.content

        upstream.counts.held.update({"live-0", "live-1"})
        held = [pool.submit(live, f"live-{n}") for n in range(2)]
        deadline = time.monotonic() + 10
        while upstream.counts.in_flight < 2:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        batch = client.batches.create(
            input_file_id=upload(client, chat_lines(12)),
            endpoint="/v1/chat/completions",
            completion_window="24h",
        )
        wait_for(client, batch.id, ("in_progress",))
        time.sleep(0.5)  # many polls of the runner: none may start a batch request
        assert not any(tag.startswith("req-") for tag in upstream.counts.received)
        upstream.counts.held.clear()
        assert [f.result(10) for f in held] == ["echo live-0", "echo live-1"]

        upstream.counts.held.update(f"req-{n}" for n in range(12))  # batch requests wait
        deadline = time.monotonic() + 10
        while upstream.counts.in_flight < 8:  # the batch holds 8 upstream, live holds none
            assert time.monotonic() < deadline, upstream.counts.in_flight
            time.sleep(0.02)
        assert [live(f"more-{n}") for n in range(3)] == [f"echo more-{n}" for n in range(3)]
        upstream.counts.held.clear()
        assert wait_for(client, batch.id, ("completed",)).request_counts.completed == 12
    finally:
        upstream.counts.held.clear()
        pool.shutdown()
        gateway.stop()


def test_a_later_small_batch_is_not_held_back_by_an_earlier_large_one(
    tmp_path: Path, upstream: BatchUpstream
) -> None:
    """Claims share the room between batches: a 3-request batch created after a
    100-request one completes while the large one is still running."""
    upstream.counts.delay = 0.05
    gateway = Gateway(
        tmp_path, batch_poll_interval=0.05, batch_concurrency=2, batch_max_in_flight=4
    ).start()
    try:
        gateway.add_endpoint("local", upstream.url)
        client = gateway.openai()
        large = client.batches.create(
            input_file_id=upload(client, chat_lines(100)),
            endpoint="/v1/chat/completions",
            completion_window="24h",
        )
        wait_for(client, large.id, ("in_progress",))
        small = client.batches.create(
            input_file_id=upload(client, chat_lines(3, prefix="small")),
            endpoint="/v1/chat/completions",
            completion_window="24h",
            output_expires_after={"anchor": "created_at", "seconds": 7200},
        )
        done = wait_for(client, small.id, ("completed",))
        assert client.batches.retrieve(large.id).status == "in_progress"
        output = client.files.retrieve(done.output_file_id or "")
        assert output.expires_at is not None
        assert output.expires_at - output.created_at == 7200
        assert done.usage is not None and done.usage.input_tokens_details.cached_tokens == 0
    finally:
        gateway.stop()
