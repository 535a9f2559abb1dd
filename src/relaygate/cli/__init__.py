"""The ``relaygate`` command line."""

from __future__ import annotations

import asyncio
import os
import signal
import tempfile
from pathlib import Path
from typing import Annotated, Any

import lmdb
import typer
import uvicorn

from relaygate import __version__
from relaygate.cli.accounts import keys, users
from relaygate.cli.audit import audit
from relaygate.cli.batches import app as batches
from relaygate.cli.endpoints import app as endpoints
from relaygate.cli.groups import app as groups
from relaygate.cli.help import tidy
from relaygate.cli.models import app as models
from relaygate.cli.runner import (
    CliState,
    fail,
    print_table,
    run,
    run_in_child,
    server_url,
    settings_from,
)
from relaygate.cli.usage import usage
from relaygate.context import open_context
from relaygate.errors import ConfigError
from relaygate.logs import configure_logging
from relaygate.secret_keys import SECRET_KEY_RULE, is_strong_secret
from relaygate.server import ServerConfig, bind
from relaygate.services.bootstrap import bootstrap, check_seeds
from relaygate.services.rotation import rotate_secret
from relaygate.settings import Settings
from relaygate.vault import generate_secret, secret_file_path, write_secret_file
from relaygate.wording import plural
from relaygate.workers import Supervisor, metrics_dir, prepare_workers_dir

app = typer.Typer(
    help="relaygate: one OpenAI-compatible gateway in front of your model endpoints.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db = typer.Typer(help="Database maintenance.", no_args_is_help=True)
secrets = typer.Typer(help="The secret key that encrypts provider keys.", no_args_is_help=True)
app.add_typer(endpoints, name="endpoints")
app.add_typer(models, name="models")
app.add_typer(users, name="users")
app.add_typer(groups, name="groups")
app.add_typer(keys, name="keys")
app.add_typer(batches, name="batches")
app.add_typer(db, name="db")
app.add_typer(secrets, name="secrets")
app.command("usage")(usage)
app.command("audit")(audit)


@app.callback()
def main_options(
    ctx: typer.Context,
    config: Annotated[
        str | None,
        typer.Option("--config", "-c", metavar="FILE", help="Config file (default relaygate.yaml)"),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_print_version, help="Print the version and exit"
        ),
    ] = False,
) -> None:
    ctx.obj = CliState(config=config)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"relaygate {__version__}")
        raise typer.Exit()


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on")] = None,
    config: Annotated[str | None, typer.Option("--config", "-c", help="Config file")] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning, error")] = None,
    workers: Annotated[
        int, typer.Option(min=1, help="Processes to run; they share the database and port")
    ] = 1,
) -> None:
    """Run the gateway (migrates the database first)."""
    if config:
        ctx.obj = CliState(config=config)
    settings = settings_from(ctx, host=host, port=port, log_level=log_level)
    configure_logging(settings.log_level, settings.log_format)
    # The web application is imported once the settings are good, not with the CLI: the
    # other commands, and a broken setup, are answered without its second of imports.
    from relaygate.app import create_app, print_first_admin_key

    async def first_start() -> None:
        check_seeds(settings)
        async with open_context(settings) as opened:
            result = await bootstrap(opened)
        if result.new_admin_key:
            print_first_admin_key(result.new_admin_key)

    def preflight() -> None:
        try:
            asyncio.run(first_start())
        except ConfigError as exc:
            fail(exc.message, code=2)

    # Open the database once before serving so a broken setup is one line, not a
    # traceback, and do the first-start work (migrating, seeding) once, whatever the
    # number of workers; in a child process, so the server keeps none of its memory.
    try:
        sock = bind(settings.host, settings.port)
    except ConfigError as exc:
        fail(exc.message, code=2)
    run_in_child(preflight)
    typer.echo(start_banner(settings, ctx.obj.config if ctx.obj else None))
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,
        "log_level": settings.log_level,
        "access_log": False,
        "server_header": False,
        # The client address is the socket's peer: X-Forwarded-For is not believed, so a
        # trusted_proxy's CIDRs are matched against the proxy itself (see the README).
        "proxy_headers": False,
        "timeout_graceful_shutdown": settings.drain_timeout,
        # The request head is bounded on the socket (see relaygate.server); h11 is not used.
        "max_head_bytes": settings.max_header_bytes,
        "head_timeout": settings.header_timeout,
    }
    if workers > 1:
        # Worker processes build the app themselves from the same config and environment.
        if ctx.obj and ctx.obj.config:
            os.environ["RELAYGATE_CONFIG"] = ctx.obj.config
        os.environ["RELAYGATE_LOG_LEVEL"] = settings.log_level
        os.environ["RELAYGATE_LOG_FORMAT"] = settings.log_format
        multi = ServerConfig(
            "relaygate.app:create_app_from_environment", factory=True, workers=workers, **options
        )
        with tempfile.TemporaryDirectory(prefix="relaygate-workers-") as shared:
            try:
                prepare_workers_dir(Path(shared))
            except (OSError, lmdb.Error) as exc:
                fail(f"cannot prepare the workers' shared directory {shared}: {exc}", code=2)
            os.environ["RELAYGATE_WORKERS_DIR"] = shared
            # prometheus-client reads this variable itself when a worker imports it.
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir(Path(shared)))
            Supervisor(multi, sockets=[sock], workers_dir=Path(shared)).run()
        return
    server_config = ServerConfig(create_app(settings, bootstrap=False, freeze_heap=True), **options)
    # uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown, which would make a
    # clean stop exit with -15; a no-op handler underneath lets the process exit 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    uvicorn.Server(server_config).run(sockets=[sock])


