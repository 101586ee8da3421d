"""BigNAS sampling: every middle subnet drawn uniformly at random."""

from __future__ import annotations

from typing import Any

import numpy as np

from anas.space.arch import Arch, sample_archs
from anas.train.samplers.sampler import SamplerContext, register_sampler


@register_sampler("uniform")
class UniformSampler:
    """Every setting drawn uniformly and independently (BigNAS)."""

    scores_candidates = False  # reads neither images nor labels

    def __init__(self, context: SamplerContext):
        self.space = context.space
        self.rng = np.random.default_rng(context.seed)

    def sample(self, images=None, labels=None) -> Arch:
        return sample_archs(self.space, 1, self.rng)[0]

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
