"""Options, each declared once, next to the code it belongs to.

An option is a field of a dataclass, declared with :func:`option`: its name (``--batch-size``
for ``batch_size``), type, default, range and help text live there. Everything else is
generated from that declaration: the command line's flags and ``--help``
(:mod:`anas.cli.flags`), the keys of ``--config`` YAML files and of a run's
``config.yaml``, and the checks of a value, wherever it comes from. A dataclass of options
belongs to its owner: a command, the training loop, or a plug-in (registered with
``options=``, see :mod:`anas.registry`).

A field whose ``choices`` is a :class:`~anas.registry.Registry` selects plug-ins of that
kind (``--sampler``; ``--regularizer`` for several). The options of its plug-ins join the
owner's: :func:`resolve_plugins` builds the options of the selected ones, and one rule
refuses a value given for a plug-in that is not selected, naming the plug-in it belongs
to. Options a value may not change when a run resumes say so (``fixed_on_resume``), and
:func:`check_unchanged` is the one check of that rule.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, dataclass
from typing import Any

from anas.checks import check_at_least, check_at_most, plain
from anas.errors import AnasError
from anas.io import read_yaml
from anas.registry import Entry, NoOptions, Registry

OPTION = "anas.option"  # the metadata key of an option's OptionInfo


@dataclass(frozen=True)
class OptionInfo:
    """What the command line shows and checks for an option besides its type and default."""

    help: str = ""
    short: str | None = None  # a short flag, e.g. "-s"
    aliases: tuple[str, ...] = ()  # further long flags, e.g. ("--run-dir",)
    flag: str | None = None  # the long flag when it is not the field's name ("--json" for json_output)
    default_text: str | None = None  # how the default reads in --help when the value is None or computed
    choices: Any = None  # a Registry (plug-ins of that kind) or a tuple of allowed names
    min: float | None = None  # value >= min
    max: float | None = None  # value <= max
    above: float | None = None  # value > above
    below: float | None = None  # value < below
    finite: bool = False  # a float must be finite
    check: Callable[[Any, str], None] | None = None  # a further check of a value: (value, flag), raises AnasError
    fixed_on_resume: bool = False  # a run, table or evolution cannot continue with another value
    argument: bool = False  # a positional argument of the command, not a flag


def option(default: Any = MISSING, help: str = "", *, default_factory: Any = MISSING, **info: Any) -> Any:
    """A dataclass field that is an option; ``info`` are :class:`OptionInfo`'s fields."""
    return dataclasses.field(default=default, default_factory=default_factory,
                             metadata={OPTION: OptionInfo(help, **info)})


@dataclass(frozen=True)
class Declared:
    """One option of a dataclass, as everything generated from it sees it."""

    name: str
    info: OptionInfo
    type: type  # str, int, float or bool (of each item, for a list)
    is_list: bool  # several values (a repeatable flag, a YAML list)
    optional: bool  # None is a value (the default says "not set")
    default: Any  # the dataclass default (a list's default_factory() result)
    owner: type  # the dataclass that declares it (a base class for an inherited option)

    @property
    def flag(self) -> str:
        return self.info.flag or "--" + self.name.replace("_", "-")

    @property
    def default_shown(self) -> str | None:
        """The default as ``--help`` states it (None: nothing to state)."""
        if self.info.default_text is not None:
            return self.info.default_text
        if self.default is MISSING:
            return None
        if self.is_list:
            return " ".join(map(str, self.default))
        if self.type is bool and not self.default:
            return None
        return None if self.default is None else str(self.default)


def _base_type(annotation: Any) -> tuple[type, bool, bool]:
    """(item type, is_list, optional) of a field's annotation."""
    optional = False
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        annotation = args[0]
    if typing.get_origin(annotation) in (list, tuple):
        return typing.get_args(annotation)[0], True, optional
    return annotation, False, optional


@functools.cache
def declared(cls: type) -> tuple[Declared, ...]:
    """The options of the dataclass ``cls``: its own first, then inherited ones (each group
    in field order)."""
    hints = typing.get_type_hints(cls)
    owners = {}
    for klass in reversed(cls.__mro__):
        for name in getattr(klass, "__annotations__", {}):
            owners.setdefault(name, klass)
    found = []
    for f in dataclasses.fields(cls):
        info = f.metadata.get(OPTION)
        if info is None:
            continue
        kind, is_list, optional = _base_type(hints[f.name])
        default = f.default_factory() if f.default_factory is not MISSING else f.default
        found.append(Declared(f.name, info, kind, is_list, optional or default is None, default, owners[f.name]))
    return tuple(sorted(found, key=lambda d: d.owner is not cls))  # a class's own options first


def option_names(cls: type) -> set[str]:
    return {d.name for d in declared(cls)}


