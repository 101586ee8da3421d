from __future__ import annotations

import itertools
import json
from dataclasses import dataclass

import numpy as np
import pytest
from synthetic import synthetic_acc1

from anas.cli import main
from anas.predict.kinds.linear import LinearPredictor
from anas.space.arch import ArchBatch, sample_archs
from anas.space.cost import batch_costs, index_costs
from anas.space.sampling import spread_sample
from anas.space.schema import load_space


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)


@pytest.fixture
def run_cli(capsys):
    """Run ``anas ARGS`` in-process; returns exit code, stdout and stderr."""

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


TINY_FAKE_RUN = {"space": "tiny", "data": "fake", "epochs": 1, "batch_size": 16, "calib_batches": 1,
                 "sampler": "uniform"}
"""A supernet trained in seconds: one epoch of ``tiny`` on the 256 fake images."""


def train_tiny_run(folder):
    """Train :data:`TINY_FAKE_RUN` into ``folder``; returns it."""
    from anas.train.loop import start_training

    start_training({**TINY_FAKE_RUN, "run_dir": str(folder)}, progress=False)
    return folder


def train_until_interrupted(options: dict, after_epoch: int = 1) -> None:
    """Start a run of ``options`` and stop it, as a crash would, at the end of epoch
    ``after_epoch`` (after its checkpoint is written)."""
    from anas.train.loop import start_training

    class Interrupted(Exception):
        pass

    def stop(epoch, row):
        if epoch == after_epoch:
            raise Interrupted

    with pytest.raises(Interrupted):
        start_training(options, progress=False, on_epoch_end=stop)


def straight_and_resumed(options: dict, folder) -> tuple[dict, dict]:
    """The last checkpoints of ``options`` trained straight through (in ``folder/a``) and
    interrupted after its first epoch, then resumed (in ``folder/b``)."""
    from anas.runtime.rundir import load_checkpoint
    from anas.train.loop import resume_training, start_training

    start_training({**options, "run_dir": str(folder / "a")}, progress=False)
    train_until_interrupted({**options, "run_dir": str(folder / "b")})
    resume_training(str(folder / "b"), {}, progress=False)
    a, b = (load_checkpoint(folder / name / "checkpoints" / "last.pt") for name in ("a", "b"))
    return a, b


def assert_same_tensors(a: dict, b: dict, label: str = "") -> None:
    """Every tensor of the state dict ``a`` equals the one of the same name in ``b``."""
    import torch

    for name, tensor in a.items():
        assert torch.equal(tensor, b[name]), (label, name)


@pytest.fixture(scope="session")
def tiny():
    return load_space("tiny")


@pytest.fixture(scope="session")
def attentive():
    return load_space("attentive-nas")


@pytest.fixture(scope="session")
def tiny_table(tmp_path_factory):
    """A latency table of ``tiny`` on this CPU, timed quickly (two runs per layer)."""
    from anas.latency.lookup_table import TableConfig, build_latency_table

    path = tmp_path_factory.mktemp("latency") / "tiny.json"
    build_latency_table(load_space("tiny"), TableConfig(runs=2, warmup=0, subnets=5), path)
    return path


def one_line_error(excinfo, *fragments: str) -> None:
    """An exception's message (from ``pytest.raises``) is one line and names each fragment."""
    message = str(excinfo.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def assert_one_line_error(result: CliResult, *fragments: str) -> None:
    """Exit code 2, exactly one line on stderr that names the problem, no traceback."""
    assert result.code == 2, (result.code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("anas: error: ")
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


# Predictors the search-strategy tests share (tests/test_anneal.py, tests/test_two_stage.py).


def tiny_target(space, batch: ArchBatch, rng: np.random.Generator) -> np.ndarray:
    """A saturating curve in MFLOPs plus interactions a linear model cannot express."""
    mflops = batch_costs(space, batch).mflops
    acc = 97.0 - 12.0 * np.exp(-mflops / 0.7)
    acc += 0.8 * ((batch.depth[:, 2] == 3) & (batch.kernel_size[:, 2] == 5))
    acc -= 0.5 * ((batch.width[:, -1] == 128) & (batch.resolution == 24))
    return acc + rng.normal(0.0, 0.2, len(acc))


@pytest.fixture(scope="session")
def tiny_linear(tiny):
    """The FOX-NAS linear kind fitted on 64 spread records of ``tiny``."""
    records = ArchBatch.from_archs(spread_sample(tiny, 64, seed=0))
    return LinearPredictor.fit(tiny, records, tiny_target(tiny, records, np.random.default_rng(0)))


@pytest.fixture(scope="session")
def tiny_everything(tiny, tiny_linear):
    """Every subnet of ``tiny`` (36,864): genes, MFLOPs, params and predicted top-1."""
    genes = np.array(list(itertools.product(*[range(len(c)) for c in tiny.column_choices()])), dtype=np.int64)
    costs = index_costs(tiny, genes)
    return genes, costs.mflops, costs.params_m, tiny_linear.predict(ArchBatch.from_choice_index(tiny, genes))


@pytest.fixture(scope="session")
def attentive_linear(attentive):
    rng = np.random.default_rng(0)
    pool = sample_archs(attentive, 400, rng)
    return LinearPredictor.fit(attentive, pool, synthetic_acc1(attentive, pool, rng))


def planted_table(space, slow=lambda layer: False, factor=10.0):
    """A latency table where every block runs at 0.1 ms per MFLOP, except the ``slow``
    ones, and a subnet's latency is the sum of its layers'."""
    from anas.latency.lookup_table import Fit, LatencyTable, TableConfig, space_layers

    entries = {}
    for layer in space_layers(space):
        ms = 0.1 * layer.mflops(space.num_classes)
        entries[layer.key] = ms * factor if layer.kind == "block" and slow(layer) else ms
    fit = Fit(0.0, 1.0, 0.0, 0.0, [], 1.0, 0.0)
    return LatencyTable(space, space.num_classes, TableConfig(device="cpu"), {}, entries, fit)
