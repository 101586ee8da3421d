"""Per-device latency tables (HURRICANE): every distinct layer a space can build, timed
once on one device, and a latency model that predicts any subnet from them.

A layer is the first convolution, one inverted-residual block (the first of its stage, or
a repeated one) or the classifier head, at one input size, with its channels, kernel and
expand ratio: :func:`space_layers` lists the distinct ones. ``build_latency_table`` times
each as a standalone module (the median of repeated runs after warm-up), then times about
30 whole subnets and fits how the whole relates to its layers::

    latency = overhead + scale * sum(layer times) + per_layer * layers + per_mparam * params (M)

(a robust least-squares fit: a per-network constant; a calibration of the sum; a
per-layer correction for the call overhead each standalone layer paid; and the cost of
reading the weights, which a layer timed alone over and over finds in the cache and a
whole network of several megabytes does not). The table is a JSON file, written after
every few layers so that an interrupted build resumes where it stopped.

:class:`LatencyModel` predicts an ``ArchBatch`` by a gather and a sum, like the cost model:
per stage, the first block's time plus ``depth - 1`` repeated blocks'. It accepts any
space whose layers the table holds, such as a space reduced from the table's own.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from torch import nn

from anas import __version__
from anas.checks import check_at_least, check_seed
from anas.errors import AnasError
from anas.io import atomic_write_json, read_json
from anas.latency.measure import (
    ORT_CPU,
    LatencyConfig,
    check_latency_device,
    latency_device,
    measure_latency,
    subnet_latency,
)
from anas.nn.static import ClassifierHead, ConvBNAct, InvertedResidual
from anas.options import check_unchanged, make, option, option_names, to_values
from anas.progress import progress_bars
from anas.runtime.device import DeviceOption
from anas.space.arch import ArchBatch, concat_batches, largest_arch, sample_archs, smallest_arch
from anas.space.cost import batch_costs, block_costs, head_costs, stem_costs
from anas.space.schema import space_from_dict, space_to_dict
from anas.space.search_space import SearchSpace, downsample, stage_input_sizes

TABLE_FORMAT = "anas-latency-table"
TABLE_VERSION = 2  # 2: block keys name the block's activation (version 1 files are read too)
FIT_SUBNETS = 30
MIN_FIT_SUBNETS = 5
SAVE_EVERY_S = 2.0  # an interrupted build loses at most this much measuring


# ----------------------------------------------------------------------------------------
# Layers
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layer:
    """One distinct layer of a kind (:class:`StemLayer`, :class:`BlockLayer`,
    :class:`HeadLayer`); ``size`` is its input's height and width."""

    kind: ClassVar[str]
    size: int
    c_in: int
    c_out: int
    kernel: int = 1
    expand: float = 1.0
    stride: int = 1
    se: bool = False
    activation: str = "swish"  # a block's; the stem and head use the space's

    @property
    def key(self) -> str:
        """The layer's name in the table file."""
        raise NotImplementedError

    def module(self, space: SearchSpace, num_classes: int) -> nn.Module:
        """The layer as a standalone module, as the static network builds it."""
        raise NotImplementedError

    def macs(self, num_classes: int) -> int:
        """Multiply-accumulates (the cost model's convention)."""
        raise NotImplementedError

    def mflops(self, num_classes: int) -> float:
        return float(self.macs(num_classes)) / 1e6

    @property
    def out_size(self) -> int:
        return int(downsample(self.size, self.stride))


@dataclass(frozen=True)
class StemLayer(Layer):
    """The first convolution."""

    kind: ClassVar[str] = "stem"

    @property
    def key(self) -> str:
        return f"stem s{self.size} i{self.c_in} o{self.c_out} k{self.kernel} st{self.stride}"

    def module(self, space: SearchSpace, num_classes: int) -> nn.Module:
        return ConvBNAct(self.c_in, self.c_out, self.kernel, self.stride, activation=space.activation)

    def macs(self, num_classes: int) -> int:
        return stem_costs(self.c_in, self.c_out, self.kernel**2, self.out_size)[0]


