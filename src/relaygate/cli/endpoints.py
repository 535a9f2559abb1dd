"""``relaygate endpoints add|list|show|update|remove|sync|enable|disable``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer

from relaygate.cli.runner import (
    JsonFlag,
    as_dict,
    fail,
    print_json,
    print_record,
    print_table,
    read_secret_from_stdin,
    run,
    settings_from,
)
from relaygate.endpoint_spec import EndpointSpec, EndpointUpdate
from relaygate.services import endpoints as service
from relaygate.services.endpoints import EndpointInfo
from relaygate.settings import read_env_key
from relaygate.sync.service import SyncResult
from relaygate.wording import plural

app = typer.Typer(help="Manage endpoints (model sources).", no_args_is_help=True)
ApiKeyEnv = Annotated[
    str | None, typer.Option(help="Read the provider key from this environment variable")
]
AuthHeader = Annotated[
    str | None, typer.Option(help="Custom auth header name, e.g. api-key (Azure-style)")
]
AuthPrefix = Annotated[
    str | None, typer.Option(help="Text before the key in the auth header, e.g. 'Bearer '")
]
KeyStdin = Annotated[bool, typer.Option("--api-key-stdin", help="Read the provider key from stdin")]
Pool = Annotated[
    str | None,
    typer.Option(help="Pool name: endpoints of one pool serve their same-named models together"),
]
MessagesApi = Annotated[
    str | None,
    typer.Option(help="Anthropic Messages requests: auto, native or translate (to chat)"),
]
ResponsesApi = Annotated[
    str | None,
    typer.Option(help="OpenAI Responses requests: auto, native or translate (to chat)"),
]
ChatApi = Annotated[
    str | None,
    typer.Option(
        help="Chat-completions requests to an anthropic endpoint: auto/native (Anthropic's "
        "OpenAI layer) or translate (to Messages)"
    ),
]
ExtraRoute = Annotated[
    list[str] | None,
    typer.Option(
        "--route", help="Forward this route too, 'METHOD /path' below the URL; repeatable"
    ),
]
BatchConcurrency = Annotated[
    int | None,
    typer.Option(
        help="Batch requests one process sends it at once, 1 to 1000 (default: the "
        "batch_concurrency setting)"
    ),
]


_API_MODES = ("messages_api", "responses_api", "chat_api")


def _as_json(info: EndpointInfo) -> dict[str, Any]:
    """The CLI's JSON of an endpoint (README, "CLI"): the record's fields with its sync
    flattened (``sync_status``, ``last_synced_at``, ``sync_error``, ``models_online``,
    ``models_offline``) and its API modes under ``apis`` (``found`` as well), the shape
    scripts have read since the CLI's first release."""
    row = as_dict(info)
    sync = row.pop("sync")
    row["sync_status"], row["sync_error"] = sync["status"], sync["error"]
    for name in ("last_synced_at", "models_online", "models_offline"):
        row[name] = sync[name]
    row["apis"] = {mode: row.pop(mode) for mode in _API_MODES} | {"found": row.pop("api_found")}
    return row


def _row(info: EndpointInfo) -> dict[str, Any]:
    row = _as_json(info)
    row["key"] = f"${info.api_key_env}" if info.api_key_env else info.api_key_hint or ""
    row["models"] = f"{info.sync.models_online} online / {info.sync.models_offline} offline"
    row["health"] = info.health.state
    if info.health.last_error:
        row["health"] += f" ({info.health.consecutive_failures} failures: {info.health.last_error})"
    row["timeouts"] = ", ".join(f"{k}={v:g}" for k, v in info.timeouts.items()) or "settings"
    row["batch_concurrency"] = info.batch_concurrency or "settings"
    return row


def _show(info: EndpointInfo, as_json: bool) -> None:
    if as_json:
        print_json(_as_json(info))
        return
    row = _row(info)
    print_record(
        {
            k: row[k]
            for k in (
                "id",
                "name",
                "type",
                "url",
                "enabled",
                "key",
                "auth_header",
                "model_filter",
                "sync_interval",
                "sync_status",
                "last_synced_at",
                "sync_error",
                "models",
                "timeouts",
                "pool",
                "extra_routes",
                "apis",
                "batch_concurrency",
                "health",
            )
        }
    )


