"""Pi-NAS's label-free objective (Peng et al., ICCV 2021): cross-path InfoNCE against a mean
teacher and a queue of negatives, MoCo-style.

Each step trains pairs of subnets (A, B) that differ in every setting: the largest with
the smallest (the sandwich rule's ends), and ``(--num-subnets - 2) / 2`` pairs of a
sampled subnet with a partner drawn to differ from it everywhere. Every image comes in
four augmented views x1..x4. With ``n()`` the L2 normalization of the projection head's
output, ``q_A = n(f_A(x1))`` and ``q_B = n(f_B(x3))`` come from the student, ``k_A =
n(t_A(x2))`` and ``k_B = n(t_B(x4))`` from the mean teacher (an EMA of the supernet and the
head, no gradients), and a pair's loss is ``NCE(q_A, k_B) + NCE(q_B, k_A)``: InfoNCE at
temperature ``--temperature`` (0.2) of the positive key against the queue's keys. After
the optimizer step the teacher moves toward the student (momentum ``--ema-momentum``,
by default ``1 - 10 / total steps``, at most 0.999) and the queue takes, per image, the
normalized mean of that step's keys (for one pair: the mean of k_A and k_B), gathered
over the ranks of a ``torchrun`` job. Labels are never read.

The projection head is MoCo v2's MLP (linear, ReLU, linear to 128) over the features the
subnet's classifier would read, its first layer cropped to the subnet's feature width.
BN runs on each forward's own batch (no shuffled BN across GPUs); the teacher's forwards
leave its running statistics alone, so every tensor of it is the EMA of the student's. The supernet's
classifier is not trained: subnets are measured by a linear probe
(:mod:`anas.nn.probe`).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from anas.errors import AnasError
from anas.nn.supernet import Supernet, crop
from anas.options import option
from anas.runtime.distributed import all_gather_cat
from anas.space.arch import Arch
from anas.train.objectives.objective import Objective, ObjectiveContext, register_objective
from anas.train.registries import ESTIMATORS, SAMPLERS
from anas.train.regularizers.teacher import cross_path, momentum_of, update_ema

if TYPE_CHECKING:
    from anas.train.step import SandwichParts, StepLosses

PROJECTION_DIM = 128  # MoCo's
DEFAULT_TEMPERATURE = 0.2  # Pi-NAS's and MoCo v2's
VIEWS = 4


def info_nce(query: torch.Tensor, key: torch.Tensor, queue: torch.Tensor, temperature: float) -> torch.Tensor:
    """InfoNCE of unit vectors: for each row, the cross-entropy of picking its positive
    ``key`` among it and every row of ``queue`` (negatives), similarities over ``temperature``."""
    query, key, queue = query.float(), key.float(), queue.float()
    positive = (query * key).sum(dim=1, keepdim=True)
    logits = torch.cat([positive, query @ queue.T], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(query), dtype=torch.long, device=query.device))


def cross_path_loss(q_a: torch.Tensor, q_b: torch.Tensor, k_a: torch.Tensor, k_b: torch.Tensor,
                    queue: torch.Tensor, temperature: float) -> torch.Tensor:
    """A pair's loss: each path's query learns the other path's key, ``NCE(q_A, k_B) + NCE(q_B, k_A)``."""
    return info_nce(q_a, k_b, queue, temperature) + info_nce(q_b, k_a, queue, temperature)


def default_queue_size(train_images: int, global_batch: int) -> int:
    """The largest power of two up to a quarter of the training images, within 256..65536
    (MoCo's 65536 for ImageNet), and at least one global batch."""
    size = 2 ** int(math.floor(math.log2(max(train_images / 4, 1))))
    return max(min(max(size, 256), 65536), global_batch)


