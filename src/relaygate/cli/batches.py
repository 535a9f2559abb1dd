"""``relaygate batches list|cancel``: every user's batches, as admins see them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from relaygate.cli.runner import JsonFlag, fail, print_json, print_table, run
from relaygate.context import Context
from relaygate.services import batches as service
from relaygate.services import users as users_service

app = typer.Typer(help="Every user's batches: list and cancel them.", no_args_is_help=True)
COLUMNS = ["id", "user", "status", "completed/failed/total", "created", "cost"]


def _row(item: dict[str, Any]) -> dict[str, Any]:
    counts = item["request_counts"]
    return {
        "id": item["id"],
        "user": item["user_name"] or item["user_id"],
        "status": item["status"],
        "completed/failed/total": f"{counts['completed']}/{counts['failed']}/{counts['total']}",
        "created": datetime.fromtimestamp(item["created_at"], UTC).isoformat(timespec="seconds"),
        "cost": f"{item['cost']:.6f}",
    }


@app.command("list")
def list_batches(
    ctx: typer.Context,
    user: Annotated[str | None, typer.Option(help="Only this user's (id or name)")] = None,
    status: Annotated[
        str | None, typer.Option(help=f"Only batches in this status: {', '.join(service.STATUSES)}")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Most batches shown")] = 100,
    as_json: JsonFlag = False,
) -> None:
    """List batches, newest first, with their owner, progress and cost."""
    if status is not None and status not in service.STATUSES:
        fail(f"--status must be one of {', '.join(service.STATUSES)}")

    async def found(c: Context) -> list[dict[str, Any]]:
        user_id = None if user is None else (await users_service.get_user(c, user)).id
        rows, _ = await service.list_batches(c, user_id, limit=limit, status=status)
        return await service.admin_objects(c, rows)

    items = run(ctx, found)
    if as_json:
        print_json(items)
    else:
        print_table([_row(item) for item in items], COLUMNS)


@app.command("cancel")
def cancel(ctx: typer.Context, batch_id: str) -> None:
    """Cancel a batch, whoever's it is: the requests in flight finish, the others are
    not sent, and its output keeps what was done."""
    row = run(ctx, lambda c: service.cancel_batch(c, None, batch_id))
    typer.echo(f"batch {row.id} is {row.status}")
