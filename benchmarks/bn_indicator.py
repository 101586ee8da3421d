"""How fast the BN-NAS indicator scores subnets: a gather and a sum over an ArchBatch.

    python benchmarks/bn_indicator.py [--subnets 100000] [--repeats 5]

For the ``attentive-nas`` space (the ImageNet space users search: 7 stages, up to 8
blocks, 6 operations per block) and the ``tiny`` one, with private and shared BNs, it
reads the indicator table from a supernet with random BN scales and times
``indicator_scores`` on ``--subnets`` sampled subnets (best of ``--repeats``; the table
read is timed apart, it happens once per search). For comparison it also times the cost
model (``batch_costs``) on the same batch, and one forward pass of the smallest subnet
of ``attentive-nas`` at batch 1 (what evaluating a single subnet costs at the least).
Writes benchmarks/results/bn_indicator.json.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch

from anas.io import atomic_write_json
from anas.nn.bn_indicator import indicator_scores, indicator_table
from anas.nn.supernet import Supernet
from anas.space.arch import sample_archs, smallest_arch
from anas.space.cost import batch_costs
from anas.space.schema import load_space

RESULTS = Path(__file__).resolve().parent / "results"


def best_of(repeats: int, work) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def randomized(space, private_bn: bool) -> Supernet:
    supernet = Supernet(space, private_bn=private_bn)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for bn in supernet.indicator_bns():
            bn.weight.copy_(torch.randn(bn.weight.shape, generator=gen))
    return supernet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subnets", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(RESULTS / "bn_indicator.json"))
    args = parser.parse_args()
    rows = []
    for name in ("attentive-nas", "tiny"):
        space = load_space(name)
        batch = sample_archs(space, args.subnets, np.random.default_rng(0))
        batch_costs(space, batch)  # build the cost tables once, as a search does
        cost_seconds = best_of(args.repeats, lambda: batch_costs(space, batch))
        for private_bn in (True, False):
            supernet = randomized(space, private_bn)
            table_seconds = best_of(args.repeats, lambda: indicator_table(supernet))
            table = indicator_table(supernet)
            seconds = best_of(args.repeats, lambda: indicator_scores(space, table, batch))
            rows.append({"space": name, "private_bn": private_bn, "subnets": args.subnets,
                         "score_seconds": seconds, "table_seconds": table_seconds,
                         "subnets_per_second": args.subnets / seconds, "cost_model_seconds": cost_seconds,
                         "table_shape": list(table.values.shape)})
            print(f"{name:14s} private_bn={private_bn!s:5s} {args.subnets:,} subnets scored in {seconds:.3f} s "
                  f"(table read {table_seconds * 1000:.1f} ms; cost model {cost_seconds:.3f} s)")
    space = load_space("attentive-nas")
    supernet = Supernet(space).eval()
    arch = smallest_arch(space)
    supernet.set_active(arch)
    x = torch.randn(1, 3, arch.resolution, arch.resolution)
    with torch.no_grad():
        supernet(x)
        forward = best_of(args.repeats, lambda: supernet(x))
    print(f"one forward pass of the smallest attentive-nas subnet at batch 1: {forward * 1000:.1f} ms "
          f"({rows[0]['score_seconds'] / args.subnets / forward:.2g} of it per indicator score)")
    result = {"rows": rows, "forward_smallest_batch1_seconds": forward, "repeats": args.repeats,
              "machine": {"platform": platform.platform(), "torch": torch.__version__, "numpy": np.__version__,
                          "threads": torch.get_num_threads()}}
    atomic_write_json(Path(args.out), result)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