def _print_sync(result: SyncResult) -> None:
    if result.status == "ok":
        typer.echo(
            f"synced {result.endpoint_name!r}: {plural(result.total, 'model')} "
            f"({result.added} added, {result.reactivated} reactivated, "
            f"{result.deactivated} deactivated)"
        )
    else:
        typer.echo(f"error: {result.error}", err=True)
        raise typer.Exit(1)


def _key(api_key: str | None, from_stdin: bool) -> str | None:
    """The key given, or read from stdin; exits with one line when stdin is empty."""
    if not from_stdin:
        return api_key
    if api_key is not None:
        fail("give --api-key or --api-key-stdin, not both")
    key = read_secret_from_stdin()
    if not key:
        fail('--api-key-stdin read no key: pipe it in, e.g. echo "$KEY" | relaygate ...')
    return key


def _server_sync(ctx: typer.Context, info: EndpointInfo, since: datetime | None) -> EndpointInfo:
    """After a change to an endpoint whose key is in the environment (``api_key_env``):
    the CLI does not sync it with its own environment; a running server, which reads the
    variable from its own, syncs it now. Warns (stderr) when that sync says the server
    lacks the variable, or when no server synced it."""
    name = info.api_key_env or ""
    if not info.enabled:
        return info
    claim_within = 2 * settings_from(ctx).change_poll_interval + 1.5
    synced = run(
        ctx,
        lambda c: service.wait_for_server_sync(c, info.id, since, claim_within=claim_within),
    )
    if synced is None:
        here = "" if read_env_key(name) else f"; {name} is not set in this shell either"
        typer.echo(
            f"warning: no running relaygate server synced endpoint {info.name!r}: a server "
            f"syncs it when it starts, reading {name} from its own environment{here}",
            err=True,
        )
        return info
    if synced.sync.status == "error" and name in (synced.sync.error or ""):
        typer.echo(
            f"warning: the server does not have {name} in its environment and cannot use "
            f"endpoint {synced.name!r} ({synced.sync.error}); set it where relaygate serve "
            "runs and restart it",
            err=True,
        )
    elif synced.sync.status == "error":
        typer.echo(f"warning: the server's sync failed: {synced.sync.error}", err=True)
    return synced