@dataclass(frozen=True)
class BlockLayer(Layer):
    """One inverted-residual block (the first of its stage, or a repeated one)."""

    kind: ClassVar[str] = "block"

    @property
    def key(self) -> str:
        return (f"block s{self.size} i{self.c_in} o{self.c_out} k{self.kernel} e{self.expand:g} st{self.stride}"
                f" se{int(self.se)} {self.activation}")

    def module(self, space: SearchSpace, num_classes: int) -> nn.Module:
        return InvertedResidual(self.c_in, self.c_out, self.kernel, self.expand, self.stride, self.se,
                                self.activation)

    def macs(self, num_classes: int) -> int:
        return block_costs(self.c_in, self.c_out, self.kernel**2, self.expand, self.size, self.out_size, self.se)[0]


@dataclass(frozen=True)
class HeadLayer(Layer):
    """The classifier head."""

    kind: ClassVar[str] = "head"

    @property
    def key(self) -> str:
        return f"head s{self.size} i{self.c_in} o{self.c_out} x{self.expand:g}"

    def module(self, space: SearchSpace, num_classes: int) -> nn.Module:
        expanded = int(self.expand * self.c_in)
        return ClassifierHead(self.c_in, expanded, self.c_out, num_classes, space.dropout, space.activation)

    def macs(self, num_classes: int) -> int:
        return head_costs(self.expand, self.size, self.c_in, self.c_out, num_classes)[0]


@dataclass(frozen=True)
class StageLayers:
    """The layers of stage ``index`` at every (resolution, c_in, c_out, kernel, expand)
    choice index: ``first[r][a][b][k][e]`` and ``repeated[r][b][k][e]``."""

    index: int
    first: dict[tuple[int, ...], Layer]
    repeated: dict[tuple[int, ...], Layer]


def stem_layers(space: SearchSpace) -> dict[tuple[int, int], Layer]:
    first = space.first_conv
    return {(r, w): StemLayer(res, space.in_channels, width, first.kernel_size, stride=first.stride)
            for r, res in enumerate(space.resolutions) for w, width in enumerate(first.widths)}


def stage_layers(space: SearchSpace) -> list[StageLayers]:
    sizes, widths, stages = stage_input_sizes(space), space.width_choices, []
    for i, stage in enumerate(space.stages):
        first, repeated = {}, {}
        for r in range(len(space.resolutions)):
            for k, kernel in enumerate(stage.kernel_sizes):
                for e, expand in enumerate(stage.expand_ratios):
                    for b, c_out in enumerate(widths[i + 1]):
                        repeated[(r, b, k, e)] = BlockLayer(sizes[i + 1][r], c_out, c_out, kernel, expand, 1,
                                                       stage.se, stage.activation)
                        for a, c_in in enumerate(widths[i]):
                            first[(r, a, b, k, e)] = BlockLayer(sizes[i][r], c_in, c_out, kernel, expand,
                                                           stage.stride, stage.se, stage.activation)
        stages.append(StageLayers(i, first, repeated))
    return stages


def head_layers(space: SearchSpace) -> dict[tuple[int, int, int], Layer]:
    size, widths = stage_input_sizes(space)[-1], space.width_choices
    return {(r, a, h): HeadLayer(size[r], c_in, width, expand=space.head.expand_ratio)
            for r in range(len(space.resolutions)) for a, c_in in enumerate(widths[-2])
            for h, width in enumerate(widths[-1])}


def space_layers(space: SearchSpace) -> list[Layer]:
    """Every distinct layer the space's subnets can hold, each once."""
    layers = list(stem_layers(space).values())
    for stage in stage_layers(space):
        layers += [*stage.first.values(), *stage.repeated.values()]
    layers += head_layers(space).values()
    return list(dict.fromkeys(layers))


# ----------------------------------------------------------------------------------------
# The table file
# ----------------------------------------------------------------------------------------


def _check_subnets(subnets: int, flag: str) -> None:
    check_at_least(subnets, MIN_FIT_SUBNETS, flag, " (the overhead fit has four terms)")


