"""Recent requests' filters typed oddly in the URL: each is a 400 page naming the field,
never a server error."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.support.gateway import Gateway
from tests.web.conftest import console


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("user=%C2%B2", "user"),  # "²": a digit to str.isdigit, not to int()
        ("endpoint=%E2%91%A0", "endpoint"),  # "①"
        ("before=%C2%B9", "before"),
        ("limit=%C2%B3", "limit"),
        ("from=" + quote("9999-12-31T23:59-14:00"), "from"),  # past year 9999 in UTC
        ("to=" + quote("0001-01-01T00:00+14:00"), "to"),  # before year 1 in UTC
    ],
)
def test_odd_recent_request_filters_are_a_400_naming_the_field(
    gateway: Gateway, query: str, field: str
) -> None:
    """A filter value that looks like a number or a time but cannot be one is a 400 page
    naming the field, and the console keeps serving."""
    with console(gateway) as client:
        answer = client.get(f"/ui/requests?{query}")
        assert answer.status_code == 400, answer.text[:300]
        assert field in answer.text
        assert client.get("/ui/requests").status_code == 200


@pytest.mark.parametrize("path", ["/ui/users/99999999999999999999999"])
def test_an_id_past_64_bits_in_a_console_path_is_not_found(gateway: Gateway, path: str) -> None:
    """A user page asked for an id no database column holds is the 404 page."""
    with console(gateway) as client:
        assert client.get(path).status_code == 404
