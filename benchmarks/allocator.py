"""Page faults per training pass, with glibc's malloc defaults and with freed memory kept by
glibc's environment variables (``MALLOC_TRIM_THRESHOLD_=1073741824``,
``MALLOC_MMAP_THRESHOLD_=33554432``: docs/train.md, "The memory allocator").

    python benchmarks/allocator.py [--passes N]

For each space and setting, a fresh process runs forward+backward passes of a random
subnet of the supernet (``cifar`` at batch 64, ``tiny`` at batch 64) and counts the minor
page faults of the timed passes (``getrusage``). Prints the figures and writes
benchmarks/results/allocator.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

PASSES = """
import resource, sys, time
import numpy as np, torch
import torch.nn.functional as F
from anas.nn.supernet import Supernet
from anas.space import load_space, sample_archs
space, passes = load_space(sys.argv[2]), int(sys.argv[3])
torch.manual_seed(0)
supernet = Supernet(space).train()
arch = sample_archs(space, 1, np.random.default_rng(1))[0]
supernet.set_active(arch)
images = torch.randn(64, 3, arch.resolution, arch.resolution)
labels = torch.randint(0, space.num_classes, (64,))
def step():
    supernet.zero_grad(set_to_none=True)
    F.cross_entropy(supernet(images), labels).backward()
for _ in range(3):
    step()
before, start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
for _ in range(passes):
    step()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(faults / passes, (time.perf_counter() - start) / passes * 1e3)
"""


GLIBC_ENVIRONMENT = {"MALLOC_TRIM_THRESHOLD_": str(1 << 30), "MALLOC_MMAP_THRESHOLD_": str(32 << 20)}
"""glibc's own variables for the same two thresholds, read when the process starts."""


def measure(setting: str, space: str, passes: int) -> dict:
    env = {name: value for name, value in os.environ.items() if name not in GLIBC_ENVIRONMENT}
    env.update(GLIBC_ENVIRONMENT if setting == "environment" else {})
    done = subprocess.run([sys.executable, "-c", PASSES, setting, space, str(passes)], capture_output=True,
                          text=True, check=True, env=env)
    faults, ms = done.stdout.split()
    return {"space": space, "setting": setting, "environment": GLIBC_ENVIRONMENT if setting == "environment" else {},
            "faults_per_pass": float(faults), "ms_per_pass": round(float(ms), 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--passes", type=int, default=20)
    args = parser.parse_args()
    rows = []
    for space in ("tiny", "cifar"):
        for setting in ("glibc-defaults", "environment"):
            row = measure(setting, space, args.passes)
            rows.append(row)
            print(f"{space:>6} {setting:>14}: {row['faults_per_pass']:8.1f} page faults per pass, "
                  f"{row['ms_per_pass']:8.2f} ms per pass")
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "allocator.json"
    path.write_text(json.dumps({"rows": rows, "passes": args.passes,
                                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}},
                               indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
