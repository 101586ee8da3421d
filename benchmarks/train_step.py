"""Speed of supernet training on this machine.

    python benchmarks/train_step.py [--quick] [--device cuda] [--amp bf16|fp16] [--channels-last] [--processes N]
                                    [--glibc-defaults]

1. The time of one sandwich step (largest + 2 sampled + smallest subnet, gradient
   accumulation, one SGD step) for a fixed batch, with the uniform and the bestup-k3 sampler.
2. The ratio of the supernet's forward+backward time in subnet mode to the extracted static
   network's, for the same subnet and batch (target: at most 1.05 on the CPU), for the
   smallest, two random and the largest subnet, with how many shared tensors each slices
   and what the difference comes to per sliced tensor; and the ratio of the four together.
   Each is measured in three (``--processes``) fresh processes (the median is reported, and
   each process's figure), since the figure can move more from process to process than
   within one (on this project's VM up to 0.08 with glibc's malloc defaults, about 0.02
   with freed memory kept).

Every process first does what ``anas train`` does by default: it has glibc's malloc keep
freed memory (``anas.cli.allocator``); ``--glibc-defaults`` measures without.

Prints the figures and writes benchmarks/results/train_step.json (on the CPU in float32;
other settings write train_step-DEVICE[-AMP][-channels-last][-glibc-defaults].json).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from anas.cli.allocator import keep_freed_memory
from anas.nn.supernet import Supernet
from anas.runtime.rundir import RunDir
from anas.space.arch import largest_arch, sample_archs, smallest_arch
from anas.space.schema import load_space
from anas.train.config import build_config
from anas.train.loop import set_up, supernet_trainee

RESULTS = Path(__file__).resolve().parent / "results"
SIZES = {"cifar": 64, "attentive-nas": 16}  # space: batch per step
TARGET = 1.05


@dataclass(frozen=True)
class Setting:
    device: torch.device
    amp: str = "none"
    channels_last: bool = False
    keep_freed_memory: bool = True  # as anas train does by default

    def autocast(self):
        if self.amp == "none":
            return nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16 if self.amp == "bf16" else torch.float16)

    def place(self, module_or_images):
        moved = module_or_images.to(self.device)
        return moved.to(memory_format=torch.channels_last) if self.channels_last else moved

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @property
    def label(self) -> str:
        return "-".join([self.device.type] + ([self.amp] if self.amp != "none" else [])
                        + (["channels-last"] if self.channels_last else [])
                        + ([] if self.keep_freed_memory else ["glibc-defaults"]))

    def apply_to_process(self) -> bool:
        """What ``anas train`` does to its process; whether malloc now keeps freed memory."""
        return keep_freed_memory() if self.keep_freed_memory else False


def forward_backward_seconds(model, images, labels, setting: Setting) -> float:
    """Seconds of one forward + cross-entropy + backward; clearing the gradients beforehand
    is not timed (a training step does it once for all its subnets)."""
    model.zero_grad(set_to_none=True)
    setting.synchronize()
    start = time.perf_counter()
    with setting.autocast():
        loss = F.cross_entropy(model(images).float(), labels)
    loss.backward()
    setting.synchronize()
    return time.perf_counter() - start


def sliced_tensors(supernet: Supernet, static) -> int:
    """How many parameters of the active subnet (extracted as ``static``) are a strict part
    of a shared tensor."""
    return sum(param.shape != shared.shape
               for name, module in supernet.active_modules()
               for shared, param in zip(module.parameters(), static.get_submodule(name).parameters()))


def subnet_ratio(space_name: str, batch: int, rounds: int, seconds: float, setting: Setting) -> list[dict]:
    """Supernet (subnet mode) vs static network for the smallest, two random and the largest
    subnet (one sandwich), in this process. ``ratio`` is the median, over at least
    ``rounds`` rounds and at least ``seconds`` of them, of the ratio measured within each
    round (the two alternate, so they share the machine's noise); ``ratio_of_fastest``
    compares the fastest step of each. The time floor gives a small subnet, whose round
    takes milliseconds, as many rounds as a brief slow-down of the machine needs to average
    out."""
    setting.apply_to_process()
    space = load_space(space_name)
    torch.manual_seed(0)
    supernet = setting.place(Supernet(space).train())
    randoms = sample_archs(space, 2, np.random.default_rng(0))
    archs = {"smallest": smallest_arch(space), "random": randoms[0], "random-2": randoms[1],
             "largest": largest_arch(space)}
    rows = []
    for name, arch in archs.items():
        supernet.set_active(arch)
        static = setting.place(supernet.get_active_subnet().train())
        static.head.dropout.p = 0.0  # the supernet's subnets run without dropout
        images = setting.place(torch.randn(batch, 3, arch.resolution, arch.resolution))
        labels = torch.randint(0, space.num_classes, (batch,)).to(setting.device)
        super_t, static_t, paired = [], [], []
        started, i = time.perf_counter(), 0
        while i < rounds + 2 or time.perf_counter() - started < seconds:
            # one round: supernet, static, static, supernet (ABBA), so that a drift of the
            # machine's speed within the round falls on both alike
            s1 = forward_backward_seconds(supernet, images, labels, setting)
            t1 = forward_backward_seconds(static, images, labels, setting)
            t2 = forward_backward_seconds(static, images, labels, setting)
            s2 = forward_backward_seconds(supernet, images, labels, setting)
            if i >= 2:  # warm-up
                super_t += [s1, s2]
                static_t += [t1, t2]
                paired.append((s1 + s2) / (t1 + t2))
            i += 1
        rows.append({"space": space_name, "subnet": name, "batch": batch, "resolution": arch.resolution,
                     "rounds": len(paired), "supernet_ms": min(super_t) * 1e3, "static_ms": min(static_t) * 1e3,
                     "ratio": statistics.median(paired), "sliced_tensors": sliced_tensors(supernet, static)})
    return rows


def subnet_ratio_in_processes(space_name: str, batch: int, rounds: int, seconds: float, setting: Setting,
                              processes: int) -> tuple[list[dict], dict]:
    """:func:`subnet_ratio` in ``processes`` fresh processes, one after the other. On this
    project's CPU VM one process's median ratio is steady, yet another process can measure
    the same subnet about 0.02 higher or lower (0.08 with glibc's malloc defaults); each
    subnet's ``ratio`` is the median over the processes, ``ratio_per_process`` lists them."""
    context = multiprocessing.get_context("spawn")
    runs = []
    for _ in range(processes):
        with context.Pool(1) as pool:
            runs.append(pool.apply(subnet_ratio, (space_name, batch, rounds, seconds, setting)))
    rows = []
    for per_process in zip(*runs):
        first = per_process[0]
        ratios = [r["ratio"] for r in per_process]
        s, t = min(r["supernet_ms"] for r in per_process), min(r["static_ms"] for r in per_process)
        sliced = first["sliced_tensors"]
        row = {**{k: first[k] for k in ("space", "subnet", "batch", "resolution")},
               "rounds": sum(r["rounds"] for r in per_process), "supernet_ms": round(s, 3), "static_ms": round(t, 3),
               "ratio": round(statistics.median(ratios), 4), "ratio_per_process": [round(r, 4) for r in ratios],
               "ratio_of_fastest": round(s / t, 4), "sliced_tensors": sliced,
               "overhead_us_per_sliced_tensor": round((s - t) / sliced * 1e3, 1) if sliced else None}
        rows.append(row)
        print(f"{space_name:>6} {row['subnet']:>8} batch {batch:>3} res {row['resolution']}: supernet {s:8.2f} ms, "
              f"static {t:8.2f} ms (fastest), ratio {row['ratio']:.3f} (per process: "
              f"{', '.join(f'{r:.3f}' for r in ratios)}; of the fastest: {s / t:.3f}); {sliced} sliced tensors")
    total_super, total_static = sum(r["supernet_ms"] for r in rows), sum(r["static_ms"] for r in rows)
    sandwich = {"space": space_name, "batch": batch, "subnets": [r["subnet"] for r in rows],
                "supernet_ms": round(total_super, 3), "static_ms": round(total_static, 3),
                "ratio_of_fastest": round(total_super / total_static, 4),
                # each subnet's ratio, weighted by its share of the static time
                "ratio": round(sum(r["ratio"] * r["static_ms"] for r in rows) / total_static, 4)}
    print(f"{space_name:>6} the four subnets together: ratio {sandwich['ratio']:.3f} "
          f"(of the fastest: {sandwich['ratio_of_fastest']:.3f})")
    return rows, sandwich


def sandwich_step(space_name: str, sampler: str, batch: int, steps: int, setting: Setting) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        config = build_config({"space": space_name, "data": "fake", "batch_size": batch, "sampler": sampler,
                               "device": str(setting.device), "amp": setting.amp,
                               "channels_last": setting.channels_last, "run_dir": tmp})
        trainee = supernet_trainee(set_up(config, RunDir(tmp), load_space(space_name)))
        res = max(trainee.setup.space.resolutions)
        images = setting.place(torch.randn(batch, 3, res, res))
        labels = torch.randint(0, trainee.setup.num_classes, (batch,)).to(setting.device)
        for index in range(3):
            trainee.step(images, labels, index)
        times = []
        for index in range(steps):
            setting.synchronize()
            start = time.perf_counter()
            trainee.step(images, labels, index)  # ends with .item() of the losses: synchronized
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    print(f"{space_name:>6} sandwich step ({sampler}, 4 subnets, batch {batch}): {median * 1e3:8.1f} ms "
          f"({batch / median:,.0f} images/s)")
    return {"space": space_name, "sampler": sampler, "batch": batch, "step_ms": round(median * 1e3, 2),
            "images_per_second": round(batch / median, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"])
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--glibc-defaults", action="store_true",
                        help="leave glibc's malloc settings alone (anas train --no-keep-freed-memory)")
    parser.add_argument("--processes", type=int, default=3,
                        help="fresh processes per space for the supernet/static ratios (default 3; 1 with --quick)")
    args = parser.parse_args()
    if args.amp == "fp16" and not args.device.startswith("cuda"):
        parser.error("--amp fp16 needs --device cuda")
    setting = Setting(torch.device(args.device), args.amp, args.channels_last, not args.glibc_defaults)
    rounds, seconds, processes, steps = (1, 0.0, 1, 2) if args.quick else (4, 15.0, args.processes, 10)
    ratios, sandwiches = [], []
    for name, batch in SIZES.items():
        rows, sandwich = subnet_ratio_in_processes(name, batch, rounds, seconds, setting, processes)
        ratios += rows
        sandwiches.append(sandwich)
    kept = setting.apply_to_process()
    steps_rows = [sandwich_step("cifar", sampler, SIZES["cifar"], steps, setting) for sampler in ("uniform", "bestup-k3")]
    result = {
        "sandwich_step": steps_rows,
        "supernet_vs_static": ratios,
        "supernet_vs_static_sandwich": sandwiches,
        "max_ratio": max(r["ratio"] for r in ratios),
        "target": TARGET,
        "setting": {"device": str(setting.device), "amp": setting.amp, "channels_last": setting.channels_last,
                    "malloc_keeps_freed_memory": kept},
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "python": platform.python_version(), "torch": torch.__version__,
                    "gpu": torch.cuda.get_device_name(setting.device) if setting.device.type == "cuda" else None},
    }
    print(f"largest supernet/static ratio: {result['max_ratio']:.3f} (target <= {TARGET})")
    if not args.quick:
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / ("train_step.json" if setting.label == "cpu" else f"train_step-{setting.label}.json")
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
