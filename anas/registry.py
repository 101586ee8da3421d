"""Plug-ins found by name: one registry per kind (samplers, estimators, predictor kinds,
search strategies, training regularizers).

A plug-in registers itself with a decorator where it is defined::

    @register_sampler("uniform")
    class UniformSampler: ...

A registration may take a positive integer from the name: ``register_sampler("bestup",
parameter="k")`` answers to ``bestup-k3`` and passes ``k=3``. A plug-in declares its own
options as a dataclass (:func:`anas.options.option` fields) registered with it:
``register_sampler("fpnas", options=FPNASOptions)``; the command that selects plug-ins of
the kind offers them as flags, ``--config`` keys and ``--help`` entries, and refuses them
when the plug-in is not selected (:mod:`anas.options`). The command line builds its help
text and its error messages from the registry (``choices_text``), so adding a plug-in never
means editing a list of names somewhere else.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, is_dataclass
from typing import Generic, TypeVar

from anas.errors import AnasError

T = TypeVar("T")


@dataclass(frozen=True)
class NoOptions:
    """The options of a plug-in that declares none."""


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    plugin: T
    parameter: str | None = None  # the name takes "-<parameter>N", N a positive integer
    options: type = NoOptions  # the dataclass of the plug-in's own options

    @property
    def display_name(self) -> str:
        return f"{self.name}-{self.parameter}N" if self.parameter else self.name

    def match(self, text: str) -> dict[str, int] | None:
        """The parameters ``text`` gives this entry, or None when it names another one."""
        if self.parameter is None:
            return {} if text == self.name else None
        found = re.fullmatch(rf"{re.escape(self.name)}-{re.escape(self.parameter)}([1-9][0-9]*)", text)
        return {self.parameter: int(found.group(1))} if found else None


class Registry(Generic[T]):
    """Plug-ins of one kind by name. ``kind`` names them in messages ("sampler")."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, *, parameter: str | None = None, options: type | None = None) -> Callable[[T], T]:
        """A decorator that registers the class or function it decorates under ``name``,
        with the dataclass of its own ``options`` (none by default)."""
        key = name.lower()
        if options is not None and not is_dataclass(options):
            raise ValueError(f"the options of {self.kind} {name!r} must be a dataclass of options")

        def add(plugin: T) -> T:
            existing = self._entries.get(key)
            if existing is not None and existing.plugin is not plugin:
                raise ValueError(f"a {self.kind} named {name!r} is already registered")
            self._entries[key] = Entry(key, plugin, parameter, options or NoOptions)
            return plugin

        return add

    def name_of(self, plugin: T) -> str:
        """The name ``plugin`` is registered under."""
        for entry in self._entries.values():
            if entry.plugin is plugin:
                return entry.name
        raise ValueError(f"{plugin!r} is not a registered {self.kind}")

    def unregister(self, name: str) -> None:
        self._entries.pop(name.lower(), None)

    def resolve(self, text: str) -> tuple[T, dict[str, int]]:
        """The plug-in ``text`` names and the parameters the name carries; an unknown name
        is a one-line error that lists the known ones."""
        entry = self.entry(text)
        return entry.plugin, entry.match(str(text).strip().lower())

    def entry(self, text: str) -> Entry[T]:
        """The registration ``text`` names (``bestup-k3``: ``bestup``'s)."""
        wanted = str(text).strip().lower()
        for entry in self._entries.values():
            if entry.match(wanted) is not None:
                return entry
        raise AnasError(f"unknown {self.kind} {text!r}: use {self.choices_text(', ')}")

    def entries(self) -> list[Entry[T]]:
        return list(self._entries.values())

    def get(self, text: str) -> T:
        return self.resolve(text)[0]

    def names(self) -> list[str]:
        return [entry.display_name for entry in self._entries.values()]

    def choices_text(self, separator: str = " | ") -> str:
        return separator.join(self.names())

    def __contains__(self, text: str) -> bool:
        try:
            self.resolve(text)
        except AnasError:
            return False
        return True

