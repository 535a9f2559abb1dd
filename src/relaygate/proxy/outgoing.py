"""The request as it goes out to the endpoints, whichever target it goes to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from relaygate.proxy.accounting import Exchange
from relaygate.proxy.multipart import Form
from relaygate.proxy.translation import Turn

_USAGE_STREAM_PATHS = ("/chat/completions", "/completions")


@dataclass(frozen=True, slots=True)
class Outgoing:
    """The request as it goes out, to whichever target: the client's ``payload`` (its
    ``model`` rewritten per target), the public ``model`` name it asked for, the ``body``
    as it came, whether it must go re-serialised even to a target of the same name
    (``rewrite``), whether relaygate asked for the usage chunk and keeps it from the
    client (``strip``), the Responses conversation it continues (``turn``), and for a
    multipart request the ``form`` read from ``body`` (``payload`` then holds only its
    ``model``)."""

    payload: dict[str, Any]
    model: str
    body: bytes
    rewrite: bool
    strip: bool
    turn: Turn | None
    form: Form | None = None


def ask_for_usage(path: str, payload: dict[str, Any], state: Exchange) -> bool:
    """For a streamed chat or text completion on ``path``: make ``payload`` ask for the
    usage chunk (``stream_options.include_usage``) when it does not, noting in ``state``
    that the chunk is then kept from the client. Returns whether the body must be sent
    re-serialised: always for such a stream, as relaygate read it, so that a key repeated
    inside ``stream_options`` never reaches a parser that keeps the first copy."""
    if not path.endswith(_USAGE_STREAM_PATHS):
        return False
    options = payload.get("stream_options")
    if not isinstance(options, dict) or options.get("include_usage") is not True:
        payload["stream_options"] = {
            **(options if isinstance(options, dict) else {}),
            "include_usage": True,
        }
        state.strip_usage = True
    return True
