"""Pi-NAS's mean teacher and cross-path training (``--teacher ema --cross-path``)."""

import numpy as np
import pytest
import torch
from conftest import assert_one_line_error, assert_same_tensors, straight_and_resumed

from anas.nn.supernet import Supernet
from anas.runtime.rundir import load_checkpoint
from anas.space.arch import ArchBatch, largest_arch, sample_archs
from anas.space.sampling import differing_arch
from anas.train.config import TrainConfig
from anas.train.loop import start_training
from anas.train.regularizers import RegularizerContext, StepState
from anas.train.regularizers.kd import soft_cross_entropy
from anas.train.regularizers.teacher import EMATeacherOptions, MeanTeacher, default_momentum

PINAS = {"space": "tiny", "data": "digits", "batch_size": 32, "calib_batches": 1,
         "sampler": "uniform", "epochs": 2, "teacher": "ema", "cross_path": True, "eval_every": 0}


def teacher_of(tiny, **options) -> tuple[Supernet, MeanTeacher]:
    torch.manual_seed(0)
    student = Supernet(tiny, 10)
    config = TrainConfig(teacher="ema")
    return student, MeanTeacher(RegularizerContext(tiny, config, student, total_steps=100,
                                                   options=EMATeacherOptions(**options)))


def test_ema_update_on_every_tensor(tiny):
    student, regularizer = teacher_of(tiny, ema_momentum=0.9)
    old = {name: tensor.clone() for name, tensor in regularizer.teacher.state_dict().items()}
    with torch.no_grad():
        for tensor in student.state_dict().values():
            tensor.add_(torch.randn_like(tensor) if tensor.is_floating_point() else 3)
    regularizer.after_step(None)
    new, current = regularizer.teacher.state_dict(), student.state_dict()
    for name, tensor in new.items():
        if tensor.is_floating_point():
            torch.testing.assert_close(tensor, 0.9 * old[name] + 0.1 * current[name], rtol=0, atol=1e-6)
        else:
            assert torch.equal(tensor, current[name]), name


def test_default_momentum_follows_the_run_length():
    assert default_momentum(264) == pytest.approx(1 - 10 / 264)
    assert default_momentum(10**6) == 0.999 and default_momentum(5) == 0.0


@pytest.mark.slow
def test_teacher_gets_no_gradients_and_moves_during_training(tmp_path):
    from anas.runtime.rundir import RunDir
    from anas.space.schema import load_space
    from anas.train.config import build_config
    from anas.train.loop import fit, set_up, supernet_trainee

    config = build_config({**PINAS, "epochs": 1, "run_dir": str(tmp_path / "run")})
    trainer = supernet_trainee(set_up(config, RunDir(tmp_path / "run"), load_space("tiny")))
    teacher = next(r for r in trainer.parts.regularizers if isinstance(r, MeanTeacher))
    start = {name: tensor.clone() for name, tensor in teacher.teacher.state_dict().items()}
    fit(trainer, progress=False)
    assert all(p.grad is None and not p.requires_grad for p in teacher.teacher.parameters())
    moved = [name for name, tensor in teacher.teacher.state_dict().items()
             if tensor.is_floating_point() and not torch.equal(tensor, start[name])]
    assert moved and teacher.momentum == pytest.approx(default_momentum(trainer.setup.steps_per_epoch))
    student = trainer.model.state_dict()
    assert any(not torch.equal(tensor, student[name]) for name, tensor in teacher.teacher.state_dict().items())


def test_paired_subnets_differ_in_every_setting_the_space_allows(tiny, attentive):
    for space in (tiny, attentive):
        rng = np.random.default_rng(0)
        sizes = np.array([len(c) for c in space.column_choices()])
        for arch in sample_archs(space, 50, rng):
            other = differing_arch(space, arch, rng)
            a, b = (ArchBatch.from_archs([x]).choice_index(space)[0] for x in (arch, other))
            assert np.all((a != b) == (sizes > 1))


