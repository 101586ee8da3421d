"""What ``anas predict-fit`` does: records from a trained run (evaluated now, resumable)
or from a file, then a fitted predictor folder with its held-out metrics."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from anas.checks import check_fraction
from anas.errors import AnasError
from anas.evaluate.records import RECORDS_FILE, check_record_request, collect_records
from anas.evaluate.trained import TrainedRun, load_trained_run
from anas.predict.fit import FitReport, fit_and_report, zero_cost_report
from anas.predict.kinds import PREDICTOR_KINDS, PredictorConfig
from anas.predict.metrics import split_indices
from anas.predict.records import RESULT_COLUMNS, read_records
from anas.space.schema import load_space
from anas.train.distributed import environment_rank
from anas.train.rundir import latest_checkpointed_run


@dataclass(frozen=True)
class PredictFitOptions:
    run: str | None = None  # a run folder of anas train (None: the latest under ./runs, unless records is given)
    records: str | None = None  # or a records CSV, with space
    space: str | None = None
    samples: int = 64
    calib_batches: int | None = None
    split: str = "auto"
    device: str = "cpu"
    kind: str = "lightgbm"
    test_records: str | None = None
    test_fraction: float = 0.2
    out: str | None = None  # default: the run folder (with records: the records file's folder)
    config: PredictorConfig = PredictorConfig()
    data_dir: str | None = None  # replaces the run's data folder
    target: str = "acc1"  # the records column to predict (latency_ms for a latency model)
    explain: bool = False  # write coefficients.csv, effects.csv and explain.png (explainable kinds)
    plot: bool = True
    progress: bool = False


@dataclass
class PredictFitOutcome:
    report: FitReport | None  # None on ranks other than 0 of a distributed evaluation
    run: str | None  # the run folder evaluated (None with records)
    run_was_chosen: bool  # True when the latest run under ./runs was taken


def predict_fit(options: PredictFitOptions) -> PredictFitOutcome:
    """Evaluate subnets of a run into its records (or read a records file), fit a
    predictor of ``options.kind`` and measure it on held-out records."""
    kind = PREDICTOR_KINDS.get(options.kind)  # an unknown kind fails before any evaluation
    check_fraction(options.test_fraction, "--test-fraction", low_open=True, high_open=True)
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
    fit = _read_zero_cost if kind.zero_cost else _fit_run
    return PredictFitOutcome(fit(run_path, options), run_path, chosen)


def _fit_run(run_path: str, options: PredictFitOptions) -> FitReport | None:
    check_record_request(options.samples, options.calib_batches, options.config.seed)
    if options.target not in RESULT_COLUMNS and options.test_records is None:
        raise AnasError(f"a run's records have no column {options.target!r} (they hold {', '.join(RESULT_COLUMNS)}): "
                        f"fit it from --records FILE.csv --space S")
    run = _load_run(run_path, options)
    if options.test_records is None and not (run.run_dir.path / RECORDS_FILE).exists():
        split_indices(options.samples, options.test_fraction, options.config.seed)  # too few: refuse before evaluating
    _, table, evaluated_now = collect_records(run, options.samples, options.calib_batches, options.split,
                                              options.config.seed, options.progress)
    if table is None:  # not the main process of a distributed run
        return None
    test = (read_records(options.test_records, run.space, run.num_classes, options.target)
            if options.test_records else None)
    report = fit_and_report(run.space, table, options.out or str(run.run_dir.path), kind=options.kind,
                            num_classes=run.num_classes, test_records=test, test_fraction=options.test_fraction,
                            config=options.config, plot=options.plot, target=options.target,
                            explain=options.explain)
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
    predictor = PREDICTOR_KINDS.get(options.kind).from_supernet(run.supernet, options.config, run.num_classes)
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
                          test_fraction=options.test_fraction, config=options.config, plot=options.plot,
                          target=options.target, explain=options.explain)
