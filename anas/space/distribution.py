"""A learned probability distribution over the subnets of a space (PARSEC, FP-NAS).

Subnets are genomes: one choice index per setting, in the table's column order (the
search's :class:`~anas.search.problem.Genome`). The distribution is a product of
independent categorical *factors*, each over some of those columns:

- factorized (FD): one factor per column (the resolution, each width, each stage's
  depth, kernel size and expand ratio);
- joint (JD): one factor per stage over the product of its width, depth, kernel size and
  expand ratio (so that, say, a deep stage can prefer a small kernel), the resolution and
  the first conv's and the head's widths keeping a factor each.

FP-NAS starts factorized and switches to the joint form (:meth:`SubnetDistribution.joint`,
which starts equal to the factorized one). A factor's logits move by the
importance-weighted empirical-Bayes step of PARSEC: for K subnets drawn from the
distribution with rewards r_k (log-likelihoods of a batch, or predicted accuracies),
``w = softmax(r)`` and ``alpha += lr * (sum_k w_k onehot(a_k) - softmax(alpha))``, an
estimate of the gradient of ``log E_P[exp r]`` with respect to the logits.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from anas.errors import AnasError
from anas.space.search_space import SearchSpace

FORMAT = "anas-distribution-1"


@dataclass
class Factor:
    """A categorical distribution over the joint choices of some genome ``columns``:
    ``choices[c]`` is the tuple of choice indices of outcome ``c``."""

    name: str
    columns: tuple[int, ...]
    choices: np.ndarray  # (outcomes, len(columns)) int
    logits: np.ndarray  # (outcomes,)

    def probabilities(self) -> np.ndarray:
        z = np.exp(self.logits - self.logits.max())
        return z / z.sum()

    def entropy(self) -> float:
        p = self.probabilities()
        return float(-(p[p > 0] * np.log(p[p > 0])).sum())

    def outcome_of(self, genes: np.ndarray) -> np.ndarray:
        """The outcome index of each genome (its choices in this factor's columns)."""
        sizes = self.choices.max(axis=0) + 1
        radix = np.concatenate([[1], np.cumprod(sizes[:-1])]).astype(np.int64)
        lookup = np.full(int(np.prod(sizes)), -1, dtype=np.int64)
        lookup[self.choices @ radix] = np.arange(len(self.choices))
        return lookup[genes[:, list(self.columns)] @ radix]


class SubnetDistribution:
    """A product of :class:`Factor`\\ s covering every genome column once."""

    def __init__(self, space: SearchSpace, factors: list[Factor], form: str):
        self.space, self.factors, self.form = space, factors, form
        self.sizes = np.array([len(c) for c in space.column_choices()], dtype=np.int64)

    # -- the two forms ------------------------------------------------------------------

    @classmethod
    def factorized(cls, space: SearchSpace) -> SubnetDistribution:
        """Uniform over every setting independently (FD)."""
        names = _column_names(space)
        sizes = [len(c) for c in space.column_choices()]
        factors = [Factor(names[j], (j,), np.arange(n)[:, None], np.zeros(n)) for j, n in enumerate(sizes)]
        return cls(space, factors, "factorized")

    def joint(self) -> SubnetDistribution:
        """The joint form (JD) equal to this factorized one: each stage's factor over the
        product of its settings starts with the summed log-probabilities of the factors."""
        if self.form != "factorized":
            raise AnasError("only a factorized distribution switches to the joint form")
        names = _column_names(self.space)
        by_column = {f.columns[0]: f for f in self.factors}
        grouped = set()
        factors = []
        for i, stage in enumerate(self.space.stages):
            columns = self.space.columns.stage(i)
            grouped.update(columns)
            parts = [by_column[c] for c in columns]
            logs = [np.log(p.probabilities()) for p in parts]
            outcomes = np.array(list(itertools.product(*(range(len(p.choices)) for p in parts))), dtype=np.int64)
            logits = sum(logs[k][outcomes[:, k]] for k in range(len(parts)))
            factors.append(Factor(f"stage {stage.name}", columns, outcomes, logits))
        rest = [Factor(names[c], (c,), f.choices.copy(), f.logits.copy()) for c, f in by_column.items()
                if c not in grouped]
        return SubnetDistribution(self.space, rest + factors, "joint")

    # -- drawing and scoring ------------------------------------------------------------

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` genomes drawn independently."""
        genes = np.zeros((n, len(self.sizes)), dtype=np.int64)
        for factor in self.factors:
            outcome = rng.choice(len(factor.choices), size=n, p=factor.probabilities())
            genes[:, list(factor.columns)] = factor.choices[outcome]
        return genes

    def log_prob(self, genes: np.ndarray) -> np.ndarray:
        return sum(np.log(f.probabilities())[f.outcome_of(genes)] for f in self.factors)

    def entropy(self) -> float:
        """In nats: the sum of the factors' (they are independent)."""
        return float(sum(f.entropy() for f in self.factors))

    def mode(self) -> np.ndarray:
        """The most likely genome, shape (1, columns)."""
        genes = np.zeros((1, len(self.sizes)), dtype=np.int64)
        for factor in self.factors:
            genes[0, list(factor.columns)] = factor.choices[int(np.argmax(factor.logits))]
        return genes

    # -- learning -----------------------------------------------------------------------

    def direction(self, genes: np.ndarray, rewards: np.ndarray) -> list[np.ndarray]:
        """Per factor, ``sum_k w_k onehot(a_k) - softmax(alpha)`` with ``w = softmax(rewards)``:
        the importance-weighted estimate of the gradient of ``log E_P[exp reward]``.
        Subnets with a reward of ``-inf`` (outside hard bounds) get no weight."""
        rewards = np.asarray(rewards, dtype=np.float64)
        if not np.isfinite(rewards).any():
            return [np.zeros_like(f.logits) for f in self.factors]
        w = np.exp(rewards - rewards[np.isfinite(rewards)].max())
        w /= w.sum()
        steps = []
        for factor in self.factors:
            empirical = np.bincount(factor.outcome_of(genes), weights=w, minlength=len(factor.choices))
            steps.append(empirical - factor.probabilities())
        return steps

    def update(self, genes: np.ndarray, rewards: np.ndarray, lr: float) -> None:
        for factor, step in zip(self.factors, self.direction(genes, rewards)):
            factor.logits = factor.logits + lr * step

    # -- files --------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        choices = self.space.column_choices()
        return {"format": FORMAT, "space": self.space.name, "form": self.form, "entropy": self.entropy(),
                "factors": [{"name": f.name, "columns": list(f.columns),
                             "choices": [[_plain(choices[c][i]) for c, i in zip(f.columns, row)] for row in f.choices],
                             "probabilities": f.probabilities().tolist(), "logits": f.logits.tolist()}
                            for f in self.factors]}

    @classmethod
    def from_dict(cls, space: SearchSpace, data: Any, source: str) -> SubnetDistribution:
        """The distribution a ``to_dict`` wrote; anything malformed or of another space is
        a one-line ``AnasError``."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise AnasError(f"{source} is not an anas distribution ({FORMAT})")
        if data.get("space") != space.name or data.get("form") not in ("factorized", "joint"):
            raise AnasError(f"{source} is a distribution of space {data.get('space')!r}, not {space.name}")
        template = cls.factorized(space) if data["form"] == "factorized" else cls.factorized(space).joint()
        saved = data.get("factors")
        if not isinstance(saved, list) or len(saved) != len(template.factors):
            raise AnasError(f"{source}: expected {len(template.factors)} factors")
        for factor, entry in zip(template.factors, saved):
            factor.logits = _logits(entry, factor, source)
        return template


def _logits(entry: Any, factor: Factor, source: str) -> np.ndarray:
    try:
        logits = np.asarray(entry["logits"], dtype=np.float64)
    except (TypeError, KeyError, ValueError):
        logits = None
    if logits is None or logits.shape != factor.logits.shape or not np.all(np.isfinite(logits)):
        raise AnasError(f"{source}: factor {factor.name} needs {len(factor.logits)} finite logits")
    return logits


def read_distribution(space: SearchSpace, path: str | Path) -> SubnetDistribution:
    from anas.io import read_json

    return SubnetDistribution.from_dict(space, read_json(Path(path), "distribution", AnasError), str(path))


def adaptive_k(entropy: float, lam: float, floor: int = 2) -> int:
    """FP-NAS's number of subnets to draw: ``max(floor, ceil(lam * entropy))``."""
    return max(floor, math.ceil(lam * entropy))


def _column_names(space: SearchSpace) -> list[str]:
    names = ["resolution", *(f"width.{g}" for g in space.width_group_names)]
    for setting in ("depth", "kernel_size", "expand_ratio"):
        names += [f"{setting}.{stage.name}" for stage in space.stages]
    return names


def _plain(value):
    value = float(value)
    return int(value) if value.is_integer() else value

