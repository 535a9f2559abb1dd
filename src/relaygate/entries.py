"""Catalogue entries made from database rows, as the snapshot's loader reads them: each
secret decrypted once, when its row is read; and why an endpoint, or a user's own key
for one, cannot be used, logged once per cause (a rebuild does not log it again)."""

from __future__ import annotations

import logging
from typing import Any

import orjson

from relaygate.access import listing_entry, surfaces_for
from relaygate.catalog import EndpointEntry, ModelEntry
from relaygate.credentials import endpoint_key
from relaygate.db.tables import Endpoint, Model
from relaygate.errors import CredentialsUnavailable, DecryptionFailed
from relaygate.providers import get_provider
from relaygate.routes import policy_for
from relaygate.targets import DEFAULT_TIMEOUTS, Surfaces, TargetApis, Timeouts
from relaygate.translate.base import dialect_for
from relaygate.vault import Vault

# Logged as the loader, the step an operator sees them come from.
log = logging.getLogger("relaygate.loader")

MODEL_COLUMNS = (
    Model.id,
    Model.endpoint_id,
    Model.upstream_id,
    Model.alias,
    Model.status,
    Model.enabled,
    Model.fallback_model,
    Model.input_cost_per_million_tokens,
    Model.output_cost_per_million_tokens,
    Model.default_output_tokens,
    Model.display_name,
    Model.context_window,
    Model.max_output_tokens,
    Model.created,
    Model.first_seen_at,
    Model.capabilities,
)
"""The columns of a model row an entry is made from."""


class Entries:
    """Makes catalogue entries from rows, with ``vault`` for the keys and ``timeouts``
    the defaults an endpoint's own override."""

    def __init__(self, vault: Vault, timeouts: Timeouts = DEFAULT_TIMEOUTS) -> None:
        self._vault = vault
        self._timeouts = timeouts
        self._unusable: dict[tuple[str, int, int], str] = {}
        """Why each unusable endpoint (or a user's own key for one) cannot be used, as
        last logged."""

    def _cannot_use(self, what: tuple[str, int, int], message: str) -> None:
        """Log ``message`` (why ``what`` cannot be used) unless it is what was logged last."""
        if self._unusable.get(what) != message:
            self._unusable[what] = message
            log.error("%s", message)

    def _can_use(self, what: tuple[str, int, int], message: str) -> None:
        """Log ``message`` when ``what`` was unusable before (no more line after)."""
        if self._unusable.pop(what, None) is not None:
            log.info("%s", message)

    def endpoint(self, row: Endpoint) -> EndpointEntry:
        """``row`` as routing needs it; its shared key is decrypted here."""
        surfaces: Surfaces | None = None
        what = ("endpoint", row.id, 0)
        if not row.requires_user_key:
            try:
                surfaces = surfaces_for(row, endpoint_key(row, self._vault))
            except UnicodeEncodeError:
                reason = "its key or auth prefix is not ASCII"
                self._cannot_use(what, f"endpoint {row.name!r} cannot be used: {reason}")
                surfaces = ()
            except CredentialsUnavailable as exc:
                # Never forward without the key: its models stay listed as unavailable.
                self._cannot_use(what, f"endpoint {row.name!r} cannot be used: {exc}")
                surfaces = ()
        if surfaces != ():
            self._can_use(what, f"endpoint {row.name!r} can be used again")
        apis = TargetApis(
            row.type,
            row.messages_api or "auto",
            row.responses_api or "auto",
            row.chat_api or "auto",
            tuple(sorted((row.api_found or {}).items())),
            dialect_for(row.type, row.url),
        )
        fingerprint = (
            row.name,
            row.url,
            row.type,
            row.enabled,
            row.pool,
            row.requires_user_key,
            row.api_key_encrypted,
            row.api_key_env,
            row.auth_header,
            row.auth_prefix,
            tuple(row.extra_routes or ()),
            tuple(sorted((row.timeouts or {}).items())),
            apis,
        )
        return EndpointEntry(
            row,
            surfaces,
            policy_for(get_provider(row.type).routes, row.extra_routes),
            self._timeouts.merged(row.timeouts),
            apis,
            fingerprint,
        )

    @staticmethod
    def model(row: Any, endpoint_name: str) -> ModelEntry:
        """A model row (of :data:`MODEL_COLUMNS`) of the endpoint ``endpoint_name``."""
        name = row.alias or row.upstream_id
        return ModelEntry(
            row.id,
            row.endpoint_id,
            row.upstream_id,
            name,
            row.alias is not None,
            row.enabled,
            row.status == "online",
            row.fallback_model,
            row.input_cost_per_million_tokens,
            row.output_cost_per_million_tokens,
            row.default_output_tokens or row.max_output_tokens,
            # orjson's output keeps its 4 KB buffer: a copy holds only the bytes.
            bytes(memoryview(orjson.dumps(listing_entry(name, row, endpoint_name)))),
        )

    def own_surfaces(self, endpoint: EndpointEntry | None, row: Any) -> Surfaces | None:
        """The surfaces of a user's own key for ``endpoint`` (a row of user_id,
        endpoint_id and api_key_encrypted), decrypted here, or None when it cannot be
        used."""
        if endpoint is None:
            return None
        what = ("own key", row.user_id, row.endpoint_id)
        try:
            surfaces = surfaces_for(endpoint.row, self._vault.decrypt(row.api_key_encrypted))
        except (DecryptionFailed, UnicodeEncodeError):
            self._cannot_use(
                what,
                f"user {row.user_id}'s own key for endpoint {row.endpoint_id} cannot be used",
            )
            return None
        self._can_use(
            what, f"user {row.user_id}'s own key for endpoint {row.endpoint_id} can be used again"
        )
        return surfaces
