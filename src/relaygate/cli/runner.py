"""Running a service call from a CLI command: settings, context, one-line errors."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import sys
import traceback
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Annotated, Any, NoReturn, TypeVar

import typer

from relaygate.audit import Actor
from relaygate.context import Context, open_context
from relaygate.errors import ConfigError, RelaygateError
from relaygate.settings import Settings, load_settings

T = TypeVar("T")
CLI = Actor("cli", name="cli")
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON")]
"""The ``--json`` option of list and show commands."""


@dataclasses.dataclass
class CliState:
    """What the top-level options set: the config file."""

    config: str | None = None


def settings_from(
    typer_ctx: typer.Context, *, allow_weak_secret_key: bool = False, **overrides: Any
) -> Settings:
    """Load settings for a command, exiting with a one-line message when they are broken.

    ``allow_weak_secret_key`` is for ``secrets rotate`` alone (see
    :func:`relaygate.settings.load_settings`).
    """
    state: CliState = typer_ctx.obj or CliState()
    try:
        return load_settings(state.config, allow_weak_secret_key=allow_weak_secret_key, **overrides)
    except ConfigError as exc:
        fail(exc.message, code=2)


def server_url(settings: Settings) -> str:
    """The base URL a client on this machine reaches the configured server at
    (``http://127.0.0.1:8000`` for the wildcard address 0.0.0.0)."""
    wildcard = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}
    host = wildcard.get(settings.host, settings.host)
    return f"http://{f'[{host}]' if ':' in host else host}:{settings.port}"


def fail(message: str, *, code: int = 1) -> NoReturn:
    """Print ``error: message`` to stderr and exit with ``code``."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def run(
    typer_ctx: typer.Context,
    call: Callable[[Context], Awaitable[T]],
    *,
    allow_weak_secret_key: bool = False,
) -> T:
    """Open a context for the command's settings, await ``call(ctx)``, close it.

    Relaygate errors become ``error: <message>`` and a non-zero exit (2 for a broken
    configuration). ``allow_weak_secret_key`` is for ``secrets rotate`` alone.
    """
    settings = settings_from(typer_ctx, allow_weak_secret_key=allow_weak_secret_key)

    async def main() -> T:
        async with open_context(settings, allow_weak_secret_key=allow_weak_secret_key) as ctx:
            ctx.audit.set(CLI)  # what a command changes is audited as the CLI's
            return await call(ctx)

    try:
        return asyncio.run(main())
    except ConfigError as exc:
        fail(exc.message, code=2)
    except RelaygateError as exc:
        fail(exc.message)


def run_in_child(call: Callable[[], None]) -> None:
    """Run ``call`` in a forked child process and wait for it; exit with its code when
    it fails (its message already printed), with 128 + N and a message when signal N
    killed it, and as Ctrl-C does when it was interrupted.

    For work a server does once before serving, such as migrating: whatever it imports
    and allocates goes when the child exits, not into the server's memory for its whole
    life. Where there is no ``fork`` (Windows), ``call`` runs in this process.
    """
    if not hasattr(os, "fork"):
        call()
        return
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            call()
            code = 0
        except typer.Exit as exc:
            code = exc.exit_code
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except KeyboardInterrupt:
            code = 130
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            # Nothing of the parent's (atexit handlers, buffers) may run twice.
            os._exit(code)
    # Ctrl-C reaches the child too: wait for it to stop rather than leave it behind.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    finally:
        signal.signal(signal.SIGINT, previous)
    if code < 0:
        typer.echo(f"error: the first-start work was killed by signal {-code}", err=True)
        raise typer.Exit(128 - code)
    if code == 130:
        raise typer.Abort()
    if code != 0:
        raise typer.Exit(code)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return value


def as_dict(item: Any) -> dict[str, Any]:
    """A dataclass as a dict of JSON-friendly values."""
    return {key: _plain(value) for key, value in dataclasses.asdict(item).items()}


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


def shown(value: object) -> str:
    """``value`` as text for the terminal: a control character (a line break, an escape
    an upstream put in a name or an error) is written as its escape, ``\\n``, ``\\x1b``."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    """Print ``rows`` as an aligned text table of ``columns``."""
    if not rows:
        typer.echo("(none)")
        return
    cells = [[("" if row.get(c) is None else shown(row.get(c))) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    typer.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for r in cells:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


def print_record(record: dict[str, Any]) -> None:
    width = max(len(k) for k in record)
    for key, value in record.items():
        typer.echo(f"{key.ljust(width)}  {'' if value is None else shown(value)}")


def read_secret_from_stdin() -> str:
    """One line from stdin (for keys that must not appear in shell history)."""
    return sys.stdin.readline().strip()