@dataclass(frozen=True, kw_only=True)
class TableConfig(DeviceOption):
    """What a table is measured with: the device and batch it holds for, and how. A table
    in the making continues only with the same settings; its file holds the device as
    timed (``auto`` resolved)."""

    batch: int = option(1, "Batch size of the timed inputs.", min=1, fixed_on_resume=True)
    threads: int | None = option(None, "CPU threads (PyTorch's, or onnxruntime's intra-op threads for ort-cpu).",
                                 default_text="the library's own choice", min=1, fixed_on_resume=True)
    warmup: int = option(10, "Untimed runs before timing each layer or subnet.", min=0, fixed_on_resume=True)
    runs: int = option(30, "Timed runs per layer or subnet (the median is kept).", min=1, fixed_on_resume=True)
    subnets: int = option(FIT_SUBNETS, "Whole subnets timed to fit the per-network overhead.", check=_check_subnets,
                          fixed_on_resume=True)
    seed: int = option(0, "Seed of the subnets timed whole.", check=check_seed, fixed_on_resume=True)

    def __post_init__(self):
        if self.device != "auto":
            check_latency_device(self.device)

    def latency_config(self) -> LatencyConfig:
        return LatencyConfig(self.device, self.batch, self.warmup, self.runs,
                             self.threads if self.device == ORT_CPU else None)


FIT_TERMS = ("overhead_ms", "scale", "per_layer_ms", "per_mparam_ms")
"""The fit's coefficients, in the order of :meth:`LatencyModel.features`' columns."""


@dataclass
class Fit:
    """How layer sums become whole-network latency, and how well that held on the timed subnets."""

    overhead_ms: float
    scale: float
    per_layer_ms: float
    per_mparam_ms: float
    subnets: list[dict[str, Any]]  # each: arch, measured_ms, layer_sum_ms, layers, predicted_ms
    spearman: float
    median_rel_error: float

    def coefficients(self) -> np.ndarray:
        return np.array([getattr(self, term) for term in FIT_TERMS])


@dataclass
class LatencyTable:
    space: SearchSpace
    num_classes: int
    config: TableConfig
    environment: dict[str, Any]
    entries: dict[str, float] = field(default_factory=dict)  # layer key -> median ms
    fit: Fit | None = None

    @property
    def complete(self) -> bool:
        return self.fit is not None

    def describe(self) -> str:
        threads = f", {self.config.threads} threads" if self.config.threads else ""
        return f"{self.space.name} on {self.config.device}, batch {self.config.batch}{threads}"

    def to_dict(self) -> dict[str, Any]:
        return {"format": TABLE_FORMAT, "version": TABLE_VERSION, "space_name": self.space.name,
                "device": self.config.device, "batch": self.config.batch, "threads": self.config.threads,
                "num_classes": self.num_classes, "config": asdict(self.config), "environment": self.environment,
                "space": space_to_dict(self.space), "complete": self.complete,
                "fit": asdict(self.fit) if self.fit else None, "entries": self.entries}


