"""Plug-ins that declare an option of their own, defined in this file alone (no edit of
anas): a sampler, an objective, a regularizer, a predictor kind, a search strategy and an
export format. Each appears in its command's ``--help``, takes its option from the command
line and from a ``--config`` file, refuses a bad value in one line (exit 2), and runs."""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import assert_one_line_error, train_tiny_run

from anas.export.formats import EXPORT_FORMATS, ExportFormat, register_export_format
from anas.nn.static import StaticNet
from anas.options import option
from anas.predict.kinds import PREDICTOR_KINDS, Predictor, register_predictor_kind
from anas.search.strategies import STRATEGIES, register_strategy
from anas.space.arch import arch_from_dict, largest_arch, sample_archs, smallest_arch
from anas.space.cost import batch_costs
from anas.space.schema import space_from_dict
from anas.space.table_format import archs_to_frame, write_table
from anas.train.objectives import OBJECTIVES, register_objective
from anas.train.objectives.supervised import SupervisedObjective
from anas.train.regularizers import REGULARIZERS, Regularizer, register_regularizer
from anas.train.samplers import SAMPLERS, register_sampler

SEEN: dict[str, list] = {}  # what each plug-in saw of its option, in the order it ran


@dataclass(frozen=True, kw_only=True)
class AlternatingOptions:
    largest_every: int = option(2, "Every how many draws the largest subnet is trained (else the smallest).", min=1)


class Alternating:
    """The largest subnet every ``--largest-every`` draws, else the smallest."""

    def __init__(self, context):
        self.space, self.every, self.calls = context.space, context.options.largest_every, 0
        SEEN.setdefault("sampler", []).append(self.every)

    def sample(self, images, labels):
        self.calls += 1
        return largest_arch(self.space) if self.calls % self.every == 0 else smallest_arch(self.space)

    def state_dict(self):
        return {"calls": self.calls}

    def load_state_dict(self, state):
        self.calls = state["calls"]


@dataclass(frozen=True, kw_only=True)
class ScaledOptions:
    loss_scale: float = option(1.0, "Factor of every loss of the step.", above=0, finite=True)


class Scaled(SupervisedObjective):
    """The sandwich rule with every loss scaled (the scale shows in the logged losses)."""

    def __init__(self, context):
        super().__init__(context)
        self.scale = context.options.loss_scale
        SEEN.setdefault("objective", []).append(self.scale)

    def step(self, parts, images, labels, index):
        from anas.train.step import StepLosses

        losses = super().step(parts, images, labels, index)
        return StepLosses(losses.largest * self.scale, losses.others * self.scale)


@dataclass(frozen=True, kw_only=True)
class LogitPenaltyOptions:
    logit_penalty: float = option(0.01, "Weight of the mean squared logit.", min=0, finite=True)


class LogitPenalty(Regularizer):
    """A penalty on the sampled and the smallest subnets' logits."""

    roles = ("middle", "smallest")

    def __init__(self, context):
        self.weight = context.options.logit_penalty
        SEEN.setdefault("regularizer", []).append(self.weight)

    def loss(self, step, role, arch, logits):
        return self.weight * logits.float().pow(2).mean()


@dataclass(frozen=True, kw_only=True)
class PowerOptions:
    mflops_power: float = option(1.0, "Exponent of the MFLOPs in the fitted line.", above=0, max=4)


class PowerOfMflops(Predictor):
    """Accuracy as a line in MFLOPs to the power ``--mflops-power``."""

    def __init__(self, space, num_classes, power, coefficients, meta=None):
        super().__init__(space, num_classes, meta)
        self.power, self.coefficients = power, coefficients

    @classmethod
    def fit(cls, space, batch, acc1, options=None, num_classes=None, seed=0):
        power = (options or PowerOptions()).mflops_power
        SEEN.setdefault("kind", []).append(power)
        slope, intercept = np.polyfit(batch_costs(space, batch, num_classes).mflops ** power, acc1, 1)
        return cls(space, num_classes or space.num_classes, power, [float(slope), float(intercept)])

    def predict(self, batch):
        slope, intercept = self.coefficients
        return slope * batch_costs(self.space, batch, self.num_classes).mflops ** self.power + intercept

    def save_model(self, folder: Path):
        (folder / "line.json").write_text(json.dumps({"power": self.power, "coefficients": self.coefficients}))
        return {}

    @classmethod
    def load_model(cls, folder: Path, space, num_classes, meta):
        saved = json.loads((folder / "line.json").read_text())
        return cls(space, num_classes, saved["power"], saved["coefficients"], meta)


@dataclass(frozen=True, kw_only=True)
class ShareOptions:
    share: float = option(1.0, "Share of the budget spent.", above=0, max=1)


