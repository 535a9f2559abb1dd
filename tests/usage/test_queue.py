"""The usage queue hands the writer bounded batches, oldest first."""

from __future__ import annotations

from datetime import UTC, datetime

from relaygate.metrics import Metrics
from relaygate.usage_records import UsageEntry, UsageQueue


def entry(n: int) -> UsageEntry:
    return UsageEntry(
        created_at=datetime.now(UTC),
        request_id=f"r{n}",
        user_id=1,
        key_id=1,
        endpoint_id=1,
        model="m",
        upstream_model="m",
        path="/v1/chat/completions",
        upstream_path=None,
        status=200,
        stream=False,
        latency_ms=1.0,
        ttfb_ms=None,
        prompt_tokens=1,
        completion_tokens=1,
        total_tokens=2,
        cost=None,
    )


async def test_a_backlog_is_taken_one_batch_at_a_time_oldest_first() -> None:
    queue = UsageQueue(Metrics(), size=10_000, batch=500)
    for n in range(1_200):
        queue.put(entry(n))
    assert queue.ready.is_set()  # a whole batch waits: the writer need not wait its interval
    first = queue.take()
    assert [e.request_id for e in first] == [f"r{n}" for n in range(500)]
    assert queue.ready.is_set() and len(queue) == 700
    second = queue.take()
    assert second[0].request_id == "r500" and len(second) == 500
    assert not queue.ready.is_set()  # 200 left: less than a batch
    assert [e.request_id for e in queue.take()] == [f"r{n}" for n in range(1_000, 1_200)]
    assert queue.take() == [] and len(queue) == 0


async def test_a_batch_given_back_goes_in_front_within_the_bound() -> None:
    metrics = Metrics()
    queue = UsageQueue(metrics, size=600, batch=500)
    for n in range(550):
        queue.put(entry(n))
    batch = queue.take()
    for n in range(550, 600):
        queue.put(entry(n))
    queue.give_back(batch)  # 100 waiting + 500 back = the bound of 600: nothing dropped
    assert len(queue) == 600
    assert [e.request_id for e in queue.take()][:2] == ["r0", "r1"]
    assert metrics.registry.get_sample_value("relaygate_usage_dropped_total") == 0
