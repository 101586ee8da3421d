"""Command-line flags generated from option declarations (:mod:`anas.options`), so that each
option is declared once, in its owner's dataclass.

A command is a function ``command(values, cli, config)`` decorated with
:func:`options_command`: ``values`` holds the options of the core's dataclass and of the
plug-ins it can select, by name (None: not given on the command line, so that the core
can tell a flag from a value of a ``--config`` file); ``cli`` is the command line's own
options (``--json``, ``--quiet``, ...) as their dataclass; ``config`` is the ``--config``
file every command takes. The flags are generated when the command runs, not when it is
defined, so that plug-ins registered later (by an installed package or by a test) are
offered too; each plug-in's options are listed in ``--help`` under a heading of their own.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import MISSING
from typing import Any

import typer

from anas import options as opts
from anas.registry import Registry

CONFIG_HELP = "YAML file of options (the keys are the options' names); flags given override it."


def _help(decl: opts.Declared) -> str:
    text = decl.info.help
    choices = decl.info.choices
    if isinstance(choices, Registry):
        text = f"{text} One of: {choices.choices_text()}."
    elif choices is not None and str(choices[0]) not in text:
        text = f"{text} One of: {', '.join(map(str, choices))}."
    shown = decl.default_shown
    return text if shown is None else f"{text} (default: {shown})"


def _parameter(decl: opts.Declared, panel: str | None) -> inspect.Parameter:
    """The typer parameter of option ``decl``: always optional (None: not given), except a
    required positional argument."""
    annotation: Any = list[decl.type] if decl.is_list else decl.type
    if decl.info.argument:
        required = decl.default is MISSING
        info = typer.Argument(... if required else None, help=_help(decl), show_default=False,
                              metavar=decl.name.upper())
        annotation = annotation if required else annotation | None
    else:
        names = [f"{decl.flag}/--no-{decl.flag[2:]}"] if decl.type is bool else [decl.flag]
        names += list(decl.info.aliases)
        if decl.info.short:
            names.append(decl.info.short)
        info = typer.Option(None, *names, help=_help(decl), show_default=False, rich_help_panel=panel)
        annotation = annotation | None
    return inspect.Parameter(decl.name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=annotation)


def _panel(owners: list[tuple[opts.Slot, Any]]) -> str:
    slot = owners[0][0]
    names = [entry.display_name for s, entry in owners if s is slot]
    return f"{slot.registry.kind} {' / '.join(names)} ({slot.flag})"


class GeneratedCommand:
    """A command function whose signature typer reads is generated from option
    dataclasses each time it is read."""

    def __init__(self, function: Callable[..., Any], core: type | None, cli: type | None, config: bool = True):
        self.function, self.core, self.cli, self.config = function, core, cli, config
        self.__name__, self.__doc__ = function.__name__, function.__doc__
        self.__module__ = function.__module__

    def _core_decls(self) -> list[tuple[opts.Declared, str | None]]:
        if self.core is None:
            return []
        found = [(decl, None) for decl in opts.declared(self.core)]
        found += [(decl, _panel(owners)) for decl, owners in opts.plugin_options(self.core).values()]
        return found

    def _cli_decls(self) -> list[opts.Declared]:
        return list(opts.declared(self.cli)) if self.cli is not None else []

    @property
    def __signature__(self) -> inspect.Signature:
        parameters = [_parameter(decl, panel) for decl, panel in self._core_decls()]
        if self.config:
            parameters.append(inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY,
                                                default=typer.Option(None, "--config", help=CONFIG_HELP),
                                                annotation=str | None))
        parameters += [_parameter(decl, None) for decl in self._cli_decls()]
        arguments = [p for p in parameters if isinstance(p.default, typer.models.ArgumentInfo)]
        return inspect.Signature(arguments + [p for p in parameters if p not in arguments])

    @property
    def __annotations__(self) -> dict[str, Any]:
        return {p.name: p.annotation for p in self.__signature__.parameters.values()}

    def __call__(self, **kwargs: Any) -> Any:
        values = {decl.name: kwargs.pop(decl.name, None) for decl, _ in self._core_decls()}
        config = kwargs.pop("config", None) if self.config else None
        cli = opts.make(self.cli, {d.name: kwargs.pop(d.name, None) for d in self._cli_decls()}) if self.cli else None
        arguments = {"values": values} if self.core is not None else {}
        if self.cli is not None:
            arguments["cli"] = cli
        if self.config:
            arguments["config"] = config
        return self.function(**arguments)


def options_command(core: type | None, cli: type | None = None, config: bool = True) -> Callable[[Callable], GeneratedCommand]:
    """Give a command the flags of the ``core`` options dataclass (and of the plug-ins it
    selects), of the command line's own ``cli`` dataclass and ``--config``."""

    def decorate(function: Callable[..., Any]) -> GeneratedCommand:
        return GeneratedCommand(function, core, cli, config)

    return decorate
