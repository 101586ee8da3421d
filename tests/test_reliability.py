"""What a hostile but realistic user found (issue: hostile input and shared folders): each
case is one line and exit code 2, or data that is refused instead of silently changing
results; shared folders lose no rows; killed writers leave nothing that lasts."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from anas.io import atomic_write_text
from anas.space.arch import sample_archs
from anas.space.cost import batch_costs
from anas.space.sampling import spread_sample
from anas.space.schema import space_to_dict
from anas.space.table_format import archs_to_frame, setting_columns
from tests.conftest import assert_one_line_error, train_tiny_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train_tiny_run(tmp_path_factory.mktemp("reliability") / "run")


def _records(space, path, n=40, acc1=None, seed=0):
    batch = sample_archs(space, n, np.random.default_rng(seed))
    frame = archs_to_frame(space, batch, batch_costs(space, batch))
    frame["acc1"] = np.linspace(50, 90, n) if acc1 is None else acc1
    frame.to_csv(path, index=False)
    return frame


@pytest.mark.parametrize("option", [["--n-estimators", "0"], ["--learning-rate", "-1"], ["--learning-rate", "nan"],
                                    ["--num-leaves", "1"], ["--num-leaves", "-3"], ["--seed", "-1"],
                                    ["--n-estimators", "10000000000"]])
def test_lightgbm_options_out_of_range(option, run_cli, tmp_path, tiny):
    _records(tiny, tmp_path / "r.csv")
    result = run_cli("predict-fit", "--records", tmp_path / "r.csv", "--space", "tiny", "--out", tmp_path / "o",
                     "--no-plot", *option)
    assert_one_line_error(result, option[0])
    assert not (tmp_path / "o").exists()


def test_calib_batches_and_seed_are_checked_before_any_work(run, run_cli, tmp_path):
    assert_one_line_error(run_cli("predict-fit", "--run", run, "--calib-batches", "-1"), "--calib-batches")
    assert_one_line_error(run_cli("predict-fit", "--run", run, "--calib-batches", "0"), "--calib-batches")
    assert_one_line_error(run_cli("search", "--flops", "0-5", "--predictor", run, "--verify", "2",
                                  "--calib-batches", "-1", "--out", tmp_path / "s"), "--calib-batches")
    assert not (tmp_path / "s").exists()
    for args in (["profile", "--space", "tiny", "--arch", "random", "--seed", "-1"],
                 ["search", "--flops", "0-5", "--predictor", run, "--seed", "-1"],
                 ["train", "--seed", "-1", "--run-dir", tmp_path / "t"],
                 ["predict-fit", "--run", run, "--seed", "-1"],
                 ["standalone", "--run", run, "--seed", "-1"]):
        assert_one_line_error(run_cli(*args), "--seed must be an integer from 0 to")
    assert not (tmp_path / "t").exists()


def test_a_space_with_absurd_sizes(run_cli, tmp_path, tiny):
    data = space_to_dict(tiny)
    data["head"]["widths"] = [10**20]
    (tmp_path / "huge.yaml").write_text(yaml.safe_dump(data))
    assert_one_line_error(run_cli("profile", "--space", tmp_path / "huge.yaml"), "head.widths[0]", "at most")
    data = space_to_dict(tiny)
    data["resolutions"] = [100_000]
    for stage in data["stages"]:
        stage["widths"] = [100_000]
    (tmp_path / "costly.yaml").write_text(yaml.safe_dump(data))
    assert_one_line_error(run_cli("profile", "--space", tmp_path / "costly.yaml"), "out of range")
    data = space_to_dict(tiny)
    data["stages"][0]["expand_ratios"] = [float("inf")]
    (tmp_path / "inf.yaml").write_text(yaml.safe_dump(data))
    assert_one_line_error(run_cli("profile", "--space", tmp_path / "inf.yaml"), "expand_ratios[0]")


def test_sizes_that_cannot_fit_in_memory_are_refused_with_the_figure(run, run_cli, tmp_path):
    result = run_cli("profile", "--space", "attentive-nas", "--sample", "1000000000000", "--out", tmp_path / "t.csv")
    assert_one_line_error(result, "--sample 1,000,000,000,000 would need about", "GB of memory")
    result = run_cli("predict-fit", "--run", run, "--samples", "100000000000")
    assert_one_line_error(result, "--samples 100,000,000,000 would need about", "GB of memory")
    assert not (tmp_path / "t.csv").exists() and not (run / "records.csv").exists()


def test_sizes_under_an_address_space_limit(tmp_path):
    """`ulimit -v`: the check counts what the process already holds."""
    code = ("import resource, sys; from anas.cli import main; "
            "resource.setrlimit(resource.RLIMIT_AS, (4 * 2**30, resource.RLIM_INFINITY)); "
            f"sys.exit(main(['profile', '--space', 'attentive-nas', '--sample', '100000000', '--out', "
            f"{str(tmp_path / 't.csv')!r}]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.count("\n") == 1 and "GB of memory" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("bad", ["inf", "1e309", "-50", "100.5", "nan"])
def test_accuracies_outside_0_to_100_are_refused(bad, run_cli, tmp_path, tiny):
    frame = _records(tiny, tmp_path / "r.csv")
    frame["acc1"] = frame["acc1"].astype(object)
    frame.loc[3, "acc1"] = bad
    frame.to_csv(tmp_path / "r.csv", index=False)
    result = run_cli("predict-fit", "--records", tmp_path / "r.csv", "--space", "tiny", "--out", tmp_path / "o")
    assert_one_line_error(result, "line 5, column acc1",
                          "is not a number" if bad == "nan" else "not a top-1 accuracy in percent")
    assert "np.float64" not in result.stderr and not (tmp_path / "o").exists()


def test_every_json_anas_writes_is_strict(run_cli, tmp_path, tiny):
    _records(tiny, tmp_path / "r.csv", n=20, acc1=np.full(20, 70.0))  # constant: the correlations are NaN
    result = run_cli("predict-fit", "--records", tmp_path / "r.csv", "--space", "tiny", "--out", tmp_path / "o",
                     "--json")
    assert result.code == 0, result.stderr
    strict = {"NaN": lambda _: pytest.fail("NaN"), "Infinity": lambda _: pytest.fail("Infinity"),
              "-Infinity": lambda _: pytest.fail("-Infinity")}
    for path in [*(tmp_path / "o").glob("*.json")]:
        json.loads(path.read_text(), parse_constant=lambda name: strict[name](name))
    json.loads(result.stdout, parse_constant=lambda name: strict[name](name))
    assert result.json()["kendall_tau"] is None


def test_repeated_subnets_are_merged_before_the_split(run_cli, tmp_path, tiny):
    """16 distinct subnets listed 3 times: a subnet is fitted or held out, never both."""
    batch = sample_archs(tiny, 16, np.random.default_rng(3))
    frame = archs_to_frame(tiny, batch, batch_costs(tiny, batch))
    frame["acc1"] = np.random.default_rng(4).uniform(50, 90, 16)
    repeated = pd.concat([frame, frame.assign(acc1=frame["acc1"] + 1), frame.assign(acc1=frame["acc1"] - 1)])
    repeated.to_csv(tmp_path / "r.csv", index=False)
    result = run_cli("predict-fit", "--records", tmp_path / "r.csv", "--space", "tiny", "--out", tmp_path / "o",
                     "--json")
    assert result.code == 0, result.stderr
    report = result.json()
    assert report["n_records"] == 16 and report["duplicates_merged"] == 32
    assert report["n_train"] + report["n_test"] == 16


def test_holdout_split_without_a_holdout_is_refused_even_with_nothing_to_evaluate(run, run_cli):
    assert run_cli("predict-fit", "--run", run, "--samples", "10", "--no-plot", "--json").code == 0
    result = run_cli("predict-fit", "--run", run, "--samples", "10", "--split", "holdout", "--no-plot")
    assert_one_line_error(result, "--split holdout", "trained without --holdout")


def test_records_made_differently_are_not_mixed(run, run_cli, tmp_path):
    result = run_cli("predict-fit", "--run", run, "--samples", "10", "--no-plot", "--json")
    assert result.code == 0, result.stderr
    table = pd.read_csv(run / "records.csv")
    assert {"split", "calib_batches", "checkpoint"} <= set(table.columns)
    assert set(table["split"]) == {"val"} and set(table["calib_batches"]) == {1}
    before = (run / "records.csv").read_bytes()
    result = run_cli("predict-fit", "--run", run, "--samples", "10", "--calib-batches", "2", "--no-plot")
    assert_one_line_error(result, "calib_batches 1, not 2", "never mixed")
    assert (run / "records.csv").read_bytes() == before


@pytest.mark.slow
def test_two_concurrent_predict_fits_keep_the_union_of_their_rows(tmp_path):
    folder = train_tiny_run(tmp_path / "run")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    commands = [[sys.executable, "-m", "anas", "predict-fit", "--run", str(folder), "--samples", "14", "--seed", seed,
                 "--out", str(tmp_path / f"p{seed}"), "--no-plot", "--json"] for seed in ("1", "2")]
    processes = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                 for c in commands]
    for process in processes:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr[-2000:]
    from anas.space.schema import load_space

    space = load_space("tiny")
    wanted = {tuple(row) for seed in (1, 2)
              for row in archs_to_frame(space, _batch(spread_sample(space, 14, seed)))[setting_columns(space)]
              .to_numpy(dtype=np.float64)}
    table = pd.read_csv(folder / "records.csv")
    found = [tuple(row) for row in table[setting_columns(space)].to_numpy(dtype=np.float64)]
    assert set(found) == wanted and len(found) == len(wanted)  # every row of both, each once


def _batch(archs):
    from anas.space.arch import ArchBatch

    return ArchBatch.from_archs(archs)


def test_a_killed_writer_leaves_a_temporary_that_the_next_write_removes(tmp_path):
    target = tmp_path / "out" / "last.pt"
    code = ("import time; from pathlib import Path; from anas.io import atomic_write\n"
            f"atomic_write({str(target)!r}, lambda tmp: time.sleep(60))")
    writer = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.time() + 60
    while not list(target.parent.glob(".last.pt.*.tmp")) and time.time() < deadline:
        time.sleep(0.1)
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    assert len(list(target.parent.glob(".last.pt.*.tmp"))) == 1  # what SIGKILL leaves
    (target.parent / ".export.onnx.999999999.abcd.tmp").write_text("")  # a dead writer of another file
    (target.parent / f".model.onnx.{os.getpid()}.abcd.tmp").write_text("")  # a live writer's: kept
    (target.parent / ".notes.tmp").write_text("")  # not anas's: kept
    atomic_write_text(target.parent / "metrics.csv", "new")
    assert (target.parent / "metrics.csv").read_text() == "new"
    assert not list(target.parent.glob(".last.pt.*.tmp")) and not list(target.parent.glob(".export.onnx.*"))
    assert (target.parent / f".model.onnx.{os.getpid()}.abcd.tmp").exists() and (target.parent / ".notes.tmp").exists()


def test_a_corrupt_checkpoint_never_suggests_an_unsafe_load(run, run_cli, tmp_path):
    bad = tmp_path / "bad"
    (bad / "checkpoints").mkdir(parents=True)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"format": "anas-supernet-1", "model": Evil()}, bad / "checkpoints" / "last.pt")
    for content in (None, b"garbage" * 100, (run / "checkpoints" / "last.pt").read_bytes()[:5000]):
        if content is not None:
            (bad / "checkpoints" / "last.pt").write_bytes(content)
        result = run_cli("predict-fit", "--run", bad)
        assert_one_line_error(result, "corrupt or not an anas checkpoint")
        assert "weights_only" not in result.stderr and "pwned" not in result.stdout
        assert result.stderr.strip().endswith(")")  # in full, not cut


def test_a_run_folder_that_is_a_file(run_cli, tmp_path):
    (tmp_path / "run").write_text("not a folder")
    assert_one_line_error(run_cli("predict-fit", "--run", tmp_path / "run"), "is a file, not a folder")


def test_cells_are_quoted_as_plain_values(run_cli, tmp_path, tiny):
    frame = _records(tiny, tmp_path / "r.csv")
    frame["width_0"] = frame["width_0"].astype(float)
    frame.loc[2, "width_0"] = np.nan
    frame.to_csv(tmp_path / "r.csv", index=False)
    result = run_cli("predict-fit", "--records", tmp_path / "r.csv", "--space", "tiny", "--out", tmp_path / "o")
    assert_one_line_error(result, "line 4, column width_0: nan is not a number")


def test_records_of_an_earlier_version_are_extended_and_read_again(run_cli, tmp_path):
    """A records.csv written before rows noted how they were made: its rows are kept, new
    rows note it, and the mixed file reads back (1 in a column with empty cells is 1.0)."""
    folder = train_tiny_run(tmp_path / "run")
    assert run_cli("predict-fit", "--run", folder, "--samples", "10", "--no-plot", "--json").code == 0
    legacy = pd.read_csv(folder / "records.csv").drop(columns=["split", "calib_batches", "checkpoint"])
    legacy.to_csv(folder / "records.csv", index=False)
    for samples in ("12", "14"):
        result = run_cli("predict-fit", "--run", folder, "--samples", samples, "--no-plot", "--json")
        assert result.code == 0, result.stderr
    table = pd.read_csv(folder / "records.csv")
    assert len(table) == 14 and table["checkpoint"].isna().sum() == 10
    assert table["checkpoint"].dropna().str.startswith("sha256:").all()
