"""BN-NAS: private BNs, BN-only training, the BN indicator as estimator and predictor."""

import json
from dataclasses import replace

import numpy as np
import pytest
import scipy.stats
import torch

from anas.evaluate.trained import load_trained_run
from anas.nn.bn_indicator import IndicatorTable, indicator_scores, indicator_table
from anas.nn.supernet import Supernet
from anas.predict.folder import load_predictor
from anas.predict.kinds import PredictorError
from anas.predict.records import read_records
from anas.runtime.rundir import load_checkpoint
from anas.space.arch import ArchBatch, largest_arch, sample_archs
from anas.space.cost import batch_costs
from anas.space.table_format import frame_to_archs
from anas.train.loop import resume_training, start_training
from tests.conftest import TINY_FAKE_RUN, assert_one_line_error

BN_RUN = {**TINY_FAKE_RUN, "private_bn": True, "train_only": "bn", "sampler": "bestup-k3", "estimator": "bn",
          "warmup_epochs": 0.0, "lr": 0.5}


def _randomized_gammas(space, private_bn: bool, seed: int = 0) -> Supernet:
    supernet = Supernet(space, private_bn=private_bn)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in supernet.indicator_bns():
            bn.weight.copy_(torch.randn(bn.weight.shape, generator=gen))
    return supernet


def _loop_indicator(supernet: Supernet, arch, reduce: str) -> float:
    """The indicator the slow way: set the subnet, average |gamma| block by block."""
    supernet.set_active(arch)
    values = [float(stage[j].project.bn.active_affine()[0][:arch.width[i + 1]].abs().mean())
              for i, stage in enumerate(supernet.stages) for j in range(arch.depth[i])]
    return sum(values) if reduce == "sum" else sum(values) / len(values)


@pytest.mark.parametrize("private_bn", [False, True])
@pytest.mark.parametrize("reduce", ["sum", "mean"])
def test_the_gathered_indicator_equals_a_loop_over_blocks(tiny, private_bn, reduce):
    supernet = _randomized_gammas(tiny, private_bn)
    batch = sample_archs(tiny, 40, np.random.default_rng(1))
    scores = indicator_scores(tiny, indicator_table(supernet), batch, reduce)
    expected = [_loop_indicator(supernet, arch, reduce) for arch in batch]
    np.testing.assert_allclose(scores, expected, rtol=1e-5)


def test_only_private_bns_tell_kernel_sizes_apart(tiny):
    a = replace(largest_arch(tiny), kernel_size=(3, 3, 3))
    b = replace(a, kernel_size=(3, 5, 3))
    for private_bn, differ in ((False, False), (True, True)):
        table = indicator_table(_randomized_gammas(tiny, private_bn))
        scores = indicator_scores(tiny, table, ArchBatch.from_archs([a, b]))
        assert (scores[0] != scores[1]) == differ


@pytest.fixture(scope="module")
def bn_run(tmp_path_factory):
    """A tiny supernet trained one epoch with BN-NAS's options (private BN, BN-only, the
    BN estimator in BestUp sampling)."""
    folder = tmp_path_factory.mktemp("bn") / "run"
    start_training({**BN_RUN, "run_dir": str(folder)}, progress=False)
    return folder


def test_bn_only_training_changes_nothing_but_the_indicator_bns(bn_run, tiny):
    torch.manual_seed(0)  # the run's seed: its initialization
    initial = Supernet(tiny, num_classes=10, private_bn=True).state_dict()
    trained = load_checkpoint(bn_run / "checkpoints" / "last.pt")["model"]
    indicator = {f"stages.{i}.{j}.project.bn.{p}" for i, s in enumerate(tiny.stages) for j in range(max(s.depths))
                 for p in ("weight", "bias")}
    changed = {name for name, tensor in trained.items() if not torch.equal(tensor, initial[name])}
    statistics = {name for name in changed if name.rsplit(".", 1)[-1] in ("running_mean", "running_var",
                                                                         "num_batches_tracked")}
    assert changed - statistics <= indicator  # every other tensor is bitwise unchanged
    assert changed & indicator  # and the indicator's BNs trained
    log = (bn_run / "train.log").read_text()
    assert f"{sum(initial[name].numel() for name in indicator):,} of " in log
    assert "parameters trainable (--train-only bn)" in log


