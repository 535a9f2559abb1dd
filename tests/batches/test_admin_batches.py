"""Admins see and cancel every user's batches through ``/admin/api/v1/batches``; an
endpoint's own ``batch_concurrency`` bounds what the runner sends it."""

from __future__ import annotations

from typing import Any

import pytest
from openai import OpenAI

from tests.batches.conftest import MODEL, BatchUpstream, chat_lines, upload, wait_for
from tests.support.gateway import Gateway

API = "/admin/api/v1"
ENDED = ("completed", "failed", "expired", "cancelled")


def user_client(gateway: Gateway, name: str) -> tuple[int, str, OpenAI]:
    """A new user's id, API key and SDK client."""
    user_id = gateway.create_user(name)["id"]
    key = gateway.create_key(user_id=user_id)["key"]
    return user_id, key, gateway.openai(key)


def start_batch(client: OpenAI, lines: int, prefix: str = "req") -> str:
    """Upload ``lines`` chat requests and create a batch of them; returns its id."""
    file_id = upload(client, chat_lines(lines, prefix=prefix))
    return client.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    ).id


def price_model(gateway: Gateway) -> None:
    """Price the batch model: 7 prompt and 3 completion tokens cost 0.013."""
    [model] = [m for m in gateway.admin.get(f"{API}/models").json() if m["upstream_id"] == MODEL]
    response = gateway.admin.patch(
        f"{API}/models/{model['id']}",
        json={"input_cost_per_million_tokens": 1000, "output_cost_per_million_tokens": 2000},
    )
    assert response.status_code == 200, response.text


def listed(gateway: Gateway, **query: Any) -> dict[str, Any]:
    response = gateway.admin.get(f"{API}/batches", params=query)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_admin_lists_every_users_batches_with_owner_and_cost(gateway: Gateway) -> None:
    """Two users' finished batches are listed newest first, each OpenAI's object with
    the owner's id and name and the cost of its answers."""
    price_model(gateway)
    ann_id, _, ann = user_client(gateway, "ann")
    bob_id, bob_key, bob = user_client(gateway, "bob")
    first = start_batch(ann, 2)
    wait_for(ann, first, ENDED)
    second = start_batch(bob, 3)
    done = wait_for(bob, second, ENDED)
    assert done.status == "completed"
    body = listed(gateway)
    assert [b["id"] for b in body["data"]] == [second, first]
    assert (body["first_id"], body["last_id"], body["has_more"]) == (second, first, False)
    newest, oldest = body["data"]
    assert (newest["user_id"], newest["user_name"]) == (bob_id, "bob")
    assert (oldest["user_id"], oldest["user_name"]) == (ann_id, "ann")
    assert (newest["cost"], oldest["cost"]) == (pytest.approx(0.039), pytest.approx(0.026))
    assert newest["request_counts"] == {"total": 3, "completed": 3, "failed": 0}
    own = gateway.client_for(bob_key).get(f"/v1/batches/{second}").json()
    assert set(newest) == set(own) | {"user_id", "user_name", "cost"}
    one = gateway.admin.get(f"{API}/batches/{second}")
    assert one.status_code == 200 and one.json() == newest


def test_admin_list_filters_by_status_and_user_and_pages(
    gateway: Gateway, upstream: BatchUpstream
) -> None:
    """``status`` and ``user_id`` narrow the list; ``limit`` and ``after`` page it."""
    ann_id, _, ann = user_client(gateway, "ann")
    _, _, bob = user_client(gateway, "bob")
    finished = start_batch(ann, 1)
    wait_for(ann, finished, ENDED)
    upstream.counts.delay = 5  # bob's batch stays in progress while the test looks
    running = start_batch(bob, 1)
    wait_for(bob, running, ("in_progress",))
    assert [b["id"] for b in listed(gateway, status="completed")["data"]] == [finished]
    assert [b["id"] for b in listed(gateway, status="in_progress")["data"]] == [running]
    assert listed(gateway, status="cancelled")["data"] == []
    assert [b["id"] for b in listed(gateway, user_id=ann_id)["data"]] == [finished]
    page = listed(gateway, limit=1)
    assert [b["id"] for b in page["data"]] == [running] and page["has_more"] is True
    rest = listed(gateway, limit=1, after=page["last_id"])
    assert [b["id"] for b in rest["data"]] == [finished] and rest["has_more"] is False
    for query in ({"status": "done"}, {"limit": 0}, {"limit": 101}, {"user_id": 0}):
        assert gateway.admin.get(f"{API}/batches", params=query).status_code == 400, query
    gateway.admin.post(f"{API}/batches/{running}/cancel")


