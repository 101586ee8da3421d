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
from typing import Any

import numpy as np

from anas.checks import check_at_least, check_at_most, check_seed
from anas.errors import AnasError
from anas.evaluate.trained import CalibrationOption, TrainedRun, TrainedRunOptions, load_trained_run
from anas.latency.lookup_table import LatencyTable, check_table_matches, read_latency_table, table_model
from anas.latency.measure import ORT_CPU, LatencyCache, LatencyConfig, latency_device, subnet_latency, torch_device_of
from anas.options import HostsPlugins, option, to_values
from anas.predict.folder import SIDECAR, has_predictor, load_predictor
from anas.predict.kinds import Predictor
from anas.progress import progress_bars
from anas.runtime.device import DeviceOption
from anas.runtime.rundir import RunDir, latest_checkpointed_run, latest_run
from anas.search.outputs import SearchResult, choose_best, pareto_mask, verify_front, write_outputs
from anas.search.problem import SearchProblem, parse_band
from anas.search.strategies import STRATEGIES
from anas.space.arch import Arch, ArchBatch
from anas.space.distribution import SubnetDistribution

MIN_BUDGET = 8
MAX_BUDGET = 100_000_000  # about an hour of predictor calls; each keeps a row of the archive in memory


def check_budget(budget: int, flag: str = "--budget") -> None:
    check_at_least(budget, MIN_BUDGET, flag, " predictor calls")
    check_at_most(budget, MAX_BUDGET, flag)


def search(problem: SearchProblem, strategy: str = "nsga2", budget: int = 5632, seed: int = 0,
           options: Any = None) -> SearchResult:
    """Run ``strategy`` for ``budget`` predictor calls (with its ``options``: None, its
    defaults); the feasible Pareto front of everything it scored, best predicted first."""
    entry = STRATEGIES.entry(strategy)
    check_budget(budget)
    start = time.perf_counter()
    learned = entry.plugin(problem, budget, seed, **to_values(options or entry.options()))
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
    return SearchResult(problem.space, entry.name, problem.genome, archive, front,
                        int(front[0]), problem.calls, seconds, problem.predictor.score_label,
                        learned.to_dict() if isinstance(learned, SubnetDistribution) else None)


@dataclass(frozen=True, kw_only=True)
class SearchOptions(TrainedRunOptions, CalibrationOption, DeviceOption, HostsPlugins):
    """Every option of ``anas search``, and those of the strategy it runs. ``--run`` is the
    run that ``--verify`` evaluates with (by default the predictor's folder when it holds
    a checkpoint, else the latest run); ``--device`` is where latency is timed (with
    ``--latency-table``: the table's) and ``--verify`` evaluates."""

    flops: str = option(help="MFLOPs band LO-HI, e.g. 400-600.")
    predictor: str | None = option(None, "Predictor folder of anas predict-fit; it gives the space.",
                                   default_text="the latest under ./runs")
    params: str | None = option(None, "Parameter band in millions, LO-HI.")
    latency: str | None = option(None, "Latency band in ms, LO-HI: a bound and a third objective.")
    latency_predictor: str | None = option(None, "Latency model (anas predict-fit --target latency_ms) that stands in "
                                                 "for timing each subnet under --latency.")
    latency_table: str | None = option(None, "Latency table (anas latency-table) that predicts each subnet's latency "
                                             "under --latency; --verify times the verified ones.")
    latency_batch: int | None = option(None, "Batch size for --latency.", default_text="1, or the latency table's",
                                       min=1)
    latency_runs: int = option(10, "Timed runs per subnet for --latency (median).", min=1)
    strategy: str = option("nsga2", "Search strategy.", choices=STRATEGIES)
    budget: int = option(5632, "Predictor calls (subnets scored); 5632 = 512 + 20 x 256, the published search.",
                         check=check_budget)
    seed: int = option(0, "Seed of the search.", check=check_seed)
    out: str | None = option(None, "Output folder.", short="-o", default_text="PREDICTOR/search-LO-HI")
    verify: int = option(0, "Evaluate the K best front members for real (BN recalibrated).", min=0)
    plugins: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)


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


def search_subnets(options: SearchOptions, progress: bool = False) -> SearchReport:
    """Everything ``anas search`` does; every option is checked before the search runs."""
    band = parse_band(options.flops, "--flops")
    params_band = parse_band(options.params, "--params") if options.params else None
    latency_band = parse_band(options.latency, "--latency") if options.latency else None
    for flag, value in (("--latency-predictor", options.latency_predictor), ("--latency-table", options.latency_table)):
        if value is not None and latency_band is None:
            raise AnasError(f"{flag} goes with --latency LO-HI (the band it is checked against)")
    if options.latency_predictor is not None and options.latency_table is not None:
        raise AnasError("--latency-predictor and --latency-table both predict latency: give one")
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
    with progress_bars(progress) as bars:
        problem.progress = bars.add(f"searching {band} MFLOPs ({options.strategy})", options.budget)
        result = search(problem, options.strategy, options.budget, options.seed, options.options_for("strategy"))
    measured = (verify_front(result, trained, options.verify, options.calib_batches, progress)
                if options.verify else {})
    measured_latency = (time_verified(result, measured, timing, predictor.num_classes, progress)
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
    if table is None:
        return LatencyConfig(latency_device(options.device), options.latency_batch or 1, 3, options.latency_runs)
    check_table_matches(table, options.latency_table, None if options.device == "auto" else options.device,
                        options.latency_batch)
    config = table.config
    return LatencyConfig(config.device, config.batch, 3, options.latency_runs,
                         config.threads if config.device == ORT_CPU else None)


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
