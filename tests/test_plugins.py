"""Plug-ins registered from this file alone (no edit of anas) and run through the CLI: a
sampler, an estimator, a predictor kind and a search strategy."""

import json
from pathlib import Path

import numpy as np
import pytest

from anas.errors import AnasError
from anas.predict.kinds import Predictor, register_predictor_kind
from anas.predict.kinds.predictor_kind import PREDICTOR_KINDS
from anas.search.strategies import STRATEGIES, register_strategy
from anas.space.arch import ArchBatch, sample_archs, smallest_arch
from anas.space.cost import batch_costs
from anas.space.table_format import archs_to_frame, write_table
from anas.train.estimators import ESTIMATORS, register_estimator
from anas.train.samplers import SAMPLERS, register_sampler

CALLS: dict[str, int] = {}
TRAIN = ["--data", "fake", "--epochs", "1", "--batch-size", "32", "--calib-batches", "1", "--quiet"]


class SmallestOnly:
    """Trains the smallest subnet in every middle slot."""

    def __init__(self, context):
        self.space = context.space

    def sample(self, images, labels):
        CALLS["sampler"] = CALLS.get("sampler", 0) + 1
        return smallest_arch(self.space)

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


class Widest:
    """Scores a candidate by its total width."""

    def __init__(self, context):
        pass

    def score(self, archs, images, labels):
        CALLS["estimator"] = CALLS.get("estimator", 0) + 1
        return np.array([sum(arch.width) for arch in archs], dtype=float)


class MflopsPredictor(Predictor):
    """Predicts accuracy as a line in log-MFLOPs, fitted by least squares."""

    def __init__(self, space, num_classes, coefficients, meta=None):
        super().__init__(space, num_classes, meta)
        self.coefficients = coefficients

    @classmethod
    def fit(cls, space, batch, acc1, options=None, num_classes=None, seed=0):
        x = np.log(batch_costs(space, batch, num_classes).mflops)
        slope, intercept = np.polyfit(x, acc1, 1)
        return cls(space, num_classes or space.num_classes, [float(slope), float(intercept)])

    def predict(self, batch):
        slope, intercept = self.coefficients
        return slope * np.log(batch_costs(self.space, batch, self.num_classes).mflops) + intercept

    def save_model(self, folder: Path):
        (folder / "line.json").write_text(json.dumps(self.coefficients))
        return {"model_file": "line.json"}

    @classmethod
    def load_model(cls, folder: Path, space, num_classes, meta):
        return cls(space, num_classes, json.loads((folder / "line.json").read_text()), meta)


def first_in_band(problem, budget, seed):
    """Scores the first subnets found inside the band, all at once."""
    CALLS["strategy"] = CALLS.get("strategy", 0) + 1
    problem.evaluate(problem.sample_in_band(budget, np.random.default_rng(seed)))


@pytest.fixture
def plugins():
    CALLS.clear()
    register_sampler("smallest-only")(SmallestOnly)
    register_estimator("widest")(Widest)
    register_predictor_kind("log-mflops")(MflopsPredictor)
    register_strategy("first-in-band")(first_in_band)
    yield
    SAMPLERS.unregister("smallest-only")
    ESTIMATORS.unregister("widest")
    PREDICTOR_KINDS.unregister("log-mflops")
    STRATEGIES.unregister("first-in-band")