# ----------------------------------------------------------------------------------------
# Values: typed and checked, from flags, YAML files or a saved run
# ----------------------------------------------------------------------------------------


def checked_value(decl: Declared, value: Any, where: str = "", strict: bool = True) -> Any:
    """``value`` as option ``decl`` takes it (an int for a float, one name for a list of
    names), with its range and choices checked; anything else is a one-line ``AnasError``
    naming the option (``where`` prefixes type errors: the file a value came from).
    ``strict=False`` accepts plug-in names that are not registered (a saved run's)."""
    if value is None:
        if decl.optional:
            return None
        raise AnasError(f"{where}{decl.flag} needs a value")
    if decl.is_list:
        items = [value] if isinstance(value, (str, int, float)) and not isinstance(value, bool) else value
        if not isinstance(items, (list, tuple)):
            raise AnasError(f"{where}{decl.flag} must be a {decl.type.__name__} or a list of them, got {value!r}")
        return [_checked_item(decl, item, where, strict) for item in items]
    return _checked_item(decl, value, where, strict)


def _checked_item(decl: Declared, value: Any, where: str, strict: bool = True) -> Any:
    kind = decl.type
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise AnasError(f"{where}{decl.flag} must be of type {kind.__name__}, got {value!r}")
    info = decl.info
    if kind is float and info.finite and not math.isfinite(value):
        raise AnasError(f"{where}{decl.flag} must be a finite number, got {plain(value)}")
    _check_range(decl, value)
    if info.check is not None:
        info.check(value, decl.flag)
    choices = info.choices
    if isinstance(choices, Registry):
        if strict or value in choices:
            choices.resolve(value)
        return value.strip().lower()  # names are not case-sensitive
    if choices is not None:
        canonical = {str(choice).lower(): choice for choice in choices}
        if str(value).strip().lower() not in canonical:
            raise AnasError(f"unknown {decl.flag} {value!r}: use {', '.join(map(str, choices))}")
        return canonical[str(value).strip().lower()]
    return value


def _check_range(decl: Declared, value: float) -> None:
    """``value`` within the option's bounds (NaN is within none)."""
    info = decl.info
    low, low_open = (info.min, False) if info.min is not None else (info.above, True)
    high, high_open = (info.max, False) if info.max is not None else (info.below, True)
    low_ok = low is None or (value > low if low_open else value >= low)
    high_ok = high is None or (value < high if high_open else value <= high)
    if low_ok and high_ok:
        return
    if low is not None and high is not None:
        interval = f"{'(' if low_open else '['}{_number(low)}, {_number(high)}{')' if high_open else ']'}"
        raise AnasError(f"{decl.flag} must be in {interval}, got {plain(value)}")
    if low is not None:
        if low_open and low == 0:
            raise AnasError(f"{decl.flag} must be a positive {'finite ' if info.finite else ''}number, got "
                            f"{plain(value)}")
        if low_open:
            raise AnasError(f"{decl.flag} must be above {_number(low)}, got {plain(value)}")
        check_at_least(value, low, decl.flag)
    if high_open:
        raise AnasError(f"{decl.flag} must be below {_number(high)}, got {plain(value)}")
    check_at_most(value, high, decl.flag)


