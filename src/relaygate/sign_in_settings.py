"""The sign-in settings: the ``oidc:`` providers and the ``trusted_proxy:`` in front of
relaygate (README, "Single sign-on"). Part of :class:`relaygate.settings.Settings`; the
client secrets are filled in by :func:`relaygate.settings.load_settings`."""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict, Field, field_validator


class OidcProvider(BaseModel):
    """One entry of the ``oidc:`` list: an OpenID Connect provider the console offers for
    sign-in (see README, "Connecting an OpenID Connect provider")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")
    """Shown on the sign-in page and part of the redirect URI
    ``{public_url}/ui/auth/oidc/{name}/callback``."""
    issuer: str
    """The issuer URL; discovery reads ``{issuer}/.well-known/openid-configuration``."""
    client_id: str = Field(min_length=1, max_length=500)
    client_secret_env: str | None = None
    """The environment variable holding the client secret (None: a public client, PKCE
    alone)."""
    client_secret: str | None = Field(default=None, exclude=True, repr=False)
    """Filled by :func:`load_settings` from ``client_secret_env``; never from the file."""
    display_name: str | None = None
    scopes: list[str] = Field(default_factory=lambda: ["openid", "email", "profile"])
    subject_claim: str = "sub"
    email_claim: str = "email"
    name_claim: str = "name"
    groups_claim: str = "groups"
    admin_groups: list[str] = Field(default_factory=list)
    """IdP groups whose members are relaygate admins; everyone else is a user."""
    allowed_groups: list[str] | None = None
    """IdP groups one of which a user must be in to sign in (None: any)."""
    group_map: dict[str, str] = Field(default_factory=dict)
    """IdP group -> relaygate group, synced at each sign-in."""
    allowed_email_domains: list[str] | None = None
    """Email domains allowed to sign in (None: any); the email must be verified when the
    provider sends ``email_verified``."""
    link_by_email: bool = False
    """Link a first sign-in to an existing relaygate user with the same email (off: a
    new identity always makes a new user)."""
    clock_skew: float = Field(default=60.0, ge=0, le=600)
    """Seconds of clock difference tolerated on the ID token's times."""
    timeout: float = Field(default=10.0, gt=0, le=120)
    """Seconds each call to the provider (discovery, token, keys) may take."""

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an https:// URL (http:// only for a provider on loopback)")
        return value.rstrip("/")

    @field_validator("scopes")
    @classmethod
    def _openid_scope(cls, value: list[str]) -> list[str]:
        if "openid" not in value:
            raise ValueError("must include 'openid'")
        return value

    @field_validator("allowed_email_domains")
    @classmethod
    def _domains(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else [d.lower().lstrip("@") for d in value]


class TrustedProxy(BaseModel):
    """The ``trusted_proxy:`` setting: an authenticating proxy in front of relaygate whose
    headers name the console's user (off when absent)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    addresses: list[str] = Field(min_length=1)
    """CIDRs of the proxy: only requests whose client address is in one are believed."""
    user_header: str = "X-Forwarded-Email"
    groups_header: str | None = "X-Forwarded-Groups"
    admin_groups: list[str] = Field(default_factory=list)
    group_map: dict[str, str] = Field(default_factory=dict)

    @field_validator("addresses")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"{cidr!r} is not an IP address or CIDR") from None
        return value
