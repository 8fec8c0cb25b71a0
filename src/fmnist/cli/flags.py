"""Flags made from dataclass fields, one mechanism for every command that has settings.

``fmnist serve`` makes its flags from its settings dataclasses, ``train`` and ``tune`` from
:class:`fmnist.config.Config`: each field is one keyword parameter, its flag ``--field-name``
(``--x/--no-x`` for a bool, or the spelling the field's metadata gives), its help from the
metadata, its default shown as ``[default: X]``. Standard library and Typer only, so ``--help``
loads nothing heavy.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from typing import Annotated, Any

import typer

from fmnist.config import flag


def declaration(f: dataclasses.Field) -> str:
    """The field's flag, ``--x/--no-x`` for a bool unless its metadata spells both."""
    decl = f.metadata.get("flag") or flag(f.name)
    if isinstance(f.default, bool) and "/" not in decl:
        decl = f"{decl}/--no-{decl[2:]}"
    return decl


def shown_default(f: dataclasses.Field) -> str:
    """The default as --help writes it: the metadata's words, the flag a bool's default picks, or the value."""
    if f.metadata.get("shown") is not None:
        return f.metadata["shown"]
    if isinstance(f.default, bool):
        on, off = declaration(f).split("/")
        return (on if f.default else off)[2:]
    if isinstance(f.default, tuple):
        return " ".join(map(str, f.default))
    return str(f.default)


def _metavar(f: dataclasses.Field, kind: Any) -> str | None:
    """No type for a bool flag (it takes no value), the choices for a field that has them."""
    if isinstance(f.default, bool):
        return ""
    if f.metadata.get("choices"):
        return "|".join(f.metadata["choices"])
    if typing.get_origin(kind) is tuple:
        return "LOW HIGH"
    return f.metadata.get("metavar")


def _value_type(kind: Any) -> Any:
    """A field's type without ``| None`` (a flag left out is None, whatever the field's type)."""
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    return args[0] if typing.get_origin(kind) in (typing.Union, types.UnionType) else kind


def flag_parameters(
    cls: type,
    *,
    panel: str | None = None,
    unset: bool = False,
    helps: dict[str, str] | None = None,
) -> list[inspect.Parameter]:
    """One keyword parameter per field of ``cls``: its flag, default and help (in ``panel`` of --help).

    ``unset``: every flag defaults to None, "not given", so a value from elsewhere (``--params``, a
    resumed run's config) is kept unless the flag is; --help still shows the field's default.
    ``helps`` replaces a field's help and shown default (``{"epochs": "Epochs per trial. [default: 10]"}``).
    """
    params = []
    hints = typing.get_type_hints(cls)  # once: each call evaluates every annotation of the class
    for f in dataclasses.fields(cls):
        kind = _value_type(hints[f.name])
        text = (helps or {}).get(f.name) or f"{f.metadata.get('help', '')} [default: {shown_default(f)}]"
        option = typer.Option(
            declaration(f),
            help=text.replace("[default:", r"\[default:"),  # rich markup would take it for a style
            rich_help_panel=panel,
            show_default=False,
            metavar=_metavar(f, kind),
            parser=f.metadata.get("parse"),
        )
        annotation = Annotated[kind | None if unset else kind, option]
        default = None if unset else f.default
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation))
    return params


def with_flags(command, extra: list[inspect.Parameter]):
    """``command`` with ``extra`` keyword parameters added to its signature (Typer reads the signature);
    the command receives their values in ``**values``."""
    own = inspect.signature(command, eval_str=True).parameters.values()
    own = [p for p in own if p.kind is not inspect.Parameter.VAR_KEYWORD]
    command.__signature__ = inspect.Signature([*own, *extra], return_annotation=None)
    return command


def pick(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """The flag values that are fields of ``cls``."""
    return {f.name: values[f.name] for f in dataclasses.fields(cls) if f.name in values}


class _UntypedHelp:
    """``--help`` shown without a type (it takes no value), as no other flag is."""

    def get_help_option(self, ctx):
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option


class Command(_UntypedHelp, typer.core.TyperCommand):
    """A command in the one help style (``cls=`` of ``app.command``)."""


class Group(_UntypedHelp, typer.core.TyperGroup):
    """The root group, in the same style."""
