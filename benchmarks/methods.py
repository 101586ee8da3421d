"""Every supernet-training method measured the same way, on the digits or Fashion-MNIST.

    python benchmarks/methods.py [--data fashion-mnist] [--quick] [--methods uniform,bestup-k3] [--work DIR]

For each method (a set of ``anas train`` options and a way to rank subnets) and each of
3 seeds, it trains a supernet with the README's main job (``tiny`` space, the AttentiveNAS
recipe) under one compute budget per dataset (:data:`SCALES`): the embedded digits for
12 epochs, or Fashion-MNIST's first 1,000 training images of each class for 5 epochs
(10,000 images, a sixth of its training split: the budget that fits the whole benchmark,
3 seeds, into about 3 hours on a 2-core CPU) with all 10,000 test images for validation.
It evaluates the same 64 subnets spread over the MFLOPs range with BN recalibration
(``anas predict-fit``'s records), and compares them with 8 of those subnets trained
stand-alone once (``anas standalone``, seed 0, the same recipe and epochs), shared by
every method. A method ranks subnets by their evaluated top-1 (the supernet's
weights), or by a zero-cost predictor read from its run (``--kind bn``: the BN-NAS
indicator). Per method it reports the mean and the spread (standard deviation over
seeds, and min..max) of

- the best top-1 among the 64 in each of 4 equal MFLOPs bands of the space's range,
- the mean top-1 of the 64,
- Kendall tau of the method's ranking against stand-alone accuracy on the 8,
- for zero-cost rankings, Kendall tau against the evaluated top-1 of the 64 with the
  ``uniform`` supernet of the same seed,

next to the taus of MFLOPs alone and params alone.

Prints one table and writes benchmarks/results/methods.json, or methods-fashion-mnist.json
(``--quick``: 1 seed, 1 epoch, 16 and 4 subnets, written to methods[-DATA]-quick.json,
for tests). It can run a part at a time: with ``--work`` the runs, evolutions and
stand-alone trainings already there are reused (an interrupted run resumes), and the
methods of an earlier part stay in the results file when its scale is the same. A method
issue adds its row to ``METHODS``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from anas.autospace.evolve import evolve_space
from anas.autospace.population import largest_mflops
from anas.data import fashion_mnist
from anas.errors import AnasWarning
from anas.evaluate.run_records import collect_records
from anas.evaluate.standalone import StandaloneOptions, standalone
from anas.evaluate.trained import TrainedRun, load_trained_run
from anas.io import atomic_write_json, read_json
from anas.predict.kinds import PREDICTOR_KINDS
from anas.predict.metrics import rank_metrics
from anas.runtime.rundir import load_checkpoint
from anas.space.arch import ArchBatch
from anas.space.compare import space_changes
from anas.space.cost import batch_costs, mflops_range
from anas.space.sampling import spread_sample
from anas.space.schema import load_space
from anas.space.table_format import subnet_keys
from anas.train.loop import resume_training, start_training

RESULTS = Path(__file__).resolve().parent / "results"

METHODS: dict[str, dict] = {
    "uniform": {"train": {"sampler": "uniform"}},
    "bestup-k3": {"train": {"sampler": "bestup-k3"}},
    "worstup-k3": {"train": {"sampler": "worstup-k3"}},
    # BN-NAS: BN-only training (uniform single subnets, as in the paper) for a tenth of the schedule
    "bn-only-1ep+bn-indicator": {"train": {"sampler": "uniform", "private_bn": True, "train_only": "bn",
                                           "epochs": 1, "warmup_epochs": 0.0}, "rank_by": "bn"},
    "full-train+bn-indicator": {"train": {"sampler": "uniform", "private_bn": True}, "rank_by": "bn"},
    # FP-NAS: middle subnets from a distribution learned on 10 % held-out training images, 1.0 MFLOPs target
    "fpnas": {"train": {"sampler": "fpnas", "holdout": 0.1, "flops_target": 1.0}},
    # Pi-NAS, supervised form: a mean teacher, cross-path pairs on two views (uniform A, as the baseline row)
    "pinas-ema-cross-path": {"train": {"sampler": "uniform", "teacher": "ema", "cross_path": True}},
    # Pi-NAS, label-free form: cross-path InfoNCE, no labels; subnets measured by a linear probe
    "pinas-contrastive": {"train": {"objective": "contrastive"}},
    # AutoSpace: the baseline recipe on a space evolved from tiny (within tiny's largest MFLOPs)
    "autospace": {"train": {"sampler": "uniform"}, "evolve": {}},
    # the same with an MFLOPs penalty in the mixed layers' loss (lambda 0.1)
    "autospace-penalty": {"train": {"sampler": "uniform"}, "evolve": {"flops_penalty": 0.1}},
}
"""Each method: its options of ``anas train`` (on top of the README's main job; an
``epochs`` here is the method's own) and how it ranks subnets: ``rank_by`` names a
zero-cost predictor kind read from the run; without it, the evaluated top-1. With
``evolve`` (options of ``anas space evolve``), the run trains on a space evolved from the
main job's with the run's seed, whose largest subnet is held to the main job's largest
MFLOPs, so that the bands compare like with like."""

REFERENCE = "uniform"
"""The method whose evaluated top-1 zero-cost rankings are compared with."""

BANDS = 4


@dataclass(frozen=True)
class Scale:
    data: str = "digits"
    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: int = 12  # the README's main job
    subnets: int = 64  # evaluated with the supernet's weights
    standalone: int = 8  # trained stand-alone (the first of the 64)
    generations: int = 10  # of a space evolution (methods with ``evolve``); its other options are the defaults
    train_per_class: int | None = None  # Fashion-MNIST: the first N training images of each class (None: all)
    test_per_class: int | None = None  # and of its test images

    def as_dict(self) -> dict:
        return {**asdict(self), "seeds": list(self.seeds)}


SCALES = {
    "digits": Scale(),
    "fashion-mnist": Scale(data="fashion-mnist", epochs=5, train_per_class=1000),
}
QUICK = {
    "digits": Scale(seeds=(0,), epochs=1, subnets=16, standalone=4, generations=1),
    "fashion-mnist": Scale(data="fashion-mnist", seeds=(0,), epochs=1, subnets=16, standalone=4, generations=1,
                           train_per_class=20, test_per_class=10),
}
MAIN_SPACE = "tiny"


def data_options(work: Path, scale: Scale) -> dict:
    """The ``anas train`` options of the scale's data: for Fashion-MNIST a folder of the
    subset it trains on, written once into the work folder from Debian's package."""
    if scale.data != "fashion-mnist":
        return {"data": scale.data}
    folder = work / f"fashion-mnist-{scale.train_per_class or 'all'}-{scale.test_per_class or 'all'}"
    if not (folder / f"{fashion_mnist.FILES['test'][1]}.gz").is_file():
        fashion_mnist.write_subset(folder, fashion_mnist.DEBIAN_FOLDER, scale.train_per_class, scale.test_per_class)
    return {"data": scale.data, "data_dir": str(folder)}


def train_run(work: Path, method: str, seed: int, scale: Scale) -> Path:
    """The run of ``method`` and ``seed`` in the work folder: trained, finished or reused."""
    folder = work / f"{method}-seed{seed}"
    options = {**data_options(work, scale), **METHODS[method]["train"]}
    epochs = min(options.get("epochs", scale.epochs), scale.epochs)
    if "evolve" in METHODS[method]:
        options = {**options, "space": str(evolved_space_file(work, method, seed, scale))}
    checkpoint = folder / "checkpoints" / "last.pt"
    if not checkpoint.is_file():
        start_training({**options, "seed": seed, "epochs": epochs, "run_dir": str(folder)}, progress=False)
    elif unfinished(load_checkpoint(checkpoint), epochs):
        resume_training(str(folder), {}, progress=False)
    return folder


def unfinished(state: dict, epochs: int) -> bool:
    return state["epoch"] < epochs or state["step_in_epoch"] > 0


def evolved_space_file(work: Path, method: str, seed: int, scale: Scale) -> Path:
    """The space ``anas space evolve`` makes from the main job's for this method and seed
    (an evolution already in the work folder resumes or is reused)."""
    budget = largest_mflops(load_space(MAIN_SPACE))
    options = {**METHODS[method]["evolve"], **data_options(work, scale), "space": MAIN_SPACE, "seed": seed,
               "generations": scale.generations, "max_flops": budget}
    if scale.generations < Scale.generations:  # --quick: a few steps
        options["steps"] = 5
    return evolve_space(options, folder=work / f"{method}-seed{seed}-evolution", progress=False).path


def ranking_scores(method: str, run: TrainedRun, batch: ArchBatch, evaluated: np.ndarray) -> np.ndarray:
    """How ``method`` ranks the subnets of ``batch``: their evaluated top-1, or its zero-cost predictor's scores."""
    kind = METHODS[method].get("rank_by")
    if kind is None:
        return evaluated
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AnasWarning)  # the rows say which runs share their BNs
        predictor = PREDICTOR_KINDS.get(kind).from_supernet(run.supernet, None, run.num_classes)
    return predictor.predict(batch)