def _number(value: float) -> str:
    """A bound as people write it: 1, 0.5, 1000000."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def make(cls: type, values: Mapping[str, Any], where: str = "", strict: bool = True) -> Any:
    """An instance of the options dataclass ``cls`` from ``values`` (its options by name;
    None or missing: the default), each value checked (``strict``: see :func:`checked_value`)."""
    by_name = {d.name: d for d in declared(cls)}
    kwargs = {}
    for name, value in values.items():
        if value is None:
            continue
        if name not in by_name:
            raise AnasError(f"{where}unknown option {name!r}")
        kwargs[name] = checked_value(by_name[name], value, where, strict)
    missing = [d for d in by_name.values() if d.default is MISSING and d.name not in kwargs]
    if missing:
        raise AnasError(f"{where}missing option {missing[0].flag}: {missing[0].info.help}")
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise AnasError(f"{where}bad option: {exc}") from None


def build(cls: type, values: Mapping[str, Any], strict: bool = True, where: str = "") -> Any:
    """An instance of ``cls`` from ``values`` (its options and, for a class that selects
    plug-ins, theirs; see :func:`resolve_plugins` for ``strict``)."""
    own, plugin_values = split_values(cls, values)
    instance = make(cls, own, where, strict)
    if isinstance(instance, HostsPlugins):
        object.__setattr__(instance, "plugins", resolve_plugins(instance, plugin_values, strict, where))
    elif plugin_values:
        name = next(iter(plugin_values))
        raise AnasError(f"{where}unknown option {name!r}")
    return instance


def updated(options: Any, **changes: Any) -> Any:
    """A copy of ``options`` with ``changes`` (its own options or its plug-ins'), the
    plug-ins' options left out where a change deselects their plug-in, or where none of
    the selected plug-ins takes them (as for a saved run's configuration)."""
    values = options.to_dict() if isinstance(options, HostsPlugins) else to_values(options)
    return build(type(options), {**values, **changes}, strict=False)


def values_from_config(cls: type, given: Mapping[str, Any], config_file: str | None,
                       retired: Iterable[str] = ()) -> dict[str, Any]:
    """The values of a command: those of the ``--config`` YAML file (if any), then the
    flags ``given`` (None: not given)."""
    base = {}
    if config_file is not None:
        base = values_from_mapping(read_yaml(config_file, "config file"), all_option_names(cls), str(config_file),
                                   retired)
    return {**base, **{k: v for k, v in given.items() if v is not None}}


def to_values(options: Any) -> dict[str, Any]:
    """The options of the dataclass instance ``options`` by name (lists copied)."""
    return {d.name: _copy(getattr(options, d.name)) for d in declared(type(options))}


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


def values_from_mapping(data: Any, known: Iterable[str], source: str, retired: Iterable[str] = ()) -> dict[str, Any]:
    """Option values from a YAML mapping (``--config`` or a run's ``config.yaml``): keys
    are option names written with ``_`` or ``-``; an unknown key is refused by name, a
    ``retired`` one (an option of an earlier version) skipped."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise AnasError(f"config {source} must be a YAML mapping of option names to values")
    known, retired = set(known), set(retired)
    values = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name in retired:
            continue
        if name not in known:
            raise AnasError(f"config {source}: unknown option {key!r}")
        values[name] = value
    return values


# ----------------------------------------------------------------------------------------
# Plug-ins selected by an option, and their options
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    """An option that selects plug-ins of ``registry`` (several when ``is_list``)."""

    name: str
    flag: str
    registry: Registry
    is_list: bool

    def entries(self, selected: Any, strict: bool = True) -> list[Entry]:
        """The plug-ins ``selected`` (the option's value) names; ``strict=False`` leaves
        out names that are not registered (a saved run's third-party plug-ins)."""
        names = selected if self.is_list else [selected]
        return list(dict.fromkeys(self.registry.entry(str(name)) for name in names
                                  if strict or str(name) in self.registry))


def slots(cls: type) -> list[Slot]:
    """The options of ``cls`` that select plug-ins."""
    return [Slot(d.name, d.flag, d.info.choices, d.is_list) for d in declared(cls)
            if isinstance(d.info.choices, Registry)]


def plugin_options(cls: type) -> dict[str, tuple[Declared, list[tuple[Slot, Entry]]]]:
    """Every option that the plug-ins selectable by ``cls`` declare: name -> (its
    declaration, the (slot, plug-in) pairs it belongs to). Plug-ins may share an options
    class; two classes declaring the same name, or a plug-in option named like one of
    ``cls``'s own, is a mistake of the plug-in's author."""
    found: dict[str, tuple[Declared, list[tuple[Slot, Entry]]]] = {}
    own = option_names(cls)
    for slot in slots(cls):
        for entry in slot.registry.entries():
            for decl in declared(entry.options):
                if decl.name in own:
                    raise ValueError(f"the {slot.registry.kind} {entry.name} declares option {decl.flag}, "
                                     f"which is an option of {cls.__name__} itself")
                known = found.setdefault(decl.name, (decl, []))
                if known[0].owner is not decl.owner:
                    raise ValueError(f"option {decl.flag} is declared twice: by {known[0].owner.__name__} and by "
                                     f"{decl.owner.__name__} (the {slot.registry.kind} {entry.name})")
                known[1].append((slot, entry))
    return found


def resolve_plugins(owner: Any, values: Mapping[str, Any], strict: bool = True, where: str = "") -> dict[str, dict]:
    """The options of the plug-ins that ``owner`` (an options instance) selects, from
    ``values`` (plug-in options by name; None: the default): ``{slot: {plug-in name:
    options}}``. A value for a plug-in that is not selected is refused in one line that
    names the plug-in it belongs to, unless it is that option's default; with
    ``strict=False`` (a run's saved configuration) it is dropped instead."""
    cls = type(owner)
    known = plugin_options(cls)
    selected = {slot.name: slot.entries(getattr(owner, slot.name), strict) for slot in slots(cls)}
    chosen = {(slot, entry.name) for slot in slots(cls) for entry in selected[slot.name]}
    for name, value in values.items():
        if value is None:
            continue
        if name not in known:
            raise AnasError(f"{where}unknown option {name!r}")
        decl, owners = known[name]
        selected_owner = any((slot, entry.name) in chosen for slot, entry in owners)
        if strict and not selected_owner and checked_value(decl, value, where) != decl.default:
            raise AnasError(_not_selected(decl, owners, owner))
    resolved: dict[str, dict] = {}
    for slot in slots(cls):
        for entry in selected[slot.name]:
            mine = {d.name: values.get(d.name) for d in declared(entry.options)}
            resolved.setdefault(slot.name, {})[entry.name] = make(entry.options, mine, where)
    return resolved


def _not_selected(decl: Declared, owners: list[tuple[Slot, Entry]], owner: Any) -> str:
    """The one line that refuses option ``decl`` because no plug-in it belongs to is
    selected, e.g. "--queue-size goes with --objective contrastive, not --objective
    supervised (it is an option of the objective contrastive)"."""
    slot = owners[0][0]
    names = [entry.display_name for s, entry in owners if s is slot]
    selected = getattr(owner, slot.name)
    selected = " ".join(map(str, selected)) if isinstance(selected, (list, tuple)) else str(selected)
    wanted = " or ".join(f"{slot.flag} {name}" for name in names)
    return (f"{decl.flag} goes with {wanted}, not {slot.flag} {selected} "
            f"(it is an option of the {slot.registry.kind} {' / '.join(names)})")


class HostsPlugins:
    """Mixin of an options dataclass that selects plug-ins: it keeps their options in its
    ``plugins`` field (``{slot: {plug-in name: options}}``, see :func:`resolve_plugins`)."""

    plugins: dict[str, dict[str, Any]]

    def options_for(self, slot: str, name: str | None = None) -> Any:
        """The options of the plug-in selected by ``slot`` (the one named ``name`` among
        several)."""
        by_name = self.plugins.get(slot, {})
        if name is None:
            return next(iter(by_name.values()), NoOptions())
        slot_decl = next(s for s in slots(type(self)) if s.name == slot)
        return by_name.get(slot_decl.registry.entry(name).name, NoOptions())

    def plugin_values(self) -> dict[str, Any]:
        """Every selected plug-in's options by name."""
        values = {}
        for by_name in self.plugins.values():
            for options in by_name.values():
                values.update(to_values(options))
        return values

    def to_dict(self) -> dict[str, Any]:
        """The owner's options and its selected plug-ins' options, by name (the form of
        checkpoints and ``config.yaml``)."""
        return {**to_values(self), **self.plugin_values()}


def to_yaml(options: Any) -> str:
    """``options`` as a ``--config`` file: its own options, then each selected plug-in's
    under a comment naming the plug-in."""
    import yaml

    parts = [yaml.safe_dump(to_values(options), sort_keys=False)]
    if isinstance(options, HostsPlugins):
        for slot in slots(type(options)):
            for name, plugin_options in options.plugins.get(slot.name, {}).items():
                values = to_values(plugin_options)
                if values:
                    selected = name if slot.is_list else getattr(options, slot.name)
                    parts.append(f"# {slot.registry.kind} {selected} ({slot.flag})\n"
                                 + yaml.safe_dump(values, sort_keys=False))
    return "".join(parts)


def split_values(cls: type, values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``values`` as (``cls``'s own options, its plug-ins' options)."""
    own = option_names(cls)
    return ({k: v for k, v in values.items() if k in own}, {k: v for k, v in values.items() if k not in own})


def all_option_names(cls: type) -> set[str]:
    """``cls``'s options and those of every plug-in it can select."""
    return option_names(cls) | set(plugin_options(cls))


# ----------------------------------------------------------------------------------------
# Resuming: what may not change
# ----------------------------------------------------------------------------------------


def fixed_options(cls: type) -> list[Declared]:
    """The options of ``cls`` and of its plug-ins that a resumed run cannot change."""
    decls = list(declared(cls))
    if slots(cls):
        decls += [decl for decl, _ in plugin_options(cls).values()]
    return [d for d in decls if d.info.fixed_on_resume]


def check_unchanged(cls: type, saved: Mapping[str, Any], current: Mapping[str, Any], what: str,
                    remedy: str) -> None:
    """Refuse to continue ``what`` (a run, a table, an evolution: made with the options
    ``saved``) with ``current`` options that differ in one that ``cls`` or its plug-ins
    declare ``fixed_on_resume``: one line naming each such option with its two values,
    then ``remedy``, e.g. "run R was made with --teacher ema, not none: start a new run"."""
    changed = []
    for decl in fixed_options(cls):
        old = _comparable(saved.get(decl.name, decl.default))
        new = _comparable(current.get(decl.name, decl.default))
        if old != new:
            changed.append(f"{decl.flag} {_shown(old)}, not {_shown(new)}")
    if changed:
        raise AnasError(f"{what} was made with {' and '.join(changed)}: {remedy}")


def _comparable(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(map(str, value)) or "(none)"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(plain(value))
