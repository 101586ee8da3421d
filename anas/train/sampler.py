"""Which subnets a training step trains: uniform (BigNAS) or attentive (AttentiveNAS).

Attentive sampling (``bestup-kN`` / ``worstup-kN``):

1. a FLOPs prior, built in-process from uniformly sampled subnets (their MFLOPs rounded to
   a step, as a histogram);
2. per draw, a target bin from the prior and ``k`` candidates from that bin (conditional
   sampling: vectorized rejection sampling for a bounded number of rounds, then a pool of
   pre-sampled subnets of that bin, so that rare bins never loop);
3. an estimator scores the candidates (higher is better) and the best (BestUp) or the
   worst (WorstUp) is trained.

Estimators are plug-ins: anything with ``score(archs, images, labels) -> np.ndarray``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from anas.space.arch import Arch, concat_batches, sample_archs, sample_archs_by_size
from anas.space.cost import batch_costs
from anas.errors import AnasError
from anas.space.space import SearchSpace

SAMPLER_PATTERN = re.compile(r"^(uniform|(bestup|worstup)-k([1-9][0-9]*))$")


@dataclass(frozen=True)
class SamplerSpec:
    """A parsed ``--sampler``: ``uniform``, or ``bestup``/``worstup`` with ``k`` candidates."""

    kind: str  # uniform | bestup | worstup
    k: int = 1

    @property
    def attentive(self) -> bool:
        return self.kind != "uniform"


def parse_sampler(text: str) -> SamplerSpec:
    match = SAMPLER_PATTERN.match(text.strip().lower())
    if match is None:
        raise AnasError(f"unknown sampler {text!r}: use uniform, bestup-kN or worstup-kN (e.g. bestup-k3)")
    if match.group(1) == "uniform":
        return SamplerSpec("uniform")
    return SamplerSpec(match.group(2), int(match.group(3)))


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


class Estimator(Protocol):
    """Scores candidate subnets; higher is better."""

    def score(self, archs: list[Arch], images: torch.Tensor, labels: torch.Tensor) -> np.ndarray: ...


class LossEstimator:
    """Minibatch loss of each candidate on the current batch, without gradients and without
    touching BN statistics; the score is minus the loss (averaged over ranks when
    ``all_reduce`` is given, so that every rank picks the same subnet)."""

    def __init__(self, supernet, all_reduce=None, autocast=None):
        self.supernet = supernet
        self.all_reduce = all_reduce
        self.autocast = autocast

    def score(self, archs: list[Arch], images: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
        losses = torch.zeros(len(archs), device=images.device)
        with torch.no_grad(), self.supernet.frozen_bn_stats():
            for i, arch in enumerate(archs):
                self.supernet.set_active(arch)
                if self.autocast is not None:
                    with self.autocast():
                        logits = self.supernet(images)
                else:
                    logits = self.supernet(images)
                losses[i] = F.cross_entropy(logits.float(), labels)
        if self.all_reduce is not None:
            losses = self.all_reduce(losses)
        return -losses.cpu().numpy()


class SubnetSampler:
    """Draws the subnets between the largest and the smallest of a sandwich step."""

    def __init__(self, space: SearchSpace, spec: SamplerSpec, seed: int = 0,
                 prior: FlopsPrior | None = None, estimator: Estimator | None = None):
        if spec.attentive and (prior is None or estimator is None):
            raise ValueError("attentive sampling needs a FLOPs prior and an estimator")
        self.space = space
        self.spec = spec
        self.prior = prior
        self.estimator = estimator
        self.rng = np.random.default_rng(seed)
        self.last_scores: np.ndarray | None = None

    def sample(self, images: torch.Tensor | None = None, labels: torch.Tensor | None = None) -> Arch:
        if not self.spec.attentive:
            return sample_archs(self.space, 1, self.rng)[0]
        candidates = self.prior.draw_in_bin(self.rng, self.prior.draw_bin(self.rng), self.spec.k)
        scores = self.estimator.score(candidates, images, labels)
        self.last_scores = scores
        pick = int(np.argmax(scores)) if self.spec.kind == "bestup" else int(np.argmin(scores))
        return candidates[pick]

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]

