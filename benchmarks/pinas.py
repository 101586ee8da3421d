"""Pi-NAS's mean teacher and cross-path training against the plain sandwich rule, at equal
epochs, on the README's main job (``tiny`` on the embedded digits, 12 epochs).

    python benchmarks/pinas.py [--seeds 3] [--epochs 12]

For each seed, trains the baseline (in-place distillation, ``--sampler uniform``) and
``--teacher ema --cross-path`` with the same options, and reports the largest and the
smallest subnet's top-1 (BN recalibrated) and the training throughput. The acceptance
asks the largest subnet's mean top-1 to stay within 1.5 points of the baseline's.

Prints a table and writes benchmarks/results/pinas.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
from pathlib import Path

import torch

from anas.train.loop import start_training

RESULTS = Path(__file__).resolve().parent / "results"
VARIANTS = {"baseline": {}, "teacher-ema-cross-path": {"teacher": "ema", "cross_path": True}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=12)
    args = parser.parse_args()
    runs = []
    folder = Path(tempfile.mkdtemp(prefix="anas-pinas-"))
    for seed in range(args.seeds):
        for name, extra in VARIANTS.items():
            options = {"sampler": "uniform", "epochs": args.epochs, "seed": seed, "eval_every": 0,
                       "run_dir": str(folder / f"{name}-{seed}"), **extra}
            summary = start_training(options, progress=False)
            row = {"variant": name, "seed": seed, "largest_acc1": summary.largest["acc1"],
                   "smallest_acc1": summary.smallest["acc1"], "images_per_second": summary.images_per_second,
                   "seconds": summary.seconds}
            runs.append(row)
            print(f"{name:>24} seed {seed}: largest {row['largest_acc1']:.2f} %, smallest {row['smallest_acc1']:.2f} %, "
                  f"{row['images_per_second']:.0f} images/s, {row['seconds']:.0f} s")
    summary = {}
    for name in VARIANTS:
        rows = [r for r in runs if r["variant"] == name]
        summary[name] = {key: {"mean": statistics.mean(r[key] for r in rows),
                               "std": statistics.stdev(r[key] for r in rows) if len(rows) > 1 else 0.0}
                         for key in ("largest_acc1", "smallest_acc1", "images_per_second")}
    gap = summary["teacher-ema-cross-path"]["largest_acc1"]["mean"] - summary["baseline"]["largest_acc1"]["mean"]
    for name, stats in summary.items():
        print(f"{name:>24}: largest {stats['largest_acc1']['mean']:.2f} ± {stats['largest_acc1']['std']:.2f}, "
              f"smallest {stats['smallest_acc1']['mean']:.2f} ± {stats['smallest_acc1']['std']:.2f}, "
              f"{stats['images_per_second']['mean']:.0f} images/s")
    print(f"largest subnet, teacher minus baseline: {gap:+.2f} points (acceptance: within 1.5)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "pinas.json").write_text(json.dumps({
        "job": f"anas train --sampler uniform --epochs {args.epochs} (tiny, digits), seeds 0-{args.seeds - 1}",
        "runs": runs, "summary": summary, "largest_gap_points": gap, "within_1_5_points": abs(gap) <= 1.5,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__},
    }, indent=2) + "\n")
    print(f"wrote {RESULTS / 'pinas.json'}")


if __name__ == "__main__":
    main()