class ProjectionHead(nn.Module):
    """MoCo v2's projection: linear, ReLU, linear to ``out`` dimensions, L2-normalized;
    the first layer reads the first C of its ``max_in`` inputs, C being the input's."""

    def __init__(self, max_in: int, out: int = PROJECTION_DIM):
        super().__init__()
        self.hidden = nn.Linear(max_in, max_in)
        self.out = nn.Linear(max_in, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = crop(self.hidden.weight, self.hidden.out_features, x.shape[1])
        return F.normalize(self.out(F.relu(F.linear(x, weight, self.hidden.bias))), dim=1)


@dataclass(frozen=True, kw_only=True)
class ContrastiveOptions:
    queue_size: int | None = option(None, "Negatives kept in the queue.", min=1, fixed_on_resume=True,
                                    default_text="2^k <= a quarter of the training images, 256..65536")
    temperature: float = option(DEFAULT_TEMPERATURE, "InfoNCE temperature.", above=0, finite=True)


@register_objective("contrastive", options=ContrastiveOptions)
class ContrastiveObjective(Objective):
    """The module docstring's cross-path InfoNCE."""

    label_free = True
    defaults = {"sampler": "uniform", "teacher": "ema"}

    def __init__(self, context: ObjectiveContext):
        config, options = context.config, context.options
        self.student = context.supernet
        device = next(context.supernet.parameters()).device
        self.head = ProjectionHead(max(context.space.head.widths)).to(device)
        self.teacher = copy.deepcopy(context.supernet)
        self.teacher_head = copy.deepcopy(self.head)
        for parameter in [*self.teacher.parameters(), *self.teacher_head.parameters()]:
            parameter.requires_grad_(False)
        self.momentum = momentum_of(config.options_for("teacher"), context.total_steps)
        self.temperature = options.temperature
        global_batch = config.batch_size * context.dist.world_size
        size = options.queue_size or default_queue_size(context.train_images, global_batch)
        if size < global_batch:
            raise AnasError(f"--queue-size {size} is below one global batch ({global_batch} images): "
                            f"raise it or lower --batch-size")
        generator = torch.Generator().manual_seed(config.seed)
        self.queue = F.normalize(torch.randn(size, PROJECTION_DIM, generator=generator), dim=1).to(device)
        self.pointer = 0

    @staticmethod
    def check_config(config) -> None:
        sampler, _ = SAMPLERS.resolve(config.sampler)
        if getattr(sampler, "scores_candidates", True) and getattr(ESTIMATORS.get(config.estimator),
                                                                   "needs_labels", False):
            raise AnasError(f"--objective contrastive reads no labels, but --sampler {config.sampler} scores "
                            f"candidates with the labels (--estimator {config.estimator}): use --sampler "
                            f"uniform, or --estimator bn or predictor")
        queue_size = config.options_for("objective").queue_size
        checks = [
            (config.teacher == "ema", f"--objective contrastive learns against a mean teacher: --teacher must be "
                                      f"ema, got {config.teacher}"),
            (not cross_path(config), "--objective contrastive trains subnets in pairs already: drop --cross-path"),
            (config.regularizer == ["kd"], "--regularizer does not apply to --objective contrastive"),
            (config.num_subnets % 2 == 0, f"--objective contrastive trains subnets in pairs: --num-subnets must "
                                          f"be even, got {config.num_subnets}"),
            (queue_size is None or queue_size >= config.batch_size,
             f"--queue-size must be at least --batch-size ({config.batch_size}), got {queue_size}"),
        ]
        for ok, message in checks:
            if not ok:
                raise AnasError(message)

    @staticmethod
    def views(config) -> int:
        return VIEWS

    @staticmethod
    def teacher_weights(config, state: dict[str, Any]) -> dict[str, Any] | None:
        return state["objective"]["teacher"]

    def modules(self) -> list[nn.Module]:
        return [self.head]

    def teacher_model(self, parts: SandwichParts) -> nn.Module | None:
        return self.teacher

    def step(self, parts: SandwichParts, images: torch.Tensor, labels: torch.Tensor, index: int) -> StepLosses:
        from anas.train.step import StepLosses, optimizer_step, sample_pairs  # only training loads the step

        model = parts.model
        model.train()
        self.teacher.train()
        x1, x2, x3, x4 = images.unbind(1)
        pairs = [(parts.largest, parts.smallest), *sample_pairs(parts, x1, labels, parts.num_middle // 2)]
        parts.optimizer.zero_grad(set_to_none=True)
        losses, keys = [], []
        for a, b in pairs:
            k_a, k_b = self.key(a, x2, parts), self.key(b, x4, parts)
            with parts.autocast():
                loss = cross_path_loss(self.query(model, a, x1), self.query(model, b, x3), k_a, k_b, self.queue,
                                       self.temperature)
            parts.scaler.scale(loss).backward()
            losses.append(float(loss.detach()))
            keys += [k_a, k_b]
        optimizer_step(parts)
        with torch.no_grad():
            update_ema(self.teacher, self.student, self.momentum)
            update_ema(self.teacher_head, self.head, self.momentum)
        self.enqueue(all_gather_cat(F.normalize(torch.stack(keys).mean(dim=0), dim=1), parts.dist))
        return StepLosses(losses[0], float(np.mean(losses[1:])) if len(losses) > 1 else 0.0)

    def query(self, model: Supernet, arch: Arch, images: torch.Tensor) -> torch.Tensor:
        """The student's normalized projection of ``images`` through ``arch``."""
        model.set_active(arch)
        return self.head(model.features(images))

    @torch.no_grad()
    def key(self, arch: Arch, images: torch.Tensor, parts: SandwichParts) -> torch.Tensor:
        """The teacher's normalized projection of ``images`` through ``arch`` (no gradients)."""
        self.teacher.set_active(arch)
        with parts.autocast(), self.teacher.frozen_bn_stats():
            return self.teacher_head(self.teacher.features(images)).float()

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Overwrite the oldest rows of the queue with ``keys`` (a ring buffer)."""
        rows = (self.pointer + torch.arange(len(keys), device=self.queue.device)) % len(self.queue)
        self.queue[rows] = keys.to(self.queue.dtype)
        self.pointer = (self.pointer + len(keys)) % len(self.queue)

    def state_dict(self) -> dict[str, Any]:
        return {"head": self.head.state_dict(), "teacher": self.teacher.state_dict(),
                "teacher_head": self.teacher_head.state_dict(), "queue": self.queue.clone(),
                "pointer": self.pointer, "momentum": self.momentum}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.head.load_state_dict(state["head"])
        self.teacher.load_state_dict(state["teacher"])
        self.teacher_head.load_state_dict(state["teacher_head"])
        if state["queue"].shape != self.queue.shape:
            raise RuntimeError(f"the checkpoint's queue holds {len(state['queue'])} keys, this run "
                               f"{len(self.queue)} (--queue-size cannot change when resuming)")
        self.queue.copy_(state["queue"])
        self.pointer = int(state["pointer"])
