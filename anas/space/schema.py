"""The search-space YAML schema: built-in spaces by name, a user's file, or the dict a
checkpoint carries; validated key by key (errors name the key), and written back.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from anas.errors import ArchError, SpaceError
from anas.io import atomic_write_text, parse_yaml
from anas.space.arch import arch_from_dict
from anas.space.cost import check_cost_range
from anas.space.search_space import ACTIVATIONS, FirstConv, Head, SearchSpace, Stage


def builtin_space_names() -> list[str]:
    files = resources.files("anas").joinpath("spaces").iterdir()
    return sorted(f.name[: -len(".yaml")] for f in files if f.name.endswith(".yaml"))


def load_space(name_or_path: str | Path) -> SearchSpace:
    """A built-in space by name (``attentive-nas``, ``cifar``, ``tiny``) or a YAML file."""
    text, source = _read_space_text(str(name_or_path))
    return space_from_dict(parse_yaml(text, f"space file {source}", SpaceError), source)


def _read_space_text(name_or_path: str) -> tuple[str, str]:
    if name_or_path in builtin_space_names():
        path = resources.files("anas").joinpath("spaces", f"{name_or_path}.yaml")
        return path.read_text(encoding="utf-8"), name_or_path
    path = Path(name_or_path)
    if path.suffix.lower() in (".yaml", ".yml") or path.exists():
        try:
            return path.read_text(encoding="utf-8"), str(path)
        except FileNotFoundError:
            raise SpaceError(f"space file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SpaceError(f"space file {path} cannot be read: {exc}") from None
    known = ", ".join(builtin_space_names())
    raise SpaceError(f"unknown space {name_or_path!r}: use one of {known} or a YAML file")


_TOP_KEYS = {
    "name": True, "num_classes": True, "resolutions": True, "first_conv": True,
    "stages": True, "head": True, "activation": False, "dropout": False,
    "in_channels": False, "models": False,
}
_STAGE_KEYS = {
    "name": False, "widths": True, "depths": True, "kernel_sizes": True,
    "expand_ratios": True, "se": False, "stride": False, "activation": False,
}


def space_from_dict(data: Any, source: str = "<dict>") -> SearchSpace:
    """Validate a parsed space description; errors name the offending key."""
    check = _Checker(source)
    check.mapping(data, "", _TOP_KEYS)
    first = data["first_conv"]
    check.mapping(first, "first_conv", {"widths": True, "kernel_size": False, "stride": False})
    head = data["head"]
    check.mapping(head, "head", {"widths": True, "expand_ratio": False})
    stages_raw = data["stages"]
    if not isinstance(stages_raw, list) or not stages_raw:
        check.fail("stages", "expected a non-empty list of stages")
    stages = []
    for i, raw in enumerate(stages_raw):
        key = f"stages[{i}]"
        check.mapping(raw, key, _STAGE_KEYS)
        stages.append(Stage(
            name=check.string(raw.get("name", f"stage{i + 1}"), f"{key}.name"),
            widths=check.int_list(raw["widths"], f"{key}.widths"),
            depths=check.int_list(raw["depths"], f"{key}.depths"),
            kernel_sizes=check.int_list(raw["kernel_sizes"], f"{key}.kernel_sizes", odd=True),
            expand_ratios=check.number_list(raw["expand_ratios"], f"{key}.expand_ratios"),
            se=check.boolean(raw.get("se", False), f"{key}.se"),
            stride=check.positive_int(raw.get("stride", 1), f"{key}.stride"),
            activation=check.activation(raw["activation"], f"{key}.activation") if "activation" in raw else None,
        ))
    activation = check.activation(data.get("activation", "swish"), "activation")
    dropout = data.get("dropout", 0.2)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        check.fail("dropout", f"expected a number in [0, 1), got {dropout!r}")
    space = SearchSpace(
        name=check.string(data["name"], "name"),
        num_classes=check.positive_int(data["num_classes"], "num_classes"),
        resolutions=check.int_list(data["resolutions"], "resolutions"),
        first_conv=FirstConv(
            widths=check.int_list(first["widths"], "first_conv.widths"),
            kernel_size=check.positive_int(first.get("kernel_size", 3), "first_conv.kernel_size", odd=True),
            stride=check.positive_int(first.get("stride", 2), "first_conv.stride"),
        ),
        stages=tuple(stages),
        head=Head(
            widths=check.int_list(head["widths"], "head.widths"),
            expand_ratio=check.positive_int(head.get("expand_ratio", 6), "head.expand_ratio"),
        ),
        activation=activation,
        dropout=float(dropout),
        in_channels=check.positive_int(data.get("in_channels", 3), "in_channels"),
    )
    models = data.get("models") or {}
    if not isinstance(models, dict):
        check.fail("models", "expected a mapping of model names to subnet settings")
    if models:
        checked = {}
        for model_name, settings in models.items():
            try:
                checked[str(model_name).lower()] = arch_from_dict(space, settings).to_dict()
            except ArchError as exc:
                check.fail(f"models.{model_name}", str(exc))
        object.__setattr__(space, "models", checked)
    try:
        check_cost_range(space)
    except ValueError as exc:
        raise SpaceError(f"space file {source}: {exc}") from None
    return space


def space_to_dict(space: SearchSpace) -> dict[str, Any]:
    """The space in the YAML schema (plain lists and numbers): ``space_from_dict`` reads it
    back. Checkpoints carry it, so a run never depends on the space file it started from."""
    data: dict[str, Any] = {
        "name": space.name,
        "num_classes": space.num_classes,
        "resolutions": list(space.resolutions),
        "activation": space.activation,
        "dropout": space.dropout,
        "in_channels": space.in_channels,
        "first_conv": {"widths": list(space.first_conv.widths), "kernel_size": space.first_conv.kernel_size,
                       "stride": space.first_conv.stride},
        "stages": [_stage_to_dict(s, space.activation) for s in space.stages],
        "head": {"widths": list(space.head.widths), "expand_ratio": space.head.expand_ratio},
    }
    if space.models:
        data["models"] = {name: dict(arch) for name, arch in space.models.items()}
    return data


def write_space(space: SearchSpace, path: str | Path) -> Path:
    """The space as a YAML file that ``--space`` reads (written to a temporary name first)."""
    return atomic_write_text(path, yaml.safe_dump(space_to_dict(space), sort_keys=False))


def _stage_to_dict(stage: Stage, space_activation: str) -> dict[str, Any]:
    data = {"name": stage.name, "widths": list(stage.widths), "depths": list(stage.depths),
            "kernel_sizes": list(stage.kernel_sizes), "expand_ratios": list(stage.expand_ratios),
            "se": stage.se, "stride": stage.stride}
    if stage.activation != space_activation:  # written only where a stage has its own
        data["activation"] = stage.activation
    return data


MAX_SIZE = 1_000_000
"""The largest integer (or expand ratio) a space may hold; whether the subnets' costs stay
in range is checked on the whole space (``check_cost_range``)."""


class _Checker:
    def __init__(self, source: str):
        self.source = source

    def fail(self, key: str, message: str):
        raise SpaceError(f"space file {self.source}: key '{key}': {message}")

    def mapping(self, value, key: str, keys: dict[str, bool]):
        if not isinstance(value, dict):
            self.fail(key or "<top level>", "expected a mapping")
        for name in value:
            if name not in keys:
                self.fail(_join(key, str(name)), f"unknown key (expected: {', '.join(keys)})")
        for name, required in keys.items():
            if required and name not in value:
                self.fail(_join(key, name), "missing")

    def positive_int(self, value, key: str, odd: bool = False) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            self.fail(key, f"expected a positive integer, got {value!r}")
        if value > MAX_SIZE:
            self.fail(key, f"expected at most {MAX_SIZE:,}, got {value:,}")
        if odd and value % 2 == 0:
            self.fail(key, f"expected an odd kernel size, got {value}")
        return value

    def int_list(self, value, key: str, odd: bool = False) -> tuple[int, ...]:
        if not isinstance(value, list) or not value:
            self.fail(key, f"expected a non-empty list of positive integers, got {value!r}")
        items = tuple(self.positive_int(v, f"{key}[{i}]", odd) for i, v in enumerate(value))
        return self._distinct_sorted(items, key)

    def number_list(self, value, key: str) -> tuple[float, ...]:
        if not isinstance(value, list) or not value:
            self.fail(key, f"expected a non-empty list of positive numbers, got {value!r}")
        for i, v in enumerate(value):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= MAX_SIZE:
                self.fail(f"{key}[{i}]", f"expected a positive number up to {MAX_SIZE:,}, got {v!r}")
        return self._distinct_sorted(tuple(value), key)

    def _distinct_sorted(self, items: tuple, key: str) -> tuple:
        if len(set(items)) != len(items):
            self.fail(key, f"choices must be distinct, got {list(items)}")
        return tuple(sorted(items))

    def string(self, value, key: str) -> str:
        if not isinstance(value, str) or not value:
            self.fail(key, f"expected a non-empty string, got {value!r}")
        return value

    def activation(self, value, key: str) -> str:
        if value not in ACTIVATIONS:
            self.fail(key, f"expected one of {', '.join(ACTIVATIONS)}, got {value!r}")
        return value

    def boolean(self, value, key: str) -> bool:
        if not isinstance(value, bool):
            self.fail(key, f"expected true or false, got {value!r}")
        return value


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name
