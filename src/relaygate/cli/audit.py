"""``relaygate audit``: the audit log, newest first, as a table or JSON."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from relaygate.cli.runner import JsonFlag, as_dict, fail, print_json, print_table, run
from relaygate.cli.usage import when
from relaygate.context import Context
from relaygate.errors import BadRequest
from relaygate.services.audit import MAX_PAGE, AuditFilter, AuditRecord, check_filter, list_entries

COLUMNS = ["id", "time", "actor", "address", "action", "target", "fields"]


def _row(item: dict[str, Any]) -> dict[str, Any]:
    target = f"{item['target_type']} {item['target_id'] or ''}".strip()
    if item["target_name"]:
        target += f" ({item['target_name']})"
    return {
        "id": item["id"],
        "time": item["created_at"],
        "actor": item["actor_name"],
        "address": item["address"],
        "action": item["action"],
        "target": target,
        "fields": ", ".join(item["details"].get("fields", [])),
    }


def audit(
    ctx: typer.Context,
    start: Annotated[str | None, typer.Option("--from", help="Start, ISO 8601")] = None,
    end: Annotated[str | None, typer.Option("--to", help="End, ISO 8601 (exclusive)")] = None,
    actor: Annotated[
        str | None, typer.Option(help="Only this actor's: a user's name or id; cli, config, system")
    ] = None,
    action: Annotated[
        str | None, typer.Option(help="Only this action (key.revoke), or a prefix (endpoint.)")
    ] = None,
    before: Annotated[
        int | None, typer.Option(min=1, help="Only entries older than this id (the next page)")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=MAX_PAGE, help="Most entries shown")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """Show administrative changes, newest first: who, when, from where, what."""
    query = AuditFilter(
        start=when(start, "--from"),
        end=when(end, "--to"),
        actor=actor,
        action=action,
        before=before,
        limit=limit,
    )
    try:
        check_filter(query)
    except BadRequest as exc:
        fail(exc.message)

    async def found(c: Context) -> list[AuditRecord]:
        return (await list_entries(c, query))[0]

    items = [as_dict(row) for row in run(ctx, found)]
    if as_json:
        print_json(items)
    else:
        print_table([_row(item) for item in items], COLUMNS)
