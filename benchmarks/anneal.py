"""FOX-NAS's simulated annealing (``--strategy anneal``) against NSGA-II at equal budgets.

    python benchmarks/anneal.py [--seeds N]

1. ``attentive-nas`` with the predictor of benchmarks/search.py (LightGBM on 1,500 subnets
   of the synthetic oracle ``benchmarks/synthetic.py``): for each band of
   benchmarks/search.py and seeds 0-2, the best predicted top-1 inside the band of
   ``anneal`` and ``nsga2`` at the published budget (5632 calls), their calls and seconds.
2. ``tiny``, small enough to score every subnet: the FOX-NAS linear predictor
   (``anas.predict.kinds.linear``) fitted on 64 spread subnets of a target it cannot fit
   exactly; ``anneal`` at the default budget against the exhaustive in-band optimum of
   that predictor, over 5 seeds.

Prints tables and writes benchmarks/results/anneal.json (with the default seeds;
``--seeds N`` runs seeds 0..N-1 on attentive-nas and only prints).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
from pathlib import Path

import numpy as np
from synthetic import synthetic_predictor

from anas.predict.kinds.linear import LinearPredictor
from anas.search.problem import Band, SearchProblem
from anas.search.runner import search
from anas.space.arch import ArchBatch
from anas.space.cost import batch_costs, index_costs
from anas.space.sampling import spread_sample
from anas.space.schema import load_space

sys.path.insert(0, str(Path(__file__).resolve().parent))
from search import BANDS  # noqa: E402  (benchmarks/search.py: the same bands)

RESULTS = Path(__file__).resolve().parent / "results"
BUDGET = 5632
STRATEGIES = ("anneal", "nsga2")
TINY_BAND = (1.0, 2.0)
TINY_SEEDS = range(5)


def tiny_target(space, batch: ArchBatch, rng: np.random.Generator) -> np.ndarray:
    """A saturating curve in MFLOPs plus interactions a linear model cannot express (as in
    tests/test_anneal.py)."""
    mflops = batch_costs(space, batch).mflops
    acc = 97.0 - 12.0 * np.exp(-mflops / 0.7)
    acc += 0.8 * ((batch.depth[:, 2] == 3) & (batch.kernel_size[:, 2] == 5))
    acc -= 0.5 * ((batch.width[:, -1] == 128) & (batch.resolution == 24))
    return acc + rng.normal(0.0, 0.2, len(acc))


def attentive_runs(seeds) -> list[dict]:
    space = load_space("attentive-nas")
    predictor = synthetic_predictor(space)
    runs = []
    print(f"attentive-nas, {BUDGET} predictor calls, seeds {seeds[0]}-{seeds[-1]}")
    print(f"{'band':>9} {'seed':>4}  {'anneal':>8} {'calls':>5} {'s':>5}   {'nsga2':>8} {'calls':>5} {'s':>5}   gap")
    for band in BANDS:
        for seed in seeds:
            row = {"band": f"{band[0]}-{band[1]}", "seed": seed}
            for strategy in STRATEGIES:
                result = search(SearchProblem(space, predictor, Band(*band)), strategy, BUDGET, seed)
                row[strategy] = {"best_pred_acc1": float(result.archive.pred_acc1[result.best]),
                                 "best_mflops": float(result.archive.mflops[result.best]),
                                 "calls": result.calls, "seconds": round(result.seconds, 3)}
            row["gap"] = row["anneal"]["best_pred_acc1"] - row["nsga2"]["best_pred_acc1"]
            runs.append(row)
            a, n = row["anneal"], row["nsga2"]
            print(f"{band[0]:>4}-{band[1]:<4} {seed:>4}  {a['best_pred_acc1']:>8.3f} {a['calls']:>5} {a['seconds']:>5.2f}"
                  f"   {n['best_pred_acc1']:>8.3f} {n['calls']:>5} {n['seconds']:>5.2f}   {row['gap']:+.3f}")
    return runs


def tiny_check() -> dict:
    space = load_space("tiny")
    records = ArchBatch.from_archs(spread_sample(space, 64, seed=0))
    predictor = LinearPredictor.fit(space, records, tiny_target(space, records, np.random.default_rng(0)))
    genes = np.array(list(itertools.product(*[range(len(c)) for c in space.column_choices()])), dtype=np.int64)
    mflops = index_costs(space, genes).mflops
    inside = (mflops >= TINY_BAND[0]) & (mflops <= TINY_BAND[1])
    optimum = float(predictor.predict(ArchBatch.from_choice_index(space, genes[inside])).max())
    seeds = []
    for seed in TINY_SEEDS:
        result = search(SearchProblem(space, predictor, Band(*TINY_BAND)), "anneal", BUDGET, seed)
        best = float(result.archive.pred_acc1[result.best])
        seeds.append({"seed": seed, "best_pred_acc1": best, "below_optimum": optimum - best, "calls": result.calls,
                      "seconds": round(result.seconds, 3)})
    hits = sum(s["below_optimum"] <= 0.01 for s in seeds)
    found = ", ".join(f"{s['best_pred_acc1']:.3f}" for s in seeds)
    print(f"tiny, {TINY_BAND[0]:g}-{TINY_BAND[1]:g} MFLOPs ({int(inside.sum())} of {len(genes)} subnets), linear "
          f"predictor on 64 records: exhaustive optimum {optimum:.3f}; anneal within 0.01 in {hits} of {len(seeds)} "
          f"seeds (found {found})")
    return {"band": f"{TINY_BAND[0]:g}-{TINY_BAND[1]:g}", "subnets": len(genes), "in_band": int(inside.sum()),
            "predictor": "linear (anas.predict.kinds.linear) on 64 spread_sample records of a non-linear target",
            "optimum": optimum, "within_0.01": hits, "seeds": seeds}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3, help="attentive-nas seeds 0..N-1 (default 3: writes the results)")
    args = parser.parse_args()
    seeds = list(range(args.seeds))
    runs = attentive_runs(seeds)
    per_band = {}
    for band in BANDS:
        cell = [r for r in runs if r["band"] == f"{band[0]}-{band[1]}"]
        per_band[cell[0]["band"]] = {
            "anneal_mean": round(statistics.mean(r["anneal"]["best_pred_acc1"] for r in cell), 4),
            "nsga2_mean": round(statistics.mean(r["nsga2"]["best_pred_acc1"] for r in cell), 4),
            "mean_gap": round(statistics.mean(r["gap"] for r in cell), 4),
            "worst_gap": round(min(r["gap"] for r in cell), 4),
        }
        print(f"{cell[0]['band']:>9}: anneal {per_band[cell[0]['band']]['anneal_mean']:.3f}, nsga2 "
              f"{per_band[cell[0]['band']]['nsga2_mean']:.3f} (mean gap {per_band[cell[0]['band']]['mean_gap']:+.3f}, "
              f"worst {per_band[cell[0]['band']]['worst_gap']:+.3f})")
    timing = {s: {"mean_seconds": round(statistics.mean(r[s]["seconds"] for r in runs), 3),
                  "max_seconds": round(max(r[s]["seconds"] for r in runs), 3),
                  "max_calls": max(r[s]["calls"] for r in runs)} for s in STRATEGIES}
    within = sum(r["gap"] >= -0.02 for r in runs)
    print(f"anneal within 0.02 points of nsga2 (or above) in {within} of {len(runs)} (band, seed) cases; {timing}")
    tiny = tiny_check()
    if args.seeds == 3:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "anneal.json").write_text(json.dumps({
            "predictor": "LightGBM (anas defaults) fitted on 1500 attentive-nas subnets, benchmarks/synthetic.py oracle",
            "budget": BUDGET, "runs": runs, "per_band": per_band, "within_0.02": within, "timing": timing,
            "tiny": tiny, "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        }, indent=2) + "\n")
        print(f"wrote {RESULTS / 'anneal.json'}")


if __name__ == "__main__":
    main()