@app.command("add")
def add(
    ctx: typer.Context,
    name: str,
    url: Annotated[str, typer.Argument(help="API base URL, /v1 included")],
    type: Annotated[
        str, typer.Option(help="openai (any OpenAI-compatible server), anthropic or google")
    ] = "openai",
    api_key: Annotated[
        str | None, typer.Option(help="Provider key (prefer --api-key-stdin)")
    ] = None,
    api_key_stdin: KeyStdin = False,
    api_key_env: ApiKeyEnv = None,
    auth_header: AuthHeader = None,
    auth_prefix: AuthPrefix = None,
    model_filter: Annotated[
        list[str] | None, typer.Option("--filter", help="Model id or glob; repeatable")
    ] = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="Create it disabled")] = False,
    requires_user_key: Annotated[
        bool,
        typer.Option("--requires-user-key", help="No shared key: each user must set their own"),
    ] = False,
    group: Annotated[
        list[str] | None,
        typer.Option("--group", help="Grant the endpoint to this group (default: everyone)"),
    ] = None,
    sync_interval: Annotated[float | None, typer.Option(help="Seconds between syncs")] = None,
    timeout: Annotated[
        list[str] | None,
        typer.Option(
            "--timeout",
            help="NAME=SECONDS for connect, first_byte, idle or total; repeatable",
        ),
    ] = None,
    pool: Pool = None,
    route: ExtraRoute = None,
    messages_api: MessagesApi = None,
    responses_api: ResponsesApi = None,
    chat_api: ChatApi = None,
    batch_concurrency: BatchConcurrency = None,
    no_sync: Annotated[bool, typer.Option("--no-sync", help="Do not sync now")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Add an endpoint and sync its models."""
    key = _key(api_key, api_key_stdin)
    # Checked by the service's rules, in the CLI's words (see web/endpoint_form.py).
    fields: dict[str, Any] = {
        "name": name,
        "type": type,
        "url": url,
        "api_key": key,
        "api_key_env": api_key_env,
        "auth_header": auth_header,
        "auth_prefix": auth_prefix,
        "model_filter": model_filter or [],
        "enabled": not disabled,
        "sync_interval": sync_interval,
        "timeouts": _timeouts(timeout),
        "requires_user_key": requires_user_key,
        "groups": group if group is not None else ["everyone"],
        "pool": pool,
        "extra_routes": route or [],
        "messages_api": messages_api or "auto",
        "responses_api": responses_api or "auto",
        "chat_api": chat_api or "auto",
        "batch_concurrency": batch_concurrency,
    }
    info = run(
        ctx,
        lambda c: service.create_endpoint(
            c,
            EndpointSpec.unchecked(**fields),
            sync=not no_sync and not api_key_env,
        ),
    )
    if api_key_env and not no_sync:
        info = _server_sync(ctx, info, None)
    _show(info, as_json)


@app.command("list")
def list_(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """List endpoints with their sync state."""
    found = run(ctx, service.list_endpoints)
    if as_json:
        print_json([_as_json(e) for e in found])
        return
    print_table(
        [_row(e) for e in found],
        ["id", "name", "type", "url", "enabled", "sync_status", "models", "key"],
    )


@app.command("show")
def show(ctx: typer.Context, endpoint: str, as_json: JsonFlag = False) -> None:
    """Show one endpoint (by id or name)."""
    _show(run(ctx, lambda c: service.get_endpoint(c, endpoint)), as_json)


@app.command("update")
def update(
    ctx: typer.Context,
    endpoint: str,
    name: Annotated[str | None, typer.Option(help="New name")] = None,
    url: Annotated[str | None, typer.Option(help="New API base URL")] = None,
    api_key: Annotated[str | None, typer.Option(help="New provider key")] = None,
    api_key_stdin: KeyStdin = False,
    clear_api_key: Annotated[
        bool, typer.Option("--clear-api-key", help="Remove the stored key")
    ] = False,
    api_key_env: ApiKeyEnv = None,
    auth_header: AuthHeader = None,
    auth_prefix: AuthPrefix = None,
    requires_user_key: Annotated[
        bool | None,
        typer.Option("--requires-user-key/--shared-key", help="Whether users need their own key"),
    ] = None,
    clear_auth_header: Annotated[
        bool,
        typer.Option("--clear-auth-header", help="Go back to the provider's own auth header"),
    ] = False,
    model_filter: Annotated[
        list[str] | None, typer.Option("--filter", help="Replace the filter; repeatable")
    ] = None,
    clear_filter: Annotated[bool, typer.Option("--clear-filter", help="Sync every model")] = False,
    sync_interval: Annotated[float | None, typer.Option(help="Seconds between syncs")] = None,
    timeout: Annotated[
        list[str] | None,
        typer.Option(
            "--timeout",
            help="NAME=SECONDS for connect, first_byte, idle or total; repeatable",
        ),
    ] = None,
    clear_timeouts: Annotated[
        bool,
        typer.Option("--clear-timeouts", help="Follow the global timeout settings again"),
    ] = False,
    pool: Annotated[str | None, typer.Option(help="Put it in this pool ('' for none)")] = None,
    route: Annotated[
        list[str] | None,
        typer.Option("--route", help="Replace the extra routes, 'METHOD /path'; repeatable"),
    ] = None,
    clear_routes: Annotated[
        bool, typer.Option("--clear-routes", help="Forward only the provider type's routes")
    ] = False,
    messages_api: MessagesApi = None,
    responses_api: ResponsesApi = None,
    chat_api: ChatApi = None,
    batch_concurrency: BatchConcurrency = None,
    clear_batch_concurrency: Annotated[
        bool,
        typer.Option(
            "--clear-batch-concurrency", help="Follow the batch_concurrency setting again"
        ),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Change an endpoint (by id or name); a new URL, key or filter syncs it again.
    --timeout sets the given timeouts and keeps the endpoint's others."""
    # Checked by the service's rules, in the CLI's words (see web/endpoint_form.py).
    sent: dict[str, Any] = {}
    if name is not None:
        sent["name"] = name
    if url is not None:
        sent["url"] = url
    key = _key(api_key, api_key_stdin)
    if key is not None or clear_api_key:
        sent["api_key"] = None if clear_api_key else key
    if model_filter is not None or clear_filter:
        sent["model_filter"] = [] if clear_filter else list(model_filter or [])
    if api_key_env is not None:
        sent["api_key_env"] = api_key_env
    if requires_user_key is not None:
        sent["requires_user_key"] = requires_user_key
    if auth_header is not None or clear_auth_header:
        sent["auth_header"] = None if clear_auth_header else auth_header
    if auth_prefix is not None:
        sent["auth_prefix"] = auth_prefix
    if sync_interval is not None:
        sent["sync_interval"] = sync_interval
    if pool is not None:
        sent["pool"] = pool or None
    if route is not None or clear_routes:
        sent["extra_routes"] = [] if clear_routes else list(route or [])
    if messages_api is not None:
        sent["messages_api"] = messages_api
    if responses_api is not None:
        sent["responses_api"] = responses_api
    if chat_api is not None:
        sent["chat_api"] = chat_api
    if batch_concurrency is not None or clear_batch_concurrency:
        sent["batch_concurrency"] = None if clear_batch_concurrency else batch_concurrency
    if clear_timeouts:
        sent["timeouts"] = None
    elif timeout:
        current = run(ctx, lambda c: service.get_endpoint(c, endpoint)).timeouts
        sent["timeouts"] = {**current, **(_timeouts(timeout) or {})}
    changes = EndpointUpdate.unchecked(**sent)
    before = run(ctx, lambda c: service.get_endpoint(c, endpoint)) if api_key_env else None
    if before is None or before.api_key_env == api_key_env:
        _show(run(ctx, lambda c: service.update_endpoint(c, endpoint, changes)), as_json)
        return
    info = run(ctx, lambda c: service.update_endpoint(c, endpoint, changes, sync=False))
    _show(_server_sync(ctx, info, before.sync.last_synced_at), as_json)


def _timeouts(pairs: list[str] | None) -> dict[str, float] | None:
    """``["idle=30", "total=600"]`` as a mapping; exits with a one-line message if bad."""
    if not pairs:
        return None
    out: dict[str, float] = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            fail(f"--timeout {pair!r} must be NAME=SECONDS, e.g. idle=30")
    return out


def _set_enabled(ctx: typer.Context, endpoint: str, enabled: bool) -> None:
    info = run(ctx, lambda c: service.update_endpoint(c, endpoint, EndpointUpdate(enabled=enabled)))
    typer.echo(f"endpoint {info.name!r} {'enabled' if enabled else 'disabled'}")


@app.command("enable")
def enable(ctx: typer.Context, endpoint: str) -> None:
    """Enable an endpoint (and sync it)."""
    _set_enabled(ctx, endpoint, True)


@app.command("disable")
def disable(ctx: typer.Context, endpoint: str) -> None:
    """Disable an endpoint: its models are no longer listed or routed."""
    _set_enabled(ctx, endpoint, False)


@app.command("remove")
def remove(
    ctx: typer.Context,
    endpoint: str,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask")] = False,
) -> None:
    """Delete an endpoint and its models."""
    info = run(ctx, lambda c: service.get_endpoint(c, endpoint))
    count = info.sync.models_online + info.sync.models_offline
    if not yes:
        typer.confirm(
            f"Delete endpoint {info.name!r} and its {plural(count, 'model')}?", abort=True
        )
    removed = run(ctx, lambda c: service.delete_endpoint(c, info.id))
    typer.echo(f"deleted endpoint {info.name!r} and {plural(removed, 'model')}")


@app.command("sync")
def sync(ctx: typer.Context, endpoint: str) -> None:
    """Sync an endpoint's models now."""
    _print_sync(run(ctx, lambda c: service.sync_by_ident(c, endpoint)))
