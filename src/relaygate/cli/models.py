"""``relaygate models list|update|alias``: models named by id or by name."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from relaygate.cli.runner import JsonFlag, as_dict, fail, print_json, print_table, run
from relaygate.context import Context
from relaygate.inputs import given
from relaygate.model_spec import ModelUpdate
from relaygate.services import endpoints as endpoints_service
from relaygate.services import models as service
from relaygate.services.models import ModelInfo

app = typer.Typer(help="Inspect and configure models.", no_args_is_help=True)
ModelArg = Annotated[
    str,
    typer.Argument(
        metavar="MODEL",
        help="Model id, or its name (alias or upstream id) when only one model has it",
    ),
]
EndpointOpt = Annotated[
    str | None, typer.Option(metavar="ENDPOINT", help="Only this endpoint's (id or name)")
]


def _price(value: float | None) -> str:
    return "none" if value is None else f"{value:g}"


def describe(info: ModelInfo) -> str:
    """One line saying everything ``models update`` can set on the model."""
    return (
        f"model {info.id} {(info.alias or info.upstream_id)!r} of endpoint {info.endpoint_id}: "
        f"{'enabled' if info.enabled else 'disabled'}, {info.status}, "
        f"alias {info.alias or 'none'}, fallback {info.fallback_model or 'none'}, "
        f"price per million tokens: input {_price(info.input_cost_per_million_tokens)}, "
        f"output {_price(info.output_cost_per_million_tokens)}"
    )


@app.command("list")
def list_models(
    ctx: typer.Context,
    endpoint: EndpointOpt = None,
    status: Annotated[str | None, typer.Option(metavar="STATUS", help="online or offline")] = None,
    as_json: JsonFlag = False,
) -> None:
    """List models with their status, and the conflict of any that serves nothing because
    another endpoint's model holds its name."""

    async def found(c: Context) -> list[ModelInfo]:
        endpoint_id = None
        if endpoint is not None:
            endpoint_id = (await endpoints_service.get_endpoint(c, endpoint)).id
        return await service.list_models(c, endpoint_id=endpoint_id, status=status)

    models = run(ctx, found)
    if as_json:
        print_json([as_dict(m) for m in models])
        return
    rows = [
        {**as_dict(m), "conflict": m.conflict.describe() if m.conflict else None} for m in models
    ]
    print_table(
        rows, ["id", "endpoint_id", "upstream_id", "alias", "status", "enabled", "conflict"]
    )


def _price_change(value: float | None, clear: bool, option: str) -> dict[str, Any]:
    """A price option as a change's field (``input`` or ``output_cost_per_million_tokens``):
    the price given, None (cleared), or left out."""
    field = f"{option.split('-')[0]}_cost_per_million_tokens"
    if value is not None and clear:
        fail(f"give --{option} or --clear-{option}, not both")
    if value is not None and value < 0:
        fail(f"--{option} must be 0 or more (--clear-{option} removes the price)")
    return {field: None} if clear else given(**{field: value})


@app.command("update")
def update(
    ctx: typer.Context,
    model: ModelArg,
    alias: Annotated[
        str | None, typer.Option(metavar="NAME", help="Public name ('' clears it)")
    ] = None,
    enabled: Annotated[
        bool | None, typer.Option("--enable/--disable", help="Serve it, or not")
    ] = None,
    fallback: Annotated[
        str | None,
        typer.Option(
            metavar="MODEL", help="Model tried when every endpoint of this one fails ('' clears it)"
        ),
    ] = None,
    input_price: Annotated[
        float | None,
        typer.Option(metavar="AMOUNT", help="Price per million prompt tokens, 0 or more"),
    ] = None,
    output_price: Annotated[
        float | None,
        typer.Option(metavar="AMOUNT", help="Price per million completion tokens, 0 or more"),
    ] = None,
    clear_input_price: Annotated[
        bool, typer.Option("--clear-input-price", help="Remove the input price")
    ] = False,
    clear_output_price: Annotated[
        bool, typer.Option("--clear-output-price", help="Remove the output price")
    ] = False,
    clear_price: Annotated[bool, typer.Option("--clear-price", help="Remove both prices")] = False,
) -> None:
    """Set a model's alias, fallback model or prices, or enable/disable it; prints the
    model as it is after the change."""
    changes = ModelUpdate.unchecked(
        **given(alias=alias, enabled=enabled, fallback_model=fallback),
        **_price_change(input_price, clear_input_price or clear_price, "input-price"),
        **_price_change(output_price, clear_output_price or clear_price, "output-price"),
    )

    async def change(c: Context) -> ModelInfo:
        return await service.update_model(c, await service.find_model_id(c, model), changes)

    typer.echo(f"updated {describe(run(ctx, change))}")


@app.command("alias")
def alias(
    ctx: typer.Context,
    model: ModelArg,
    name: Annotated[
        str | None, typer.Argument(metavar="ALIAS", help="The public name; omit with --clear")
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the alias")] = False,
) -> None:
    """Give a model a public name (models of different endpoints may share one), or clear it."""
    if (name is None) == (not clear):
        fail("give an alias, or --clear")

    async def change(c: Context) -> ModelInfo:
        changes = ModelUpdate.unchecked(alias=name)
        return await service.update_model(c, await service.find_model_id(c, model), changes)

    info = run(ctx, change)
    shown = info.alias or f"{info.upstream_id} (no alias)"
    typer.echo(f"model {info.id} answers to {shown}")
