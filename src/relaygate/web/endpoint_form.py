"""The console's add/edit endpoint form: every field the admin API's endpoint takes, read
from a submitted form into the same :class:`EndpointSpec` and :class:`EndpointUpdate`
the admin API and the CLI use, and checked by the same service rules (a form's fields
are bounded by :class:`EndpointForm` instead of the API's schema, so that what is
wrong is said in the form's words). Blank fields mean "none" or "the setting's"."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, Field

from relaygate.endpoint_spec import EndpointSpec, EndpointUpdate
from relaygate.errors import BadRequest
from relaygate.services.endpoint_fields import TIMEOUT_NAMES
from relaygate.services.endpoints import EndpointInfo

Short = Field(default="", max_length=200)
Long = Field(default="", max_length=4000)


class EndpointForm(BaseModel):
    """The form's fields as typed, all text (checkboxes: present or not); each bounded so
    that a hostile post is refused by size before anything reads it."""

    name: str = Field(max_length=200)
    url: str = Field(max_length=2000)
    type: str = Field(default="openai", max_length=20)
    api_key: str = Long
    api_key_env: str = Short
    clear_key: str = Short
    requires_user_key: str = Short
    model_filter: str = Long
    groups: list[str] = Field(default_factory=list, max_length=200)
    pool: str = Short
    sync_interval: str = Short
    timeout_connect: str = Short
    timeout_first_byte: str = Short
    timeout_idle: str = Short
    timeout_total: str = Short
    auth_header: str = Short
    auth_prefix: str = Short
    extra_routes: str = Long
    messages_api: str = Field(default="auto", max_length=20)
    responses_api: str = Field(default="auto", max_length=20)
    chat_api: str = Field(default="auto", max_length=20)
    batch_concurrency: str = Short


def _list(text: str) -> list[str]:
    return [part.strip() for part in text.replace("\n", ",").split(",") if part.strip()]


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


N = TypeVar("N", int, float)


def _parsed(kind: type[N], text: str, param: str, what: str) -> N | None:
    """A number field as typed (``kind`` int or float): blank is None; anything else
    but such a number raises :class:`BadRequest`."""
    if not text.strip():
        return None
    try:
        return kind(text)
    except ValueError:
        noun = "a whole number" if kind is int else "a number"
        raise BadRequest(f"{what} must be {noun}, or blank", param=param) from None


def _timeouts(form: EndpointForm) -> dict[str, float] | None:
    """The four timeout fields; the service checks their ranges. None when all blank."""
    chosen: dict[str, float] = {}
    for name in TIMEOUT_NAMES:
        seconds = _parsed(
            float, getattr(form, f"timeout_{name}"), f"timeouts.{name}", f"the {name} timeout"
        )
        if seconds is not None:
            chosen[name] = seconds
    return chosen or None


def _blank_none(text: str) -> str | None:
    return text.strip() or None


def _settings_of(form: EndpointForm) -> dict[str, Any]:
    """The fields the add and the edit form share, as typed; raises :class:`BadRequest`
    for unreadable numbers."""
    return {
        "model_filter": _list(form.model_filter),
        "requires_user_key": bool(form.requires_user_key),
        "auth_header": _blank_none(form.auth_header),
        "auth_prefix": _blank_none(form.auth_prefix),
        "sync_interval": _parsed(float, form.sync_interval, "sync_interval", "the sync interval"),
        "timeouts": _timeouts(form),
        "pool": _blank_none(form.pool),
        "extra_routes": _lines(form.extra_routes),
        "messages_api": form.messages_api,
        "responses_api": form.responses_api,
        "chat_api": form.chat_api,
        "batch_concurrency": _parsed(
            int, form.batch_concurrency, "batch_concurrency", "batch concurrency"
        ),
    }


def spec_of(form: EndpointForm) -> EndpointSpec:
    """A new endpoint from the add form; raises :class:`BadRequest` for unreadable numbers."""
    return EndpointSpec.unchecked(
        name=form.name,
        url=form.url,
        type=form.type,
        api_key=form.api_key or None,
        api_key_env=_blank_none(form.api_key_env),
        groups=list(dict.fromkeys(form.groups)),
        **_settings_of(form),
    )


def changes_of(form: EndpointForm, current: EndpointInfo) -> EndpointUpdate:
    """The changes the edit form asks of ``current``. The key field is write-only: blank
    keeps the stored key; a new variable name replaces a stored key; ``clear_key`` leaves
    the endpoint without a key. Raises :class:`BadRequest` for unreadable numbers."""
    changes = EndpointUpdate.unchecked(name=form.name, url=form.url, **_settings_of(form))
    env = _blank_none(form.api_key_env)
    if form.clear_key:
        if current.api_key_source == "env":
            changes.api_key_env = None
        else:
            changes.api_key = None
    elif form.api_key:
        changes.api_key = form.api_key
    elif env != current.api_key_env:
        changes.api_key_env = env
    return changes
