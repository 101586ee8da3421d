"""What ``anas predict-fit`` does: records from a trained run (evaluated now, resumable)
or from a file, then a fitted predictor folder with its held-out metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anas.checks import check_seed
from anas.errors import AnasError
from anas.evaluate.run_records import RECORDS_FILE, check_record_request, collect_records
from anas.evaluate.trained import CalibrationOption, TrainedRun, TrainedRunOptions, load_trained_run
from anas.options import HostsPlugins, option
from anas.predict.fit import FitReport, fit_and_report, zero_cost_report
from anas.predict.kinds import PREDICTOR_KINDS
from anas.predict.metrics import split_indices
from anas.predict.records import RESULT_COLUMNS, read_records
from anas.runtime.device import DeviceOption
from anas.runtime.distributed import environment_rank
from anas.runtime.rundir import latest_checkpointed_run
from anas.space.schema import load_space


@dataclass(frozen=True, kw_only=True)
class PredictFitOptions(TrainedRunOptions, CalibrationOption, DeviceOption, HostsPlugins):
    """Every option of ``anas predict-fit``, and those of the predictor kind it fits."""

    samples: int = option(64, "Subnets to evaluate, spread over the MFLOPs range (smallest and largest included).")
    split: str = option("auto", "Evaluate on: auto (holdout if the run has one, else val), holdout, val.",
                        choices=("auto", "holdout", "val"))
    records: str | None = option(None, "Fit from this records CSV instead of a run (needs --space).")
    space: str | None = option(None, "Space of --records (built-in name or YAML file).", short="-s")
    kind: str = option("lightgbm", "Predictor kind.", choices=PREDICTOR_KINDS)
    test_records: str | None = option(None, "Measure the predictor on this second records CSV (then fit on all "
                                            "records).")
    test_fraction: float = option(0.2, "Share of the records held out for the metrics (without --test-records).",
                                  above=0, below=1)
    out: str | None = option(None, "Predictor folder.", short="-o",
                             default_text="the run folder; with --records: the records file's folder")
    target: str = option("acc1", "Records column to predict: acc1, or e.g. latency_ms for a latency model (from "
                                 "--records).")
    explain: bool = option(False, "With an explainable kind (linear): write coefficients.csv, effects.csv and "
                                  "explain.png.")
    seed: int = option(0, "Seed of the sampled subnets, the split and the predictor.", check=check_seed)
    plot: bool = option(True, "Draw predictor.png.")
    plugins: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)


@dataclass
class PredictFitOutcome:
    report: FitReport | None  # None on ranks other than 0 of a distributed evaluation
    run: str | None  # the run folder evaluated (None with records)
    run_was_chosen: bool  # True when the latest run under ./runs was taken


def predict_fit(options: PredictFitOptions, progress: bool = False) -> PredictFitOutcome:
    """Evaluate subnets of a run into its records (or read a records file), fit a
    predictor of ``options.kind`` and measure it on held-out records."""
    kind = PREDICTOR_KINDS.get(options.kind)
    if options.run is not None and options.records is not None:
        raise AnasError("give either --run RUN_DIR or --records FILE.csv --space S, not both")
    if options.explain and not kind.explainable:
        explainable = [name for name in PREDICTOR_KINDS.names() if PREDICTOR_KINDS.get(name).explainable]
        raise AnasError(f"--explain needs an explainable kind ({', '.join(explainable)}), not {options.kind}")
    if kind.zero_cost and options.target != "acc1":
        raise AnasError(f"--kind {options.kind} ranks subnets by accuracy: --target does not apply to it")
    if options.records is not None:
        if kind.zero_cost:
            raise AnasError(f"--kind {options.kind} is read from a trained supernet: give --run RUN_DIR "
                            f"(and --test-records FILE.csv to measure it on other records)")
        return PredictFitOutcome(_fit_records_file(options), None, False)
    chosen = options.run is None
    run_path = str(latest_checkpointed_run()) if chosen else options.run
    if kind.zero_cost:
        return PredictFitOutcome(_read_zero_cost(run_path, options), run_path, chosen)
    return PredictFitOutcome(_fit_run(run_path, options, progress), run_path, chosen)


def _fit_run(run_path: str, options: PredictFitOptions, progress: bool) -> FitReport | None:
    check_record_request(options.samples, options.calib_batches, options.seed)
    if options.target not in RESULT_COLUMNS and options.test_records is None:
        raise AnasError(f"a run's records have no column {options.target!r} (they hold {', '.join(RESULT_COLUMNS)}): "
                        f"fit it from --records FILE.csv --space S")
    run = _load_run(run_path, options)
    if options.test_records is None and not (run.run_dir.path / RECORDS_FILE).exists():
        split_indices(options.samples, options.test_fraction, options.seed)  # too few: refuse before evaluating
    _, table, evaluated_now = collect_records(run, options.samples, options.calib_batches, options.split,
                                              options.seed, progress)
    if table is None:  # not the main process of a distributed run
        return None
    test = (read_records(options.test_records, run.space, run.num_classes, options.target)
            if options.test_records else None)
    report = fit_and_report(run.space, table, options.out or str(run.run_dir.path), kind=options.kind,
                            num_classes=run.num_classes, test_records=test, test_fraction=options.test_fraction,
                            options=options.options_for("kind"), seed=options.seed, plot=options.plot,
                            target=options.target, explain=options.explain)
    report.evaluated_now = evaluated_now
    return report


def _load_run(run_path: str, options: PredictFitOptions) -> TrainedRun:
    """The run to evaluate or read, which must be of ``--space`` when one is given."""
    run = load_trained_run(run_path, options.device, options.data_dir)
    if options.space is not None and load_space(options.space) != run.space:
        raise AnasError(f"run {run_path} is of space {run.space.name}, not {options.space}")
    return run


def _read_zero_cost(run_path: str, options: PredictFitOptions) -> FitReport | None:
    """A zero-cost predictor read from the run's checkpoint (nothing is evaluated), measured
    on the run's records (or ``--test-records``) when there are any."""
    if environment_rank() != 0:
        return None  # one process reads the checkpoint; there is nothing to share out
    run = _load_run(run_path, options)
    predictor = PREDICTOR_KINDS.get(options.kind).from_supernet(run.supernet, options.options_for("kind"),
                                                                run.num_classes)
    predictor.meta.update(run=str(run.run_dir.path.resolve()), checkpoint=run.checkpoint_id)
    records_path = options.test_records or run.run_dir.path / RECORDS_FILE
    records = read_records(records_path, run.space, run.num_classes) if Path(records_path).exists() else None
    out = options.out or str(run.run_dir.path / f"predictor-{options.kind}")
    return zero_cost_report(predictor, records, out, plot=options.plot)


def _fit_records_file(options: PredictFitOptions) -> FitReport:
    if options.space is None:
        raise AnasError("--records needs --space (the space its subnets belong to)")
    space = load_space(options.space)
    records = read_records(options.records, space, target=options.target)
    test = read_records(options.test_records, space, target=options.target) if options.test_records else None
    out = options.out or str(Path(options.records).resolve().parent)
    return fit_and_report(space, records, out, kind=options.kind, test_records=test,
                          test_fraction=options.test_fraction, options=options.options_for("kind"), seed=options.seed,
                          plot=options.plot, target=options.target, explain=options.explain)
