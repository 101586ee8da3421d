"""Every registered search strategy at equal predictor-call budgets.

    python benchmarks/search.py [--quick]

A LightGBM predictor is fitted on 1,500 attentive-nas subnets whose accuracy comes from the
synthetic oracle ``anas.synthetic.synthetic_acc1`` (no ImageNet supernet can be trained
here). For several MFLOPs bands (one next to the smallest subnet), budgets and seeds, each
strategy reports the best predicted top-1 inside the band, the predictor calls it made and
its wall time. The budget of the published search is 512 + 20 x 256 = 5632 calls.

Prints a table and writes benchmarks/results/search.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
from pathlib import Path

from synthetic import synthetic_predictor

from anas.search.problem import Band, SearchProblem
from anas.search.runner import search
from anas.search.strategies import STRATEGIES
from anas.space.schema import load_space

RESULTS = Path(__file__).resolve().parent / "results"
BANDS = ((200, 225), (300, 350), (400, 600), (700, 720))
BUDGETS = (512, 2048, 5632)
SEEDS = (0, 1, 2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="one seed, two bands, two budgets")
    args = parser.parse_args()
    bands, budgets, seeds = (BANDS[:1] + BANDS[2:3], BUDGETS[:1] + BUDGETS[2:], SEEDS[:1]) if args.quick else (BANDS, BUDGETS, SEEDS)
    space = load_space("attentive-nas")
    predictor = synthetic_predictor(space)
    runs = []
    print(f"{'band':>9} {'budget':>6} {'strategy':>9}  best predicted top-1 (mean of {len(seeds)} seeds)  calls  seconds")
    for band in bands:
        for budget in budgets:
            for strategy in STRATEGIES.names():
                rows = []
                for seed in seeds:
                    result = search(SearchProblem(space, predictor, Band(*band)), strategy, budget, seed)
                    rows.append({"band": f"{band[0]}-{band[1]}", "budget": budget, "strategy": strategy, "seed": seed,
                                 "best_pred_acc1": float(result.archive.pred_acc1[result.best]),
                                 "best_mflops": float(result.archive.mflops[result.best]),
                                 "calls": result.calls, "seconds": round(result.seconds, 3),
                                 "front_size": int(len(result.front))})
                runs += rows
                print(f"{band[0]:>4}-{band[1]:<4} {budget:>6} {strategy:>9}  "
                      f"{statistics.mean(r['best_pred_acc1'] for r in rows):>8.3f}"
                      f"{'':>30}{statistics.mean(r['calls'] for r in rows):>7.0f}"
                      f"{statistics.mean(r['seconds'] for r in rows):>9.2f}")
    published = [r for r in runs if r["budget"] == 5632]
    summary = {s: {"mean_seconds_at_5632": round(statistics.mean(r["seconds"] for r in published if r["strategy"] == s), 3),
                   "max_seconds_at_5632": round(max(r["seconds"] for r in published if r["strategy"] == s), 3)}
               for s in STRATEGIES.names()}
    wins = {s: 0 for s in STRATEGIES.names()}
    for band in bands:
        for budget in budgets:
            for seed in seeds:
                cell = [r for r in runs if r["band"] == f"{band[0]}-{band[1]}" and r["budget"] == budget and r["seed"] == seed]
                top = max(r["best_pred_acc1"] for r in cell)
                for r in cell:  # every strategy that reached the best of the cell (ties count for each)
                    wins[r["strategy"]] += r["best_pred_acc1"] >= top - 1e-9
    print(f"time at the published budget (5632 calls): {summary}")
    print(f"strategies reaching the best of each (band, budget, seed), ties counted for each: {wins}")
    if not args.quick:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "search.json").write_text(json.dumps({
            "predictor": "LightGBM (anas defaults) fitted on 1500 attentive-nas subnets, benchmarks/synthetic.py oracle",
            "runs": runs, "timing": summary, "wins": wins,
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        }, indent=2) + "\n")
        print(f"wrote {RESULTS / 'search.json'}")


if __name__ == "__main__":
    main()
