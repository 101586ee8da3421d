"""FP-NAS's learned distribution, measured where it can be checked exactly.

    python benchmarks/fpnas.py

1. Adaptive K against a fixed K: on the ``tiny`` space with a planted log-likelihood (the
   one of tests/test_distribution.py: it favours some settings and penalizes MFLOPs), the
   factorized distribution learns for 1,500 steps (learning rate 0.2, rewards 4 x f) with
   K = max(2, ceil(4 x entropy)) drawn per step, and with K fixed at the adaptive rule's
   starting value. Reported per seed: the subnets drawn in total and the probability of
   the learned mode at the end.
2. ``anas search --strategy fpnas`` against ``nsga2`` and ``random`` on ``attentive-nas``
   with the synthetic-oracle predictor (as benchmarks/search.py), 3 bands, seeds 0-2, the
   default budget: best predicted top-1 and seconds.

Writes benchmarks/results/fpnas.json.

    python benchmarks/fpnas.py --training WORK

3. The training sampler against the AttentiveNAS pipeline, on runs of
   ``benchmarks/methods.py --work WORK`` (the main job, 12 epochs, seeds 0-2): the
   ``best.json`` of each ``fpnas`` run (1.0 MFLOPs target) evaluated with its supernet,
   next to the best subnet under 1.0 MFLOPs that ``anas search`` finds on the ``bestup-k3``
   run of the same seed (a LightGBM predictor fitted on its 64 records, NSGA-II, the 3
   best predicted verified, the best measured kept). Writes
   benchmarks/results/fpnas-training.json.
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from synthetic import synthetic_predictor

from anas.io import atomic_write_json
from anas.search.problem import Band, SearchProblem
from anas.search.runner import search
from anas.space.distribution import SubnetDistribution, adaptive_k
from anas.space.schema import load_space

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from test_distribution import _planted  # noqa: E402  (the planted objective of the tests)

RESULTS = Path(__file__).resolve().parent / "results"
SEEDS = (0, 1, 2)
BANDS = ((200, 225), (300, 350), (400, 600))


def learn(space, adaptive: bool, seed: int, lam: float = 4.0, steps: int = 1500, lr: float = 0.2) -> dict:
    dist, rng = SubnetDistribution.factorized(space), np.random.default_rng(seed)
    start_k, total = adaptive_k(dist.entropy(), lam), 0
    for _ in range(steps):
        k = adaptive_k(dist.entropy(), lam) if adaptive else start_k
        genes = dist.sample(k, rng)
        total += k
        dist.update(genes, 4 * _planted(space, genes), lr)
    return {"drawn": total, "start_k": start_k, "mode_probability": float(np.exp(dist.log_prob(dist.mode()))[0]),
            "entropy": dist.entropy()}


def training_comparison(work: Path) -> None:
    from anas.evaluate.trained import load_trained_run
    from anas.predict.fit import fit_and_report
    from anas.predict.records import read_records
    from anas.search.runner import SearchOptions, search_subnets
    from anas.space.arch import arch_from_dict

    rows = []
    for seed in SEEDS:
        run = load_trained_run(work / f"fpnas-seed{seed}")
        best = json.loads((run.run_dir.path / "best.json").read_text())
        fpnas = run.evaluate(arch_from_dict(run.space, best))
        bestup = work / f"bestup-k3-seed{seed}"
        records = read_records(bestup / "records.csv", run.space, run.num_classes)
        fit_and_report(run.space, records, bestup / "predictor-lgbm", num_classes=run.num_classes, plot=False)
        low = min(r for r in records["mflops"])
        report = search_subnets(SearchOptions(flops=f"{low:.4f}-1.0", predictor=str(bestup / "predictor-lgbm"),
                                              run=str(bestup), verify=3, seed=seed,
                                              out=str(bestup / "search-under-1")))
        measured = max(report.measured.values())
        rows.append({"seed": seed, "fpnas_best_mflops": best["mflops"], "fpnas_best_probability": best["probability"],
                     "fpnas_best_acc1": fpnas.acc1, "bestup_search_mflops": float(report.result.archive.mflops[report.best]),
                     "bestup_search_acc1": measured})
        print(f"seed {seed}: fpnas best.json {best['mflops']:.3f} MFLOPs, top-1 {fpnas.acc1:.2f} | bestup-k3 + search "
              f"{rows[-1]['bestup_search_mflops']:.3f} MFLOPs, top-1 {measured:.2f}")
    out = RESULTS / "fpnas-training.json"
    atomic_write_json(out, {"rows": rows, "mean_fpnas_acc1": statistics.fmean(r["fpnas_best_acc1"] for r in rows),
                            "mean_bestup_search_acc1": statistics.fmean(r["bestup_search_acc1"] for r in rows)})
    print(f"written to {out}")


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--training":
        training_comparison(Path(sys.argv[2]))
        return
    tiny = load_space("tiny")
    adaptive_rows = []
    for seed in SEEDS:
        fixed, adaptive = learn(tiny, False, seed), learn(tiny, True, seed)
        adaptive_rows.append({"seed": seed, "fixed": fixed, "adaptive": adaptive})
        print(f"seed {seed}: fixed K={fixed['start_k']}: {fixed['drawn']} drawn, mode p {fixed['mode_probability']:.3f}"
              f" | adaptive: {adaptive['drawn']} drawn, mode p {adaptive['mode_probability']:.3f}")
    mean = {form: statistics.fmean(r[form]["mode_probability"] for r in adaptive_rows) for form in ("fixed", "adaptive")}
    drawn = {form: statistics.fmean(r[form]["drawn"] for r in adaptive_rows) for form in ("fixed", "adaptive")}
    print(f"mean: fixed {drawn['fixed']:.0f} drawn, mode p {mean['fixed']:.3f}; adaptive {drawn['adaptive']:.0f} "
          f"drawn, mode p {mean['adaptive']:.3f} (difference {mean['adaptive'] - mean['fixed']:+.3f})")

    space = load_space("attentive-nas")
    predictor = synthetic_predictor(space)
    search_rows = []
    for band in BANDS:
        for strategy in ("fpnas", "nsga2", "random"):
            for seed in SEEDS:
                start = time.perf_counter()
                result = search(SearchProblem(space, predictor, Band(*band)), strategy, 5632, seed)
                search_rows.append({"band": f"{band[0]}-{band[1]}", "strategy": strategy, "seed": seed,
                                    "best_pred_acc1": float(result.archive.pred_acc1[result.best]),
                                    "calls": result.calls, "seconds": time.perf_counter() - start})
            rows = [r for r in search_rows if r["band"] == f"{band[0]}-{band[1]}" and r["strategy"] == strategy]
            print(f"{band[0]}-{band[1]} {strategy:>6}: best {statistics.fmean(r['best_pred_acc1'] for r in rows):.3f} "
                  f"(mean of {len(rows)} seeds), {statistics.fmean(r['seconds'] for r in rows):.2f} s")
    out = RESULTS / "fpnas.json"
    atomic_write_json(out, {"adaptive_k": adaptive_rows, "adaptive_k_mean_mode_probability": mean,
                            "adaptive_k_mean_drawn": drawn, "search": search_rows,
                            "machine": {"platform": platform.platform()}})
    print(f"written to {out}")


if __name__ == "__main__":
    main()