def test_admin_cancels_another_users_batch(gateway: Gateway, upstream: BatchUpstream) -> None:
    """An admin cancels a user's running batch: it answers ``cancelling``, the requests
    still queued are never sent, and it ends ``cancelled`` with what was done; the
    cancel is in the audit log as the admin's."""
    upstream.counts.delay = 0.1
    _, _, ann = user_client(gateway, "ann")
    batch_id = start_batch(ann, 100)
    wait_for(ann, batch_id, ("in_progress",))
    response = gateway.admin.post(f"{API}/batches/{batch_id}/cancel")
    assert response.status_code == 200, response.text
    assert response.json()["status"] in ("cancelling", "cancelled")
    assert response.json()["user_name"] == "ann"
    done = wait_for(ann, batch_id, ("cancelled",))
    assert done.request_counts.completed + done.request_counts.failed < 100
    assert sum(upstream.counts.received.values()) < 100
    again = gateway.admin.post(f"{API}/batches/{batch_id}/cancel")
    assert again.status_code == 200 and again.json()["status"] == "cancelled"
    # One audit entry, the admin's, for the cancel that changed something (not the repeat).
    audit = gateway.admin.get(f"{API}/audit", params={"action": "batch.cancel"}).json()["data"]
    assert [(e["actor_name"], e["target_id"]) for e in audit] == [("admin", batch_id)]
    assert audit[0]["details"]["values"]["user_id"] == response.json()["user_id"]


def test_user_keys_get_403_and_unknown_ids_404(gateway: Gateway) -> None:
    """A user's own key is refused all three admin batch routes, even for their own
    batch; an unknown or malformed id is a 404 for an admin."""
    _, key, ann = user_client(gateway, "ann")
    batch_id = start_batch(ann, 1)
    user = gateway.client_for(key)
    for method, path in (
        ("GET", f"{API}/batches"),
        ("GET", f"{API}/batches/{batch_id}"),
        ("POST", f"{API}/batches/{batch_id}/cancel"),
    ):
        response = user.request(method, path)
        assert response.status_code == 403, path
        assert response.json()["error"]["code"] == "permission_denied"
    assert ann.batches.retrieve(batch_id).status not in ("cancelling", "cancelled")
    for missing in ("batch_" + "0" * 24, "batch_nope", "x" * 64):
        for method, path in (
            ("GET", f"{API}/batches/{missing}"),
            ("POST", f"{API}/batches/{missing}/cancel"),
        ):
            response = gateway.admin.request(method, path)
            assert response.status_code == 404, (method, path)
            assert response.json()["error"]["code"] == "batch_not_found"


def test_batch_concurrency_set_through_the_admin_api_bounds_the_upstream(
    gateway: Gateway, upstream: BatchUpstream
) -> None:
    """An endpoint PATCHed to ``batch_concurrency: 1`` is sent one batch request at a
    time (the setting would send 4)."""
    endpoint = gateway.endpoint("local")
    response = gateway.admin.patch(
        f"{API}/endpoints/{endpoint['id']}", json={"batch_concurrency": 1}
    )
    assert response.status_code == 200 and response.json()["batch_concurrency"] == 1
    upstream.counts.delay = 0.05
    client = gateway.openai()
    batch_id = start_batch(client, 8)
    assert wait_for(client, batch_id, ENDED).status == "completed"
    assert upstream.counts.most_in_flight == 1
