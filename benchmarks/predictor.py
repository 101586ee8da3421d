"""The default LightGBM predictor against a RandomForest (the model type the AttentiveNAS
authors used) and FOX-NAS's linear model (``--kind linear``), on records of attentive-nas
subnets with a synthetic accuracy.

    python benchmarks/predictor.py

No ImageNet supernet can be trained here, so ``acc1`` comes from the documented synthetic
oracle ``anas.synthetic.synthetic_acc1``: a saturating curve through the published A0
(203 MFLOPs, 77.3 %) and A6 (709 MFLOPs, 80.7 %), plus effects of the settings beyond their
FLOPs and evaluation noise. For each seed it writes 1,000 training and 500 test records (CSV in the
table format), fits the default predictor with the real command
``anas predict-fit --records train.csv --test-records test.csv --space attentive-nas
--json``, fits a RandomForest on the same features and the linear kind on its stage
features, and compares Kendall tau on the 500. It also measures how each model's tau
grows with the records (64 to 2,000) and how many it needs for a given tau, and how long the
predictor takes to score the 50 candidates of a ``bestup-k50`` draw.

Prints the figures and writes benchmarks/results/predictor.json.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.ensemble import RandomForestRegressor
from synthetic import synthetic_acc1

from anas.predict.features import feature_matrix
from anas.predict.kinds.lightgbm import LightGBMPredictor as Predictor
from anas.predict.kinds.linear import LinearPredictor
from anas.predict.metrics import rank_metrics
from anas.space.arch import ArchBatch, sample_archs
from anas.space.cost import batch_costs
from anas.space.schema import load_space
from anas.space.table_format import archs_to_frame, write_table

RESULTS = Path(__file__).resolve().parent / "results"
SEEDS = (0, 1, 2)
SIZES = (64, 100, 200, 250, 300, 500, 750, 1000, 1500, 2000)
TAU_TARGETS = (0.85, 0.875, 0.89)


def write_records(space, batch: ArchBatch, acc1: np.ndarray, path: Path) -> None:
    frame = archs_to_frame(space, batch, batch_costs(space, batch))
    frame["acc1"] = acc1
    write_table(frame, path)


def cli_fit(train: Path, test: Path, out: Path) -> dict:
    args = [sys.executable, "-m", "anas", "predict-fit", "--records", str(train), "--test-records", str(test),
            "--space", "attentive-nas", "--out", str(out), "--no-plot", "--json"]
    return json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout)


def random_forest_tau(space, train: ArchBatch, y_train, test: ArchBatch, y_test, seed: int) -> float:
    model = RandomForestRegressor(n_estimators=300, random_state=seed, n_jobs=1)
    model.fit(feature_matrix(space, train), y_train)
    return rank_metrics(y_test, model.predict(feature_matrix(space, test)))["kendall_tau"]


def linear_tau_of(space, train: ArchBatch, y_train, test: ArchBatch, y_test) -> float:
    model = LinearPredictor.fit(space, train, y_train)
    return rank_metrics(y_test, model.predict(test))["kendall_tau"]


def main() -> None:
    space = load_space("attentive-nas")
    head_to_head, curves = [], {"lightgbm": {}, "random_forest": {}, "linear": {}}
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        pool = sample_archs(space, max(SIZES) + 500, rng)
        acc = synthetic_acc1(space, pool, rng)
        test, y_test = pool.take(slice(-500, None)), acc[-500:]
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            write_records(space, pool.take(slice(1000)), acc[:1000], tmp / "train.csv")
            write_records(space, test, y_test, tmp / "test.csv")
            start = time.perf_counter()
            lgb = cli_fit(tmp / "train.csv", tmp / "test.csv", tmp / "predictor")
            cli_seconds = time.perf_counter() - start
        rf_tau = random_forest_tau(space, pool.take(slice(1000)), acc[:1000], test, y_test, seed)
        linear_tau = linear_tau_of(space, pool.take(slice(1000)), acc[:1000], test, y_test)
        head_to_head.append({"seed": seed, "lightgbm_tau": lgb["kendall_tau"], "lightgbm_rho": lgb["spearman_rho"],
                             "lightgbm_mae": lgb["mae"], "random_forest_tau": rf_tau, "linear_tau": linear_tau,
                             "cli_seconds": round(cli_seconds, 2)})
        print(f"seed {seed}: 1000 fit / 500 test: LightGBM (anas predict-fit) tau {lgb['kendall_tau']:.3f} "
              f"(rho {lgb['spearman_rho']:.3f}, MAE {lgb['mae']:.3f}), RandomForest tau {rf_tau:.3f}, "
              f"linear tau {linear_tau:.3f}")
        for n in SIZES:
            train = pool.take(slice(n))
            predictor = Predictor.fit(space, train, acc[:n], seed=seed)
            curves["lightgbm"].setdefault(n, []).append(rank_metrics(y_test, predictor.predict(test))["kendall_tau"])
            curves["random_forest"].setdefault(n, []).append(random_forest_tau(space, train, acc[:n], test, y_test, seed))
            curves["linear"].setdefault(n, []).append(linear_tau_of(space, train, acc[:n], test, y_test))
    curve_means = {model: {str(n): float(np.mean(v)) for n, v in by_n.items()} for model, by_n in curves.items()}
    needed = {model: {str(t): next((int(n) for n, tau in means.items() if tau >= t), None) for t in TAU_TARGETS}
              for model, means in curve_means.items()}
    print("records -> mean Kendall tau on 500 test records (3 seeds):")
    for n in SIZES:
        print(f"  {n:>5}: LightGBM {curve_means['lightgbm'][str(n)]:.3f}   RandomForest "
              f"{curve_means['random_forest'][str(n)]:.3f}   linear {curve_means['linear'][str(n)]:.3f}")
    print(f"records needed for tau >= {TAU_TARGETS}: {needed}")

    # scoring speed: the 50 candidates of one bestup-k50 draw, in one batched call
    rng = np.random.default_rng(0)
    pool = sample_archs(space, 1000, rng)
    predictor = Predictor.fit(space, pool, synthetic_acc1(space, pool, rng))
    candidates = list(sample_archs(space, 50, rng))
    predictor.predict_archs(candidates)
    start = time.perf_counter()
    for _ in range(200):
        predictor.predict_archs(candidates)
    per_candidate_us = (time.perf_counter() - start) / 200 / 50 * 1e6
    print(f"predictor scoring: {per_candidate_us:.1f} us per candidate (k = 50, one batched call)")

    result = {
        "oracle": "anas.synthetic.synthetic_acc1 (noise sd 0.12 top-1 points)",
        "head_to_head_1000_fit_500_test": head_to_head,
        "mean_lightgbm_tau": float(np.mean([r["lightgbm_tau"] for r in head_to_head])),
        "mean_random_forest_tau": float(np.mean([r["random_forest_tau"] for r in head_to_head])),
        "mean_linear_tau": float(np.mean([r["linear_tau"] for r in head_to_head])),
        "tau_by_records": curve_means,
        "records_needed_for_tau": needed,
        "scoring_us_per_candidate_k50": round(per_candidate_us, 2),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "predictor.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"mean tau: LightGBM {result['mean_lightgbm_tau']:.3f}, RandomForest {result['mean_random_forest_tau']:.3f}, "
          f"linear {result['mean_linear_tau']:.3f}")
    print(f"wrote {RESULTS / 'predictor.json'}")


if __name__ == "__main__":
    main()
