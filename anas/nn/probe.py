"""Evaluating subnets of a supernet trained without labels: a linear probe.

A supernet trained with a label-free objective (``anas train --objective contrastive``)
has no trained classifier. Its subnets are measured the way self-supervised features are:
after BN recalibration, the subnet's pooled features (those its classifier would read) of
a labelled split (``fit_batches``) train a multinomial logistic regression (scikit-learn,
L-BFGS, features standardized), and the accuracy of that classifier on the validation
split is the subnet's accuracy. Each subnet gets its own probe, so a subnet is measured
by what its own features separate, not by a classifier shared with other paths.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from anas.errors import DataError
from anas.nn.accuracy import EvalResult, at_resolution, recalibrated_subnet
from anas.space.arch import Arch

PROBE_MAX_ITER = 1000  # L-BFGS iterations of the logistic regression


@torch.no_grad()
def subnet_features(net: nn.Module, batches: Iterable,
                    device: torch.device | str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """The pooled features (``net.features``) and labels of all ``batches``, as arrays."""
    net.eval()
    features, labels = [], []
    for images, targets in batches:
        features.append(net.features(images.to(device, non_blocking=True)).float().cpu())
        labels.append(torch.as_tensor(targets))
    if not features:
        raise ValueError("the linear probe got no batches")
    return torch.cat(features).numpy(), torch.cat(labels).numpy()


def fit_probe(train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray]) -> EvalResult:
    """Top-1, top-5 and log-loss on ``val`` of a logistic regression fit on ``train``
    (each a pair of features [N, D] and labels [N])."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    (train_x, train_y), (val_x, val_y) = train, val
    if len(np.unique(train_y)) < 2:
        raise DataError(f"a linear probe needs images of at least 2 classes to fit on, got {len(train_y)} image(s) "
                        f"of {len(np.unique(train_y))} class(es)")
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=PROBE_MAX_ITER))
    probe.fit(train_x, train_y)
    classes = probe.classes_
    probability = np.maximum(probe.predict_proba(val_x), 1e-12)
    top = classes[np.argsort(-probability, axis=1)[:, :5]]
    hits = top == val_y[:, None]
    known = np.isin(val_y, classes)  # a class the fit split lacks is never predicted
    truth = np.searchsorted(classes, np.where(known, val_y, classes[0]))
    loss = -np.log(np.where(known, probability[np.arange(len(val_y)), truth], 1e-12))
    return EvalResult(100.0 * float(hits[:, 0].mean()), 100.0 * float(hits.any(axis=1).mean()),
                      float(loss.mean()), len(val_y))


def probe_subnet(supernet, arch: Arch, calib_batches: Iterable, num_calib: int, fit_batches: Iterable,
                 val_batches: Iterable, device: torch.device | str = "cpu") -> EvalResult:
    """Extract ``arch``, recalibrate its BN, fit a linear probe on its features of
    ``fit_batches`` and measure it on ``val_batches`` (images at the subnet's resolution)."""
    net = recalibrated_subnet(supernet, arch, calib_batches, num_calib, device)
    train = subnet_features(net, at_resolution(fit_batches, arch.resolution), device)
    val = subnet_features(net, at_resolution(val_batches, arch.resolution), device)
    return fit_probe(train, val)