def test_after_training_kernel_sizes_get_different_indicators_and_static_nets_agree(bn_run):
    run = load_trained_run(bn_run)
    a = replace(largest_arch(run.space), kernel_size=(3, 3, 3))
    b = replace(a, kernel_size=(3, 3, 5))
    scores = indicator_scores(run.space, indicator_table(run.supernet), ArchBatch.from_archs([a, b]))
    assert scores[0] != scores[1]
    x = torch.randn(2, 3, a.resolution, a.resolution)
    for arch in (a, b):
        static = run.extract(arch).eval()
        run.supernet.set_active(arch)
        with torch.no_grad():
            assert torch.allclose(run.supernet(x), static(x), atol=1e-5)


def test_all_bn_trains_every_bn_and_no_conv(tmp_path, tiny):
    folder = tmp_path / "run"
    start_training({**TINY_FAKE_RUN, "train_only": "all-bn", "run_dir": str(folder)}, progress=False)
    torch.manual_seed(0)
    initial = Supernet(tiny, num_classes=10).state_dict()
    trained = load_checkpoint(folder / "checkpoints" / "last.pt")["model"]
    changed = {name for name, tensor in trained.items() if not torch.equal(tensor, initial[name])}
    assert "first_conv.bn.weight" in changed and "stages.1.0.depthwise.bn.bias" in changed
    assert all(".bn." in name for name in changed)


def test_resume_keeps_train_only_and_refuses_to_change_it(bn_run, tmp_path, run_cli):
    import shutil

    folder = tmp_path / "resumed"
    shutil.copytree(bn_run, folder)
    summary = resume_training(str(folder), {"epochs": 2}, progress=False)
    assert summary.epochs == 2
    assert "parameters trainable (--train-only bn)" in (folder / "train.log").read_text().splitlines()[-3]
    result = run_cli("train", "--resume", folder, "--train-only", "all", "--epochs", "3")
    assert_one_line_error(result, "was made with --train-only bn, not all")


def test_unknown_train_only_is_one_line(run_cli, tmp_path):
    result = run_cli("train", "--train-only", "conv", "--run-dir", tmp_path / "x")
    assert_one_line_error(result, "unknown --train-only 'conv'", "all, bn, all-bn")


def test_predict_fit_bn_measures_the_indicator_against_records_and_search_takes_it(bn_run, run_cli, tmp_path):
    result = run_cli("predict-fit", "--run", bn_run, "--samples", "12", "--no-plot", "-q")  # records first
    assert result.code == 0, result.stderr
    result = run_cli("predict-fit", "--kind", "bn", "--run", bn_run, "--bn-reduce", "mean", "--json")
    assert result.code == 0, result.stderr
    assert "warning" not in result.stderr  # private BN: nothing to warn about
    report = result.json()
    assert report["kind"] == "bn" and report["n_test"] == 12
    folder = bn_run / "predictor-bn"
    sidecar = json.loads((folder / "predictor.json").read_text())
    assert sidecar["bn_indicator"]["reduce"] == "mean" and sidecar["bn_indicator"]["private_bn"] is True
    predictor = load_predictor(folder)
    run = load_trained_run(bn_run)
    records = read_records(bn_run / "records.csv", run.space)
    measured, subnets = records["acc1"].to_numpy(float), frame_to_archs(run.space, records)
    costs = batch_costs(run.space, subnets)
    for key, score in (("kendall_tau", predictor.predict(subnets)), ("kendall_tau_mflops", costs.mflops),
                       ("kendall_tau_params", costs.params)):
        assert report[key] == pytest.approx(scipy.stats.kendalltau(measured, score).statistic), key
    batch = sample_archs(run.space, 5, np.random.default_rng(0))
    np.testing.assert_allclose(predictor.predict(batch),
                               indicator_scores(run.space, indicator_table(run.supernet), batch, "mean"))
    result = run_cli("search", "--predictor", folder, "--flops", "0.3-2", "--budget", "200", "--verify", "1",
                     "--out", tmp_path / "search", "--json")
    assert result.code == 0, result.stderr
    found = result.json()
    assert found["acc1"] is not None  # verified on the run the predictor was read from


