"""Folders written before the package took its present shape still load: a run whose
configuration holds every plug-in's options at the top level (as 0.1.0 wrote them), the
retired ``keep_freed_memory`` option and no regularizers, and a predictor folder whose
``predictor.json`` names no kind."""

import json

import pytest
import torch
import yaml

from anas.runtime.rundir import load_checkpoint
from anas.train.loop import start_training


@pytest.fixture(scope="module")
def old_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("compat") / "run"
    start_training({"space": "tiny", "data": "digits", "epochs": 1, "sampler": "uniform", "calib_batches": 1,
                    "run_dir": str(run)}, progress=False)
    checkpoint = run / "checkpoints" / "last.pt"
    state = load_checkpoint(checkpoint)
    state["config"].pop("regularizer")
    state["config"].update(VERSION_0_1_OPTIONS, keep_freed_memory=True)
    state.pop("regularizers")
    torch.save(state, checkpoint)
    config = (run / "config.yaml").read_text().replace("regularizer:\n- kd\n", "")
    (run / "config.yaml").write_text(config + yaml.safe_dump({**VERSION_0_1_OPTIONS, "keep_freed_memory": True}))
    return run


VERSION_0_1_OPTIONS = {"data_dir": None, "download": False, "queue_size": None, "temperature": None,
                       "ema_momentum": None, "cross_path": False, "cross_path_weight": 1.0, "eval_weights": "student",
                       "predictor": None, "flops_target": None, "fpnas_beta": None, "fpnas_lambda": None,
                       "fpnas_switch_epoch": None, "flops_step": None, "prior_samples": 1000}
"""Options of plug-ins that 0.1.0 wrote into every run's configuration, selected or not."""


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


def test_an_earlier_run_trains_its_subnets_alone(run_cli, old_run, tmp_path):
    ranked = run_cli("standalone", "--run", old_run, "--subnets", "3", "--epochs", "1", "--out", tmp_path / "alone",
                     "--no-plot", "--json")
    assert ranked.code == 0, ranked.stderr
    assert ranked.json()["subnets"] == 3


def test_an_earlier_run_resumes(run_cli, old_run):
    resumed = run_cli("train", "--resume", old_run, "--epochs", "2", "--calib-batches", "1", "--json")
    assert resumed.code == 0, resumed.stderr
    assert resumed.json()["epochs"] == 2
    assert "keep_freed_memory" not in (old_run / "config.yaml").read_text()
