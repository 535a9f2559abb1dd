"""The access log: one line per proxied request on the ``relaygate.access`` logger, at
``info``.

A line names the request (its id comes with every log line), who sent it (user and API
key ids), the model asked for, the endpoint that served it, the status, the latency and
the tokens; never a key, a prompt or a completion. It is built only when the logger
would write it, so a server with the access log off (``access_log: false``) or a level
above ``info`` pays one check per request.
"""

from __future__ import annotations

import logging
import time

import orjson

from relaygate.proxy.accounting import Exchange

LOGGER = "relaygate.access"
_MAX_FIELD = 200
_PLAIN = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.:/@+")


class AccessLog:
    """Writes access lines when ``enabled`` (and the logger is at ``info`` or below)."""

    def __init__(self, enabled: bool = True) -> None:
        self._logger = logging.getLogger(LOGGER) if enabled else None

    def write(self, method: str, path: str, exchange: Exchange, status: int) -> None:
        """Log the line of ``exchange``, a ``method`` request to ``path`` answered with
        ``status``, if the access log is on. Never raises for the values an exchange
        holds (a client's model name or path is quoted when it is not plain)."""
        logger = self._logger
        if logger is None or not logger.isEnabledFor(logging.INFO):
            return
        latency = (time.perf_counter() - exchange.arrived) * 1000
        principal, target, tokens = exchange.principal, exchange.target, exchange.tokens
        user = principal.user_id if principal is not None else None
        key = principal.key_id if principal is not None else None
        endpoint = target.endpoint_name if target is not None else None
        prompt = tokens.prompt if tokens is not None else None
        completion = tokens.completion if tokens is not None else None
        model = exchange.model[:_MAX_FIELD] if exchange.model is not None else None
        path = path[:_MAX_FIELD]
        upstream_id = (
            exchange.upstream_id
            if target is not None and exchange.upstream_id != exchange.request_id
            else None
        )
        fields = {
            "method": method,
            "path": path,
            "status": status,
            "latency_ms": round(latency, 1),
            "user_id": user,
            "key_id": key,
            "model": model,
            "endpoint": endpoint,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "stream": exchange.stream,
            "upstream_id": upstream_id,
        }
        message = (
            f"{method} {_text(path)} {status} {latency:.1f}ms user={_text(user)} "
            f"key={_text(key)} model={_text(model)} endpoint={_text(endpoint)} "
            f"tokens={_text(prompt)}/{_text(completion)}"
        )
        if exchange.stream:
            message += " stream"
        if upstream_id is not None:
            message += f" upstream_id={upstream_id}"
        logger.info("%s", message, extra=fields)


def _text(value: object) -> str:
    """``value`` for a text line: ``-`` for None, plain words as they are, anything
    else (spaces, quotes, line breaks a client put in a model name) JSON-quoted, cut to
    :data:`_MAX_FIELD` characters, so one request is always one line."""
    if value is None:
        return "-"
    text = str(value)[:_MAX_FIELD]
    if text and all(char in _PLAIN for char in text):
        return text
    return orjson.dumps(text).decode()
