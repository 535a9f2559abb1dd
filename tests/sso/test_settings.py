"""The single sign-on settings: what a bad one is told, in one line."""

from __future__ import annotations

from typing import Any

import pytest

from relaygate.errors import ConfigError
from relaygate.settings import load_settings

CORP = {"name": "corp", "issuer": "https://idp.example.org/", "client_id": "relaygate"}


def load(environ: dict[str, str] | None = None, **values: Any) -> Any:
    return load_settings(None, environ=environ or {}, **values)


def test_the_client_secret_comes_from_the_environment() -> None:
    """``client_secret_env`` is read from the environment; the issuer loses its slash."""
    settings = load(
        {"CORP_SECRET": "s3cret"},
        public_url="https://gw.example.org/",
        oidc=[{**CORP, "client_secret_env": "CORP_SECRET"}],
    )
    provider = settings.oidc[0]
    assert provider.client_secret == "s3cret" and provider.issuer == "https://idp.example.org"
    assert settings.public_url == "https://gw.example.org"
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings.model_dump())


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"oidc": [CORP]}, "setting 'oidc' needs public_url"),
        (
            {"public_url": "https://gw", "oidc": [{**CORP, "client_secret_env": "UNSET"}]},
            "setting 'oidc.0.client_secret_env' names 'UNSET', which is not set",
        ),
        (
            {"public_url": "https://gw", "oidc": [{**CORP, "client_secret": "inline"}]},
            "setting 'oidc.0.client_secret' is not accepted",
        ),
        (
            {"public_url": "https://gw", "oidc": [{**CORP, "issuer": "idp.example.org"}]},
            "setting 'oidc.0.issuer' must be an https:// URL",
        ),
        (
            {"public_url": "https://gw", "oidc": [{**CORP, "scopes": ["email"]}]},
            "setting 'oidc.0.scopes' must include 'openid'",
        ),
        (
            {"public_url": "https://gw", "oidc": [{**CORP, "grups_claim": "g"}]},
            "unknown setting 'oidc.0.grups_claim'; did you mean 'groups_claim'?",
        ),
        ({"public_url": "https://gw", "oidc": [CORP, CORP]}, "provider names must be unique"),
        ({"public_url": "https://gw", "oidc": [{**CORP, "name": "../x"}]}, "'oidc.0.name'"),
        (
            {"trusted_proxy": {"addresses": ["10.0.0.0/8", "proxy.local"]}},
            "'proxy.local' is not an IP address or CIDR",
        ),
        ({"trusted_proxy": {"addresses": []}}, "'trusted_proxy.addresses'"),
    ],
)
def test_a_bad_setting_is_one_line(values: dict[str, Any], message: str) -> None:
    """Each mistake stops start-up with one line naming the setting."""
    with pytest.raises(ConfigError) as raised:
        load(**values)
    assert message in raised.value.message and "\n" not in raised.value.message
