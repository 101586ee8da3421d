"""How well a predictor ranks subnets, and the split that measures it."""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy.stats import kendalltau, spearmanr

from anas.checks import check_fraction
from anas.errors import AnasError


def rank_metrics(measured: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Kendall tau, Spearman rho (scipy) and mean absolute error."""
    measured, predicted = np.asarray(measured, float), np.asarray(predicted, float)
    with warnings.catch_warnings():  # constant predictions: the correlations are undefined (NaN)
        warnings.simplefilter("ignore")
        tau, rho = kendalltau(measured, predicted).statistic, spearmanr(measured, predicted).statistic
    return {"kendall_tau": float(tau), "spearman_rho": float(rho), "mae": float(np.mean(np.abs(measured - predicted)))}


def split_indices(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded train/test split; both parts need records."""
    check_fraction(test_fraction, "--test-fraction", low_open=True, high_open=True)
    n_test = int(math.floor(n * test_fraction))
    if n_test < 2 or n - n_test < 5:
        raise AnasError(f"{n} records are too few to hold {test_fraction:.0%} out: need at least 5 to fit "
                        f"and 2 to test (evaluate more subnets or pass --test-records)")
    order = np.random.default_rng(seed).permutation(n)
    return order[n_test:], order[:n_test]
