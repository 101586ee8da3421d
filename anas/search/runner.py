"""Second stage, end to end: the best subnets under MFLOPs / params / latency budgets,
ranked by a predictor, optionally confirmed on real data, written to a folder.

``search`` runs one strategy on a :class:`~anas.search.problem.SearchProblem` and reads
the Pareto front from what it scored; ``search_subnets`` is everything ``anas search``
does (find the predictor and the run, search, verify, write the files).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from anas.checks import check_at_least, check_at_most, check_calib_batches, check_seed
from anas.errors import AnasError
from anas.evaluate.trained import TrainedRun, load_trained_run
from anas.latency.measure import (
    ORT_CPU,
    LatencyCache,
    LatencyConfig,
    check_latency_device,
    subnet_latency,
    torch_device_of,
)
from anas.latency.table import LatencyTable, check_table_matches, read_latency_table, table_model
from anas.predict.folder import SIDECAR, has_predictor, load_predictor
from anas.predict.kinds import Predictor
from anas.progress import progress_bars
from anas.search.outputs import SearchResult, choose_best, pareto_mask, verify_front, write_outputs
from anas.search.problem import SearchProblem, parse_band
from anas.search.strategies import STRATEGIES
from anas.space.arch import Arch, ArchBatch
from anas.space.distribution import SubnetDistribution
from anas.train.rundir import RunDir, latest_checkpointed_run, latest_run

MIN_BUDGET = 8
MAX_BUDGET = 100_000_000  # about an hour of predictor calls; each keeps a row of the archive in memory


def check_budget(budget: int) -> None:
    check_at_least(budget, MIN_BUDGET, "--budget", " predictor calls")
    check_at_most(budget, MAX_BUDGET, "--budget")


def search(problem: SearchProblem, strategy: str = "nsga2", budget: int = 5632, seed: int = 0) -> SearchResult:
    """Run ``strategy`` for ``budget`` predictor calls; the feasible Pareto front of
    everything it scored, best predicted first."""
    run_strategy = STRATEGIES.get(strategy)
    check_budget(budget)
    start = time.perf_counter()
    learned = run_strategy(problem, budget, seed)
    seconds = time.perf_counter() - start
    archive = problem.archive()
    feasible = np.flatnonzero(archive.feasible) if len(archive.genes) else np.empty(0, dtype=np.int64)
    if len(feasible) == 0:
        raise AnasError(f"no evaluated subnet met every bound ({problem.flops} MFLOPs"
                        + (f", {problem.params}M params" if problem.params else "")
                        + (f", {problem.latency} ms" if problem.latency else "") + "): relax the bounds")
    objectives = [-archive.pred_acc1[feasible], archive.mflops[feasible]]
    if problem.latency_objective:
        objectives.append(archive.latency_ms[feasible])
    front = feasible[pareto_mask(np.stack(objectives, axis=1))]
    front = front[np.argsort(-archive.pred_acc1[front], kind="stable")]
    return SearchResult(problem.space, STRATEGIES.name_of(run_strategy), problem.genome, archive, front,
                        int(front[0]), problem.calls, seconds, problem.predictor.score_label,
                        learned.to_dict() if isinstance(learned, SubnetDistribution) else None)


@dataclass(frozen=True)
class SearchOptions:
    flops: str  # MFLOPs band, "LO-HI"
    predictor: str | None = None  # predictor folder (None: the latest under ./runs)
    params: str | None = None  # params band in millions
    latency: str | None = None  # latency band in ms: a bound and a third objective
    latency_predictor: str | None = None  # a latency model (predict-fit --target latency_ms) instead of timing
    latency_table: str | None = None  # a latency table (anas latency-table) instead of timing
    device: str | None = None  # where latency is measured and --verify evaluates (None: cpu, or the table's)
    latency_batch: int | None = None  # None: 1, or the table's
    latency_runs: int = 10
    strategy: str = "nsga2"
    budget: int = 5632  # 512 + 20 x 256: the published search
    seed: int = 0
    out: str | None = None  # default: PREDICTOR/search-LO-HI
    run: str | None = None  # run folder for --verify (None: the predictor's folder, else the latest run)
    verify: int = 0  # evaluate the K best front members for real
    calib_batches: int | None = None
    data_dir: str | None = None  # replaces the --verify run's data folder
    progress: bool = False


@dataclass
class SearchReport:
    result: SearchResult
    best: int  # index into the archive
    measured: dict[int, float]  # measured top-1 of verified subnets, by archive index
    paths: dict[str, str]
    measured_latency: dict[int, float] = field(default_factory=dict)  # verified subnets' timed latency (ms)
    chosen: dict[str, str] = field(default_factory=dict)  # folders taken by default: {"predictor": ..., "run": ...}


def latest_predictor_folder() -> Path:
    return latest_run(lambda folder: folder / SIDECAR if has_predictor(folder) else None,
                      "a predictor", "anas predict-fit")


def search_subnets(options: SearchOptions) -> SearchReport:
    """Everything ``anas search`` does; every option is checked before the search runs."""
    band = parse_band(options.flops, "--flops")
    params_band = parse_band(options.params, "--params") if options.params else None
    latency_band = parse_band(options.latency, "--latency") if options.latency else None
    for option, value in (("--latency-predictor", options.latency_predictor), ("--latency-table", options.latency_table)):
        if value is not None and latency_band is None:
            raise AnasError(f"{option} goes with --latency LO-HI (the band it is checked against)")
    if options.latency_predictor is not None and options.latency_table is not None:
        raise AnasError("--latency-predictor and --latency-table both predict latency: give one")
    STRATEGIES.resolve(options.strategy)
    check_budget(options.budget)
    check_calib_batches(options.calib_batches)
    check_seed(options.seed)
    table = read_latency_table(options.latency_table) if options.latency_table is not None else None
    timing = latency_config(options, table)
    device = torch_device_of(timing.device)
    chosen: dict[str, str] = {}
    predictor_folder = Path(options.predictor) if options.predictor else latest_predictor_folder()
    if options.predictor is None:
        chosen["predictor"] = str(predictor_folder)
    predictor = load_predictor(predictor_folder)
    target = predictor.meta.get("target", "acc1")
    if target != "acc1":
        raise AnasError(f"predictor {predictor_folder} predicts {target}, not accuracy"
                        + (": give it as --latency-predictor" if target == LATENCY_TARGET else ""))
    space = predictor.space
    trained = _verification_run(options, predictor_folder, predictor, chosen, device.type)
    if trained is not None:
        predictor.check_space(trained.space, f"run {trained.run_dir.path}")
    measure = latency_measure(options, predictor, timing, table) if latency_band is not None else None
    problem = SearchProblem(space, predictor, band, params_band, latency_band, latency_band is not None, measure,
                            predictor.num_classes)
    with progress_bars(options.progress) as bars:
        problem.progress = bars.add(f"searching {band} MFLOPs ({options.strategy})", options.budget)
        result = search(problem, options.strategy, options.budget, options.seed)
    measured = (verify_front(result, trained, options.verify, options.calib_batches, options.progress)
                if options.verify else {})
    measured_latency = (time_verified(result, measured, timing, predictor.num_classes, options.progress)
                        if measured and latency_predicted(options) else {})
    best = choose_best(result, measured)
    folder = Path(options.out) if options.out else predictor_folder / f"search-{band}"
    paths = write_outputs(result, band, folder, measured, best, measured_latency)
    return SearchReport(result, best, measured, paths, chosen=chosen, measured_latency=measured_latency)


LATENCY_TARGET = "latency_ms"


def latency_predicted(options: SearchOptions) -> bool:
    """Whether candidates' latency is predicted (then ``--verify`` also times the verified ones)."""
    return options.latency_predictor is not None or options.latency_table is not None