def test_a_sampler_and_an_estimator_from_outside_train_a_run(run_cli, plugins, tmp_path):
    result = run_cli("train", *TRAIN, "--sampler", "smallest-only", "--run-dir", tmp_path / "a")
    assert result.code == 0, result.stderr
    assert CALLS["sampler"] == 2 * (256 // 32)  # two middle subnets per step, 8 steps
    result = run_cli("train", *TRAIN, "--sampler", "bestup-k2", "--prior-samples", "1000", "--estimator", "widest",
                     "--run-dir", tmp_path / "b")
    assert result.code == 0, result.stderr
    assert CALLS["estimator"] == 2 * (256 // 32)  # one scoring per middle subnet


def test_a_predictor_kind_and_a_strategy_from_outside_fit_and_search(run_cli, plugins, tiny, tmp_path):
    rng = np.random.default_rng(0)
    batch = sample_archs(tiny, 60, rng)
    frame = archs_to_frame(tiny, batch, batch_costs(tiny, batch))
    frame["acc1"] = 50 + 10 * np.log(frame["mflops"]) + rng.normal(0, 0.1, len(frame))
    write_table(frame, tmp_path / "records.csv")
    fitted = run_cli("predict-fit", "--records", tmp_path / "records.csv", "--space", "tiny", "--kind", "log-mflops",
                     "--out", tmp_path / "p", "--json")
    assert fitted.code == 0, fitted.stderr
    assert fitted.json()["kind"] == "log-mflops" and fitted.json()["kendall_tau"] > 0.9
    assert json.loads((tmp_path / "p" / "predictor.json").read_text())["kind"] == "log-mflops"
    found = run_cli("search", "--flops", "1-2", "--predictor", tmp_path / "p", "--strategy", "first-in-band",
                    "--budget", "50", "--json")
    assert found.code == 0, found.stderr
    data = found.json()
    assert CALLS["strategy"] == 1 and data["strategy"] == "first-in-band" and 1 <= data["mflops"] <= 2
    best = ArchBatch.from_archs([smallest_arch(tiny)])
    assert data["pred_acc1"] > MflopsPredictor.load_model(tmp_path / "p", tiny, 10, {}).predict(best)[0]


def test_unknown_names_list_the_registered_plug_ins(run_cli, plugins):
    from conftest import assert_one_line_error

    assert_one_line_error(run_cli("train", "--sampler", "nope"), "unknown sampler 'nope'", "smallest-only")
    assert_one_line_error(run_cli("train", "--estimator", "nope"), "unknown estimator 'nope'", "widest")
    assert_one_line_error(run_cli("search", "--flops", "1-2", "--strategy", "nope"), "unknown strategy 'nope'",
                          "first-in-band")


def test_help_lists_the_built_in_plug_ins(run_cli):
    for command, names in (("train", ["bestup-kN", "uniform", "loss", "predictor", "kd"]),
                           ("predict-fit", ["lightgbm"]), ("search", ["nsga2", "evolution", "random"])):
        text = " ".join(run_cli(command, "--help").stdout.split())
        for name in names:
            assert name in text, (command, name)


def test_installed_packages_add_plug_ins_through_entry_points(tmp_path, monkeypatch):
    """A package declares ``[project.entry-points."anas.plugins"]``; the command line imports
    the module it names, which registers its plug-ins. One that fails to import is a
    one-line error."""
    from importlib.metadata import EntryPoint

    import anas.cli

    (tmp_path / "anas_extra_sampler.py").write_text(
        "from anas.train.samplers import register_sampler\n"
        "from anas.train.samplers.uniform import UniformSampler\n"
        "register_sampler('extra-uniform')(type('ExtraUniform', (UniformSampler,), {}))\n")
    (tmp_path / "anas_broken_plugin.py").write_text("raise ImportError('needs a library that is not here')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    good = EntryPoint(name="extra", value="anas_extra_sampler", group=anas.cli.PLUGIN_GROUP)
    monkeypatch.setattr(anas.cli, "entry_points", lambda group: [good])
    try:
        assert anas.cli.load_plugin_modules() == ["extra"]
        assert "extra-uniform" in SAMPLERS
    finally:
        SAMPLERS.unregister("extra-uniform")
    broken = EntryPoint(name="broken", value="anas_broken_plugin", group=anas.cli.PLUGIN_GROUP)
    monkeypatch.setattr(anas.cli, "entry_points", lambda group: [broken])
    with pytest.raises(AnasError, match=r"plug-in broken \(anas_broken_plugin\) failed to load: needs a library"):
        anas.cli.load_plugin_modules()
