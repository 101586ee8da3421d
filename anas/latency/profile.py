"""What ``anas profile`` computes: costs (and latency) of one subnet, a space summary, and
cost tables of many random subnets."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from anas.checks import TABLE_CELL_BYTES, check_memory, check_seed
from anas.errors import AnasError
from anas.latency.lookup_table import LatencyModel, load_latency_model
from anas.latency.measure import LatencyConfig, latency_device, subnet_latency
from anas.options import option
from anas.progress import progress_bars
from anas.runtime.device import DeviceOption
from anas.space.arch import Arch, ArchBatch, largest_arch, parse_arch, sample_archs, smallest_arch
from anas.space.cost import arch_costs, batch_costs
from anas.space.distribution import SubnetDistribution, read_distribution
from anas.space.schema import load_space
from anas.space.search_space import SearchSpace
from anas.space.table_format import archs_to_frame, setting_columns, write_table


@dataclass(frozen=True, kw_only=True)
class ProfileOptions(DeviceOption):
    """Every option of ``anas profile``."""

    space: str = option("attentive-nas", "Built-in space (attentive-nas, cifar, tiny) or a YAML file.", short="-s")
    arch: str | None = option(None, "Subnet: JSON file, JSON string, min, max, random, or a model name (a0..a6).",
                              short="-a")
    num_classes: int | None = option(None, "Classes of the classifier.", default_text="the space's", min=1)
    latency: bool = option(False, "Also time the static network's forward pass (with --sample: of every subnet, "
                                  "in a latency_ms column).")
    latency_table: str | None = option(None, "Predict latency_ms from this latency table (anas latency-table) "
                                             "instead of timing; with it, --device and --batch-size must be the "
                                             "table's.")
    batch_size: int | None = option(None, "Batch size for --latency.", default_text="1, or the latency table's",
                                    min=1)
    runs: int = option(50, "Timed runs for --latency (the median is reported).", min=1)
    warmup: int = option(10, "Untimed warm-up runs for --latency.", min=0)
    sample: int | None = option(None, "Write a cost table of this many random subnets (needs --out).", min=1)
    distribution: str | None = option(None, "With --sample: draw the subnets from this learned distribution.json "
                                            "(anas search --strategy fpnas).")
    out: str | None = option(None, "CSV file for --sample.", short="-o")
    seed: int = option(0, "Seed of random subnets (--sample, --arch random).", check=check_seed)


@dataclass
class ProfileOutcome:
    """What ``profile`` did: one subnet's profile, a cost table written, or the space's summary."""

    space: SearchSpace
    latency: Latency | None = None
    arch: ArchProfile | None = None
    table: dict[str, Any] | None = None  # rows, path, seed, MFLOPs statistics, seconds
    summary: dict[str, Any] | None = None


def profile(options: ProfileOptions, progress: bool = False) -> ProfileOutcome:
    """Everything ``anas profile`` does; every option is checked before any work."""
    space = load_space(options.space)
    latency = latency_source(space, options)
    if options.sample is not None:
        if options.arch is not None:
            raise AnasError("--sample and --arch exclude each other")
        if options.out is None:
            raise AnasError("--sample needs --out FILE.csv")
        learned = read_distribution(space, options.distribution) if options.distribution is not None else None
        start = time.perf_counter()
        frame = cost_table(space, options.sample, options.seed, options.num_classes, latency, progress, learned)
        write_table(frame, Path(options.out))
        mflops = frame["mflops"]
        return ProfileOutcome(space, latency, table={
            "rows": options.sample, "path": options.out, "seed": options.seed, "seconds": time.perf_counter() - start,
            "mflops": {"min": float(mflops.min()), "median": float(mflops.median()), "max": float(mflops.max())}})
    if options.out is not None:
        raise AnasError("--out goes with --sample")
    if options.distribution is not None:
        raise AnasError("--distribution goes with --sample N --out FILE.csv")
    if options.arch is None:
        return ProfileOutcome(space, summary=summarize_space(space, options.num_classes))
    arch = parse_arch(space, options.arch, options.seed)
    return ProfileOutcome(space, latency, arch=profile_arch(space, arch, options.num_classes, latency))


def latency_source(space: SearchSpace, options: ProfileOptions) -> Latency | None:
    """Timing (``--latency``), a latency table's predictions (``--latency-table``), or neither."""
    if options.latency and options.latency_table is not None:
        raise AnasError("--latency times each subnet and --latency-table predicts it: give one")
    if options.latency_table is not None:
        device = None if options.device == "auto" else options.device
        return load_latency_model(options.latency_table, space, options.num_classes, device, options.batch_size)
    if options.latency:
        return LatencyConfig(latency_device(options.device), options.batch_size or 1, options.warmup, options.runs)
    return None


