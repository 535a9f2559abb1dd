"""``relaygate groups list|show|add|remove|add-user|remove-user|grant|revoke``."""

from __future__ import annotations

from typing import Annotated

import typer

from relaygate.cli.runner import JsonFlag, as_dict, fail, print_json, print_record, print_table, run
from relaygate.services import groups as service
from relaygate.services.groups import GroupInfo

app = typer.Typer(help="Manage groups and which models they may use.", no_args_is_help=True)
ModelOpt = Annotated[int | None, typer.Option("--model", help="Model id")]
EndpointOpt = Annotated[int | None, typer.Option("--endpoint", help="Endpoint id (all its models)")]


def _summary(group: GroupInfo) -> dict[str, object]:
    row = as_dict(group)
    row["users"] = ", ".join(map(str, group.users)) or ("(all)" if group.builtin else "")
    row["models"] = ", ".join(map(str, group.models))
    row["endpoints"] = ", ".join(map(str, group.endpoints))
    return row


@app.command("list")
def list_groups(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """List groups with their members and grants."""
    found = run(ctx, service.list_groups)
    if as_json:
        print_json([as_dict(g) for g in found])
    else:
        print_table([_summary(g) for g in found], ["id", "name", "users", "models", "endpoints"])


@app.command("show")
def show(ctx: typer.Context, group: str, as_json: JsonFlag = False) -> None:
    """Show one group (by id or name)."""
    found = run(ctx, lambda c: service.get_group(c, group))
    if as_json:
        print_json(as_dict(found))
    else:
        print_record(_summary(found))


@app.command("add")
def add(
    ctx: typer.Context,
    name: str,
    description: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Create a group."""
    group = run(ctx, lambda c: service.create_group(c, name=name, description=description))
    typer.echo(f"created group {group.name!r} (id {group.id})")


@app.command("remove")
def remove(ctx: typer.Context, group: str) -> None:
    """Delete a group (its members keep their other groups)."""
    run(ctx, lambda c: service.delete_group(c, group))
    typer.echo(f"deleted group {group!r}")


@app.command("add-user")
def add_user(ctx: typer.Context, group: str, user: str) -> None:
    """Add a user (id or name) to a group."""
    run(ctx, lambda c: service.set_member(c, group, user, True))
    typer.echo(f"added {user!r} to {group!r}")


@app.command("remove-user")
def remove_user(ctx: typer.Context, group: str, user: str) -> None:
    """Remove a user from a group."""
    run(ctx, lambda c: service.set_member(c, group, user, False))
    typer.echo(f"removed {user!r} from {group!r}")


def _grant(
    ctx: typer.Context, group: str, model: int | None, endpoint: int | None, granted: bool
) -> None:
    if (model is None) == (endpoint is None):
        fail("give exactly one of --model ID or --endpoint ID")
    if model is not None:
        run(ctx, lambda c: service.set_model_grant(c, group, model, granted))
        what = f"model {model}"
    else:
        assert endpoint is not None
        run(ctx, lambda c: service.set_endpoint_grant(c, group, endpoint, granted))
        what = f"endpoint {endpoint}"
    typer.echo(
        f"{'granted' if granted else 'revoked'} {what} {'to' if granted else 'from'} {group!r}"
    )


@app.command("grant")
def grant(
    ctx: typer.Context, group: str, model: ModelOpt = None, endpoint: EndpointOpt = None
) -> None:
    """Let a group use a model, or every model of an endpoint."""
    _grant(ctx, group, model, endpoint, True)


@app.command("revoke")
def revoke(
    ctx: typer.Context, group: str, model: ModelOpt = None, endpoint: EndpointOpt = None
) -> None:
    """Take a grant back."""
    _grant(ctx, group, model, endpoint, False)