def test_swapping_the_paths_leaves_the_loss_unchanged(tiny):
    student, regularizer = teacher_of(tiny, cross_path=True)
    rng = np.random.default_rng(1)
    first = sample_archs(tiny, 1, rng)[0]
    second = differing_arch(tiny, first, rng)
    views = (torch.randn(8, 3, 32, 32), torch.randn(8, 3, 32, 32))
    labels = torch.zeros(8, dtype=torch.long)
    student.eval()

    def total(middle, views):
        step = StepState(views[0], labels, middle, 0, views=views)
        regularizer.before_step(step)
        loss = 0.0
        for i, arch in enumerate(middle):
            step.current = i
            student.set_active(arch)
            loss += float(regularizer.loss(step, "middle", arch, student(step.view_of(i))))
        return loss

    forward = total([first, second], views)
    assert forward == pytest.approx(total([second, first], views[::-1]), rel=1e-6)
    # and each path learned the other's teacher output, not its own
    step = StepState(views[0], labels, [first, second], 0, views=views)
    regularizer.before_step(step)
    regularizer.teacher.set_active(second)
    with torch.no_grad():
        expected = regularizer.teacher(views[1])
    torch.testing.assert_close(regularizer.targets[0], expected)
    student.set_active(first)
    step.current = 0
    logits = student(views[0])
    assert float(regularizer.loss(step, "middle", first, logits)) == pytest.approx(
        float(soft_cross_entropy(logits, expected)))


def test_teacher_targets_use_the_runs_mixed_precision(tiny):
    torch.manual_seed(0)
    student = Supernet(tiny, 10)
    bf16 = lambda: torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731
    regularizer = MeanTeacher(RegularizerContext(tiny, TrainConfig(teacher="ema"), student, 100, bf16,
                                                 EMATeacherOptions()))
    arch = sample_archs(tiny, 1, np.random.default_rng(0))[0]
    images = torch.randn(8, 3, 32, 32)
    regularizer.before_step(StepState(images, torch.zeros(8, dtype=torch.long), [arch], 0))
    regularizer.teacher.set_active(arch)
    with torch.no_grad(), regularizer.teacher.frozen_bn_stats():
        with bf16():
            expected = regularizer.teacher(images).float()
        full = regularizer.teacher(images)
    assert torch.equal(regularizer.targets[0], expected)
    assert not torch.equal(regularizer.targets[0], full)


@pytest.mark.slow
def test_resume_with_a_teacher_is_bit_exact(tmp_path):
    options = {**PINAS, "data": "fake", "batch_size": 16}
    a, b = straight_and_resumed(options, tmp_path)
    assert_same_tensors(a["model"], b["model"])
    assert_same_tensors(a["regularizers"][1]["teacher"], b["regularizers"][1]["teacher"], "teacher")


def test_bad_teacher_options_are_one_line_errors(run_cli):
    cases = [
        (["--teacher", "moco"], "unknown teacher 'moco'"),
        (["--cross-path"], "--cross-path goes with --teacher ema"),
        (["--teacher", "ema", "--cross-path", "--num-subnets", "5"], "in pairs"),
        (["--teacher", "ema", "--ema-momentum", "1"], "--ema-momentum must be in [0, 1)"),
        (["--ema-momentum", "0.9"], "--ema-momentum goes with --teacher ema"),
        (["--teacher", "ema", "--cross-path", "--cross-path-weight", "-1"], "--cross-path-weight"),
    ]
    for args, fragment in cases:
        assert_one_line_error(run_cli("train", *args), fragment)


def test_eval_weights_teacher_reads_the_teacher_everywhere(tmp_path, run_cli):
    from anas.evaluate.trained import load_trained_run

    run = tmp_path / "run"
    options = {**PINAS, "data": "fake", "batch_size": 16, "epochs": 1, "eval_weights": "teacher"}
    summary = start_training({**options, "run_dir": str(run)}, progress=False)
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    loaded = load_trained_run(run)
    teacher = state["regularizers"][1]["teacher"]
    for name, tensor in loaded.supernet.state_dict().items():
        assert torch.equal(tensor, teacher[name]), name
    assert any(not torch.equal(teacher[name], tensor) for name, tensor in state["model"].items())
    assert loaded.evaluate(largest_arch(loaded.space), 1).acc1 == pytest.approx(summary.largest["acc1"])
    assert_one_line_error(run_cli("train", "--eval-weights", "teacher"), "--eval-weights goes with --teacher ema")
    assert_one_line_error(run_cli("train", "--resume", run, "--teacher", "none", "--no-cross-path",
                                  "--eval-weights", "student"), "was made with --teacher ema, not none")