def spend_a_share(problem, budget, seed, share=1.0):
    """Scores ``share`` of the budget of subnets sampled inside the band, all at once."""
    SEEN.setdefault("strategy", []).append(share)
    problem.evaluate(problem.sample_in_band(max(1, int(share * budget)), np.random.default_rng(seed)))


@dataclass(frozen=True, kw_only=True)
class NpzOptions:
    npz_dtype: str = option("float32", "Precision of the stored weights.", choices=("float32", "float64"))


class NpzFormat(ExportFormat):
    """The weights as a NumPy archive, with the subnet's description beside them."""

    extension = "npz"

    def write(self, net, path, metadata, options):
        SEEN.setdefault("format", []).append(options.npz_dtype)
        arrays = {name: tensor.detach().numpy().astype(options.npz_dtype) for name, tensor in net.state_dict().items()}
        with open(path, "wb") as handle:
            np.savez(handle, anas_metadata=json.dumps(metadata), **arrays)

    def load(self, path):
        stored = np.load(path)
        meta = json.loads(str(stored["anas_metadata"]))
        space = space_from_dict(meta["space"], "the archive")
        net = StaticNet(space, arch_from_dict(space, meta["arch"]), meta["num_classes"])
        net.load_state_dict({name: torch.from_numpy(stored[name].astype(np.float32)) for name in net.state_dict()})
        return net.eval()


@pytest.fixture
def plugins():
    SEEN.clear()
    register_sampler("alternating", options=AlternatingOptions)(Alternating)
    register_objective("scaled", options=ScaledOptions)(Scaled)
    register_regularizer("logit-penalty", options=LogitPenaltyOptions)(LogitPenalty)
    register_predictor_kind("power-of-mflops", options=PowerOptions)(PowerOfMflops)
    register_strategy("spend-a-share", options=ShareOptions)(spend_a_share)
    register_export_format("npz", options=NpzOptions)(NpzFormat)
    yield
    SAMPLERS.unregister("alternating")
    OBJECTIVES.unregister("scaled")
    REGULARIZERS.unregister("logit-penalty")
    PREDICTOR_KINDS.unregister("power-of-mflops")
    STRATEGIES.unregister("spend-a-share")
    EXPORT_FORMATS.unregister("npz")


def _help(run_cli, *command: str) -> str:
    return " ".join(run_cli(*command, "--help").stdout.split())


def _config(tmp_path, name: str, **values) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


TRAIN = ["train", "--data", "fake", "--epochs", "1", "--batch-size", "64", "--calib-batches", "1", "--quiet"]


def test_training_plug_ins_declare_their_options(run_cli, plugins, tmp_path):
    text = _help(run_cli, "train")
    for flag in ("--largest-every", "--loss-scale", "--logit-penalty"):
        assert flag in text, flag
    chosen = ["--sampler", "alternating", "--objective", "scaled", "--regularizer", "kd", "--regularizer",
              "logit-penalty"]
    flags = run_cli(*TRAIN, *chosen, "--largest-every", "3", "--loss-scale", "2", "--logit-penalty", "0.5",
                    "--run-dir", tmp_path / "a")
    assert flags.code == 0, flags.stderr
    assert SEEN == {"objective": [2.0], "sampler": [3], "regularizer": [0.5]}
    saved = yaml.safe_load((tmp_path / "a" / "config.yaml").read_text())
    assert (saved["largest_every"], saved["loss_scale"], saved["logit_penalty"]) == (3, 2.0, 0.5)
    text = (tmp_path / "a" / "config.yaml").read_text()
    assert "# sampler alternating (--sampler)" in text and "# regularizer logit-penalty (--regularizer)" in text

    SEEN.clear()
    config = _config(tmp_path, "train", sampler="alternating", objective="scaled", regularizer=["kd", "logit-penalty"],
                     largest_every=4, loss_scale=0.5, logit_penalty=0.25)
    from_file = run_cli(*TRAIN, "--config", config, "--run-dir", tmp_path / "b")
    assert from_file.code == 0, from_file.stderr
    assert SEEN == {"objective": [0.5], "sampler": [4], "regularizer": [0.25]}

    for bad, message in ((["--largest-every", "0"], "--largest-every must be at least 1, got 0"),
                         (["--loss-scale", "-1"], "--loss-scale must be a positive finite number, got -1"),
                         (["--logit-penalty", "nan"], "--logit-penalty must be a finite number")):
        assert_one_line_error(run_cli(*TRAIN, *chosen, *bad, "--run-dir", tmp_path / "c"), message)
    assert_one_line_error(run_cli(*TRAIN, "--config", _config(tmp_path, "bad", **{**yaml.safe_load(config.read_text()),
                                                                                 "largest_every": "often"}),
                                  "--run-dir", tmp_path / "c"), "--largest-every must be of type int")
    assert not (tmp_path / "c").exists()
    # an option of a plug-in that is not selected is refused by the same rule as the built-ins'
    assert_one_line_error(run_cli(*TRAIN, "--largest-every", "3", "--run-dir", tmp_path / "c"),
                          "--largest-every goes with --sampler alternating, not --sampler bestup-k3",
                          "the sampler alternating")


