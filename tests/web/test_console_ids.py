"""Ids in the console's paths, forms and filters are held to the admin API's bound (a
row id from 1 to 2**31 - 1): from the side of a signed-in user or admin typing ids no
row can have, every answer is a page saying so (404 for a path, 400 for a field), never
a database error, and the console keeps serving."""

from __future__ import annotations

import pytest

from relaygate.account_spec import UserUpdate
from tests.support.gateway import Gateway
from tests.web.conftest import console, csrf_of

PAST = ["0", str(2**31), str(2**63), "9" * 30]
"""Ids that no row can have: zero, one past a 32-bit column (PostgreSQL's INTEGER), one
past 64 bits (SQLite's), and far past."""


@pytest.mark.parametrize("bad", PAST)
def test_a_user_typing_an_id_past_the_bound_gets_a_page_not_found(
    gateway: Gateway, bad: str
) -> None:
    user = gateway.create_user("ann")
    key = gateway.create_key(user_id=user["id"], name="mine")
    with console(gateway, key["key"]) as client:
        csrf = csrf_of(client)
        for path in (f"/ui/account/keys/{bad}/revoke", f"/ui/account/provider-keys/{bad}"):
            answer = client.post(path, data={"csrf": csrf, "api_key": "sk-x"})
            assert answer.status_code == 404, (path, answer.status_code, answer.text[:300])
            assert "Not found" in answer.text
        assert client.get("/ui/account").status_code == 200
    # The user's own key still works: nothing was revoked by the odd ids.
    assert gateway.openai(key["key"]).models.list().data is not None


@pytest.mark.parametrize("bad", PAST)
def test_an_admin_typing_an_id_past_the_bound_gets_a_page_not_found(
    gateway: Gateway, bad: str
) -> None:
    with console(gateway) as client:
        csrf = csrf_of(client)
        posts = [
            f"/ui/endpoints/{bad}/edit",
            f"/ui/endpoints/{bad}/toggle",
            f"/ui/endpoints/{bad}/delete",
            f"/ui/models/{bad}",
            f"/ui/users/{bad}/edit",
            f"/ui/users/{bad}/delete",
            f"/ui/users/{bad}/limits",
            f"/ui/users/{bad}/disabled",
            f"/ui/users/{bad}/keys",
            f"/ui/users/1/keys/{bad}/limits",
            f"/ui/users/1/keys/{bad}/revoke",
            f"/ui/groups/{bad}/delete",
            f"/ui/groups/{bad}/members",
            f"/ui/groups/{bad}/grants",
            f"/ui/budgets/user/{bad}",
            f"/ui/budgets/user/{bad}/reset",
        ]
        for path in posts:
            answer = client.post(path, data={"csrf": csrf, "user_id": "1"})
            assert answer.status_code == 404, (path, answer.status_code, answer.text[:300])
        answer = client.get(f"/ui/users/{bad}")
        assert answer.status_code == 404, answer.text[:300]
        assert client.get("/ui/endpoints").status_code == 200


@pytest.mark.parametrize("bad", PAST)
def test_an_id_past_the_bound_in_a_form_or_filter_is_a_400_naming_it(
    gateway: Gateway, bad: str
) -> None:
    group = gateway.admin.post("/admin/api/v1/groups", json={"name": "team"}).json()
    with console(gateway) as client:
        csrf = csrf_of(client)
        for field in ("user_id",):
            answer = client.post(
                f"/ui/groups/{group['id']}/members", data={"csrf": csrf, field: bad}
            )
            assert answer.status_code == 400, answer.text[:300]
            assert field in answer.text
        for field in ("model_id", "endpoint_id"):
            answer = client.post(
                f"/ui/groups/{group['id']}/grants", data={"csrf": csrf, field: bad}
            )
            assert answer.status_code == 400, answer.text[:300]
            assert field in answer.text
        answer = client.get(f"/ui/models?endpoint_id={bad}")
        assert answer.status_code == 400 and "endpoint_id" in answer.text
        for name in ("user", "endpoint"):
            answer = client.get(f"/ui/requests?{name}={bad}")
            assert answer.status_code == 400, answer.text[:300]
            assert name in answer.text
        assert client.get("/ui/requests").status_code == 200
    members = gateway.admin.get(f"/admin/api/v1/groups/{group['id']}").json()
    assert members["users"] == [] and members["models"] == [] and members["endpoints"] == []


def test_the_filters_all_and_the_paging_cursor_pass_the_bound(gateway: Gateway) -> None:
    """The models page's "all" endpoint (sent blank) lists every model, and the recent
    requests' cursor ``before`` is a usage record's id, a 64-bit one: past 2**31 it is a
    page, not a 400."""
    with console(gateway) as client:
        assert client.get("/ui/models?endpoint_id=&status=").status_code == 200
        assert client.get(f"/ui/requests?before={2**31}").status_code == 200
        assert client.get(f"/ui/requests?before={10**17}").status_code == 200
        answer = client.get(f"/ui/requests?before={'9' * 30}")
        assert answer.status_code == 400 and "before" in answer.text


def test_a_change_typed_in_the_console_or_cli_names_only_real_fields() -> None:
    """A change built from a form or options, unchecked, still refuses a name that is
    not a field (a misspelt one would otherwise change nothing, silently)."""
    changes = UserUpdate.unchecked(name="ann", email=None)
    assert changes.changes() == {"name": "ann", "email": None}
    with pytest.raises(TypeError, match="emial"):
        UserUpdate.unchecked(emial="a@b.c")
