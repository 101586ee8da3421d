"""Hardware-aware spaces (HURRICANE): drop the choices that are slow on one device for
the work they do.

For every block a stage can build, the latency table gives milliseconds and the cost
model MFLOPs. Their ratio, ms per MFLOP, is how efficiently the device runs that block. A
choice of a stage's kernel size, expand ratio or width is dropped when the median ratio
of the blocks that use it is more than ``ratio`` times the median of all the stage's
blocks; the choice with the lowest ratio of each setting always stays, so every setting
keeps at least one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anas.checks import check_at_least
from anas.errors import AnasError
from anas.latency.lookup_table import LatencyModel, LatencyTable, Layer, read_latency_table, stage_layers
from anas.options import option
from anas.space.arch import ArchBatch, arch_from_dict, largest_arch, smallest_arch
from anas.space.schema import load_space, space_from_dict, space_to_dict, write_space
from anas.space.search_space import SearchSpace, Stage


def check_ratio(ratio: float, flag: str = "--ratio") -> None:
    check_at_least(ratio, 1.0, flag, " (1 keeps only choices no slower than their stage's median)")


@dataclass(frozen=True, kw_only=True)
class ReduceOptions:
    """Every option of ``anas space reduce``."""

    latency_table: str = option(help="Latency table of the device (anas latency-table).")
    space: str | None = option(None, "Space to reduce.", short="-s", default_text="the table's")
    ratio: float = option(1.5, "Drop a choice whose ms per MFLOP is more than this many times its stage's median.",
                          check=check_ratio)
    name: str | None = option(None, "Name of the new space.", default_text="SPACE-DEVICE")
    out: str | None = option(None, "YAML file to write.", short="-o", default_text="NAME.yaml")

REDUCIBLE = {"kernel_size": "kernel_sizes", "expand_ratio": "expand_ratios", "width": "widths"}
"""The per-stage settings a reduction may narrow, and their ``Stage`` fields."""


@dataclass(frozen=True)
class Choice:
    """One choice of one stage's setting and how efficiently the device runs it."""

    stage: str
    setting: str
    value: float
    ms_per_mflop: float
    stage_median: float
    dropped: bool

    @property
    def relative(self) -> float:
        return self.ms_per_mflop / self.stage_median


@dataclass(frozen=True)
class Reduction:
    space: SearchSpace
    choices: list[Choice]
    old_range_ms: tuple[float, float]  # predicted latency of the smallest and largest subnet
    new_range_ms: tuple[float, float]

    @property
    def dropped(self) -> list[Choice]:
        return [c for c in self.choices if c.dropped]


def _value_of(layer: Layer, setting: str) -> float:
    return {"kernel_size": layer.kernel, "expand_ratio": layer.expand, "width": layer.c_out}[setting]


def stage_choices(table: LatencyTable, space: SearchSpace, ratio: float) -> list[Choice]:
    """Every kernel / expand / width choice of every stage with its ms per MFLOP, and
    whether ``ratio`` drops it."""
    choices = []
    for stage, layers in zip(space.stages, stage_layers(space)):
        blocks = [*layers.first.values(), *layers.repeated.values()]
        efficiency = np.array([table.entries[b.key] / b.mflops(table.num_classes) for b in blocks])
        median = float(np.median(efficiency))
        for setting, field in REDUCIBLE.items():
            values = np.array([_value_of(b, setting) for b in blocks])
            options = getattr(stage, field)
            scores = [float(np.median(efficiency[values == v])) for v in options]
            keep = int(np.argmin(scores))
            choices += [Choice(stage.name, setting, v, score, median, score > ratio * median and i != keep)
                        for i, (v, score) in enumerate(zip(options, scores))]
    return choices


def reduce_space(table: LatencyTable, space: SearchSpace, ratio: float = 1.5, name: str | None = None) -> Reduction:
    """``space`` without the choices that ``table``'s device runs more than ``ratio``
    times slower per MFLOP than its stage's median block."""
    check_ratio(ratio)
    model = LatencyModel(table, space, source="the latency table")  # refuses a table without the space's layers
    choices = stage_choices(table, space, ratio)
    stages = []
    for stage in space.stages:
        kept = {field: tuple(c.value for c in choices if c.stage == stage.name and c.setting == setting
                             and not c.dropped) for setting, field in REDUCIBLE.items()}
        kept["widths"] = tuple(int(w) for w in kept["widths"])
        stages.append(dataclasses.replace(stage, **kept))
    reduced = _with_stages(space, stages, name or f"{space.name}-{table.config.device}")
    return Reduction(reduced, choices, latency_range(model, space),
                     latency_range(LatencyModel(table, reduced, source="the latency table"), reduced))


def _with_stages(space: SearchSpace, stages: list[Stage], name: str) -> SearchSpace:
    """The space with new stages, validated by the schema; published subnets that lost a
    choice are left out."""
    draft = dataclasses.replace(space, name=name, stages=tuple(stages), models={})
    data = space_to_dict(draft)
    kept = {}
    for model_name, arch in space.models.items():
        try:
            kept[model_name] = arch_from_dict(draft, arch).to_dict()
        except AnasError:
            continue
    if kept:
        data["models"] = kept
    return space_from_dict(data, f"reduced from {space.name}")


def latency_range(model: LatencyModel, space: SearchSpace) -> tuple[float, float]:
    """Predicted latency (ms) of the space's smallest and largest subnets."""
    low, high = model.predict(ArchBatch.from_archs([smallest_arch(space), largest_arch(space)]))
    return float(low), float(high)



@dataclass(frozen=True)
class WrittenReduction:
    reduction: Reduction
    source: SearchSpace
    table: LatencyTable
    path: Path


def reduce_to_file(options: ReduceOptions) -> WrittenReduction:
    """What ``anas space reduce`` does: reduce the space for the table's device and write it."""
    table = read_latency_table(options.latency_table)
    source = load_space(options.space) if options.space is not None else table.space
    reduction = reduce_space(table, source, options.ratio, options.name)
    path = write_space(reduction.space, Path(options.out or f"{reduction.space.name}.yaml"))
    return WrittenReduction(reduction, source, table, path)
