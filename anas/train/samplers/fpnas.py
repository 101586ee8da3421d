"""FP-NAS in supernet training (``--sampler fpnas``): the middle subnets come from a
distribution that learns where the good subnets are.

Each step, before the subnets are drawn, the distribution (:mod:`anas.space.distribution`,
factorized until ``--fpnas-switch-epoch``, joint after) draws K = max(2, ceil(lambda x
entropy)) candidates (FP-NAS's adaptive K), the run's estimator scores them on a batch
of the held-out part of the training split (``--holdout``; with the ``loss`` estimator,
minus the mean cross-entropy without gradients), and the logits take PARSEC's
importance-weighted step with rewards

    r_k = n x score_k - beta x n x max(0, MFLOPs(A_k) / target - 1)

where n is the batch size (so that ``n x score`` is the batch's log-likelihood, as in
PARSEC) and beta weighs the hinge cost per image (``--fpnas-beta``, ``--flops-target``).
Then the step's middle subnets are drawn from the updated distribution. At the end of
each epoch the run folder gets ``distribution.json`` and ``best.json`` (the most likely
subnet) and metrics.csv the entropy and K.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from anas.errors import AnasError
from anas.io import atomic_write_json
from anas.options import option
from anas.space.arch import ArchBatch, arch_from_dict
from anas.space.cost import arch_costs, batch_costs, mflops_range
from anas.space.distribution import SubnetDistribution, adaptive_k
from anas.space.schema import load_space
from anas.train.samplers.sampler import SamplerContext, register_sampler

LEARNING_RATE = 0.5


@dataclass(frozen=True, kw_only=True)
class FPNASOptions:
    flops_target: float | None = option(None, "MFLOPs above which subnets pay the hinge cost.")
    fpnas_beta: float = option(1.0, "Weight of the hinge cost, per image.", min=0, finite=True)
    fpnas_lambda: float = option(1.0, "Candidates per nat of the distribution's entropy.", min=0, finite=True)
    fpnas_switch_epoch: int | None = option(None, "Epoch of the switch from the factorized to the joint "
                                                  "distribution.", default_text="half the epochs", min=0)


def hinge_cost(mflops: np.ndarray, target: float | None) -> np.ndarray:
    """FP-NAS's cost: ``max(0, MFLOPs / target - 1)`` (zero without a target)."""
    if target is None:
        return np.zeros_like(np.asarray(mflops, dtype=np.float64))
    return np.maximum(0.0, np.asarray(mflops, dtype=np.float64) / target - 1.0)


@register_sampler("fpnas", options=FPNASOptions)
class FPNASSampler:
    """The middle subnets drawn from a learned distribution over the space."""

    def __init__(self, context: SamplerContext):
        config, options = context.config, context.options
        if context.heldout_batch is None:
            raise AnasError("--sampler fpnas needs held-out training images: add --holdout F")
        self.space, self.num_classes = context.space, context.num_classes
        self.target = options.flops_target
        self.beta, self.lam = options.fpnas_beta, options.fpnas_lambda
        switch_epoch = config.epochs // 2 if options.fpnas_switch_epoch is None else options.fpnas_switch_epoch
        self.per_step = max(1, config.num_subnets - 2)
        self.switch_call = switch_epoch * context.steps_per_epoch * self.per_step
        self.estimator = context.make_estimator()
        self.rng = np.random.default_rng(config.seed)
        self.dist = SubnetDistribution.factorized(self.space)
        self.heldout_batch = context.heldout_batch
        self.calls, self.updates, self.queue, self.last_k = 0, 0, [], 0

    @staticmethod
    def check_config(config) -> None:
        """FP-NAS draws the middle subnets and updates its distribution on held-out
        training images; its target lies within the space's MFLOPs range."""
        if config.num_subnets < 3:
            raise AnasError("--sampler fpnas draws the middle subnets: --num-subnets must be at least 3")
        if config.holdout <= 0:
            raise AnasError("--sampler fpnas updates its distribution on held-out training images: add --holdout F "
                            "(e.g. 0.1)")
        target = config.options_for("sampler").flops_target
        if target is not None:
            space = load_space(config.space)
            low, high = mflops_range(space)
            if not low <= target <= high:
                raise AnasError(f"--flops-target {target:g} is outside the MFLOPs of space {space.name} "
                                f"({low:.2f} to {high:.2f})")

    def sample(self, images: torch.Tensor, labels: torch.Tensor) -> Any:
        if not self.queue:
            if self.dist.form == "factorized" and self.calls >= self.switch_call:
                self.dist = self.dist.joint()
            self._learn()
            self.queue = list(ArchBatch.from_choice_index(self.space, self.dist.sample(self.per_step, self.rng)))
        self.calls += 1
        return self.queue.pop(0)

    def _learn(self) -> None:
        """One PARSEC step of the logits on a held-out batch."""
        self.last_k = adaptive_k(self.dist.entropy(), self.lam)
        genes = self.dist.sample(self.last_k, self.rng)
        batch = ArchBatch.from_choice_index(self.space, genes)
        images, labels = self.heldout_batch(self.updates)
        self.updates += 1
        n = len(labels)
        scores = np.asarray(self.estimator.score(list(batch), images, labels), dtype=np.float64)
        cost = hinge_cost(batch_costs(self.space, batch, self.num_classes).mflops, self.target)
        self.dist.update(genes, n * scores - self.beta * n * cost, LEARNING_RATE)

    def epoch_end(self, run_dir) -> dict[str, float]:
        """Write ``distribution.json`` and ``best.json`` (the most likely subnet) into the
        run folder; the entropy and the last K for metrics.csv."""
        best = ArchBatch.from_choice_index(self.space, self.dist.mode())[0]
        mflops, params_m = arch_costs(self.space, best, self.num_classes)
        atomic_write_json(run_dir.path / "distribution.json", self.dist.to_dict())
        atomic_write_json(run_dir.path / "best.json", {**best.to_dict(), "mflops": mflops, "params_m": params_m,
                                                       "probability": float(np.exp(self.dist.log_prob(
                                                           self.dist.mode()))[0])})
        return {"fpnas_entropy": self.dist.entropy(), "fpnas_k": self.last_k}

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state, "form": self.dist.form, "calls": self.calls,
                "updates": self.updates,
                "logits": [f.logits.tolist() for f in self.dist.factors], "last_k": self.last_k,
                "queue": [arch.to_dict() for arch in self.queue]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.dist = SubnetDistribution.factorized(self.space)
        if state["form"] == "joint":
            self.dist = self.dist.joint()
        for factor, logits in zip(self.dist.factors, state["logits"]):
            factor.logits = np.asarray(logits, dtype=np.float64)
        self.calls, self.updates, self.last_k = int(state["calls"]), int(state["updates"]), int(state["last_k"])
        self.queue = [arch_from_dict(self.space, a) for a in state["queue"]]
