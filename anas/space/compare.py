"""How one search space differs from another (``anas space show``): per stage, the block
settings that changed, and the MFLOPs range of each space's subnets."""

from __future__ import annotations

from dataclasses import dataclass

from anas.space.search_space import SearchSpace

STAGE_SETTINGS = ("widths", "depths", "kernel_sizes", "expand_ratios", "se", "activation", "stride")


@dataclass(frozen=True)
class Change:
    """One setting of one layer group (``resolutions`` and widths too) that differs."""

    where: str
    setting: str
    old: str
    new: str


def space_changes(old: SearchSpace, new: SearchSpace) -> list[Change]:
    """What differs between ``old`` and ``new``, stage by stage (stages matched by position)."""
    changes = []
    if old.resolutions != new.resolutions:
        changes.append(Change("input", "resolutions", _text(old.resolutions), _text(new.resolutions)))
    if old.first_conv.widths != new.first_conv.widths:
        changes.append(Change("first_conv", "widths", _text(old.first_conv.widths), _text(new.first_conv.widths)))
    for i in range(max(old.num_stages, new.num_stages)):
        a = old.stages[i] if i < old.num_stages else None
        b = new.stages[i] if i < new.num_stages else None
        where = (b or a).name
        for setting in STAGE_SETTINGS:
            before = "-" if a is None else _text(getattr(a, setting))
            after = "-" if b is None else _text(getattr(b, setting))
            if before != after:
                changes.append(Change(where, setting, before, after))
    if old.head.widths != new.head.widths:
        changes.append(Change("head", "widths", _text(old.head.widths), _text(new.head.widths)))
    return changes


def _text(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return " ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    return str(value)