def supernet_accuracies(run: TrainedRun, subnets: int) -> dict[tuple, float]:
    """Top-1 of the ``subnets`` spread subnets with the supernet's weights, by settings."""
    _, table, _ = collect_records(run, subnets, seed=0)
    return dict(zip(subnet_keys(run.space, table), table["acc1"].to_numpy(float)))


def band_edges(run: TrainedRun) -> np.ndarray:
    """The MFLOPs bands of every method: the reference run's range in equal parts."""
    return np.linspace(*mflops_range(run.space), BANDS + 1)


def spread_subnets(run: TrainedRun, scale: Scale) -> ArchBatch:
    """The subnets every method is measured on (the same for every run)."""
    return ArchBatch.from_archs(spread_sample(run.space, scale.subnets, 0, run.num_classes))


def evaluated_top1(run: TrainedRun, scale: Scale) -> np.ndarray:
    """Top-1 of :func:`spread_subnets` with the run's weights, in their order."""
    accuracies = supernet_accuracies(run, scale.subnets)
    return np.array([accuracies[tuple(row)] for row in spread_subnets(run, scale).matrix()])


def tau(measured, score) -> float:
    return rank_metrics(np.asarray(measured, float), np.asarray(score, float))["kendall_tau"]


def figures_of_run(method: str, folder: Path, scale: Scale, standalone_acc: dict[tuple, float],
                   reference_acc: np.ndarray, edges: np.ndarray) -> dict:
    """A run's figures; a subnet below the lowest band counts in it, one above the highest in none."""
    run = load_trained_run(folder)
    batch = spread_subnets(run, scale)
    acc = evaluated_top1(run, scale)
    mflops = batch_costs(run.space, batch, run.num_classes).mflops
    band = np.clip(np.searchsorted(edges, mflops, side="right") - 1, 0, BANDS - 1)
    band[mflops > edges[-1] + 1e-9] = -1
    best = [float(acc[band == b].max()) if (band == b).any() else None for b in range(BANDS)]
    score = ranking_scores(method, run, batch, acc)
    keys = [tuple(row) for row in batch.matrix()]
    alone = [i for i, key in enumerate(keys) if key in standalone_acc and "evolve" not in METHODS[method]]
    figures = {"best_acc1_per_band": best, "mean_acc1": float(acc.mean()),
               "kendall_tau": tau([standalone_acc[keys[i]] for i in alone], score[alone]) if alone else None}
    if METHODS[method].get("rank_by"):
        figures["kendall_tau_evaluated"] = tau(reference_acc, score)
    if "evolve" in METHODS[method]:
        figures["space_changes"] = [vars(c) for c in space_changes(load_space(MAIN_SPACE), run.space)]
        figures["mflops_range"] = list(mflops_range(run.space))
    return figures


