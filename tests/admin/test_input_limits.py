"""Input the database cannot store is a 400 from the admin API, on SQLite and PostgreSQL
alike, never a database error (each case here was a 500 once)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.gateway import Gateway

API = "/admin/api/v1"


def assert_400(gateway: Gateway, method: str, path: str, param: str, **kwargs: Any) -> None:
    response = gateway.admin.request(method, API + path, **kwargs)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param


@pytest.mark.parametrize(
    ("method", "path", "param"),
    [
        ("GET", "/users/2147483648", "path.user_id"),
        ("DELETE", "/endpoints/9223372036854775806", "path.endpoint_id"),
        ("GET", "/keys?user_id=2147483648", "query.user_id"),
        ("GET", "/keys?user_id=31262253136530071552", "query.user_id"),
        ("GET", "/models?endpoint_id=2147483648", "query.endpoint_id"),
        ("GET", "/models?endpoint_id=0", "query.endpoint_id"),
    ],
)
def test_ids_beyond_32_bits_are_400(gateway: Gateway, method: str, path: str, param: str) -> None:
    """Ids in paths and queries stay within INTEGER, which is 32-bit on PostgreSQL."""
    assert_400(gateway, method, path, param)


def test_key_for_an_out_of_range_user_is_400(gateway: Gateway) -> None:
    """A body's user id is bounded like a path's."""
    assert_400(gateway, "POST", "/keys", "user_id", json={"user_id": 2**31})


@pytest.mark.parametrize(
    ("method", "path", "body", "param"),
    [
        ("POST", "/users", {"name": "a\x00b"}, "name"),
        ("POST", "/users", {"name": "u", "email": "a\x00@example.org"}, "email"),
        ("POST", "/groups", {"name": "g", "description": "\x00"}, "description"),
        ("POST", "/keys", {"name": "k\x00"}, "name"),
        ("POST", "/me/keys", {"name": "k\x00"}, "name"),
        ("PATCH", "/models/1", {"alias": "a\x00"}, "alias"),
        ("POST", "/endpoints", {"name": "e", "url": "http://127.0.0.1/\x00"}, "url"),
        ("POST", "/endpoints", {"name": "e", "url": "http://h/v1", "groups": ["\x00"]}, "groups.0"),
        ("PATCH", "/endpoints/1", {"name": "e\x00"}, "name"),
    ],
)
def test_nul_characters_are_400(
    gateway: Gateway, method: str, path: str, body: dict[str, Any], param: str
) -> None:
    """PostgreSQL cannot store NUL; no string field takes one, on any database."""
    assert_400(gateway, method, path, param, json=body)


@pytest.mark.parametrize(
    ("method", "path", "body", "param"),
    [
        ("POST", "/users", {"name": "u", "email": "e" * 321}, "email"),
        ("POST", "/endpoints", {"name": "e", "url": "http://h/" + "a" * 2000}, "url"),
        (
            "POST",
            "/endpoints",
            {"name": "e", "url": "http://h/v1", "api_key_env": "A" * 200 + "_API_KEY"},
            "api_key_env",
        ),
    ],
)
def test_strings_longer_than_their_column_are_400(
    gateway: Gateway, method: str, path: str, body: dict[str, Any], param: str
) -> None:
    """A string longer than its VARCHAR column is refused before PostgreSQL refuses it."""
    assert_400(gateway, method, path, param, json=body)


@pytest.mark.parametrize("path", ["/keys", "/me/keys"])
@pytest.mark.parametrize("when", ["9999-12-31T23:59:59-10:00", "0001-01-01T00:00:00+05:00"])
def test_times_beyond_year_9999_in_utc_are_400(gateway: Gateway, path: str, when: str) -> None:
    """A time whose conversion to UTC leaves years 1 to 9999 is refused, not an overflow."""
    assert_400(gateway, "POST", path, "expires_at", json={"expires_at": when})


def test_expiry_with_an_offset_is_kept_in_utc(gateway: Gateway) -> None:
    """An expiry given with a zone offset is stored and returned as the same instant in UTC."""
    created = gateway.create_key(name="k", expires_at="9999-12-31T10:00:00+05:00")
    assert created["expires_at"] == "9999-12-31T05:00:00Z"


@pytest.mark.parametrize("interval", ["1e300", "Infinity", "NaN", "0"])
def test_sync_interval_outside_zero_to_a_year_is_400(gateway: Gateway, interval: str) -> None:
    """A sync interval must be positive and at most a year: a huge one overflowed the next
    sync's time (a 500), NaN and infinity included."""
    body = '{"name": "e", "url": "http://127.0.0.1:9/v1", "sync_interval": ' + interval + "}"
    headers = {"content-type": "application/json"}
    assert_400(gateway, "POST", "/endpoints", "sync_interval", content=body, headers=headers)
    assert_400(gateway, "PATCH", "/endpoints/1", "sync_interval", content=body, headers=headers)
