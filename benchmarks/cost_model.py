"""Throughput of the vectorized cost model, and wall time of `anas profile --sample 100000`.

    python benchmarks/cost_model.py

Prints subnets/s per batch size and space, and writes benchmarks/results/cost_model.json.
"""

from __future__ import annotations

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

from anas.space.arch import sample_archs
from anas.space.cost import batch_costs
from anas.space.schema import load_space

RESULTS = Path(__file__).resolve().parent / "results"


def best_rate(space, n: int, repeats: int = 5) -> float:
    """Subnets per second of the cost model alone (best of ``repeats``)."""
    batch = sample_archs(space, n, np.random.default_rng(0))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        batch_costs(space, batch)
        best = min(best, time.perf_counter() - start)
    return n / best


def cli_seconds(n: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "anas", "profile", "--space", "attentive-nas", "--sample", str(n),
             "--out", os.path.join(tmp, "t.csv")],
            check=True, capture_output=True,
        )
        return time.perf_counter() - start


def main() -> None:
    rates = {}
    for name in ("attentive-nas", "cifar", "tiny"):
        space = load_space(name)
        rates[name] = {str(n): round(best_rate(space, n)) for n in (1_000, 10_000, 100_000, 1_000_000)}
        for n, rate in rates[name].items():
            print(f"{name:>14}  batch {int(n):>9,}  {rate:>12,} subnets/s")
    seconds = cli_seconds(100_000)
    print(f"anas profile --space attentive-nas --sample 100000 --out t.csv: {seconds:.2f} s wall (with start-up)")
    result = {
        "subnets_per_second": rates,
        "cli_sample_100000_seconds": round(seconds, 3),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
                    "torch": torch.__version__, "processor": platform.machine()},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cost_model.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS / 'cost_model.json'}")


if __name__ == "__main__":
    main()
