"""``anas train --sampler fpnas``: the middle subnets from a distribution learned on held-out data."""

import json

import numpy as np
import pytest
from conftest import (
    TINY_FAKE_RUN,
    assert_one_line_error,
    assert_same_tensors,
    straight_and_resumed,
)

from anas.runtime.rundir import RunDir
from anas.space.arch import ArchBatch
from anas.space.cost import batch_costs
from anas.space.distribution import SubnetDistribution
from anas.train.loop import start_training
from anas.train.samplers.fpnas import hinge_cost

FPNAS_RUN = {**TINY_FAKE_RUN, "sampler": "fpnas", "holdout": 0.25, "flops_target": 1.0, "epochs": 2,
             "fpnas_switch_epoch": 1}


def test_training_writes_the_distribution_its_mode_and_metrics(tmp_path, tiny):
    start_training({**FPNAS_RUN, "run_dir": str(tmp_path / "run")}, progress=False)
    run = tmp_path / "run"
    data = json.loads((run / "distribution.json").read_text())
    learned = SubnetDistribution.from_dict(tiny, data, "distribution.json")
    assert learned.form == "joint"  # switched after epoch 1
    assert learned.entropy() < SubnetDistribution.factorized(tiny).entropy()
    best = json.loads((run / "best.json").read_text())
    assert best["mflops"] > 0 and 0 < best["probability"] <= 1
    metrics = RunDir(run).read_metrics()
    assert all(row["fpnas_k"] >= 2 and row["fpnas_entropy"] > 0 for row in metrics)


@pytest.mark.slow
def test_resume_restores_the_distribution_exactly(tmp_path):
    a, b = straight_and_resumed(FPNAS_RUN, tmp_path)
    assert a["sampler"]["logits"] == b["sampler"]["logits"]
    assert_same_tensors(a["model"], b["model"])


@pytest.mark.parametrize("beta, within", [(5.0, True), (0.0, False)])
def test_the_hinge_cost_keeps_the_mode_within_the_target(tiny, beta, within):
    """On an objective that favours size, the cost (beta > 0) holds the mode at the target."""
    dist, rng, target, n = SubnetDistribution.factorized(tiny), np.random.default_rng(0), 1.0, 16
    for _ in range(400):
        genes = dist.sample(32, rng)
        mflops = batch_costs(tiny, ArchBatch.from_choice_index(tiny, genes)).mflops
        dist.update(genes, n * 0.5 * mflops - beta * n * hinge_cost(mflops, target), lr=0.5)
    mode = batch_costs(tiny, ArchBatch.from_choice_index(tiny, dist.mode())).mflops[0]
    assert (mode <= target) == within, mode


def test_bad_fpnas_options_are_one_line(run_cli, tmp_path):
    base = ["train", "--data", "fake", "--epochs", "1", "--run-dir", tmp_path / "x"]
    assert_one_line_error(run_cli(*base, "--fpnas-beta", "2"), "--fpnas-beta goes with --sampler fpnas")
    assert_one_line_error(run_cli(*base, "--flops-target", "1"), "--flops-target goes with --sampler fpnas")
    assert_one_line_error(run_cli(*base, "--sampler", "fpnas"), "add --holdout")
    assert_one_line_error(run_cli(*base, "--sampler", "fpnas", "--holdout", "0.1", "--num-subnets", "2"),
                          "--num-subnets must be at least 3")
    assert_one_line_error(run_cli(*base, "--sampler", "fpnas", "--holdout", "0.1", "--flops-target", "50"),
                          "--flops-target 50 is outside", "0.22 to 2.92")
    assert not (tmp_path / "x").exists()
