"""``relaygate users …`` and ``relaygate keys create|list|update|revoke``."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Any

import httpx
import typer

from relaygate.account_spec import KeyUpdate, UserUpdate
from relaygate.changes import read_version
from relaygate.cli.budgets import (
    BUDGET_COLUMNS,
    BudgetOption,
    ClearBudget,
    PeriodOption,
    budget_change,
    budget_text,
)
from relaygate.cli.runner import (
    JsonFlag,
    as_dict,
    print_json,
    print_table,
    run,
    server_url,
    settings_from,
)
from relaygate.inputs import given
from relaygate.services import api_keys as keys_service
from relaygate.services import budgets as budgets_service
from relaygate.services import users as users_service

users = typer.Typer(help="Manage users.", no_args_is_help=True)
keys = typer.Typer(help="Manage user API keys.", no_args_is_help=True)
Rpm = Annotated[int | None, typer.Option("--rpm", min=1, help="Requests per minute")]
Tpm = Annotated[int | None, typer.Option("--tpm", min=1, help="Tokens per minute")]
ClearLimits = Annotated[
    bool, typer.Option("--clear-limits", help="Remove the limits not given with --rpm/--tpm")
]


def _limit_changes(rpm: int | None, tpm: int | None, clear: bool) -> dict[str, Any]:
    """The limit options as a change's fields: a value given, else None (cleared) with
    ``--clear-limits``, else left out (unchanged)."""
    limits = {"requests_per_minute": rpm, "tokens_per_minute": tpm}
    return {name: value for name, value in limits.items() if value is not None or clear}


def _limits(rpm: int | None, tpm: int | None) -> str:
    parts = [f"{rpm} requests/min" if rpm else "", f"{tpm} tokens/min" if tpm else ""]
    return ", ".join(p for p in parts if p) or "no rate limit"


@users.command("list")
def list_users(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """List users."""
    found = [as_dict(u) for u in run(ctx, users_service.list_users)]
    if as_json:
        print_json(found)
    else:
        print_table(
            found,
            [
                "id",
                "name",
                "email",
                "role",
                "requests_per_minute",
                "tokens_per_minute",
                *BUDGET_COLUMNS,
                "created_at",
            ],
        )


@users.command("add")
def add_user(
    ctx: typer.Context,
    name: str,
    email: Annotated[str | None, typer.Option()] = None,
    role: Annotated[str, typer.Option(help="admin or user")] = "user",
    rpm: Rpm = None,
    tpm: Tpm = None,
    budget: BudgetOption = None,
    budget_period: PeriodOption = None,
) -> None:
    """Create a user; --rpm/--tpm limit all their keys together, and --budget their
    spend together."""
    user = run(
        ctx,
        lambda c: users_service.create_user(
            c,
            name=name,
            email=email,
            role=role,
            requests_per_minute=rpm,
            tokens_per_minute=tpm,
            budget=budget,
            budget_period=budget_period,
        ),
    )
    limits = _limits(user.requests_per_minute, user.tokens_per_minute)
    typer.echo(
        f"created user {user.name!r} (id {user.id}, {user.role}, {limits}, {budget_text(user)})"
    )


@users.command("update")
def update_user(
    ctx: typer.Context,
    user: str,
    name: Annotated[str | None, typer.Option()] = None,
    email: Annotated[str | None, typer.Option()] = None,
    role: Annotated[str | None, typer.Option(help="admin or user")] = None,
    rpm: Rpm = None,
    tpm: Tpm = None,
    clear_limits: ClearLimits = False,
    budget: BudgetOption = None,
    budget_period: PeriodOption = None,
    clear_budget: ClearBudget = False,
) -> None:
    """Change a user's name, email, role, rate limits or budget (all their keys
    together)."""
    changes = UserUpdate.unchecked(
        **given(name=name, email=email, role=role),
        **_limit_changes(rpm, tpm, clear_limits),
        **budget_change(budget, budget_period, clear_budget),
    )
    info = run(ctx, lambda c: users_service.update_user(c, user, changes))
    limits = _limits(info.requests_per_minute, info.tokens_per_minute)
    typer.echo(
        f"updated user {info.name!r} (id {info.id}, {info.role}, {limits}, {budget_text(info)})"
    )


@users.command("budget-reset")
def reset_user_budget(ctx: typer.Context, user: str) -> None:
    """Start a new window of a user's budget now: spend before it no longer counts."""

    async def reset(c: Any) -> Any:
        user_id = await budgets_service.reset_budget(c, "user", user)
        return await users_service.get_user(c, user_id)

    info = run(ctx, reset)
    typer.echo(f"reset the budget of user {info.name!r} ({budget_text(info)})")


@users.command("remove")
def remove_user(ctx: typer.Context, user: str) -> None:
    """Delete a user and their keys."""
    run(ctx, lambda c: users_service.delete_user(c, user))
    typer.echo(f"deleted user {user!r}")