def environment_record(config: TableConfig) -> dict[str, Any]:
    """The machine and library versions a table was measured with."""
    import torch

    record = {"anas": __version__, "torch": torch.__version__, "python": platform.python_version(),
              "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
              "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    if config.device == ORT_CPU:
        import onnxruntime

        record["onnxruntime"] = onnxruntime.__version__
    if config.device.startswith("cuda"):
        record["cuda_device"] = torch.cuda.get_device_name(torch.device(config.device))
        record["cuda"] = torch.version.cuda
    return record


def write_table(table: LatencyTable, path: str | Path) -> Path:
    return atomic_write_json(path, table.to_dict())


def read_latency_table(path: str | Path) -> LatencyTable:
    """A table file; a missing, corrupt or foreign file is one ``AnasError``."""
    data = read_json(path, "latency table")
    try:
        return _table_from_dict(data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise AnasError(f"latency table {path} is corrupt or not an anas latency table ({_reason(exc)})") from None
    except AnasError as exc:
        raise AnasError(f"latency table {path} is corrupt: {exc}") from None


def _reason(exc: Exception) -> str:
    return f"missing {exc}" if isinstance(exc, KeyError) else str(exc) or type(exc).__name__


def _table_from_dict(data: dict[str, Any]) -> LatencyTable:
    if data.get("format") != TABLE_FORMAT:
        raise ValueError(f"format is {data.get('format')!r}, not {TABLE_FORMAT!r}")
    version = data.get("version")
    if version not in (1, TABLE_VERSION):
        raise ValueError(f"version {version!r}; this anas reads versions 1-{TABLE_VERSION}")
    space = space_from_dict(data["space"], "in the table")
    config = make(TableConfig, data["config"])
    entries = {str(key): float(ms) for key, ms in data["entries"].items()}
    if version == 1:  # every block ran the space's activation
        entries = {f"{key} {space.activation}" if key.startswith("block ") else key: ms
                   for key, ms in entries.items()}
    if not all(np.isfinite(ms) and ms > 0 for ms in entries.values()):
        raise ValueError("a layer time is not a positive number")
    fit = Fit(**data["fit"]) if data["fit"] is not None else None
    num_classes = int(data["num_classes"])
    return LatencyTable(space, num_classes, config,
                        dict(data["environment"]), entries, fit)


def check_table_matches(table: LatencyTable, path: str | Path, device: str | None = None,
                        batch: int | None = None) -> None:
    """Refuse a table measured for another device or batch size than the command's."""
    if device is not None and device != table.config.device:
        raise AnasError(f"latency table {path} was measured on {table.config.device}, not {device}: "
                        f"measure one with anas latency-table --device {device}, or drop --device")
    if batch is not None and batch != table.config.batch:
        raise AnasError(f"latency table {path} was measured at batch {table.config.batch}, not {batch}: "
                        f"measure one with anas latency-table --batch {batch}")
    if not table.complete:
        raise AnasError(f"latency table {path} is incomplete ({len(table.entries)} of "
                        f"{len(space_layers(table.space))} layers measured, no fit): run anas latency-table "
                        f"again with the same options to finish it")


# ----------------------------------------------------------------------------------------
# Building a table
# ----------------------------------------------------------------------------------------


def build_latency_table(space: SearchSpace, config: TableConfig, path: str | Path, num_classes: int | None = None,
                        fresh: bool = False, progress: bool = False) -> LatencyTable:
    """Time every layer of ``space`` on ``config.device`` (skipping those a partial table
    at ``path`` already holds, unless ``fresh``), then fit the per-network overhead on
    whole subnets; the table is saved at ``path`` as it grows."""
    num_classes = space.num_classes if num_classes is None else num_classes
    config = resolved(config)
    table = _resumed_table(space, config, path, num_classes) if not fresh else None
    table = table or LatencyTable(space, num_classes, config, environment_record(config))
    layers = [layer for layer in space_layers(space) if layer.key not in table.entries]
    latency = config.latency_config()
    last_save = time.monotonic()
    with progress_bars(progress) as bars:
        bar = bars.add(f"timing layers on {config.device}", len(space_layers(space)),
                       completed=len(table.entries))
        try:
            for layer in layers:
                table.entries[layer.key] = measure_latency(layer.module(space, num_classes), layer.size, latency,
                                                           layer.c_in)
                bar.advance(note=layer.kind)
                if time.monotonic() - last_save > SAVE_EVERY_S:
                    write_table(table, path)
                    last_save = time.monotonic()
        finally:
            write_table(table, path)
        if table.fit is None:
            bar = bars.add("timing whole subnets", config.subnets)
            table.fit = fit_overhead(table, fit_subnets(space, config.subnets, config.seed), latency, bar)
            write_table(table, path)
    return table


def _resumed_table(space: SearchSpace, config: TableConfig, path: str | Path, num_classes: int) -> LatencyTable | None:
    """The partial (or finished) table at ``path`` when it was measured the same way."""
    if not Path(path).exists():
        return None
    table = read_latency_table(path)
    remedy = "pass --fresh to replace it, or another --out"
    if space_to_dict(table.space) != space_to_dict(space) or table.num_classes != num_classes:
        raise AnasError(f"{path} holds a latency table of {table.describe()} with {table.num_classes} classes, not of "
                        f"space {space.name} with {num_classes}: {remedy}")
    check_unchanged(TableConfig, to_values(table.config), to_values(config), f"latency table {path}", remedy)
    return table


def fit_subnets(space: SearchSpace, n: int, seed: int) -> ArchBatch:
    """The smallest, the largest and ``n - 2`` random subnets."""
    rng = np.random.default_rng(seed)
    extremes = ArchBatch.from_archs([smallest_arch(space), largest_arch(space)])
    random = [sample_archs(space, n - 2, rng)] if n > 2 else []
    return concat_batches([extremes, *random]).take(slice(0, n))


def fit_overhead(table: LatencyTable, batch: ArchBatch, latency: LatencyConfig, bar=None) -> Fit:
    """Time the subnets of ``batch`` whole and fit the coefficients of :data:`FIT_TERMS`."""
    features = LatencyModel(table, table.space, fitted=False).features(batch)
    measured = []
    for arch in batch:
        measured.append(subnet_latency(table.space, arch, latency, table.num_classes))
        if bar is not None:
            bar.advance()
    measured = np.asarray(measured)
    coefficients = _robust_fit(features, measured)
    predicted = features @ coefficients
    subnets = [{"arch": arch.to_dict(), "measured_ms": float(m), "layer_sum_ms": float(f[1]), "layers": int(f[2]),
                "params_m": float(f[3]), "predicted_ms": float(p)}
               for arch, m, f, p in zip(batch, measured, features, predicted)]
    spearman, error = agreement(predicted, measured)
    return Fit(*(float(c) for c in coefficients), subnets, spearman, error)


def _robust_fit(features: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Linear least squares that a few subnets timed during a hiccup of the machine barely
    move: a soft-L1 fit from the ordinary solution, refined with a Cauchy loss (which all
    but ignores residuals far beyond 5 % of a typical latency)."""
    from scipy.optimize import least_squares

    def residuals(coefficients):
        return features @ coefficients - target

    scale = max(float(np.median(target)) * 0.05, 1e-9)
    start = np.linalg.lstsq(features, target, rcond=None)[0]
    start = least_squares(residuals, start, loss="soft_l1", f_scale=scale).x
    return least_squares(residuals, start, loss="cauchy", f_scale=scale).x


def agreement(predicted: np.ndarray, measured: np.ndarray) -> tuple[float, float]:
    """(Spearman correlation, median relative error) of predicted vs measured latency."""
    from scipy.stats import spearmanr

    predicted, measured = np.asarray(predicted, dtype=float), np.asarray(measured, dtype=float)
    rho = float(spearmanr(predicted, measured).statistic) if len(measured) > 1 else float("nan")
    return rho, float(np.median(np.abs(predicted - measured) / measured))


def layer_counts(batch: ArchBatch) -> np.ndarray:
    """Layers of each subnet: the first conv, every block and the head."""
    return (batch.depth.sum(axis=1) + 2).astype(np.float64)


# ----------------------------------------------------------------------------------------
# The latency model
# ----------------------------------------------------------------------------------------


class LatencyModel:
    """Predicted latency (ms) of subnets of ``space`` from ``table``: gathers from dense
    arrays indexed like the cost model's tables, then the fitted overhead."""

    def __init__(self, table: LatencyTable, space: SearchSpace, fitted: bool = True, source: str = "the table"):
        self.table, self.space = table, space
        if space.activation != table.space.activation:
            raise AnasError(f"{source} was measured with {table.space.activation} activations; space "
                            f"{space.name} uses {space.activation}")
        missing: list[str] = []
        self.stem = self._array(stem_layers(space), missing)
        self.stages = [(self._array(s.first, missing), self._array(s.repeated, missing)) for s in stage_layers(space)]
        self.head = self._array(head_layers(space), missing)
        if missing:
            raise AnasError(f"{source} ({table.describe()}) lacks {len(missing)} layers of space {space.name}, "
                            f"e.g. {missing[0]}: measure a table of this space with anas latency-table")
        if fitted and table.fit is None:
            raise AnasError(f"{source} is incomplete: run anas latency-table again to finish it")
        self.fit = table.fit

    def _array(self, layers: dict[tuple[int, ...], Layer], missing: list[str]) -> np.ndarray:
        shape = tuple(np.max(np.array(list(layers)), axis=0) + 1)
        values = np.zeros(shape)
        for index, layer in layers.items():
            ms = self.table.entries.get(layer.key)
            if ms is None:
                missing.append(layer.key)
            else:
                values[index] = ms
        return values

    def layer_sum(self, batch: ArchBatch) -> np.ndarray:
        """Sum of the table times of each subnet's layers."""
        index, columns = batch.choice_index(self.space), self.space.columns
        res, width = index[:, columns.resolution], index[:, columns.width]
        kernel, expand = index[:, columns.kernel_size], index[:, columns.expand_ratio]
        total = self.stem[res, width[:, 0]]
        for i, (first, repeated) in enumerate(self.stages):
            k, e = kernel[:, i], expand[:, i]
            total = total + first[res, width[:, i], width[:, i + 1], k, e]
            total = total + (batch.depth[:, i] - 1) * repeated[res, width[:, i + 1], k, e]
        return total + self.head[res, width[:, -2], width[:, -1]]

    def features(self, batch: ArchBatch) -> np.ndarray:
        """What the fit weighs, per subnet: 1, the layer sum (ms), the layers, the params (M)."""
        params = batch_costs(self.space, batch, self.table.num_classes).params_m
        return np.stack([np.ones(len(batch)), self.layer_sum(batch), layer_counts(batch), params], axis=1)

    def predict(self, batch: ArchBatch) -> np.ndarray:
        """Predicted latency in ms of every subnet of ``batch`` (never below 0: a linear fit
        can extrapolate below it for subnets far smaller than those it was fitted on)."""
        return np.maximum(self.features(batch) @ self.fit.coefficients(), 0.0)


def load_latency_model(path: str | Path, space: SearchSpace, num_classes: int | None = None,
                       device: str | None = None, batch: int | None = None) -> LatencyModel:
    """The latency model of the table at ``path`` for ``space``; refuses a table of another
    device, batch, number of classes or of layers the space does not build."""
    return table_model(read_latency_table(path), path, space, num_classes, device, batch)


def table_model(table: LatencyTable, path: str | Path, space: SearchSpace, num_classes: int | None = None,
                device: str | None = None, batch: int | None = None) -> LatencyModel:
    """:func:`load_latency_model` of a table already read from ``path``."""
    check_table_matches(table, path, device, batch)
    classes = space.num_classes if num_classes is None else num_classes
    if classes != table.num_classes:
        raise AnasError(f"latency table {path} was measured with a {table.num_classes}-class head, not {classes}")
    return LatencyModel(table, space, source=f"latency table {path}")


def resolved(config: TableConfig) -> TableConfig:
    """``config`` with the device it times on (``auto``: CUDA when present, else the CPU)."""
    return replace(config, device=latency_device(config.device))


@dataclass(frozen=True, kw_only=True)
class LatencyTableOptions(TableConfig):
    """Every option of ``anas latency-table``: the space, and how its table is measured."""

    space: str = option("attentive-nas", "Built-in space (attentive-nas, cifar, tiny) or a YAML file.", short="-s")
    num_classes: int | None = option(None, "Classes of the classifier head.", default_text="the space's", min=1)
    out: str | None = option(None, "Table file; an unfinished one is resumed.", short="-o",
                             default_text="latency-SPACE-DEVICE-bBATCH.json")
    fresh: bool = option(False, "Measure everything again, replacing the table at --out.")

    def table_config(self) -> TableConfig:
        return resolved(make(TableConfig, {name: value for name, value in to_values(self).items()
                                           if name in option_names(TableConfig)}))


def default_table_path(space: SearchSpace, config: TableConfig) -> Path:
    config = resolved(config)
    threads = f"-t{config.threads}" if config.threads else ""
    return Path(f"latency-{space.name}-{config.device.replace(':', '')}-b{config.batch}{threads}.json")
