from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from anas.cli import main
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
                 "sampler": "uniform", "prior_samples": 1000}
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


@pytest.fixture(scope="session")
def tiny():
    return load_space("tiny")


@pytest.fixture(scope="session")
def attentive():
    return load_space("attentive-nas")


def assert_one_line_error(result: CliResult, *fragments: str) -> None:
    """Exit code 2, exactly one line on stderr that names the problem, no traceback."""
    assert result.code == 2, (result.code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("anas: error: ")
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
