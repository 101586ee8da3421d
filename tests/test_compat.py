"""Folders written before the package took its present shape still load: a run whose
configuration holds the retired ``keep_freed_memory`` option and no regularizers, and a
predictor folder whose ``predictor.json`` names no kind."""

import json

import pytest
import torch

from anas.train.loop import start_training
from anas.train.rundir import load_checkpoint


@pytest.fixture(scope="module")
def old_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("compat") / "run"
    start_training({"space": "tiny", "data": "digits", "epochs": 1, "sampler": "uniform", "calib_batches": 1,
                    "prior_samples": 1000, "run_dir": str(run)}, progress=False)
    checkpoint = run / "checkpoints" / "last.pt"
    state = load_checkpoint(checkpoint)
    state["config"].pop("regularizer")
    state["config"]["keep_freed_memory"] = True
    state.pop("regularizers")
    torch.save(state, checkpoint)
    config = (run / "config.yaml").read_text().replace("regularizer:\n- kd\n", "")
    (run / "config.yaml").write_text(config + "keep_freed_memory: true\n")
    return run


def test_an_earlier_run_folder_loads_for_predict_fit_search_and_export(run_cli, old_run, tmp_path):
    fitted = run_cli("predict-fit", "--run", old_run, "--samples", "12", "--calib-batches", "1", "--no-plot", "--json")
    assert fitted.code == 0, fitted.stderr
    sidecar = old_run / "predictor.json"
    meta = json.loads(sidecar.read_text())
    meta.pop("kind")  # as written before predictor kinds existed
    sidecar.write_text(json.dumps(meta))
    found = run_cli("search", "--flops", "1-2", "--predictor", old_run, "--run", old_run, "--verify", "1",
                    "--budget", "60", "--json")
    assert found.code == 0, found.stderr
    assert found.json()["acc1"] is not None
    exported = run_cli("export", "--run", old_run, "--arch", old_run / "search-1-2" / "best.json", "--to", "pt",
                       "--out", tmp_path / "best.pt", "--json")
    assert exported.code == 0, exported.stderr
    assert exported.json()["ok"]


def test_an_earlier_run_resumes(run_cli, old_run):
    resumed = run_cli("train", "--resume", old_run, "--epochs", "2", "--calib-batches", "1", "--json")
    assert resumed.code == 0, resumed.stderr
    assert resumed.json()["epochs"] == 2
    assert "keep_freed_memory" not in (old_run / "config.yaml").read_text()
