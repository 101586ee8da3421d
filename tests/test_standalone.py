"""``anas standalone``: subnets trained on their own, and the supernet's ranking of them."""

import json
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from anas.evaluate import standalone as standalone_module
from anas.evaluate.standalone import StandaloneOptions, standalone
from anas.evaluate.trained import load_trained_run
from anas.runtime.rundir import RunDir, load_checkpoint
from anas.space.arch import largest_arch, sample_archs, smallest_arch
from anas.space.table_format import archs_to_frame
from anas.train.static_training import train_standalone
from tests.conftest import assert_one_line_error, train_tiny_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A one-epoch supernet on the fake data, with a predictor fitted in its folder."""
    folder = train_tiny_run(tmp_path_factory.mktemp("standalone") / "run")
    from anas.cli import main

    assert main(["predict-fit", "--run", str(folder), "--samples", "12", "--no-plot", "--json"]) == 0
    return folder


def test_standalone_writes_the_table_the_ranking_and_the_plot(run, run_cli, tmp_path):
    out = tmp_path / "out"
    result = run_cli("standalone", "--run", run, "--subnets", 4, "--epochs", 1, "--out", out, "--json")
    assert result.code == 0, result.stderr
    ranking = result.json()
    assert ranking == json.loads((out / "ranking.json").read_text())
    assert ranking["subnets"] == 4 and ranking["epochs"] == 1
    for ranked_by in ("supernet", "predictor"):
        assert set(ranking[ranked_by]) == {"kendall_tau", "spearman_rho", "mae"}
    table = pd.read_csv(out / "standalone.csv")
    assert len(table) == 4
    assert {"mflops", "params_m", "acc1_standalone", "acc1_supernet", "acc1_predicted"} <= set(table.columns)
    assert table["acc1_predicted"].notna().all()
    assert table["mflops"].min() == pytest.approx(0.2233, abs=1e-3)  # the smallest subnet is one of them
    assert (out / "ranking.png").stat().st_size > 0
    assert len(list((out / "subnets").iterdir())) == 4


def test_an_interrupted_command_resumes_without_retraining(run, tmp_path, monkeypatch):
    out = tmp_path / "out"
    options = StandaloneOptions(run=str(run), subnets=3, epochs=1, out=str(out), plot=False)
    trained = []
    original = standalone_module.train_standalone

    def interrupted_after_one(config, space, arch, folder, **kwargs):
        if trained:
            raise KeyboardInterrupt
        trained.append(arch)
        return original(config, space, arch, folder, **kwargs)

    monkeypatch.setattr(standalone_module, "train_standalone", interrupted_after_one)
    with pytest.raises(KeyboardInterrupt):
        standalone(options)
    first = pd.read_csv(out / "standalone.csv")
    assert len(first) == 1  # written as soon as the first subnet finished

    again = []
    monkeypatch.setattr(standalone_module, "train_standalone",
                        lambda config, space, arch, folder, **kw: again.append(arch) or original(config, space, arch,
                                                                                                 folder, **kw))
    outcome = standalone(options)
    assert outcome.trained_now == 2 and trained[0] not in again
    table = pd.read_csv(out / "standalone.csv")
    assert len(table) == 3
    pd.testing.assert_frame_equal(table.iloc[:1], first)


def test_a_standalone_training_is_deterministic_per_seed(run, tmp_path):
    trained = load_trained_run(run)
    config = replace(trained.config, epochs=1, seed=3)
    arch = sample_archs(trained.space, 1, np.random.default_rng(1))[0]
    first = train_standalone(config, trained.space, arch, tmp_path / "a")
    second = train_standalone(config, trained.space, arch, tmp_path / "b")
    assert first.result == second.result
    states = [load_checkpoint(tmp_path / name / "checkpoints" / "last.pt", checkpoint_format="anas-standalone-1")
              for name in ("a", "b")]
    for key, tensor in states[0]["model"].items():
        assert torch.equal(tensor, states[1]["model"][key]), key
    other = train_standalone(replace(config, seed=4), trained.space, arch, tmp_path / "c")
    assert other.result != first.result  # the seed matters


def test_standalone_training_runs_the_supernet_training_loop(run, tmp_path, monkeypatch):
    from anas.train import static_training
    from anas.train.loop import fit

    assert static_training.fit is fit  # the same loop, another model and step
    fitted = []
    monkeypatch.setattr(static_training, "fit", lambda trainee, *args: fitted.append(trainee) or fit(trainee, *args))
    trained = load_trained_run(run)
    train_standalone(replace(trained.config, epochs=1), trained.space, smallest_arch(trained.space), tmp_path / "s")
    assert len(fitted) == 1 and fitted[0].checkpoint_format == "anas-standalone-1"


def test_a_finished_subnet_is_not_trained_again_and_a_mismatched_one_is_refused(run, tmp_path):
    trained = load_trained_run(run)
    config = replace(trained.config, epochs=1)
    arch = smallest_arch(trained.space)
    first = train_standalone(config, trained.space, arch, tmp_path / "s")
    again = train_standalone(config, trained.space, arch, tmp_path / "s")
    assert again.result == first.result and again.seconds == 0.0
    from anas.errors import AnasError, CheckpointError

    with pytest.raises(AnasError, match="--epochs 1, not 2"):
        train_standalone(replace(config, epochs=2), trained.space, arch, tmp_path / "s")
    with pytest.raises(CheckpointError, match="another subnet"):
        train_standalone(config, trained.space, largest_arch(trained.space), tmp_path / "s")
    with pytest.raises(CheckpointError, match="not an anas supernet checkpoint.*standalone subnet"):
        load_trained_run(tmp_path / "s")


def test_subnets_from_a_csv_or_json_file(run, run_cli, tmp_path, tiny):
    batch = sample_archs(tiny, 3, np.random.default_rng(5))
    archs_to_frame(tiny, batch).to_csv(tmp_path / "archs.csv", index=False)
    result = run_cli("standalone", "--run", run, "--archs", tmp_path / "archs.csv", "--epochs", 1,
                     "--out", tmp_path / "csv", "--no-plot", "--json")
    assert result.code == 0, result.stderr
    assert result.json()["subnets"] == 3
    (tmp_path / "archs.json").write_text(json.dumps([arch.to_dict() for arch in batch]))
    result = run_cli("standalone", "--run", run, "--archs", tmp_path / "archs.json", "--epochs", 1,
                     "--out", tmp_path / "csv", "--no-plot", "--json")
    assert result.code == 0, result.stderr  # the same subnets: nothing is trained again
    assert len(pd.read_csv(tmp_path / "csv" / "standalone.csv")) == 3


def test_bad_input_is_one_line(run, run_cli, tmp_path, tiny):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(run_cli("standalone", "--run", empty), "has no checkpoint")
    assert_one_line_error(run_cli("standalone", "--run", run, "--subnets", 1), "--subnets must be at least 3")
    assert_one_line_error(run_cli("standalone", "--run", run, "--subnets", 4, "--archs", "x.csv"), "not both")
    assert_one_line_error(run_cli("standalone", "--run", run, "--epochs", 0), "--epochs")
    off = smallest_arch(tiny).to_dict()
    off["kernel_size"] = [9] * len(off["kernel_size"])
    (tmp_path / "off.json").write_text(json.dumps([smallest_arch(tiny).to_dict(), off]))
    assert_one_line_error(run_cli("standalone", "--run", run, "--archs", tmp_path / "off.json"),
                          "subnet 2", "kernel_size[0] = 9")
    (tmp_path / "two.json").write_text(json.dumps([smallest_arch(tiny).to_dict(), largest_arch(tiny).to_dict()]))
    assert_one_line_error(run_cli("standalone", "--run", run, "--archs", tmp_path / "two.json"), "at least 3")
    assert RunDir(run).has_checkpoint()


def test_a_table_made_with_other_epochs_is_not_mixed_in(run, run_cli, tmp_path):
    out = tmp_path / "out"
    assert run_cli("standalone", "--run", run, "--subnets", 3, "--epochs", 1, "--out", out, "--json").code == 0
    before = (out / "standalone.csv").read_bytes()
    assert_one_line_error(run_cli("standalone", "--run", run, "--subnets", 3, "--epochs", 2, "--out", out),
                          "--epochs 1 --seed 0, not --epochs 2 --seed 0")
    assert (out / "standalone.csv").read_bytes() == before


@pytest.mark.slow
def test_torchrun_spreads_the_subnets_and_matches_one_process(run, tmp_path):
    """The two commands, each in fresh processes with the same number of threads."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    outputs = {}
    for name, launcher in (("one", []), ("two", ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"])):
        args = [sys.executable, *launcher, "-m", "anas", "standalone", "--run-dir", str(run), "--subnets", "4",
                "--epochs", "1", "--out", str(tmp_path / name), "--no-plot", "--json"]
        result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
        assert result.returncode == 0, result.stderr[-2000:]
        outputs[name] = json.loads(result.stdout)  # printed once, by rank 0
    assert outputs["two"] == outputs["one"]
    tables = [pd.read_csv(tmp_path / name / "standalone.csv") for name in ("one", "two")]
    columns = list(tables[0].columns)
    one, two = (t.sort_values(columns).reset_index(drop=True) for t in tables)
    pd.testing.assert_frame_equal(one, two)
