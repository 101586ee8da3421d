"""Pi-NAS's mean teacher and cross-path training, and its label-free form, against the
plain sandwich rule, at equal epochs, on the README's main job (``tiny`` on the embedded
digits, 12 epochs).

    python benchmarks/pinas.py [--seeds 3] [--epochs 12]

For each seed, trains the baseline (in-place distillation, ``--sampler uniform``),
``--teacher ema --cross-path`` and ``--objective contrastive`` with the same options, and
reports the largest and the smallest subnet's top-1 (BN recalibrated) and the training
throughput. The contrastive run's top-1 is a linear probe's on the subnet's features
(labels unread in training); ``contrastive-untrained`` is the same probe on the
supernet at its initialization, what the label-free training has to improve on. The
acceptance asks the largest subnet's mean top-1 with the teacher to stay within 1.5
points of the baseline's, and the label-free one's probe to reach 80 %.

Prints a table and writes benchmarks/results/pinas.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
from pathlib import Path

import torch

from anas.io import atomic_write_json
from anas.runtime.rundir import RunDir
from anas.space.schema import load_space
from anas.train.config import build_config
from anas.train.loop import set_up, start_training, supernet_trainee

RESULTS = Path(__file__).resolve().parent / "results"
VARIANTS = {"baseline": {}, "teacher-ema-cross-path": {"teacher": "ema", "cross_path": True},
            "contrastive": {"objective": "contrastive"}}
UNTRAINED = "contrastive-untrained"


def untrained_row(options: dict, seed: int) -> dict:
    """The linear probe of the smallest and the largest subnet of a supernet at its
    initialization (built as the contrastive run's, not trained)."""
    config = build_config(options)
    results = supernet_trainee(set_up(config, RunDir(config.run_dir), load_space(config.space))).evaluate()
    return {"variant": UNTRAINED, "seed": seed, "largest_acc1": results["largest"].acc1,
            "smallest_acc1": results["smallest"].acc1, "images_per_second": None, "seconds": 0.0}


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
        options = {"epochs": args.epochs, "seed": seed, "run_dir": str(folder / f"{UNTRAINED}-{seed}"),
                   **VARIANTS["contrastive"]}
        runs.append(untrained_row(options, seed))
    summary = {}
    for name in [*VARIANTS, UNTRAINED]:
        rows = [r for r in runs if r["variant"] == name]
        summary[name] = {key: spread([r[key] for r in rows])
                         for key in ("largest_acc1", "smallest_acc1", "images_per_second")}
    gap = summary["teacher-ema-cross-path"]["largest_acc1"]["mean"] - summary["baseline"]["largest_acc1"]["mean"]
    for name, stats in summary.items():
        rate = stats["images_per_second"]["mean"]
        print(f"{name:>24}: largest {stats['largest_acc1']['mean']:.2f} ± {stats['largest_acc1']['std']:.2f}, "
              f"smallest {stats['smallest_acc1']['mean']:.2f} ± {stats['smallest_acc1']['std']:.2f}"
              + (f", {rate:.0f} images/s" if rate is not None else ""))
    print(f"largest subnet, teacher minus baseline: {gap:+.2f} points (acceptance: within 1.5)")
    probe = summary["contrastive"]["largest_acc1"]["mean"]
    print(f"largest subnet, label-free linear probe: {probe:.2f} % (acceptance: at least 80)")
    atomic_write_json(RESULTS / "pinas.json", {
        "job": f"anas train --sampler uniform --epochs {args.epochs} (tiny, digits), seeds 0-{args.seeds - 1}; "
               f"contrastive: anas train --objective contrastive --epochs {args.epochs} (top-1 of a linear probe)",
        "runs": runs, "summary": summary, "largest_gap_points": gap, "within_1_5_points": abs(gap) <= 1.5,
        "contrastive_probe_at_least_80": probe >= 80,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__},
    })
    print(f"wrote {RESULTS / 'pinas.json'}")


def spread(values: list) -> dict:
    present = [v for v in values if v is not None]
    if not present:
        return {"mean": None, "std": None}
    return {"mean": statistics.mean(present), "std": statistics.stdev(present) if len(present) > 1 else 0.0}


if __name__ == "__main__":
    main()
