"""A synthetic accuracy oracle for subnets of ``attentive-nas``-like spaces.

No ImageNet supernet can be trained on a laptop, yet predictors and searches need records
with realistic structure to be measured. ``synthetic_acc1`` is a saturating curve through
the published A0 (203 MFLOPs, 77.3 % top-1) and A6 (709 MFLOPs, 80.7 %), plus effects of the
settings beyond their FLOPs and Gaussian evaluation noise. It is used by the benchmarks
and the tests, never by the tool itself.
"""

from __future__ import annotations

import numpy as np

from anas.space.arch import ArchBatch
from anas.space.cost import batch_costs
from anas.space.search_space import SearchSpace


def synthetic_acc1(space: SearchSpace, batch: ArchBatch, rng: np.random.Generator, noise: float = 0.12) -> np.ndarray:
    """Top-1 (%) of each subnet of ``batch`` under the oracle (``attentive-nas`` layout)."""
    mflops = batch_costs(space, batch).mflops
    acc = 81.5 - 4.3 * np.exp(-(mflops - 200.0) / 303.0)
    acc += 0.15 * (batch.resolution - 224) / 32.0  # resolution helps beyond its FLOPs
    acc += 0.06 * (batch.depth.sum(axis=1) - 24)  # depth helps more than width
    acc -= 0.002 * (batch.width[:, -1] - 1888)  # a wide head costs FLOPs for little
    acc += 0.05 * (batch.kernel_size[:, 2:6] == 5).sum(axis=1)
    acc += 0.1 * (batch.expand_ratio[:, 3:5].mean(axis=1) - 5)
    acc -= 0.2 * ((batch.width[:, 6] >= 208) & (batch.depth[:, 5] <= 4))  # unbalanced stage 6
    return acc + rng.normal(0.0, noise, len(acc))


def synthetic_predictor(space: SearchSpace, records: int = 1500, seed: int = 0):
    """The LightGBM predictor fitted on ``records`` uniformly sampled subnets of ``space``
    with their ``synthetic_acc1``: the stand-in for a trained supernet's predictor in the
    search benchmarks."""
    from anas.predict.kinds.lightgbm import LightGBMPredictor
    from anas.space.arch import sample_archs

    rng = np.random.default_rng(seed)
    pool = sample_archs(space, records, rng)
    return LightGBMPredictor.fit(space, pool, synthetic_acc1(space, pool, rng))
