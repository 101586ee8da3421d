"""Command-line options built from a configuration dataclass, so that each option is
declared once: in the dataclass field (name, type, default, help).

Every generated option defaults to None on the command line ("not given"), so that the
library can tell a flag from a value that comes from a configuration file; the help text
shows the dataclass default.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Callable
from typing import Any, Optional

import typer


def _help(f: dataclasses.Field) -> str:
    meta = f.metadata
    text = meta.get("help", "")
    if meta.get("choices") is not None:
        text = f"{text} One of: {meta['choices'].choices_text()}."
    if meta.get("default_text"):
        default = meta["default_text"]
    elif f.default_factory is not dataclasses.MISSING:
        default = " ".join(str(item) for item in f.default_factory())
    else:
        default = f.default
    return text if default is None else f"{text} (default: {default})"


def _option(f: dataclasses.Field, annotation: Any) -> tuple[Any, typer.models.OptionInfo]:
    """The command-line type of field ``f`` (always optional) and its typer option."""
    flag = "--" + f.name.replace("_", "-")
    base = annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        base = next(arg for arg in typing.get_args(annotation) if arg is not type(None))
    if base is bool:
        names = [f"{flag}/--no-{flag[2:]}"]
    else:
        names = [flag]
    if f.metadata.get("short"):
        names.append(f.metadata["short"])
    return Optional[base], typer.Option(None, *names, help=_help(f))


def config_parameters(config_class: type) -> list[inspect.Parameter]:
    """One keyword parameter per field of ``config_class``, typed and documented for typer."""
    hints = typing.get_type_hints(config_class)
    parameters = []
    for f in dataclasses.fields(config_class):
        annotation, info = _option(f, hints[f.name])
        parameters.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=info,
                                            annotation=annotation))
    return parameters


def with_config_options(config_class: type) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command the options of ``config_class``'s fields, before its own ones. The
    command receives them in one keyword argument, ``options``: a dict of the fields'
    names to the values given (None where not given)."""
    names = [f.name for f in dataclasses.fields(config_class)]

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        hints = typing.get_type_hints(command)  # the command module's names, resolved where they live
        own = [p for p in inspect.signature(command).parameters.values() if p.name != "options"]
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=hints.get(p.name, p.annotation)) for p in own]

        def wrapper(**kwargs: Any) -> Any:
            options = {name: kwargs.pop(name) for name in names}
            return command(options=options, **kwargs)

        parameters = config_parameters(config_class) + own
        wrapper.__signature__ = inspect.Signature(parameters)
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
        wrapper.__name__, wrapper.__doc__ = command.__name__, command.__doc__
        return wrapper

    return decorate