@keys.command("create")
def create_key(
    ctx: typer.Context,
    user: Annotated[str, typer.Option(help="Owner: user id or name")],
    name: Annotated[str, typer.Option(help="A label for the key")] = "key",
    expires_at: Annotated[
        datetime | None, typer.Option(help="Expiry, ISO 8601 (UTC unless a zone is given)")
    ] = None,
    model: Annotated[
        list[str] | None, typer.Option("--model", help="Limit the key to this model; repeatable")
    ] = None,
    rpm: Rpm = None,
    tpm: Tpm = None,
    budget: BudgetOption = None,
    budget_period: PeriodOption = None,
) -> None:
    """Create an API key; it is printed this once."""
    created = run(
        ctx,
        lambda c: keys_service.create_key(
            c,
            user=user,
            name=name,
            expires_at=expires_at,
            allowed_models=model or None,
            requests_per_minute=rpm,
            tokens_per_minute=tpm,
            budget=budget,
            budget_period=budget_period,
        ),
    )
    _wait_until_usable(ctx, run(ctx, _change_version))
    typer.echo(
        f"created key {created.id} ({created.name!r}, {budget_text(created)}) "
        f"for user {created.user_id}; it is shown this once:",
        err=True,
    )
    typer.echo(created.key)


def _wait_until_usable(ctx: typer.Context, version: int) -> None:
    """Return once the server at the configured address has applied change ``version``
    (the one that made a key; it applies the CLI's changes within
    ``change_poll_interval``), so that ``keys create && curl`` works; at once when no
    relaygate answers there. It asks ``GET /readyz`` for its ``snapshot_version`` and
    never sends the new key: whatever listens on that port, or a proxy the environment
    names, must not learn it."""
    settings = settings_from(ctx)
    base = server_url(settings)
    url = f"{base}/readyz"
    deadline = time.monotonic() + 2 * settings.change_poll_interval + 1.0
    timeout = httpx.Timeout(2.0, connect=0.5)
    with httpx.Client(timeout=timeout, trust_env=False, follow_redirects=False) as client:
        while True:
            try:
                answer = client.get(url)
                applied = answer.json().get("snapshot_version") if answer.is_success else -1
            except (httpx.HTTPError, ValueError, AttributeError):
                return  # no relaygate listens there: nothing to wait for
            if not isinstance(applied, int):
                return  # something else answers there
            if applied >= version:
                return
            if time.monotonic() > deadline:
                typer.echo(
                    f"warning: the server at {base} does not "
                    "accept the new key yet; it may follow another database",
                    err=True,
                )
                return
            time.sleep(0.05)


async def _change_version(c: Any) -> int:
    """The database's change counter now."""
    async with c.sessions() as session:
        return await read_version(session)


@keys.command("list")
def list_keys(
    ctx: typer.Context,
    user: Annotated[int | None, typer.Option(help="Only this user id's keys")] = None,
    as_json: JsonFlag = False,
) -> None:
    """List API keys (never the keys themselves)."""
    found = [as_dict(k) for k in run(ctx, lambda c: keys_service.list_keys(c, user_id=user))]
    if as_json:
        print_json(found)
    else:
        print_table(
            found,
            [
                "id",
                "name",
                "user_id",
                "prefix",
                "created_at",
                "expires_at",
                "last_used_at",
                "revoked_at",
                "requests_per_minute",
                "tokens_per_minute",
                *BUDGET_COLUMNS,
            ],
        )


@keys.command("update")
def update_key(
    ctx: typer.Context,
    key_id: int,
    name: Annotated[str | None, typer.Option(help="A new label")] = None,
    rpm: Rpm = None,
    tpm: Tpm = None,
    clear_limits: ClearLimits = False,
    budget: BudgetOption = None,
    budget_period: PeriodOption = None,
    clear_budget: ClearBudget = False,
) -> None:
    """Change an API key's name, rate limits or budget (its user's apply as well)."""
    changes = KeyUpdate.unchecked(
        **given(name=name),
        **_limit_changes(rpm, tpm, clear_limits),
        **budget_change(budget, budget_period, clear_budget),
    )
    info = run(ctx, lambda c: keys_service.update_key(c, key_id, changes))
    limits = _limits(info.requests_per_minute, info.tokens_per_minute)
    typer.echo(f"updated key {info.id} ({info.name!r}, {limits}, {budget_text(info)})")


@keys.command("budget-reset")
def reset_key_budget(ctx: typer.Context, key_id: int) -> None:
    """Start a new window of an API key's budget now: spend before it no longer counts."""

    async def reset(c: Any) -> Any:
        await budgets_service.reset_budget(c, "key", key_id)
        return await keys_service.get_key(c, key_id)

    info = run(ctx, reset)
    typer.echo(f"reset the budget of key {info.id} ({budget_text(info)})")


@keys.command("revoke")
def revoke_key(ctx: typer.Context, key_id: int) -> None:
    """Revoke an API key; it is refused from the next request on."""
    run(ctx, lambda c: keys_service.revoke_key(c, key_id))
    typer.echo(f"revoked key {key_id}")