def latency_config(options: SearchOptions, table: LatencyTable | None = None) -> LatencyConfig:
    """How subnets are timed: ``--device`` and ``--latency-batch``, which default to the
    latency ``table``'s (whose threads onnxruntime also takes); a table of another device
    or batch than the ones given is refused."""
    device, batch, threads = options.device, options.latency_batch, None
    if table is not None:
        check_table_matches(table, options.latency_table, device, batch)
        device, batch, threads = table.config.device, table.config.batch, table.config.threads
    device = device or "cpu"
    check_latency_device(device)
    return LatencyConfig(device, batch or 1, 3, options.latency_runs, threads if device == ORT_CPU else None)


def latency_measure(options: SearchOptions, predictor: Predictor, timing: LatencyConfig,
                    table: LatencyTable | None = None) -> Callable[[Arch], float]:
    """How a subnet's latency is known: timed as ``timing`` says (each subnet once), or
    predicted by the latency ``table`` of ``--latency-table`` or the latency model of
    ``--latency-predictor``."""
    if table is not None:
        model_of_table = table_model(table, options.latency_table, predictor.space, predictor.num_classes)
        return lambda arch: float(model_of_table.predict(ArchBatch.from_archs([arch]))[0])
    if options.latency_predictor is None:
        return LatencyCache(predictor.space, timing, predictor.num_classes)
    model = load_predictor(options.latency_predictor)
    if model.meta.get("target") != LATENCY_TARGET:
        raise AnasError(f"--latency-predictor {options.latency_predictor} predicts "
                        f"{model.meta.get('target', 'acc1')}, not {LATENCY_TARGET}: fit one with anas predict-fit "
                        f"--target {LATENCY_TARGET}")
    model.check_space(predictor.space, f"the accuracy predictor {options.predictor or ''}".rstrip())
    return lambda arch: float(model.predict_archs([arch])[0])


def time_verified(result: SearchResult, measured: dict[int, float], timing: LatencyConfig, num_classes: int | None,
                  progress: bool) -> dict[int, float]:
    """The real latency (ms) of the verified subnets, timed as ``timing`` says (ten
    warm-up runs)."""
    timing = replace(timing, warmup=10)
    times = {}
    with progress_bars(progress) as bars:
        bar = bars.add(f"timing on {timing.device}", len(measured))
        for index in measured:
            times[index] = subnet_latency(result.space, result.arch(index), timing, num_classes)
            bar.advance()
    return times


def _verification_run(options: SearchOptions, predictor_folder: Path, predictor: Predictor, chosen: dict[str, str],
                      device: str) -> TrainedRun | None:
    """The run ``--verify`` evaluates with: ``--run``, else the predictor's own folder when
    it holds a checkpoint (predict-fit writes there), else the run a zero-cost predictor
    was read from, else the latest run under ./runs."""
    if options.run is not None:
        return load_trained_run(options.run, device, options.data_dir)
    if not options.verify:
        return None
    source = predictor.meta.get("run")
    if RunDir(predictor_folder).has_checkpoint():
        path = predictor_folder
    elif isinstance(source, str) and RunDir(source).has_checkpoint():
        path = Path(source)
    else:
        path = latest_checkpointed_run()
    chosen["run"] = str(path)
    return load_trained_run(path, device, options.data_dir)
