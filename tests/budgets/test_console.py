"""Budgets in the console: admins set, clear and reset them on the users & groups page,
which warns about unpriced models; users see theirs on "My account" and cannot set
any."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.budgets.support import HELLO, price_models
from tests.conftest import Upstream
from tests.support.gateway import Clock, Gateway
from tests.web.conftest import console, csrf_of

API = "/admin/api/v1"


@pytest.fixture
def served(tmp_path: Path, upstream: Upstream) -> Iterator[Gateway]:
    gateway = Gateway(tmp_path, clock=Clock(), usage_flush_interval=0.1).start()
    gateway.add_endpoint("up", upstream.url)
    yield gateway
    gateway.stop()


def test_admins_set_clear_and_reset_budgets_in_the_console(served: Gateway) -> None:
    ann = served.create_user("ann")
    team = served.admin.post(f"{API}/groups", json={"name": "team"}).json()
    with console(served) as client:
        page = client.get("/ui/people").text
        assert "A budget cannot protect unpriced models: 1 model without prices" in page
        csrf = csrf_of(client, "/ui/people")
        saved = client.post(
            f"/ui/budgets/user/{ann['id']}",
            data={"csrf": csrf, "budget": "2.5", "budget_period": "daily"},
        )
        assert saved.status_code == 303 and "saved" in saved.headers["location"]
        user = served.admin.get(f"{API}/users/{ann['id']}").json()
        assert (user["budget"], user["budget_period"]) == (2.5, "daily")
        client.post(f"/ui/budgets/group/{team['id']}", data={"csrf": csrf, "budget": "10"})
        assert served.admin.get(f"{API}/groups/{team['id']}").json()["budget"] == 10.0
        bad = client.post(f"/ui/budgets/user/{ann['id']}", data={"csrf": csrf, "budget": "lots"})
        assert "kind=error" in bad.headers["location"]
        assert "budget+must+be+a+number" in bad.headers["location"]
        reset = client.post(f"/ui/budgets/user/{ann['id']}/reset", data={"csrf": csrf})
        assert "reset" in reset.headers["location"]
        assert served.admin.get(f"{API}/users/{ann['id']}").json()["budget_reset_at"]
        page = client.get("/ui/people").text
        assert 'value="2.5"' in page and "0 spent, resets 2031-01-16 00:00 UTC" in page
        client.post(f"/ui/budgets/user/{ann['id']}", data={"csrf": csrf, "budget": ""})
        assert served.admin.get(f"{API}/users/{ann['id']}").json()["budget"] is None
        # A forged form without the session's token changes nothing.
        forged = client.post(f"/ui/budgets/group/{team['id']}", data={"budget": "999"})
        assert forged.status_code == 403
        assert served.admin.get(f"{API}/groups/{team['id']}").json()["budget"] == 10.0
        price_models(served)
        assert "cannot protect unpriced models" not in client.get("/ui/people").text


def test_users_see_their_budgets_and_cannot_set_any(served: Gateway) -> None:
    price_models(served)
    ann = served.create_user("ann")
    served.admin.patch(f"{API}/users/{ann['id']}", json={"budget": 1, "budget_period": "daily"})
    key = served.create_key(user_id=ann["id"], name="laptop", budget=0.5)
    served.openai(key["key"]).chat.completions.create(
        model="gpt-test", messages=HELLO, max_tokens=4
    )
    with console(served, key["key"]) as client:
        page = client.get("/ui/account").text
        assert "My budgets" in page and "0.493" in page and "0.993" in page
        csrf = csrf_of(client)
        for path in (f"/ui/budgets/user/{ann['id']}", f"/ui/budgets/key/{key['id']}/reset"):
            refused = client.post(path, data={"csrf": csrf, "budget": ""})
            assert refused.status_code == 403, refused.text
    user = served.admin.get(f"{API}/users/{ann['id']}").json()
    assert user["budget"] == 1.0 and user["budget_reset_at"] is None
