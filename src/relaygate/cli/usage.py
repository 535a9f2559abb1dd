"""``relaygate usage``: requests, tokens and cost over a time range, as a table."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from relaygate.cli.runner import JsonFlag, as_dict, fail, print_json, print_table, run
from relaygate.services.usage import GROUPS, usage_report


def when(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        fail(f"{option} {value!r} is not a date or time such as 2026-11-01 or 2026-11-01T12:00")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def usage(
    ctx: typer.Context,
    by: Annotated[str, typer.Option("--by", help=f"Group by: {', '.join(GROUPS)}")] = "model",
    start: Annotated[
        str | None, typer.Option("--from", help="Start, ISO 8601 (default: 7 days ago)")
    ] = None,
    end: Annotated[str | None, typer.Option("--to", help="End, ISO 8601 (default: now)")] = None,
    user: Annotated[int | None, typer.Option(help="Only this user id's usage")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Show requests, tokens and cost, grouped by user, key, model, endpoint or day."""
    if by not in GROUPS:
        fail(f"--by must be one of {', '.join(GROUPS)}")
    rows = run(
        ctx,
        lambda c: usage_report(
            c,
            start=when(start, "--from"),
            end=when(end, "--to"),
            group_by=by,
            user_id=user,
        ),
    )
    found = [as_dict(row) for row in rows]
    if as_json:
        print_json(found)
        return
    for row in found:
        row["cost"] = f"{row['cost']:.6f}"
        if row["name"]:
            row["group"] = f"{row['group']} ({row['name']})"
    print_table(
        found,
        [
            "group",
            "requests",
            "errors",
            "prompt_tokens",
            "completion_tokens",
            "total_tokens",
            "cost",
        ],
    )
