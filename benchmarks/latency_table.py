"""How well a per-device latency table predicts whole subnets (HURRICANE), and a search
under a latency band that trusts it.

    python benchmarks/latency_table.py [--quick] [--threads 1]

1. For each device (``cpu``: PyTorch eager; ``ort-cpu``: onnxruntime), builds the table of
   the ``cifar`` space (every layer timed, then 30 subnets timed whole for the overhead
   fit), then times 50 other random subnets whole and compares them with the table's
   predictions: Spearman correlation and median relative error (the acceptance asks for
   >= 0.9 and <= 15 %).
2. Trains a ``cifar``-space supernet on the embedded digits (one epoch), fits a predictor,
   and runs ``anas search --latency LO-HI --latency-table TABLE --verify 3``: the timed
   latency of the verified subnets against the band widened by 10 %.

The ``cpu`` table is built after the training, just before the search: on a shared
machine whole-network latency drifts by several per cent over tens of minutes. Prints the
figures and writes benchmarks/results/latency_table.json (tables and runs go to a
temporary folder). ``--quick`` checks the ``cpu`` table on 10 subnets only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from anas.io import atomic_write_json
from anas.latency.lookup_table import LatencyModel, TableConfig, agreement, build_latency_table, read_latency_table
from anas.latency.measure import subnet_latency
from anas.space.arch import sample_archs
from anas.space.schema import load_space

RESULTS = Path(__file__).resolve().parent / "results"
HELD_OUT_SEED = 1000  # the fit's subnets come from seed 0


def check_table(device: str, threads: int, held_out: int, folder: Path) -> dict:
    space = load_space("cifar")
    config = TableConfig(device=device, threads=threads)
    start = time.perf_counter()
    table = build_latency_table(space, config, folder / f"cifar-{device}.json", progress=True)
    build_seconds = time.perf_counter() - start
    model = LatencyModel(table, space)
    batch = sample_archs(space, held_out, np.random.default_rng(HELD_OUT_SEED))
    timing = config.latency_config()
    measured = np.array([subnet_latency(space, arch, timing) for arch in batch])
    predicted = model.predict(batch)
    spearman, error = agreement(predicted, measured)
    raw_spearman, _ = agreement(model.layer_sum(batch), measured)
    row = {"device": device, "threads": threads, "layers": len(table.entries), "build_seconds": round(build_seconds, 1),
           "fit": {"overhead_ms": table.fit.overhead_ms, "scale": table.fit.scale,
                   "per_layer_ms": table.fit.per_layer_ms, "per_mparam_ms": table.fit.per_mparam_ms,
                   "spearman": table.fit.spearman,
                   "median_rel_error": table.fit.median_rel_error},
           "held_out": held_out, "spearman": spearman, "median_rel_error": error,
           "spearman_of_layer_sum": raw_spearman,
           "measured_ms": [float(measured.min()), float(np.median(measured)), float(measured.max())],
           "passes": bool(spearman >= 0.9 and error <= 0.15), "table": str(folder / f"cifar-{device}.json")}
    print(f"{device:>8}: {row['layers']} layers in {build_seconds:.0f} s; {held_out} held-out subnets "
          f"({measured.min():.2f}-{measured.max():.2f} ms): Spearman {spearman:.3f}, median relative error "
          f"{100 * error:.1f} % (layer sum alone: Spearman {raw_spearman:.3f})")
    return row


def anas(*args: str) -> str:
    """Run ``anas ARGS`` in a fresh process, as a user would; its standard output."""
    done = subprocess.run([sys.executable, "-m", "anas", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"anas {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def train_run(folder: Path) -> str:
    """A ``cifar``-space supernet trained one epoch on the digits, with its predictor."""
    run = str(folder / "run")
    anas("train", "--space", "cifar", "--epochs", "1", "--run-dir", run, "--quiet")
    anas("predict-fit", "--run", run, "--samples", "24", "--quiet")
    return run


def check_search(table_path: str, run: str) -> dict:
    """Search under a latency band (the second quartile of the table's predictions for
    random subnets) with the table, verify 3 subnets, compare with the band widened by 10 %."""
    space = load_space("cifar")
    model = LatencyModel(read_latency_table(table_path), space)
    spread = np.sort(model.predict(sample_archs(space, 2000, np.random.default_rng(5))))
    low, high = round(float(spread[len(spread) // 4]), 3), round(float(spread[len(spread) // 2]), 3)
    args = ["search", "--flops", "0-10000", "--latency", f"{low}-{high}", "--latency-table", table_path,
            "--predictor", run, "--run", run, "--verify", "3", "--latency-runs", "30", "--budget", "2000", "--json"]
    verified = json.loads(anas(*args))["verified"]
    widened = (0.9 * low, 1.1 * high)
    inside = [widened[0] <= v["measured_latency_ms"] <= widened[1] for v in verified]
    predicted = ", ".join(f"{v['latency_ms']:.2f}" for v in verified)
    measured = ", ".join(f"{v['measured_latency_ms']:.2f}" for v in verified)
    print(f"search --latency {low}-{high} --latency-table {Path(table_path).name} --verify 3: predicted {predicted} ms, "
          f"measured {measured} ms; "
          f"inside {widened[0]:.3f}-{widened[1]:.3f} ms (the band widened by 10 %): {sum(inside)}/3")
    return {"band_ms": [low, high], "widened_ms": list(widened), "verified": verified, "inside_widened": inside,
            "passes": all(inside), "command": "anas " + " ".join(args)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="10 held-out subnets, cpu only, no search")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (PyTorch and onnxruntime)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)  # a script: setting the process's threads is its business
    folder = Path(tempfile.mkdtemp(prefix="anas-latency-"))
    if args.quick:
        print(json.dumps(check_table("cpu", args.threads, 10, folder), indent=2))
        return
    os.chdir(folder)
    ort = check_table("ort-cpu", args.threads, 50, folder)
    run = train_run(folder)
    cpu = check_table("cpu", args.threads, 50, folder)  # just before the search: whole networks drift over time
    result = {"space": "cifar", "tables": [cpu, ort],
              "search": {"cpu": check_search(cpu["table"], run), "ort-cpu": check_search(ort["table"], run)},
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
                          "processor": platform.processor() or platform.machine()}}
    atomic_write_json(RESULTS / "latency_table.json", result)
    print(f"wrote {RESULTS / 'latency_table.json'}")


if __name__ == "__main__":
    main()
