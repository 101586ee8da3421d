"""Speed of supernet training on this machine, alone or against an earlier checkout of anas.

    python benchmarks/train_step.py [--quick] [--device cuda] [--amp bf16|fp16] [--channels-last]
                                    [--processes N] [--glibc-defaults] [--against PATH]
                                    [--spaces cifar,attentive-nas] [--no-steps] [--out FILE]

1. The time of one sandwich step (largest + 2 sampled + smallest subnet, gradient
   accumulation, one SGD step) of the ``cifar`` space at batch 64, with the uniform and the
   bestup-k3 sampler (median of 10 steps).
2. The ratio of the supernet's forward+backward time in subnet mode to the extracted static
   network's, for the same subnet and batch (target: at most 1.05), for the smallest, two
   random and the largest subnet of ``cifar`` at batch 64 and of ``attentive-nas`` at batch
   16, with how many shared tensors each crops; and the ratio of the four together. Within
   a process the two alternate (rounds of supernet, static, static, supernet; at least 15 s
   of rounds; the median of the per-round ratios).

Every figure is measured in ``--processes`` (3) fresh processes and the median reported,
since a figure moves more from process to process than within one on this project's VM.
Each process starts with glibc's malloc keeping freed memory (``MALLOC_TRIM_THRESHOLD_``,
``MALLOC_MMAP_THRESHOLD_``: docs/train.md); ``--glibc-defaults`` measures without.

``--against PATH`` (a checkout of an earlier anas, e.g. ``git worktree add ../before
COMMIT``) measures it too, each of its processes paired with one of this tree's and run
alternately, so both share the machine's drift; for each figure it reports both medians and
the median of the paired ratios (this tree over the earlier one).

Prints the figures and writes benchmarks/results/train_step.json (on the CPU in float32;
other settings write train_step-DEVICE[-AMP][-channels-last][-glibc-defaults].json), or
``--out FILE``; ``--spaces`` and ``--no-steps`` measure a part of it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve()
TREE = HERE.parent.parent
RESULTS = HERE.parent / "results"
SIZES = {"cifar": 64, "attentive-nas": 16}  # space: batch per step
TARGET = 1.05
MALLOC = {"MALLOC_TRIM_THRESHOLD_": str(1 << 30), "MALLOC_MMAP_THRESHOLD_": str(32 << 20)}


@dataclass(frozen=True)
class Setting:
    device: str = "cpu"
    amp: str = "none"
    channels_last: bool = False
    glibc_defaults: bool = False

    @property
    def label(self) -> str:
        return "-".join([self.device.split(":")[0]] + ([self.amp] if self.amp != "none" else [])
                        + (["channels-last"] if self.channels_last else [])
                        + (["glibc-defaults"] if self.glibc_defaults else []))


# ----------------------------------------------------------------------------------------
# In a measuring process (``--worker``): one task, its figures printed as JSON
# ----------------------------------------------------------------------------------------


class Place:
    """The setting in a measuring process: device, autocast, memory format."""

    def __init__(self, setting: Setting):
        import torch

        self.torch, self.setting, self.device = torch, setting, torch.device(setting.device)

    def autocast(self):
        if self.setting.amp == "none":
            return nullcontext()
        dtype = self.torch.bfloat16 if self.setting.amp == "bf16" else self.torch.float16
        return self.torch.autocast(self.device.type, dtype=dtype)

    def __call__(self, module_or_images):
        moved = module_or_images.to(self.device)
        return moved.to(memory_format=self.torch.channels_last) if self.setting.channels_last else moved

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)


def forward_backward_seconds(model, images, labels, place: Place) -> float:
    """Seconds of one forward + cross-entropy + backward; clearing the gradients beforehand
    is not timed (a training step does it once for all its subnets)."""
    import torch.nn.functional as F

    model.zero_grad(set_to_none=True)
    place.synchronize()
    start = time.perf_counter()
    with place.autocast():
        loss = F.cross_entropy(model(images).float(), labels)
    loss.backward()
    place.synchronize()
    return time.perf_counter() - start


def cropped_tensors(supernet, static) -> int:
    """How many parameters of the active subnet (extracted as ``static``) are a strict part
    of a shared tensor."""
    return sum(param.shape != shared.shape
               for name, module in supernet.active_modules()
               for shared, param in zip(module.parameters(), static.get_submodule(name).parameters()))


def subnet_ratios(space_name: str, batch: int, rounds: int, seconds: float, place: Place) -> list[dict]:
    """Supernet (subnet mode) against static network for the smallest, two random and the
    largest subnet: per subnet the median, over at least ``rounds`` rounds and at least
    ``seconds`` of them, of the ratio measured within each round (the two alternate, so
    they share the machine's noise)."""
    import numpy as np
    import torch

    from anas.nn.supernet import Supernet
    from anas.space.arch import largest_arch, sample_archs, smallest_arch
    from anas.space.schema import load_space

    space = load_space(space_name)
    torch.manual_seed(0)
    supernet = place(Supernet(space).train())
    randoms = sample_archs(space, 2, np.random.default_rng(0))
    archs = {"smallest": smallest_arch(space), "random": randoms[0], "random-2": randoms[1],
             "largest": largest_arch(space)}
    rows = []
    for name, arch in archs.items():
        supernet.set_active(arch)
        static = place(supernet.get_active_subnet().train())
        static.head.dropout.p = 0.0  # the supernet's subnets run without dropout
        images = place(torch.randn(batch, 3, arch.resolution, arch.resolution))
        labels = torch.randint(0, space.num_classes, (batch,)).to(place.device)
        super_t, static_t, paired = [], [], []
        started, i = time.perf_counter(), 0
        while i < rounds + 2 or time.perf_counter() - started < seconds:
            # one round: supernet, static, static, supernet (ABBA), so that a drift of the
            # machine's speed within the round falls on both alike
            s1 = forward_backward_seconds(supernet, images, labels, place)
            t1 = forward_backward_seconds(static, images, labels, place)
            t2 = forward_backward_seconds(static, images, labels, place)
            s2 = forward_backward_seconds(supernet, images, labels, place)
            if i >= 2:  # warm-up
                super_t += [s1, s2]
                static_t += [t1, t2]
                paired.append((s1 + s2) / (t1 + t2))
            i += 1
        rows.append({"space": space_name, "subnet": name, "batch": batch, "resolution": arch.resolution,
                     "rounds": len(paired), "supernet_ms": min(super_t) * 1e3, "static_ms": min(static_t) * 1e3,
                     "ratio": statistics.median(paired), "cropped_tensors": cropped_tensors(supernet, static)})
    return rows


def training_step(config_values: dict, folder: str):
    """One sandwich step of the run that ``config_values`` describe: ``(step(images, labels,
    index), classes)``, through the training API of the anas on the path (this tree's, or
    before 0.2 an earlier checkout's ``Trainer``)."""
    from anas.space.schema import load_space
    from anas.train.config import build_config

    config = build_config(config_values)
    space = load_space(config.space)
    try:
        from anas.runtime.rundir import RunDir
        from anas.train.loop import set_up, supernet_trainee
    except ImportError:  # anas before 0.2 (--against an earlier checkout)
        from anas.train.rundir import RunDir

        from anas.train.loop import Trainer

        trainer = Trainer(config, RunDir(folder), space, progress=False)
        return (lambda images, labels, index: trainer.train_step(images, labels)), trainer.num_classes
    trainee = supernet_trainee(set_up(config, RunDir(folder), space))
    return trainee.step, trainee.setup.num_classes


def sandwich_step(space_name: str, sampler: str, batch: int, steps: int, place: Place) -> dict:
    import torch

    from anas.space.schema import load_space

    with tempfile.TemporaryDirectory() as folder:
        step, classes = training_step({"space": space_name, "data": "fake", "batch_size": batch, "sampler": sampler,
                                       "device": place.setting.device, "amp": place.setting.amp,
                                       "channels_last": place.setting.channels_last, "run_dir": folder}, folder)
        res = max(load_space(space_name).resolutions)
        images = place(torch.randn(batch, 3, res, res))
        labels = torch.randint(0, classes, (batch,)).to(place.device)
        for index in range(3):
            step(images, labels, index)
        times = []
        for index in range(steps):
            place.synchronize()
            start = time.perf_counter()
            step(images, labels, index)  # ends with .item() of the losses: synchronized
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {"space": space_name, "sampler": sampler, "batch": batch, "step_ms": median * 1e3}


def worker(task: dict) -> None:
    """Run one measuring task in this (fresh) process; print its figures as JSON."""
    place = Place(Setting(**task["setting"]))
    if task["kind"] == "ratios":
        figures = subnet_ratios(task["space"], task["batch"], task["rounds"], task["seconds"], place)
    else:
        figures = [sandwich_step(task["space"], sampler, task["batch"], task["steps"], place)
                   for sampler in ("uniform", "bestup-k3")]
    print(json.dumps(figures))


# ----------------------------------------------------------------------------------------
# The main process: tasks in fresh processes, of this tree and (--against) an earlier one
# ----------------------------------------------------------------------------------------


def run_task(task: dict, tree: Path) -> list[dict]:
    """``task`` in a fresh process that imports anas from ``tree``."""
    env = {name: value for name, value in os.environ.items() if name not in MALLOC}
    if not task["setting"]["glibc_defaults"]:
        env.update(MALLOC)
    env["PYTHONPATH"] = str(tree)
    done = subprocess.run([sys.executable, str(HERE), "--worker", json.dumps(task)], capture_output=True, text=True,
                          env=env, cwd=tree, check=False)
    if done.returncode != 0:
        raise SystemExit(f"a measuring process of {tree} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measured(task: dict, trees: list[Path], processes: int) -> dict[Path, list[list[dict]]]:
    """``task`` in ``processes`` fresh processes per tree, the trees taking turns."""
    runs: dict[Path, list[list[dict]]] = {tree: [] for tree in trees}
    for _ in range(processes):
        for tree in trees:
            runs[tree].append(run_task(task, tree))
    return runs


def ratio_rows(per_process: list[list[dict]]) -> tuple[list[dict], dict]:
    """Each subnet's figures over the processes, and the four subnets together."""
    rows = []
    for subnet_runs in zip(*per_process):
        first = subnet_runs[0]
        ratios = [r["ratio"] for r in subnet_runs]
        s, t = min(r["supernet_ms"] for r in subnet_runs), min(r["static_ms"] for r in subnet_runs)
        cropped = first["cropped_tensors"]
        rows.append({**{k: first[k] for k in ("space", "subnet", "batch", "resolution")},
                     "rounds": sum(r["rounds"] for r in subnet_runs), "supernet_ms": round(s, 3),
                     "static_ms": round(t, 3), "ratio": round(statistics.median(ratios), 4),
                     "ratio_per_process": [round(r, 4) for r in ratios], "ratio_of_fastest": round(s / t, 4),
                     "cropped_tensors": cropped,
                     "overhead_us_per_cropped_tensor": round((s - t) / cropped * 1e3, 1) if cropped else None})
    total_super, total_static = sum(r["supernet_ms"] for r in rows), sum(r["static_ms"] for r in rows)
    together = {"space": rows[0]["space"], "batch": rows[0]["batch"], "subnets": [r["subnet"] for r in rows],
                "supernet_ms": round(total_super, 3), "static_ms": round(total_static, 3),
                "ratio_of_fastest": round(total_super / total_static, 4),
                # each subnet's ratio, weighted by its share of the static time
                "ratio": round(sum(r["ratio"] * r["static_ms"] for r in rows) / total_static, 4)}
    return rows, together


def step_rows(per_process: list[list[dict]]) -> list[dict]:
    rows = []
    for sampler_runs in zip(*per_process):
        first = sampler_runs[0]
        times = [r["step_ms"] for r in sampler_runs]
        median = statistics.median(times)
        rows.append({**{k: first[k] for k in ("space", "sampler", "batch")}, "step_ms": round(median, 2),
                     "step_ms_per_process": [round(t, 2) for t in times],
                     "images_per_second": round(first["batch"] / median * 1e3, 1)})
    return rows


def paired(after: list[list[dict]], before: list[list[dict]], key: str) -> list[float]:
    """Per row, the median over the process pairs of this tree's figure over the earlier one's."""
    return [round(statistics.median(a[key] / b[key] for a, b in zip(rows_after, rows_before)), 4)
            for rows_after, rows_before in zip(zip(*after), zip(*before))]


def print_ratio(row: dict, label: str = "") -> None:
    print(f"{label}{row['space']:>13} {row['subnet']:>8} batch {row['batch']:>3} res {row['resolution']}: "
          f"supernet {row['supernet_ms']:8.2f} ms, static {row['static_ms']:8.2f} ms (fastest), ratio "
          f"{row['ratio']:.3f} (per process: {', '.join(f'{r:.3f}' for r in row['ratio_per_process'])}); "
          f"{row['cropped_tensors']} cropped tensors")


def commit_of(tree: Path) -> str | None:
    done = subprocess.run(["git", "-C", str(tree), "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    return done.stdout.strip() or None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"])
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--glibc-defaults", action="store_true", help="leave glibc's malloc settings alone")
    parser.add_argument("--processes", type=int, default=3, help="fresh processes per figure (1 with --quick)")
    parser.add_argument("--against", type=Path, help="a checkout of an earlier anas to measure alongside")
    parser.add_argument("--spaces", default=",".join(SIZES), help="spaces of the supernet/static ratios")
    parser.add_argument("--no-steps", action="store_true", help="leave the sandwich step out")
    parser.add_argument("--out", type=Path, help="results file (default: benchmarks/results/train_step*.json)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return
    if args.amp == "fp16" and not args.device.startswith("cuda"):
        parser.error("--amp fp16 needs --device cuda")
    setting = Setting(args.device, args.amp, args.channels_last, args.glibc_defaults)
    rounds, seconds, processes, steps = (1, 0.0, 1, 2) if args.quick else (4, 15.0, args.processes, 10)
    trees = [TREE] + ([args.against.resolve()] if args.against else [])
    result: dict = {"supernet_vs_static": [], "supernet_vs_static_sandwich": []}
    against: dict = {"path": str(args.against), "commit": commit_of(args.against), "pairs": processes,
                     "supernet_vs_static": [], "sandwich_step": []} if args.against else {}
    spaces = [name.strip() for name in args.spaces.split(",") if name.strip()]
    if not set(spaces) <= set(SIZES):
        parser.error(f"--spaces: use {', '.join(SIZES)}")
    for space, batch in ((name, SIZES[name]) for name in spaces):
        task = {"kind": "ratios", "space": space, "batch": batch, "rounds": rounds, "seconds": seconds,
                "setting": asdict(setting)}
        runs = measured(task, trees, processes)
        rows, together = ratio_rows(runs[TREE])
        result["supernet_vs_static"] += rows
        result["supernet_vs_static_sandwich"].append(together)
        for row in rows:
            print_ratio(row)
        print(f"{space:>13} the four subnets together: ratio {together['ratio']:.3f}")
        if args.against:
            before, _ = ratio_rows(runs[trees[1]])
            for row, earlier, change in zip(rows, before, paired(runs[TREE], runs[trees[1]], "ratio")):
                print_ratio(earlier, "   earlier: ")
                against["supernet_vs_static"].append({"space": space, "subnet": row["subnet"], "ratio": row["ratio"],
                                                      "ratio_before": earlier["ratio"], "paired_change": change})
    result["sandwich_step"] = []
    if not args.no_steps:
        task = {"kind": "steps", "space": "cifar", "batch": SIZES["cifar"], "steps": steps,
                "setting": asdict(setting)}
        runs = measured(task, trees, processes)
        result["sandwich_step"] = step_rows(runs[TREE])
    for row in result["sandwich_step"]:
        print(f"{row['space']:>13} sandwich step ({row['sampler']}, 4 subnets, batch {row['batch']}): "
              f"{row['step_ms']:8.1f} ms ({row['images_per_second']:,.0f} images/s)")
    if args.against and result["sandwich_step"]:
        for row, earlier, change in zip(result["sandwich_step"], step_rows(runs[trees[1]]),
                                        paired(runs[TREE], runs[trees[1]], "step_ms")):
            print(f"      earlier: sandwich step ({row['sampler']}): {earlier['step_ms']:8.1f} ms; this tree over "
                  f"the earlier one, median of the pairs: {change:.3f}")
            against["sandwich_step"].append({"space": row["space"], "sampler": row["sampler"],
                                             "step_ms": row["step_ms"], "step_ms_before": earlier["step_ms"],
                                             "paired_change": change})
    if args.against:
        for row in against["supernet_vs_static"]:
            print(f"{row['space']:>13} {row['subnet']:>8}: ratio {row['ratio']:.3f}, earlier {row['ratio_before']:.3f}"
                  f"; this tree over the earlier one, median of the pairs: {row['paired_change']:.3f}")
        result["against"] = against
    result.update(max_ratio=max(r["ratio"] for r in result["supernet_vs_static"]), target=TARGET,
                  setting={**asdict(setting), "malloc": {} if setting.glibc_defaults else MALLOC},
                  machine={"cpus": os.cpu_count(), "python": platform.python_version(), "commit": commit_of(TREE)})
    print(f"largest supernet/static ratio: {result['max_ratio']:.3f} (target <= {TARGET})")
    if not args.quick:
        path = args.out or RESULTS / ("train_step.json" if setting.label == "cpu" else f"train_step-{setting.label}.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
