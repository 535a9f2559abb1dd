"""``relaygate users …`` and ``relaygate keys create|list|revoke``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from relaygate.cli.runner import JsonFlag, as_dict, print_json, print_table, run
from relaygate.services import api_keys as keys_service
from relaygate.services import users as users_service
from relaygate.services.patch import UNSET

users = typer.Typer(help="Manage users.", no_args_is_help=True)
keys = typer.Typer(help="Manage user API keys.", no_args_is_help=True)


@users.command("list")
def list_users(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """List users."""
    found = [as_dict(u) for u in run(ctx, users_service.list_users)]
    if as_json:
        print_json(found)
    else:
        print_table(found, ["id", "name", "email", "role", "created_at"])


@users.command("add")
def add_user(
    ctx: typer.Context,
    name: str,
    email: Annotated[str | None, typer.Option()] = None,
    role: Annotated[str, typer.Option(help="admin or user")] = "user",
) -> None:
    """Create a user."""
    user = run(ctx, lambda c: users_service.create_user(c, name=name, email=email, role=role))
    typer.echo(f"created user {user.name!r} (id {user.id}, {user.role})")


@users.command("update")
def update_user(
    ctx: typer.Context,
    user: str,
    name: Annotated[str | None, typer.Option()] = None,
    email: Annotated[str | None, typer.Option()] = None,
    role: Annotated[str | None, typer.Option(help="admin or user")] = None,
) -> None:
    """Change a user's name, email or role."""
    info = run(
        ctx,
        lambda c: users_service.update_user(
            c,
            user,
            name=UNSET if name is None else name,
            email=UNSET if email is None else email,
            role=UNSET if role is None else role,
        ),
    )
    typer.echo(f"updated user {info.name!r} (id {info.id}, {info.role})")


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
) -> None:
    """Create an API key; it is printed this once."""
    created = run(
        ctx,
        lambda c: keys_service.create_key(
            c, user=user, name=name, expires_at=expires_at, allowed_models=model or None
        ),
    )
    typer.echo(
        f"created key {created.info.id} ({created.info.name!r}) for user "
        f"{created.info.user_id}; it is shown this once:",
        err=True,
    )
    typer.echo(created.key)


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
            ],
        )


@keys.command("revoke")
def revoke_key(ctx: typer.Context, key_id: int) -> None:
    """Revoke an API key; it is refused from the next request on."""
    run(ctx, lambda c: keys_service.revoke_key(c, key_id))
    typer.echo(f"revoked key {key_id}")
