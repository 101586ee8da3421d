"""Data-parallel training with 2 CPU processes (gloo)."""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp

from anas.evaluate.trained import load_trained_run
from anas.nn.supernet import Supernet
from anas.runtime.rundir import RunDir, load_checkpoint
from anas.space.arch import largest_arch, smallest_arch
from anas.space.schema import load_space

OPTIONS = {"space": "tiny", "data": "fake", "batch_size": 8, "epochs": 1, "calib_batches": 1,
           "prior_samples": 1000, "sampler": "recording-k3"}  # BestUp-k3 that notes its draws


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, folder: str, options: dict) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from anas.train import loop as train_module
    from anas.train.samplers import register_sampler
    from anas.train.samplers.attentive import AttentiveOptions, BestUpSampler
    from anas.train.samplers.fpnas import FPNASOptions, FPNASSampler

    chosen, learned = [], {}

    @register_sampler("recording", parameter="k", options=AttentiveOptions)
    class Recording(BestUpSampler):
        """BestUp that notes every subnet it draws."""

        def sample(self, images, labels):
            arch = super().sample(images, labels)
            chosen.append(arch.to_dict())
            return arch

    @register_sampler("recording-fpnas", options=FPNASOptions)
    class RecordingFPNAS(FPNASSampler):
        """FP-NAS that notes every subnet it draws and its distribution's logits."""

        def sample(self, images, labels):
            arch = super().sample(images, labels)
            chosen.append(arch.to_dict())
            learned["logits"] = [factor.logits.tolist() for factor in self.dist.factors]
            return arch

    captured = {}
    build_trainee = train_module.supernet_trainee

    def capturing_trainee(*args, **kwargs):
        """The run's trainee, its evaluations noted."""
        trainee = captured["trainee"] = build_trainee(*args, **kwargs)
        evaluate = trainee.evaluate

        def noted():
            results = evaluate()
            captured["eval"] = {name: result.to_dict() for name, result in results.items()}
            return results

        trainee.evaluate = noted
        return trainee

    train_module.supernet_trainee = capturing_trainee
    train_module.start_training({**options, "run_dir": os.path.join(folder, "run")}, progress=False)
    weights = float(sum(p.detach().double().sum() for p in captured["trainee"].model.parameters()))
    with open(os.path.join(folder, f"rank{rank}.json"), "w") as handle:
        json.dump({"subnets": chosen, "weights": weights, "eval": captured["eval"], **learned}, handle)


def _train_in_two_processes(folder, options: dict) -> list[dict]:
    """What each rank of a 2-process run of ``options`` drew, its weights and evaluation."""
    mp.spawn(_worker, args=(2, _free_port(), str(folder), options), nprocs=2, join=True)
    return [json.loads((folder / f"rank{r}.json").read_text()) for r in range(2)]


@pytest.mark.slow
def test_two_processes_sample_the_same_subnets_and_stay_in_sync(tmp_path):
    ranks = _train_in_two_processes(tmp_path, OPTIONS)
    assert len(ranks[0]["subnets"]) == 2 * 256 // (8 * 2)  # 2 per step; each rank sees half of every batch
    assert ranks[0]["subnets"] == ranks[1]["subnets"]  # the same subnets at every step
    assert ranks[0]["weights"] == ranks[1]["weights"]  # gradients were averaged
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert state["global_step"] == 16
    assert len(RunDir(tmp_path / "run").read_metrics()) == 1  # written once, by rank 0
    # evaluation: each rank took half of the validation split; the tallies were summed
    assert ranks[0]["eval"] == ranks[1]["eval"]
    alone = load_trained_run(tmp_path / "run")
    for name, arch in (("smallest", smallest_arch(alone.space)), ("largest", largest_arch(alone.space))):
        shared, single = ranks[0]["eval"][name], alone.evaluate(arch).to_dict()
        assert shared["images"] == single["images"] == 64  # the fake validation split, once
        assert shared["acc1"] == single["acc1"] and shared["acc5"] == single["acc5"]
        assert shared["loss"] == pytest.approx(single["loss"], rel=1e-4)


@pytest.mark.slow
def test_two_processes_learn_the_same_fpnas_distribution(tmp_path):
    """FP-NAS's distribution steps on the held-out batch, the same on every rank, with
    loss scores averaged over the ranks: every rank keeps the same logits and draws."""
    options = {k: v for k, v in OPTIONS.items() if k != "prior_samples"}
    ranks = _train_in_two_processes(tmp_path, {**options, "sampler": "recording-fpnas", "holdout": 0.25})
    assert len(ranks[0]["subnets"]) == 2 * 192 // (8 * 2)  # a quarter of the 256 images held out
    assert ranks[0]["subnets"] == ranks[1]["subnets"]
    assert ranks[0]["logits"] == ranks[1]["logits"]
    assert any(value != 0.0 for factor in ranks[0]["logits"] for value in factor)  # it learned
    assert ranks[0]["weights"] == ranks[1]["weights"]


@pytest.mark.slow
def test_torchrun_command_line(tmp_path):
    """Also BN-NAS's options: BN-only training keeps every other weight as initialized."""
    run = tmp_path / "run"
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            "-m", "anas", "train", "--data", "fake", "--epochs", "1", "--batch-size", "8",
            "--calib-batches", "1", "--prior-samples", "1000", "--run-dir", str(run), "--json",
            "--private-bn", "--train-only", "bn", "--estimator", "bn"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout)  # printed once, by rank 0
    assert summary["epochs"] == 1 and summary["run_dir"] == str(run)
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["global_step"] == 16
    torch.manual_seed(0)
    initial = Supernet(load_space("tiny"), num_classes=10, private_bn=True).state_dict()
    trained = [name for name, tensor in state["model"].items()
               if name.endswith(("weight", "bias")) and not torch.equal(tensor, initial[name])]
    assert trained and all(".project.bn." in name for name in trained)


@pytest.mark.slow
def test_torchrun_label_free_gathers_the_keys_of_every_rank(tmp_path):
    run = tmp_path / "run"
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            "-m", "anas", "train", "--data", "fake", "--epochs", "1", "--batch-size", "8",
            "--calib-batches", "1", "--run-dir", str(run), "--json", "--objective", "contrastive",
            "--queue-size", "48"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)["largest"]["images"] == 64  # the linear probe's, on all of val
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["global_step"] == 16
    assert state["objective"]["pointer"] == 16 * 16 % 48  # 16 keys a step: both ranks' 8


@pytest.mark.slow
def test_torchrun_space_evolution_trains_the_mixed_network_data_parallel(tmp_path):
    folder = tmp_path / "evo"
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            "-m", "anas", "space", "evolve", "--data", "fake", "--generations", "2", "--steps", "4",
            "--population", "6", "--batch-size", "8", "--dir", str(folder), "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout)  # printed once, by rank 0
    assert summary["generations"] == 2 and load_space(summary["path"]).name == "tiny-evolved"
    state = json.loads((folder / "state.json").read_text())
    assert state["generation"] == 2 and len(state["rows"]) == 2 * 3 * 6
