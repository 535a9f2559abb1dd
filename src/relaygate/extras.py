"""The optional dependencies: the PostgreSQL driver (asyncpg) and the Redis client,
installed with the ``postgres`` and ``redis`` extras (``relaygate[all]`` for both). A
server on SQLite without ``redis_url``, the embedded default, needs neither."""

from __future__ import annotations

import importlib

from relaygate.errors import ConfigError


def require(module: str, extra: str, needed_by: str) -> None:
    """Make sure ``module`` can be imported; raises :class:`ConfigError` naming the
    ``extra`` to install (``pip install 'relaygate[extra]'``) when it cannot.
    ``needed_by`` says which setting needs it."""
    try:
        importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f"{needed_by} needs the {extra!r} extra: pip install 'relaygate[{extra}]'"
        ) from None
