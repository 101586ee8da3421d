"""Speed of supernet training on this machine.

    python benchmarks/train_step.py [--quick]

1. The time of one sandwich step (largest + 2 sampled + smallest subnet, gradient
   accumulation, one SGD step) for a fixed batch, with the uniform and the bestup-k3 sampler.
2. The ratio of the supernet's forward+backward time in subnet mode to the extracted static
   network's, for the same subnet and batch (target: at most 1.05 on the CPU).

Prints the figures and writes benchmarks/results/train_step.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from anas.arch import largest_arch, sample_archs, smallest_arch
from anas.run import RunDir
from anas.space import load_space
from anas.supernet import Supernet
from anas.train import Trainer, build_config

RESULTS = Path(__file__).resolve().parent / "results"


def forward_backward_seconds(model, images, labels) -> float:
    """Seconds of one zero_grad + forward + cross-entropy + backward."""
    start = time.perf_counter()
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(images), labels).backward()
    return time.perf_counter() - start


def subnet_ratio(space_name: str, batch: int, rounds: int) -> list[dict]:
    """Supernet (subnet mode) vs static network. The two alternate step by step so that they
    share the machine's noise; the fastest of ``rounds`` steps of each is compared."""
    space = load_space(space_name)
    torch.manual_seed(0)
    supernet = Supernet(space).train()
    archs = {"smallest": smallest_arch(space), "random": sample_archs(space, 1, np.random.default_rng(0))[0],
             "largest": largest_arch(space)}
    rows = []
    for name, arch in archs.items():
        supernet.set_active(arch)
        static = supernet.get_active_subnet().train()
        static.head.dropout.p = 0.0  # the supernet's subnets run without dropout
        images = torch.randn(batch, 3, arch.resolution, arch.resolution)
        labels = torch.randint(0, space.num_classes, (batch,))
        super_t, static_t = [], []
        for i in range(rounds + 3):
            s, t = forward_backward_seconds(supernet, images, labels), forward_backward_seconds(static, images, labels)
            if i >= 3:  # warm-up
                super_t.append(s)
                static_t.append(t)
        s, t = min(super_t), min(static_t)
        rows.append({"space": space_name, "subnet": name, "batch": batch, "resolution": arch.resolution,
                     "supernet_ms": round(s * 1e3, 3), "static_ms": round(t * 1e3, 3), "ratio": round(s / t, 4),
                     "median_ratio": round(statistics.median(super_t) / statistics.median(static_t), 4)})
        print(f"{space_name:>6} {name:>8} batch {batch:>3} res {arch.resolution}: supernet {s * 1e3:8.2f} ms, "
              f"static {t * 1e3:8.2f} ms, ratio {s / t:.3f} (of medians {rows[-1]['median_ratio']:.3f})")
    return rows


def sandwich_step(space_name: str, sampler: str, batch: int, steps: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        config = build_config({"space": space_name, "data": "fake", "batch_size": batch, "sampler": sampler,
                               "device": "cpu", "run_dir": tmp})
        trainer = Trainer(config, RunDir(tmp), load_space(space_name), progress=False)
        res = max(trainer.space.resolutions)
        images = torch.randn(batch, 3, res, res)
        labels = torch.randint(0, trainer.num_classes, (batch,))
        for _ in range(3):
            trainer.train_step(images, labels)
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            trainer.train_step(images, labels)
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    print(f"{space_name:>6} sandwich step ({sampler}, 4 subnets, batch {batch}): {median * 1e3:8.1f} ms "
          f"({batch / median:,.0f} images/s)")
    return {"space": space_name, "sampler": sampler, "batch": batch, "step_ms": round(median * 1e3, 2),
            "images_per_second": round(batch / median, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    args = parser.parse_args()
    rounds, steps = (3, 3) if args.quick else (40, 10)
    ratios = subnet_ratio("tiny", 64, rounds) + subnet_ratio("cifar", 64, rounds)
    steps_rows = [sandwich_step(space, sampler, 64, steps) for space in ("tiny", "cifar")
                  for sampler in ("uniform", "bestup-k3")]
    result = {
        "sandwich_step": steps_rows,
        "supernet_vs_static": ratios,
        "max_ratio": max(r["ratio"] for r in ratios),
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "python": platform.python_version(), "torch": torch.__version__, "device": "cpu"},
    }
    print(f"largest supernet/static ratio: {result['max_ratio']:.3f} (target <= 1.05)")
    if not args.quick:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "train_step.json").write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {RESULTS / 'train_step.json'}")


if __name__ == "__main__":
    main()