def cost_baselines(run: TrainedRun, scale: Scale, standalone_acc: dict[tuple, float],
                   reference_acc: list[np.ndarray]) -> dict:
    """Kendall tau of MFLOPs alone and of params alone, against the stand-alone top-1 and
    against each seed's evaluated top-1 of the reference method."""
    batch = spread_subnets(run, scale)
    costs = batch_costs(run.space, batch, run.num_classes)
    keys = [tuple(row) for row in batch.matrix()]
    alone = [i for i, key in enumerate(keys) if key in standalone_acc]
    measured = [standalone_acc[keys[i]] for i in alone]
    return {name: {"kendall_tau": tau(measured, values[alone]),
                   "kendall_tau_evaluated": spread([tau(acc, values) for acc in reference_acc])}
            for name, values in (("MFLOPs alone", costs.mflops), ("params alone", costs.params))}


def spread(values: list[float | None]) -> dict:
    present = [v for v in values if v is not None and v == v]
    if not present:
        return {"mean": None, "std": None, "min": None, "max": None}
    return {"mean": statistics.fmean(present), "std": statistics.stdev(present) if len(present) > 1 else 0.0,
            "min": min(present), "max": max(present)}


def summarize(per_seed: list[dict]) -> dict:
    summary = {
        "best_acc1_per_band": [spread([s["best_acc1_per_band"][b] for s in per_seed]) for b in range(BANDS)],
        "mean_acc1": spread([s["mean_acc1"] for s in per_seed]),
        "kendall_tau": spread([s["kendall_tau"] for s in per_seed]),
    }
    if "kendall_tau_evaluated" in per_seed[0]:
        summary["kendall_tau_evaluated"] = spread([s["kendall_tau_evaluated"] for s in per_seed])
    return summary


def cell(stats: dict, digits: int = 2) -> str:
    if stats is None or stats["mean"] is None:
        return "-"
    return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"


