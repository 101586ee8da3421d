"""``two-stage`` (HURRICANE-style coordinate search) against NSGA-II with twice its calls.

    python benchmarks/two_stage.py [--quick]

Acceptance: on the attentive-nas space with the synthetic oracle's LightGBM predictor
(``benchmarks/synthetic.py.synthetic_predictor``), ``two-stage`` with 2816 predictor calls
reaches at least 99.5 % of the best predicted top-1 that NSGA-II reaches with 5632 (the
published budget), in every band and seed. For information, NSGA-II at 2816 calls too.

Prints per band the mean best predicted top-1 of each, the ratio two-stage / NSGA-II (the
worst seed's too), the calls and the seconds; writes benchmarks/results/two_stage.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
from pathlib import Path

from synthetic import synthetic_predictor

from anas.io import atomic_write_json
from anas.search.problem import Band, SearchProblem
from anas.search.runner import search
from anas.space.schema import load_space

RESULTS = Path(__file__).resolve().parent / "results"
BANDS = ((200, 225), (300, 350), (400, 600), (700, 720))
SEEDS = (0, 1, 2)
NSGA2_CALLS = 5632  # 512 + 20 x 256: the published search
TWO_STAGE_CALLS = NSGA2_CALLS // 2
ACCEPT = 0.995  # two-stage's best / NSGA-II's best, every band and seed
RUNS = (("nsga2", NSGA2_CALLS), ("two-stage", TWO_STAGE_CALLS), ("nsga2", TWO_STAGE_CALLS))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="one seed")
    args = parser.parse_args()
    seeds = SEEDS[:1] if args.quick else SEEDS
    space = load_space("attentive-nas")
    predictor = synthetic_predictor(space)
    runs = []
    for band in BANDS:
        for strategy, budget in RUNS:
            for seed in seeds:
                problem = SearchProblem(space, predictor, Band(*band))
                result = search(problem, strategy, budget, seed)
                runs.append({"band": f"{band[0]}-{band[1]}", "strategy": strategy, "budget": budget, "seed": seed,
                             "best_pred_acc1": float(result.archive.pred_acc1[result.best]),
                             "best_mflops": float(result.archive.mflops[result.best]),
                             "calls": result.calls, "seconds": round(result.seconds, 3)})

    def cell(band: str, strategy: str, budget: int) -> list[dict]:
        return [r for r in runs if r["band"] == band and r["strategy"] == strategy and r["budget"] == budget]

    bands, accepted = [], True
    print(f"{'band':>9}  {'nsga2@' + str(NSGA2_CALLS):>11} {'two-stage@' + str(TWO_STAGE_CALLS):>15} "
          f"{'ratio':>7} {'worst':>7} {'diff':>6}  {'nsga2@' + str(TWO_STAGE_CALLS):>11} {'ratio':>7}   "
          f"calls (nsga2, two-stage)  seconds (nsga2, two-stage, nsga2@{TWO_STAGE_CALLS})")
    for band in BANDS:
        name = f"{band[0]}-{band[1]}"
        full, two, half = cell(name, *RUNS[0]), cell(name, *RUNS[1]), cell(name, *RUNS[2])
        mean = {k: statistics.mean(r["best_pred_acc1"] for r in rows) for k, rows in
                (("nsga2", full), ("two", two), ("half", half))}
        per_seed = [t["best_pred_acc1"] / f["best_pred_acc1"] for t, f in zip(two, full)]
        per_seed_half = [t["best_pred_acc1"] / h["best_pred_acc1"] for t, h in zip(two, half)]
        row = {"band": name, "nsga2_best": round(mean["nsga2"], 4), "two_stage_best": round(mean["two"], 4),
               "ratio": round(mean["two"] / mean["nsga2"], 5), "worst_seed_ratio": round(min(per_seed), 5),
               "difference_points": round(mean["two"] - mean["nsga2"], 4),
               "nsga2_at_equal_calls_best": round(mean["half"], 4),
               "ratio_at_equal_calls": round(mean["two"] / mean["half"], 5),
               "worst_seed_ratio_at_equal_calls": round(min(per_seed_half), 5),
               "nsga2_calls": statistics.mean(r["calls"] for r in full),
               "two_stage_calls": statistics.mean(r["calls"] for r in two),
               "nsga2_seconds": round(statistics.mean(r["seconds"] for r in full), 3),
               "two_stage_seconds": round(statistics.mean(r["seconds"] for r in two), 3),
               "nsga2_at_equal_calls_seconds": round(statistics.mean(r["seconds"] for r in half), 3)}
        row["accepted"] = (row["worst_seed_ratio"] >= ACCEPT
                           and max(r["calls"] for r in two) <= min(r["calls"] for r in full) / 2)
        accepted &= row["accepted"]
        bands.append(row)
        print(f"{name:>9}  {row['nsga2_best']:>11.3f} {row['two_stage_best']:>15.3f} {row['ratio']:>7.4f} "
              f"{row['worst_seed_ratio']:>7.4f} {row['difference_points']:>+6.3f}  "
              f"{row['nsga2_at_equal_calls_best']:>11.3f} {row['ratio_at_equal_calls']:>7.4f}   "
              f"{row['nsga2_calls']:>8.0f} {row['two_stage_calls']:>6.0f}           "
              f"{row['nsga2_seconds']:>6.2f} {row['two_stage_seconds']:>6.2f} {row['nsga2_at_equal_calls_seconds']:>6.2f}")
    print(f"accepted (two-stage >= {ACCEPT:.1%} of NSGA-II's best with at most half its calls, every band and seed): "
          f"{accepted}")
    if not args.quick:
        atomic_write_json(RESULTS / "two_stage.json", {
            "predictor": "LightGBM (anas defaults) fitted on 1500 attentive-nas subnets, benchmarks/synthetic.py oracle",
            "acceptance": f"two-stage at {TWO_STAGE_CALLS} calls >= {ACCEPT} x NSGA-II's best at {NSGA2_CALLS}, "
                          "every band and seed",
            "accepted": accepted, "bands": bands, "runs": runs,
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        })
        print(f"wrote {RESULTS / 'two_stage.json'}")


if __name__ == "__main__":
    main()
