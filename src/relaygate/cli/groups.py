"""``relaygate groups list|show|add|update|budget-reset|remove|add-user|remove-user|grant|
revoke``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from relaygate.account_spec import GroupUpdate
from relaygate.cli.budgets import (
    BUDGET_COLUMNS,
    BudgetOption,
    ClearBudget,
    PeriodOption,
    budget_change,
    budget_text,
)
from relaygate.cli.runner import JsonFlag, as_dict, fail, print_json, print_record, print_table, run
from relaygate.context import Context
from relaygate.inputs import given
from relaygate.services import budgets as budgets_service
from relaygate.services import groups as service
from relaygate.services.endpoints import get_endpoint
from relaygate.services.groups import GroupInfo
from relaygate.services.models import find_model_id

app = typer.Typer(help="Manage groups and which models they may use.", no_args_is_help=True)
ModelOpt = Annotated[str | None, typer.Option("--model", metavar="MODEL", help="Model id or name")]
EndpointOpt = Annotated[
    str | None,
    typer.Option("--endpoint", metavar="ENDPOINT", help="Endpoint id or name (all its models)"),
]


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
        print_table(
            [_summary(g) for g in found],
            ["id", "name", "users", "models", "endpoints", *BUDGET_COLUMNS],
        )


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
    budget: BudgetOption = None,
    budget_period: PeriodOption = None,
) -> None:
    """Create a group; --budget limits its members' spend together on the models it
    grants."""
    group = run(
        ctx,
        lambda c: service.create_group(
            c, name=name, description=description, budget=budget, budget_period=budget_period
        ),
    )
    typer.echo(f"created group {group.name!r} (id {group.id}, {budget_text(group)})")


@app.command("update")
def update(
    ctx: typer.Context,
    group: str,
    name: Annotated[str | None, typer.Option()] = None,
    description: Annotated[str | None, typer.Option()] = None,
    budget: BudgetOption = None,
    budget_period: PeriodOption = None,
    clear_budget: ClearBudget = False,
) -> None:
    """Rename or describe a group, or change its budget."""
    changes = GroupUpdate.unchecked(
        **given(name=name, description=description),
        **budget_change(budget, budget_period, clear_budget),
    )
    info = run(ctx, lambda c: service.update_group(c, group, changes))
    typer.echo(f"updated group {info.name!r} (id {info.id}, {budget_text(info)})")


@app.command("budget-reset")
def reset_budget(ctx: typer.Context, group: str) -> None:
    """Start a new window of a group's budget now: spend before it no longer counts."""

    async def reset(c: Any) -> GroupInfo:
        group_id = await budgets_service.reset_budget(c, "group", group)
        return await service.get_group(c, group_id)

    info = run(ctx, reset)
    typer.echo(f"reset the budget of group {info.name!r} ({budget_text(info)})")


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
    ctx: typer.Context, group: str, model: str | None, endpoint: str | None, granted: bool
) -> None:
    if (model is None) == (endpoint is None):
        fail("give exactly one of --model MODEL or --endpoint ENDPOINT")

    async def change(c: Context) -> str:
        if model is not None:
            model_id = await find_model_id(c, model)
            await service.set_model_grant(c, group, model_id, granted)
            return f"model {model_id}"
        assert endpoint is not None
        found = await get_endpoint(c, endpoint)
        await service.set_endpoint_grant(c, group, found.id, granted)
        return f"endpoint {found.name!r}"

    what = run(ctx, change)
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
