"""Pi-NAS's label-free objective (``--objective contrastive``) and the linear probe."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import assert_one_line_error, assert_same_tensors, straight_and_resumed
from PIL import Image

from anas.data import DataConfig, load_data
from anas.errors import DataError
from anas.nn.probe import fit_probe
from anas.runtime.rundir import RunDir, load_checkpoint
from anas.space.schema import load_space
from anas.train.config import TrainConfig, build_config
from anas.train.loop import Trainee, set_up, start_training, supernet_trainee
from anas.train.objectives.contrastive import (
    ContrastiveObjective,
    cross_path_loss,
    default_queue_size,
    info_nce,
)

LABEL_FREE = {"space": "tiny", "data": "fake", "batch_size": 16, "calib_batches": 1, "epochs": 2,
              "objective": "contrastive", "eval_every": 0}


def unit(rows: int, dim: int = 8, seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(rows, dim, generator=torch.Generator().manual_seed(seed)), dim=1)


def test_info_nce_equals_a_hand_computation():
    query, key, queue = unit(3, seed=1), unit(3, seed=2), unit(5, seed=3)
    expected = 0.0
    for q, k in zip(query.tolist(), key.tolist()):
        positive = math.exp(sum(a * b for a, b in zip(q, k)) / 0.2)
        negatives = sum(math.exp(sum(a * b for a, b in zip(q, n)) / 0.2) for n in queue.tolist())
        expected += -math.log(positive / (positive + negatives)) / 3
    assert float(info_nce(query, key, queue, 0.2)) == pytest.approx(expected, rel=1e-5)


def test_swapping_the_paths_leaves_the_pair_loss_unchanged():
    q_a, q_b, k_a, k_b, queue = (unit(4, seed=s) for s in range(5))
    forward = cross_path_loss(q_a, q_b, k_a, k_b, queue, 0.2)
    assert float(forward) == pytest.approx(float(cross_path_loss(q_b, q_a, k_b, k_a, queue, 0.2)))
    # each query is scored against the other path's key, not its own
    assert float(forward) == pytest.approx(float(info_nce(q_a, k_b, queue, 0.2) + info_nce(q_b, k_a, queue, 0.2)))
    assert float(forward) != pytest.approx(float(info_nce(q_a, k_a, queue, 0.2) + info_nce(q_b, k_b, queue, 0.2)))


def test_default_queue_size():
    assert default_queue_size(1437, 64) == 256  # digits: a quarter is 359
    assert default_queue_size(50_000, 256) == 8192
    assert default_queue_size(1_281_167, 256) == 65536
    assert default_queue_size(100, 512) == 512  # at least one global batch


def trainer(tmp_path, **options) -> Trainee:
    config = build_config({**LABEL_FREE, **options, "run_dir": str(tmp_path / "run")})
    return supernet_trainee(set_up(config, RunDir(tmp_path / "run"), load_space("tiny")))


def test_a_step_moves_the_teacher_by_ema_and_enqueues_the_mean_key(tmp_path):
    run = trainer(tmp_path, ema_momentum=0.9)
    objective = run.plugins["objective"]
    assert isinstance(objective, ContrastiveObjective) and len(objective.queue) == 256
    images, labels = next(iter(run.setup.train_batches(0, run.views)))
    assert images.shape[1] == 4  # four views
    teacher = {**{f"net.{k}": v.clone() for k, v in objective.teacher.state_dict().items()},
               **{f"head.{k}": v.clone() for k, v in objective.teacher_head.state_dict().items()}}
    keys = []
    original_key = objective.key
    objective.key = lambda arch, x, parts: keys.append(original_key(arch, x, parts)) or keys[-1]
    run.step(images, labels, 0)
    student = {**{f"net.{k}": v for k, v in run.model.state_dict().items()},
               **{f"head.{k}": v for k, v in objective.head.state_dict().items()}}
    after = {**{f"net.{k}": v for k, v in objective.teacher.state_dict().items()},
             **{f"head.{k}": v for k, v in objective.teacher_head.state_dict().items()}}
    for name, old in teacher.items():
        if old.is_floating_point():
            torch.testing.assert_close(after[name], 0.9 * old + 0.1 * student[name], rtol=0, atol=1e-6)
    assert all(p.grad is None and not p.requires_grad
               for p in [*objective.teacher.parameters(), *objective.teacher_head.parameters()])
    assert objective.head.hidden.weight.grad is not None  # the projection head trains
    assert len(keys) == 4 and objective.pointer == 16  # two pairs of keys; one batch enqueued
    torch.testing.assert_close(objective.queue[:16], F.normalize(torch.stack(keys).mean(0), dim=1))


def test_labels_are_never_read(tmp_path):
    losses = []
    for scramble in (False, True):
        torch.manual_seed(0)
        run = trainer(tmp_path / str(scramble))
        images, labels = next(iter(run.setup.train_batches(0, run.views)))
        losses.append(run.step(images, torch.full_like(labels, -1) if scramble else labels, 0))
        losses.append(next(iter(run.model.parameters())).detach().clone())
    assert losses[0] == losses[2] and torch.equal(losses[1], losses[3])


@pytest.mark.slow
def test_resume_is_bit_exact(tmp_path):
    a, b = straight_and_resumed(LABEL_FREE, tmp_path)
    assert_same_tensors(a["model"], b["model"])
    for part in ("head", "teacher", "teacher_head"):
        assert_same_tensors(a["objective"][part], b["objective"][part], part)
    assert torch.equal(a["objective"]["queue"], b["objective"]["queue"])


def test_defaults_and_bad_options(run_cli):
    config = TrainConfig(objective="contrastive")
    assert (config.sampler, config.teacher) == ("uniform", "ema")
    assert (TrainConfig().sampler, TrainConfig().teacher) == ("bestup-k3", "none")
    contrastive = ["--objective", "contrastive"]
    cases = [
        (["--objective", "byol"], "unknown objective 'byol'"),
        ([*contrastive, "--teacher", "none"], "--teacher must be ema, got none"),
        ([*contrastive, "--cross-path"], "drop --cross-path"),
        ([*contrastive, "--num-subnets", "5"], "--num-subnets must be even"),
        ([*contrastive, "--sampler", "bestup-k3"], "scores candidates with the labels"),
        ([*contrastive, "--queue-size", "8"], "--queue-size must be at least --batch-size"),
        ([*contrastive, "--temperature", "0"], "--temperature must be a positive"),
        (["--queue-size", "512"], "--queue-size goes with --objective contrastive"),
    ]
    for args, fragment in cases:
        assert_one_line_error(run_cli("train", *args), fragment)


def test_fit_probe_separates_what_is_separable():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    features = np.eye(3)[labels] * 5 + rng.normal(0, 0.1, (300, 3))
    result = fit_probe((features[:200], labels[:200]), (features[200:], labels[200:]))
    assert result.acc1 == 100.0 and result.acc5 == 100.0 and result.images == 100
    shuffled = fit_probe((features[:200], rng.permutation(labels[:200])), (features[200:], labels[200:]))
    assert shuffled.acc1 < 60
    with pytest.raises(DataError, match="at least 2 classes"):
        fit_probe((features[:5], np.zeros(5, dtype=int)), (features[200:], labels[200:]))


def write_images(folder, count: int, seed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(folder / f"{i}.png")


def test_an_image_folder_without_classes_trains_label_free(tmp_path):
    root = tmp_path / "images"
    write_images(root / "train", 12, 0)  # no class folders
    for name in ("cat", "dog"):
        write_images(root / "val" / name, 4, 1)
    splits = load_data(DataConfig.named(name="imagefolder", data_dir=str(root), resolution=16, label_free=True))
    assert len(splits.train) == 12 and splits.train[0][1] == -1
    assert len(splits.probe) + len(splits.val) == 8 and len(splits.probe) == 4  # val in halves
    assert splits.num_classes == 2
    with pytest.raises(Exception, match="no images|class"):
        load_data(DataConfig.named(name="imagefolder", data_dir=str(root), resolution=16))
    with pytest.raises(Exception, match="--holdout needs labelled"):
        load_data(DataConfig.named(name="imagefolder", data_dir=str(root), resolution=16, label_free=True, holdout=0.2))
    labelled = load_data(DataConfig.named(label_free=True, resolution=16))  # digits: the probe fits on train
    assert len(labelled.probe) == len(labelled.train) == 1437 and len(labelled.val) == 360
    assert not torch.equal(labelled.train[0][0], labelled.train[0][0])  # random resized crops


def test_every_evaluation_of_a_label_free_run_is_the_linear_probe(tmp_path):
    from anas.evaluate.trained import load_trained_run
    from anas.runtime.rundir import STANDALONE_FORMAT
    from anas.space.arch import largest_arch, smallest_arch
    from anas.train.static_training import train_standalone

    summary = start_training({**LABEL_FREE, "epochs": 1, "run_dir": str(tmp_path / "run")}, progress=False)
    run = load_trained_run(tmp_path / "run")
    assert run.data.probe is not None
    for name, arch in (("largest", largest_arch(run.space)), ("smallest", smallest_arch(run.space))):
        assert run.evaluate(arch, 1).acc1 == pytest.approx(summary.to_dict()[name]["acc1"])
    # its classifier is untrained: exporting says so
    from anas.errors import AnasWarning
    from anas.export.subnet import ExportOptions, export_subnet
    from anas.options import build

    with pytest.warns(AnasWarning, match="trained without labels"):
        export_subnet(build(ExportOptions, {"run": str(tmp_path / "run"), "arch": "min", "to": "pt",
                                            "out": str(tmp_path / "min.pt")}))
    # a subnet trained on its own learns from the labels, with its classifier
    alone = train_standalone(run.config, run.space, smallest_arch(run.space), tmp_path / "alone")
    saved = load_checkpoint(tmp_path / "alone" / "checkpoints" / "last.pt", checkpoint_format=STANDALONE_FORMAT)
    saved = saved["config"]
    assert saved["objective"] == "supervised" and saved["teacher"] == "none" and alone.result.images == 64
