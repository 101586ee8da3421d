"""What ``anas profile`` computes: costs (and latency) of one subnet, a space summary, and
cost tables of many random subnets."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from anas.checks import TABLE_CELL_BYTES, check_memory
from anas.latency.measure import LatencyConfig, subnet_latency
from anas.latency.table import LatencyModel
from anas.progress import progress_bars
from anas.space.arch import Arch, ArchBatch, largest_arch, sample_archs, smallest_arch
from anas.space.cost import arch_costs, batch_costs
from anas.space.distribution import SubnetDistribution
from anas.space.space import SearchSpace
from anas.space.table import archs_to_frame, setting_columns


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