def test_bn_kind_on_a_shared_bn_run_warns_once(tmp_path, run_cli):
    from tests.conftest import train_tiny_run

    folder = train_tiny_run(tmp_path / "run")
    result = run_cli("predict-fit", "--kind", "bn", "--run", folder, "-q")
    assert result.code == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("anas: warning:")]
    assert len(warnings) == 1 and "--private-bn" in warnings[0]
    assert "no records to measure it on" in result.stdout


def test_bn_kind_needs_a_run_not_a_records_file(run_cli, tmp_path):
    records = tmp_path / "records.csv"
    records.write_text("resolution\n")
    result = run_cli("predict-fit", "--kind", "bn", "--records", records, "--space", "tiny")
    assert_one_line_error(result, "--kind bn", "--run RUN_DIR")


@pytest.mark.parametrize("edit, fragment", [
    (lambda t: t.pop("bn_indicator"), "no bn_indicator table"),
    (lambda t: t["bn_indicator"].update(values=[[1.0]]), "shape"),
    (lambda t: t["bn_indicator"].update(values="x"), "4-d array"),
    (lambda t: t["bn_indicator"].update(reduce="max"), "reduce"),
])
def test_a_damaged_bn_predictor_is_refused(tmp_path, tiny, edit, fragment):
    from anas.predict.folder import save_predictor
    from anas.predict.kinds.bn import BNIndicatorPredictor

    supernet = _randomized_gammas(tiny, True)
    predictor = BNIndicatorPredictor(indicator_table(supernet), "sum", tiny, 10)
    save_predictor(predictor, tmp_path)
    sidecar = json.loads((tmp_path / "predictor.json").read_text())
    edit(sidecar)
    (tmp_path / "predictor.json").write_text(json.dumps(sidecar))
    with pytest.raises(PredictorError, match=fragment):
        load_predictor(tmp_path)


def test_negative_table_values_are_refused(tmp_path, tiny):
    from anas.predict.folder import save_predictor
    from anas.predict.kinds.bn import BNIndicatorPredictor

    table = indicator_table(_randomized_gammas(tiny, False))
    save_predictor(BNIndicatorPredictor(IndicatorTable(-table.values - 1, False), "sum", tiny, 10), tmp_path)
    with pytest.raises(PredictorError, match=">= 0"):
        load_predictor(tmp_path)


def test_bn_estimator_on_shared_bns_trains_and_warns_once(run_cli, tmp_path):
    args = [f"--{key.replace('_', '-')}={value}" for key, value in TINY_FAKE_RUN.items() if key != "sampler"]
    result = run_cli("train", *args, "--sampler", "worstup-k3", "--estimator", "bn", "--run-dir", tmp_path / "run",
                     "--json")
    assert result.code == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("anas: warning:")]
    assert len(warnings) == 1 and "kernel sizes" in warnings[0]


def test_a_standalone_subnet_of_a_bn_only_run_trains_every_weight(bn_run, tmp_path):
    from anas.train.static_training import train_standalone

    run = load_trained_run(bn_run)
    arch = sample_archs(run.space, 1, np.random.default_rng(0))[0]
    result = train_standalone(run.config, run.space, arch, tmp_path / "subnet")
    assert result.epochs == 1
    assert "parameters trainable," in (tmp_path / "subnet" / "train.log").read_text()  # all of them, no --train-only