def start_banner(settings: Settings, config: str | None) -> str:
    """What ``serve`` prints once before serving: where the console and the API are, and
    the command to run next (with ``--config`` when one was given)."""
    base = server_url(settings)
    cli = "relaygate" + (f" --config {config}" if config else "")
    return (
        f"\nrelaygate {__version__} serving on {base}\n"
        f"  console:  {base}/ui/  (sign in with an admin API key)\n"
        f"  API:      {base}/v1  (the base URL for OpenAI and Anthropic clients)\n"
        f"  next:     {cli} endpoints add NAME URL  (e.g. http://127.0.0.1:11434/v1 for "
        "Ollama)\n"
    )


@db.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Migrate the database to the newest schema."""

    async def noop(_: object) -> None:
        return None

    run(ctx, noop)
    typer.echo("database is at the newest schema")


@secrets.command("generate")
def secrets_generate() -> None:
    """Print a new random secret key (for RELAYGATE_SECRET_KEY)."""
    typer.echo(generate_secret())


@secrets.command("rotate")
def secrets_rotate(
    ctx: typer.Context,
    new_key: Annotated[
        str | None, typer.Option(help="The new secret key (default: generate one)")
    ] = None,
) -> None:
    """Re-encrypt every stored provider key under a new secret key.

    The current key may be weak (this is how a database leaves one behind); the new key
    must hold at least 32 random bytes.
    """
    if new_key is not None and not is_strong_secret(new_key):
        fail(f"--new-key {SECRET_KEY_RULE}", code=2)
    settings = settings_from(ctx, allow_weak_secret_key=True)
    secret = new_key or generate_secret()
    path = secret_file_path(settings)
    if not settings.secret_key and path is not None:
        # The new key is on disk before the database depends on it, so a crash in between
        # leaves both keys recoverable.
        pending = path.with_name(path.name + ".new")
        write_secret_file(pending, secret)
        count = run(ctx, lambda c: rotate_secret(c, secret), allow_weak_secret_key=True)
        pending.replace(path)
        typer.echo(f"re-encrypted {plural(count, 'provider key')}; the new secret key is in {path}")
    else:
        count = run(ctx, lambda c: rotate_secret(c, secret), allow_weak_secret_key=True)
        typer.echo(
            f"re-encrypted {plural(count, 'provider key')}. Set RELAYGATE_SECRET_KEY to the "
            "new key on every replica and restart them."
        )
        if new_key is None:
            typer.echo(f"new secret key: {secret}")
    typer.echo("Restart running relaygate servers so they use the new key.")


@app.command()
def version() -> None:
    """Print relaygate's version."""
    typer.echo(__version__)


def main() -> None:
    """Console-script entry point."""
    tidy(typer.main.get_command(app))()


__all__ = ["Path", "app", "main", "print_table"]