def markdown_table(result: dict) -> list[str]:
    """The results as the README's table: mean ± standard deviation over the seeds."""
    scale, edges = result["scale"], result["band_edges_mflops"]
    bands = [f"{edges[b]:.2f}-{edges[b + 1]:.2f}" for b in range(BANDS)]
    header = ["method", *(f"best top-1, {b} MFLOPs" for b in bands), f"mean top-1 of the {scale['subnets']}",
              f"Kendall tau vs {scale['standalone']} stand-alone", f"tau vs `{result['reference']}` evaluated"]
    rows = [[method, *(cell(s) for s in figures["best_acc1_per_band"]), cell(figures["mean_acc1"]),
             cell(figures["kendall_tau"], 3), cell(figures.get("kendall_tau_evaluated"), 3)]
            for method, figures in result["methods"].items()]
    rows += [[name, *("" for _ in bands), "", f"{figures['kendall_tau']:.3f}",
              cell(figures["kendall_tau_evaluated"], 3)] for name, figures in result["baselines"].items()]
    title = (f"{scale['data']}: {len(scale['seeds'])} seed(s), {scale['epochs']} epochs; "
             f"mean ± std over seeds; {sum(part['seconds'] for part in result.get('parts', [])):.0f} s in all")
    return [title, "", *("| " + " | ".join(row) + " |" for row in [header, ["---"] * len(header), *rows])]


def results_file(args: argparse.Namespace) -> Path:
    if args.out:
        return Path(args.out)
    data = "" if args.data == "digits" else f"-{args.data}"
    return RESULTS / f"methods{data}{'-quick' if args.quick else ''}.json"


def earlier_result(out: Path, scale: Scale) -> dict:
    """What an earlier part of the benchmark wrote to ``out`` at the same scale (else {})."""
    if not out.is_file():
        return {}
    earlier = read_json(out, "results file")
    return earlier if earlier.get("scale") == scale.as_dict() else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="digits", choices=sorted(SCALES), help="dataset and its scale (SCALES)")
    parser.add_argument("--quick", action="store_true", help="1 seed, 1 epoch, 16 and 4 subnets (for tests)")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated names of METHODS")
    parser.add_argument("--work", default=None, help="folder of the runs (default: a temporary one); "
                                                     "runs already there are reused")
    parser.add_argument("--out", default=None, help="results file (default: benchmarks/results/methods[-DATA]"
                                                    "[-quick].json)")
    parser.add_argument("--table", default=None, metavar="FILE", help="print the table of a results file and stop")
    args = parser.parse_args()
    if args.table:
        print("\n".join(markdown_table(read_json(args.table, "results file"))))
        return
    scale = (QUICK if args.quick else SCALES)[args.data]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown method(s) {', '.join(unknown)}: use {', '.join(METHODS)}")
    out = results_file(args)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        trained = [REFERENCE, *(m for m in methods if m != REFERENCE)]  # the reference is always trained
        runs = {m: [train_run(work, m, seed, scale) for seed in scale.seeds] for m in trained}
        reference = runs[REFERENCE][0]  # the stand-alone trainings share its recipe, seed 0
        alone = standalone(StandaloneOptions(run=str(reference), subnets=scale.standalone, epochs=scale.epochs,
                                             out=str(work / "standalone"), plot=False))
        table = pd.read_csv(alone.paths["table"])
        reference_run = load_trained_run(reference)
        standalone_acc = dict(zip(subnet_keys(reference_run.space, table), map(float, table["acc1_standalone"])))
        reference_acc = [evaluated_top1(load_trained_run(folder), scale) for folder in runs[REFERENCE]]
        edges = band_edges(reference_run)
        earlier = earlier_result(out, scale)
        per_method = earlier.get("methods", {})
        for method in methods:
            per_seed = [figures_of_run(method, folder, scale, standalone_acc, reference_acc[i], edges)
                        for i, folder in enumerate(runs[method])]
            per_method[method] = {"options": METHODS[method], "per_seed": per_seed, **summarize(per_seed)}
        per_method = {m: per_method[m] for m in METHODS if m in per_method}  # METHODS's order
        baselines = cost_baselines(reference_run, scale, standalone_acc, reference_acc)
        result = {
            "scale": scale.as_dict(),
            "space": MAIN_SPACE,
            "band_edges_mflops": [float(e) for e in edges],
            "standalone": {"acc1": [float(v) for v in table["acc1_standalone"]],
                           "mflops": [float(v) for v in table["mflops"]],
                           "params_m": [float(v) for v in table["params_m"]], "seed": 0},
            "methods": per_method,
            "baselines": baselines,
            "reference": REFERENCE,
            "seconds": time.perf_counter() - started,
            "parts": [*earlier.get("parts", []), {"methods": methods, "seconds": time.perf_counter() - started}],
            "machine": {"platform": platform.platform(), "torch": torch.__version__,
                        "threads": torch.get_num_threads()},
        }
    atomic_write_json(out, result)
    print("\n".join(markdown_table(result)))
    print(f"written to {out} ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
