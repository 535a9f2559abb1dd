"""One vocabulary for an endpoint's state on every console page.

An endpoint has two states that operators must never confuse:

- **Sync** — whether relaygate can list its models: ``ok``, ``failing`` (with the
  reason, inline) or ``never`` (not synced yet).
- **Health** — what the proxy learnt from forwarding requests to it: ``healthy`` (its
  last request succeeded), ``unhealthy`` (requests failing, or skipped for a
  cool-down), or ``unknown`` (nothing to judge by: disabled, never synced, or its sync
  failing so that its models are offline and no request reaches it).
"""

from __future__ import annotations

from dataclasses import dataclass

from relaygate.health import HealthState
from relaygate.services.endpoints import EndpointInfo
from relaygate.wording import plural


@dataclass(frozen=True, slots=True)
class Shown:
    """One state as a page shows it: ``label`` (the word), ``kind`` (its colour:
    ``good``, ``bad``, ``warn`` or ``idle``) and ``detail`` (the reason, or None)."""

    label: str
    kind: str
    detail: str | None = None


def sync_state(status: str, error: str | None) -> Shown:
    """The sync state of an endpoint from its stored ``status`` (``ok``, ``error`` or
    ``never``) and ``error``."""
    if status == "ok":
        return Shown("ok", "good")
    if status == "error":
        return Shown("failing", "bad", error or "the last sync failed")
    return Shown("never", "idle", "not synced yet")


def health_state(endpoint: EndpointInfo) -> Shown:
    """The health of ``endpoint``: ``healthy`` only when its requests succeed *and* its
    sync is ok; ``unknown`` when nothing reaches it, saying why."""
    health = endpoint.health
    if health.state == "cooling_down":
        until = health.cooldown_until.strftime("%H:%M:%S") if health.cooldown_until else "?"
        return Shown(
            "unhealthy",
            "bad",
            f"skipped until {until} UTC after {_failures(health)}: "
            f"{health.last_error or 'requests failed'}",
        )
    if health.state == "failing":
        return Shown(
            "unhealthy", "warn", f"{_failures(health)}: {health.last_error or 'requests failed'}"
        )
    if not endpoint.enabled:
        return Shown("unknown", "idle", "disabled: no requests reach it")
    if endpoint.sync.status == "error":
        return Shown("unknown", "idle", "its sync is failing, so its models are offline")
    if endpoint.sync.status != "ok":
        return Shown("unknown", "idle", "not synced yet")
    return Shown("healthy", "good")


def _failures(health: HealthState) -> str:
    return plural(health.consecutive_failures, "failure") + " in a row"


def model_counts(online: int, offline: int) -> str:
    """``1 model online, 0 offline``."""
    return f"{plural(online, 'model')} online, {offline:,} offline"
