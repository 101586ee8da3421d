"""AttentiveNAS sampling (``bestup-kN`` / ``worstup-kN``).

1. A FLOPs prior, built in-process from uniformly sampled subnets (their MFLOPs rounded to
   a step, as a histogram).
2. Per draw, a target bin from the prior and ``k`` candidates from that bin (conditional
   sampling: vectorized rejection sampling for a bounded number of rounds, then a pool of
   pre-sampled subnets of that bin, so that rare bins never loop).
3. The run's estimator (``--estimator``) scores the candidates (higher is better) and the
   best (BestUp) or the worst (WorstUp) is trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from anas.checks import SUBNET_BYTES, check_memory
from anas.errors import AnasError
from anas.options import option
from anas.space.arch import Arch, concat_batches, sample_archs, sample_archs_by_size
from anas.space.cost import batch_costs
from anas.space.search_space import SearchSpace
from anas.train.samplers.sampler import SamplerContext, register_sampler


def _check_prior_memory(samples: int, flag: str) -> None:
    check_memory(samples * SUBNET_BYTES, flag, samples)


@dataclass(frozen=True, kw_only=True)
class AttentiveOptions:
    """The FLOPs prior of attentive sampling (REFERENCE section 5)."""

    flops_step: float | None = option(None, "MFLOPs bin width of the FLOPs prior.", default_text="range / 70",
                                      above=0, finite=True)
    prior_samples: int = option(100_000, "Subnets sampled to build the FLOPs prior.", min=1,
                                check=_check_prior_memory)


class FlopsPrior:
    """The MFLOPs distribution of uniformly sampled subnets, in bins of ``step`` MFLOPs,
    with a pool of subnets per bin for conditional sampling."""

    def __init__(self, space: SearchSpace, step: float | None = None, pool_size: int = 100_000,
                 seed: int = 0, num_classes: int | None = None):
        self.space = space
        self.num_classes = num_classes
        rng = np.random.default_rng(seed)
        uniform = sample_archs(space, pool_size, rng)
        uniform_mflops = self._mflops(uniform)
        self.step = float(step) if step else self.default_step(uniform_mflops)
        self.bins, counts = np.unique(self.bin_of(uniform_mflops), return_counts=True)
        self.probs = counts / counts.sum()
        # The pool also holds subnets spread by size, so that bins uniform sampling
        # rarely reaches (next to the smallest or largest subnet) have members too.
        self.pool = concat_batches([uniform, sample_archs_by_size(space, max(pool_size // 2, 1), rng)])
        pool_bins = self.bin_of(self._mflops(self.pool))
        order = np.argsort(pool_bins, kind="stable")
        keys, starts, sizes = np.unique(pool_bins[order], return_index=True, return_counts=True)
        self._members = {int(b): order[s:s + c] for b, s, c in zip(keys, starts, sizes)}

    def _mflops(self, batch) -> np.ndarray:
        return batch_costs(self.space, batch, self.num_classes).mflops

    @staticmethod
    def default_step(mflops: np.ndarray) -> float:
        """About 70 bins over the sampled range (25 MFLOPs for ``attentive-nas``)."""
        return max(float(np.ptp(mflops)) / 70.0, 1e-6)

    def bin_of(self, mflops) -> np.ndarray:
        return np.round(np.asarray(mflops) / self.step).astype(np.int64)

    def draw_bin(self, rng: np.random.Generator) -> int:
        return int(rng.choice(self.bins, p=self.probs))

    def draw_in_bin(self, rng: np.random.Generator, target: int, k: int, max_rounds: int = 4) -> list[Arch]:
        """``k`` subnets whose rounded MFLOPs equal ``target``: fresh samples first (at most
        ``max_rounds`` vectorized rounds, uniform ones preferred), then pool members of
        that bin; a bin that no subnet of the pool reaches is an error, never a loop."""
        found: list[Arch] = []
        index = np.searchsorted(self.bins, target)
        prob = float(self.probs[index]) if index < len(self.bins) and self.bins[index] == target else 0.0
        batch_size = int(min(4096, max(64, 2 * k / max(prob, 1e-3))))
        for _ in range(max_rounds):
            for batch in (sample_archs(self.space, batch_size, rng), sample_archs_by_size(self.space, batch_size, rng)):
                hits = np.flatnonzero(self.bin_of(self._mflops(batch)) == target)
                found += [batch[int(i)] for i in hits[: k - len(found)]]
                if len(found) == k:
                    return found
        members = self._members.get(target)
        if members is None:
            raise AnasError(f"no subnet of space {self.space.name} falls in the bin of {target * self.step:.1f} MFLOPs")
        picks = rng.choice(members, size=k - len(found), replace=len(members) < k - len(found))
        return found + [self.pool[int(i)] for i in picks]


class AttentiveSampler:
    """Draws ``k`` candidates of one MFLOPs bin and keeps the one ``pick`` chooses by
    their scores."""

    pick = staticmethod(np.argmax)

    def __init__(self, context: SamplerContext, k: int):
        options, seed = context.options, context.config.seed
        self.k = k
        self.prior = FlopsPrior(context.space, options.flops_step, options.prior_samples, seed, context.num_classes)
        self.estimator = context.make_estimator()
        self.rng = np.random.default_rng(seed)
        self.last_scores: np.ndarray | None = None

    def sample(self, images: torch.Tensor, labels: torch.Tensor) -> Arch:
        candidates = self.prior.draw_in_bin(self.rng, self.prior.draw_bin(self.rng), self.k)
        self.last_scores = self.estimator.score(candidates, images, labels)
        return candidates[int(self.pick(self.last_scores))]

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]


@register_sampler("bestup", parameter="k", options=AttentiveOptions)
class BestUpSampler(AttentiveSampler):
    """AttentiveNAS BestUp: of k candidates of a FLOPs bin, train the best-scored."""

    pick = staticmethod(np.argmax)


@register_sampler("worstup", parameter="k", options=AttentiveOptions)
class WorstUpSampler(AttentiveSampler):
    """AttentiveNAS WorstUp: of k candidates of a FLOPs bin, train the worst-scored."""

    pick = staticmethod(np.argmin)
