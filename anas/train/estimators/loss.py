"""The minibatch-loss estimator (AttentiveNAS' default)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from anas.space.arch import Arch
from anas.train.estimators.estimator import EstimatorContext, register_estimator


@register_estimator("loss")
class LossEstimator:
    """Minus the cross-entropy of each candidate on the step's batch (no gradients, BN statistics untouched)."""

    needs_labels = True  # label-free objectives cannot use it

    def __init__(self, context: EstimatorContext):
        self.supernet = context.supernet
        self.all_reduce_mean = context.all_reduce_mean
        self.autocast = context.autocast

    def score(self, archs: list[Arch], images: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
        losses = torch.zeros(len(archs), device=images.device)
        with torch.no_grad(), self.supernet.frozen_bn_stats():
            for i, arch in enumerate(archs):
                self.supernet.set_active(arch)
                with self.autocast():
                    logits = self.supernet(images)
                losses[i] = F.cross_entropy(logits.float(), labels)
        return -self.all_reduce_mean(losses).cpu().numpy()