def test_a_predictor_kind_and_a_strategy_declare_their_options(run_cli, plugins, tiny, tmp_path):
    rng = np.random.default_rng(0)
    batch = sample_archs(tiny, 60, rng)
    frame = archs_to_frame(tiny, batch, batch_costs(tiny, batch))
    frame["acc1"] = 50 + 3 * np.sqrt(frame["mflops"]) + rng.normal(0, 0.05, len(frame))
    write_table(frame, tmp_path / "records.csv")
    assert "--mflops-power" in _help(run_cli, "predict-fit") and "--share" in _help(run_cli, "search")
    fit = ["predict-fit", "--records", tmp_path / "records.csv", "--space", "tiny", "--kind", "power-of-mflops",
           "--no-plot", "--json"]
    flags = run_cli(*fit, "--mflops-power", "0.5", "--out", tmp_path / "p")
    assert flags.code == 0, flags.stderr
    assert SEEN["kind"] == [0.5] and flags.json()["kendall_tau"] > 0.9
    from_file = run_cli(*fit, "--config", _config(tmp_path, "fit", mflops_power=2.0), "--out", tmp_path / "q")
    assert from_file.code == 0, from_file.stderr
    assert SEEN["kind"] == [0.5, 2.0]
    assert_one_line_error(run_cli(*fit, "--mflops-power", "5", "--out", tmp_path / "r"), "--mflops-power must be in")
    assert_one_line_error(run_cli("predict-fit", "--records", tmp_path / "records.csv", "--space", "tiny",
                                  "--mflops-power", "2", "--out", tmp_path / "r"),
                          "--mflops-power goes with --kind power-of-mflops, not --kind lightgbm")

    search = ["search", "--flops", "1-2", "--predictor", tmp_path / "p", "--strategy", "spend-a-share", "--budget",
              "100", "--json"]
    flags = run_cli(*search, "--share", "0.5", "--out", tmp_path / "s")
    assert flags.code == 0, flags.stderr
    assert SEEN["strategy"] == [0.5] and flags.json()["calls"] <= 50
    from_file = run_cli(*search, "--config", _config(tmp_path, "search", share=0.25), "--out", tmp_path / "t")
    assert from_file.code == 0, from_file.stderr
    assert SEEN["strategy"] == [0.5, 0.25] and from_file.json()["calls"] <= 25
    assert_one_line_error(run_cli(*search, "--share", "1.5"), "--share must be in (0, 1], got 1.5")


def test_an_export_format_declares_its_option(run_cli, plugins, tmp_path):
    run = train_tiny_run(tmp_path / "run")
    assert "--npz-dtype" in _help(run_cli, "export") and "npz" in _help(run_cli, "export")
    export = ["export", "--run", run, "--arch", "min", "--to", "npz", "--json"]
    flags = run_cli(*export, "--npz-dtype", "float64")
    assert flags.code == 0, flags.stderr
    data = flags.json()
    assert data["ok"] and data["path"] == str(run / "exports" / "min.npz") and data["max_abs_diff"] < 1e-5
    assert np.load(data["path"])["head.classifier.weight"].dtype == np.float64
    from_file = run_cli(*export, "--config", _config(tmp_path, "export", npz_dtype="float32"),
                        "--out", tmp_path / "min32.npz")
    assert from_file.code == 0, from_file.stderr
    assert SEEN["format"] == ["float64", "float32"]
    assert np.load(tmp_path / "min32.npz")["head.classifier.weight"].dtype == np.float32
    assert_one_line_error(run_cli(*export, "--npz-dtype", "float8"), "unknown --npz-dtype 'float8'")
    assert_one_line_error(run_cli("export", "--run", run, "--to", "pt", "--npz-dtype", "float64"),
                          "--npz-dtype goes with --to npz, not --to pt")


def test_the_contrastive_queue_is_refused_without_its_objective(run_cli):
    assert_one_line_error(run_cli("train", "--sampler", "uniform", "--queue-size", "8"),
                          "--queue-size goes with --objective contrastive, not --objective supervised",
                          "the objective contrastive")


def test_a_plug_in_option_named_like_another_is_a_mistake_of_its_author():
    from anas.options import plugin_options
    from anas.train.config import TrainConfig

    @dataclass(frozen=True, kw_only=True)
    class Clashing:
        seed: int = option(0, "A second --seed.")

    register_sampler("clashing", options=Clashing)(Alternating)
    try:
        with pytest.raises(ValueError, match="declares option --seed, which is an option of TrainConfig itself"):
            plugin_options(TrainConfig)
    finally:
        SAMPLERS.unregister("clashing")
