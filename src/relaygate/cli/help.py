"""How ``--help`` shows arguments and options: ``NAME URL`` rather than ``{name} {url}``,
no ``<bool>`` beside a flag, and a plain word (``TEXT``, ``NUMBER`` or the option's own
metavar) rather than ``<str>`` beside an option that takes a value.

Typer builds its parameters itself; :func:`tidy` walks the finished command tree once and
gives each parameter the plain presentation below. Parsing is untouched.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperArgument, TyperGroup, TyperOption

_WORDS = {"str": "TEXT", "int": "INTEGER", "float": "NUMBER", "datetime": "DATETIME"}


def _word(param: Any) -> str:
    """The word shown for a value of ``param``: its metavar, else its type in capitals."""
    if param.metavar:
        return str(param.metavar)
    bare: str = param.bare_type()
    inner = bare.removeprefix("list[").removesuffix("]")
    return _WORDS.get(inner, inner.upper())


class PlainArgument(TyperArgument):
    """An argument shown as ``NAME`` (required) or ``[NAME]`` in usage, without a type."""

    def _usage_display_name(self) -> str:
        name = (self.metavar or self.name or "").upper()
        shown = name if self.required else f"[{name}]"
        return shown + ("..." if self.nargs != 1 else "")

    def _rich_display_name(self) -> str:
        return (self.metavar or self.name or "").upper()

    @property
    def display_name_raw(self) -> str:
        return (self.metavar or self.name or "").upper()

    def display_type_rich(self, ctx: Any) -> str | None:
        return None


class PlainOption(TyperOption):
    """An option shown with nothing beside it when it is a flag, else with one word."""

    def display_type_rich(self, ctx: Any) -> str | None:
        if self.is_flag or self.count:
            return None
        return _word(self) + ("..." if self.nargs != 1 else "")


def tidy(command: Any) -> Any:
    """Give every parameter of ``command`` and its subcommands the plain presentation;
    returns ``command``."""
    # The --help option is made on first use; made now, it is tidied with the others.
    shown = [*command.params, command.get_help_option(typer.Context(command))]
    for param in shown:
        if type(param) is TyperArgument:
            param.__class__ = PlainArgument
        elif type(param) is TyperOption:
            param.__class__ = PlainOption
    if isinstance(command, TyperGroup):
        for sub in command.commands.values():
            tidy(sub)
    return command
