import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import assert_one_line_error

from anas.space.arch import sample_archs
from anas.space.cost import batch_costs
from anas.space.table_format import archs_to_frame, setting_columns, write_table
from anas.train.loop import start_training


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One short run on the embedded digits, shared by the tests of this module."""
    run = tmp_path_factory.mktemp("predict") / "run"
    start_training({"space": "tiny", "data": "digits", "epochs": 2, "lr": 0.4, "sampler": "uniform", "calib_batches": 2,
                    "holdout": 0.1, "run_dir": str(run)}, progress=False)
    return run


def _records_file(space, path, n, seed=0, with_acc=True):
    rng = np.random.default_rng(seed)
    batch = sample_archs(space, n, rng)
    frame = archs_to_frame(space, batch, batch_costs(space, batch))
    if with_acc:
        frame["acc1"] = 50 + 5 * np.log(frame["mflops"]) + rng.normal(0, 0.5, n)
    write_table(frame, path)
    return frame


def test_run_records_predictor_and_resume(run_cli, trained_run):
    result = run_cli("predict-fit", "--run", trained_run, "--samples", "20", "--calib-batches", "1", "--json")
    assert result.code == 0, result.stderr
    data = result.json()
    assert set(data) >= {"kendall_tau", "spearman_rho", "mae", "n_train", "n_test"}
    assert data["n_train"] + data["n_test"] == 20 and data["evaluated_now"] == 20
    records = pd.read_csv(trained_run / "records.csv")
    assert len(records) == 20 and {"acc1", "acc5", "loss", "mflops", "params_m"} <= set(records.columns)
    assert records[setting_columns_for(trained_run)].duplicated().sum() == 0
    assert records["acc1"].between(0, 100).all()
    assert records["mflops"].min() == pytest.approx(0.223296) and records["mflops"].max() == pytest.approx(2.92224)
    for name in ("predictor.txt", "predictor.json", "predictor.png"):
        assert (trained_run / name).is_file()
    meta = json.loads((trained_run / "predictor.json").read_text())
    assert meta["n_records"] == 20 and meta["metrics"]["kendall_tau"] == pytest.approx(data["kendall_tau"])
    again = run_cli("predict-fit", "--run", trained_run, "--samples", "20", "--calib-batches", "1", "--json")
    assert again.json()["evaluated_now"] == 0  # resumed: nothing evaluated twice
    more = run_cli("predict-fit", "--run", trained_run, "--samples", "22", "--calib-batches", "1", "--quiet")
    assert more.code == 0 and "Kendall tau" in more.stdout
    assert len(pd.read_csv(trained_run / "records.csv")) == 22


def setting_columns_for(run):
    from anas.space.schema import load_space

    return setting_columns(load_space("tiny"))


def test_records_file_and_test_records(run_cli, attentive, tmp_path):
    _records_file(attentive, tmp_path / "train.csv", 150, seed=0)
    _records_file(attentive, tmp_path / "test.csv", 60, seed=1)
    result = run_cli("predict-fit", "--records", tmp_path / "train.csv", "--space", "attentive-nas",
                     "--test-records", tmp_path / "test.csv", "--out", tmp_path / "p", "--json")
    assert result.code == 0, result.stderr
    data = result.json()
    assert data["n_train"] == 150 and data["n_test"] == 60 and data["kendall_tau"] > 0.5
    assert (tmp_path / "p" / "predictor.txt").is_file()


def test_train_with_the_predictor_estimator(run_cli, tiny, tmp_path):
    _records_file(tiny, tmp_path / "r.csv", 80)
    assert run_cli("predict-fit", "--records", tmp_path / "r.csv", "--space", "tiny", "--out", tmp_path / "p",
                   "--no-plot", "--json").code == 0
    result = run_cli("train", "--data", "fake", "--epochs", "1", "--batch-size", "32", "--calib-batches", "1",
                     "--prior-samples", "2000", "--sampler", "bestup-k50", "--estimator", "predictor",
                     "--predictor", tmp_path / "p", "--run-dir", tmp_path / "run", "--json")
    assert result.code == 0, result.stderr


def test_bad_inputs(run_cli, tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./runs here
    frame = _records_file(tiny, tmp_path / "ok.csv", 40)
    frame.drop(columns=["acc1"]).to_csv(tmp_path / "noacc.csv", index=False)
    frame.drop(columns=["depth_1"]).to_csv(tmp_path / "nodepth.csv", index=False)
    bad = frame.astype(object)
    bad.loc[3, "width_2"] = "wide"
    bad.to_csv(tmp_path / "text.csv", index=False)
    off = frame.copy()
    off.loc[5, "kernel_size_0"] = 7
    off.to_csv(tmp_path / "off.csv", index=False)
    frame.head(5).to_csv(tmp_path / "few.csv", index=False)
    (tmp_path / "empty_run").mkdir()
    _records_file(load("cifar"), tmp_path / "cifar.csv", 30)
    assert run_cli("predict-fit", "--records", tmp_path / "cifar.csv", "--space", "cifar", "--out", tmp_path / "cp",
                   "--no-plot").code == 0
    cases = [
        (["--records", tmp_path / "noacc.csv", "--space", "tiny"], ["missing column acc1"]),
        (["--records", tmp_path / "nodepth.csv", "--space", "tiny"], ["missing column(s) depth_1"]),
        (["--records", tmp_path / "text.csv", "--space", "tiny"], ["line 5, column width_2: 'wide' is not a number"]),
        (["--records", tmp_path / "off.csv", "--space", "tiny"], ["line 7, column kernel_size_0: 7 is not a choice"]),
        (["--records", tmp_path / "few.csv", "--space", "tiny"], ["too few"]),
        (["--records", tmp_path / "ok.csv"], ["needs --space"]),
        (["--records", tmp_path / "absent.csv", "--space", "tiny"], ["does not exist"]),
        (["--run", tmp_path / "empty_run"], ["has no checkpoint"]),
        ([], ["no run folder under runs/ holds a supernet checkpoint: run `anas train` first"]),
        (["--run", tmp_path / "empty_run", "--records", tmp_path / "ok.csv"], ["not both"]),
        (["--records", tmp_path / "ok.csv", "--space", "tiny", "--kind", "oracle"], ["unknown predictor kind 'oracle'"]),
        (["--run", tmp_path / "empty_run", "--samples", "4"], ["has no checkpoint"]),
    ]
    for args, fragments in cases:
        assert_one_line_error(run_cli("predict-fit", *args), *fragments)
    assert_one_line_error(
        run_cli("train", "--data", "fake", "--estimator", "predictor", "--predictor", tmp_path / "cp",
                "--run-dir", tmp_path / "r2"), "fitted on space cifar")
    assert_one_line_error(run_cli("train", "--estimator", "predictor"), "needs --predictor")
    assert not (tmp_path / "r2").exists()


def load(name):
    from anas.space.schema import load_space

    return load_space(name)


@pytest.mark.slow
def test_torchrun_ranks_evaluate_disjoint_subnets(trained_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    (run / "records.csv").unlink(missing_ok=True)
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "anas",
            "predict-fit", "--run-dir", str(run), "--samples", "12", "--calib-batches", "1", "--json"]
    result = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)["n_records"] == 12  # rank 0 alone reports
    records = pd.read_csv(run / "records.csv")
    assert len(records) == 12 and not records[setting_columns(load("tiny"))].duplicated().any()