@dataclass(frozen=True)
class ArchProfile:
    arch: Arch
    mflops: float
    params_m: float
    latency_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"arch": self.arch.to_dict(), "mflops": self.mflops, "params_m": self.params_m}
        if self.latency_ms is not None:
            out["latency_ms"] = self.latency_ms
        return out


Latency = LatencyConfig | LatencyModel
"""How latency is known: timed as a ``LatencyConfig`` says, or predicted by a latency table's model."""


def profile_arch(space: SearchSpace, arch: Arch, num_classes: int | None = None,
                 latency: Latency | None = None) -> ArchProfile:
    mflops, params_m = arch_costs(space, arch, num_classes)
    latency_ms = None
    if isinstance(latency, LatencyModel):
        latency_ms = float(latency.predict(ArchBatch.from_archs([arch]))[0])
    elif latency is not None:
        latency_ms = subnet_latency(space, arch, latency, num_classes)
    return ArchProfile(arch, mflops, params_m, latency_ms)


def count_subnets(space: SearchSpace) -> int:
    """How many distinct subnets the space holds."""
    per_stage = [len(s.depths) * len(s.kernel_sizes) * len(s.expand_ratios) for s in space.stages]
    return len(space.resolutions) * math.prod(len(c) for c in space.width_choices) * math.prod(per_stage)


def summarize_space(space: SearchSpace, num_classes: int | None = None) -> dict[str, Any]:
    return {
        "space": space.name,
        "num_classes": space.num_classes if num_classes is None else num_classes,
        "num_stages": space.num_stages,
        "num_subnets": count_subnets(space),
        "smallest": profile_arch(space, smallest_arch(space), num_classes).to_dict(),
        "largest": profile_arch(space, largest_arch(space), num_classes).to_dict(),
        "models": sorted(space.models),
    }


def cost_table(space: SearchSpace, n: int, seed: int = 0, num_classes: int | None = None,
               latency: Latency | None = None, progress: bool = False,
               distribution: SubnetDistribution | None = None) -> pd.DataFrame:
    """The table of ``n`` sampled subnets (uniformly, or from a learned ``distribution``)
    with their MFLOPs and params; with ``latency``, also each subnet's latency
    (``latency_ms``): predicted by a latency table's model, or each static network timed
    (the training data of a latency model: ``anas predict-fit --target latency_ms``)."""
    check_memory(n * (len(setting_columns(space)) + 3) * TABLE_CELL_BYTES, "--sample", n)
    rng = np.random.default_rng(seed)
    batch: ArchBatch = (sample_archs(space, n, rng) if distribution is None
                        else ArchBatch.from_choice_index(space, distribution.sample(n, rng)))
    frame = archs_to_frame(space, batch, batch_costs(space, batch, num_classes))
    if isinstance(latency, LatencyModel):
        frame["latency_ms"] = latency.predict(batch)
    elif latency is not None:
        times = []
        with progress_bars(progress) as bars:
            bar = bars.add(f"timing {n} subnets on {latency.device}", n)
            for arch in batch:
                times.append(subnet_latency(space, arch, latency, num_classes))
                bar.advance()
        frame["latency_ms"] = times
    return frame
