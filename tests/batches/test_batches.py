"""The Batch API run by relaygate, through the official openai SDK: files in, batches
run over the endpoint's chat completions, output files in OpenAI's line format."""

from __future__ import annotations

from tests.batches.conftest import (
    MODEL,
    BatchUpstream,
    chat_lines,
    output_lines,
    upload,
    wait_for,
)
from tests.support.gateway import Gateway


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
