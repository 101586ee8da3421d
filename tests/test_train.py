import math

import pytest
import torch
import yaml
from conftest import assert_one_line_error, train_until_interrupted

from anas.errors import AnasError
from anas.runtime.rundir import RunDir, load_checkpoint
from anas.space.schema import load_space
from anas.train.config import build_config
from anas.train.loop import Trainee, resume_training, set_up, start_training, supernet_trainee
from anas.train.recipe import parameter_groups, warmup_cosine
from anas.train.regularizers.kd import soft_cross_entropy

FAST = {"space": "tiny", "data": "fake", "batch_size": 16, "calib_batches": 2, "prior_samples": 2000, "epochs": 2}


def _options(tmp_path, **extra):
    return {**FAST, "run_dir": str(tmp_path / "run"), **extra}


def test_schedule_warms_up_then_follows_a_cosine_to_zero():
    f = warmup_cosine(total_steps=100, warmup_steps=10)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.5)
    assert f(100) == pytest.approx(0.0, abs=1e-12)
    values = [f(s) for s in range(10, 100)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_weight_decay_only_on_conv_and_linear_weights(tiny):
    from anas.nn.supernet import Supernet

    groups = parameter_groups(Supernet(tiny), 1e-5)
    assert groups[0]["weight_decay"] == 1e-5 and all(p.ndim > 1 for p in groups[0]["params"])
    assert groups[1]["weight_decay"] == 0 and all(p.ndim == 1 for p in groups[1]["params"])


def test_soft_cross_entropy_is_minimal_at_the_teacher():
    teacher = torch.tensor([[2.0, 0.0, -1.0]])
    at_teacher = soft_cross_entropy(teacher, teacher)
    entropy = -(teacher.softmax(1) * teacher.log_softmax(1)).sum()
    assert at_teacher.item() == pytest.approx(entropy.item(), abs=1e-6)
    assert soft_cross_entropy(torch.zeros(1, 3), teacher) > at_teacher


def test_a_run_writes_its_folder(tmp_path):
    summary = start_training(_options(tmp_path), progress=False)
    run = RunDir(tmp_path / "run")
    assert summary.epochs == 2 and summary.run_dir == str(run.path)
    assert 0 <= summary.smallest["acc1"] <= 100 and summary.largest["mflops"] > summary.smallest["mflops"]
    config = yaml.safe_load(run.config_path.read_text())
    assert config["sampler"] == "bestup-k3" and config["num_subnets"] == 4 and config["epochs"] == 2
    metrics = run.read_metrics()
    assert [m["epoch"] for m in metrics] == [1, 2]
    assert {"loss_largest", "loss_distill", "lr", "acc1_smallest", "acc1_largest", "images_per_second"} <= set(metrics[0])
    assert "finished" in run.log_path.read_text()
    state = load_checkpoint(run.checkpoint_path)
    assert state["epoch"] == 2 and state["space"]["name"] == "tiny" and "optimizer" in state
    assert not [p for p in run.path.rglob(".*") if p.is_file()]  # no temporary files left


def test_config_file_and_flags(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 1\nsampler: worstup-k2\nnum-subnets: 3\n")
    options = {k: v for k, v in FAST.items() if k not in ("epochs", "prior_samples")}
    summary = start_training({"run_dir": str(tmp_path / "run"), "sampler": "uniform", **options},
                             config_file=str(path), progress=False)
    config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert summary.epochs == 1 and config["sampler"] == "uniform" and config["num_subnets"] == 3


@pytest.mark.slow
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    start_training(_options(tmp_path / "a"), progress=False)
    train_until_interrupted(_options(tmp_path / "b"))
    assert load_checkpoint(tmp_path / "b" / "run" / "checkpoints" / "last.pt")["epoch"] == 1
    resume_training(str(tmp_path / "b" / "run"), {}, progress=False)
    a = load_checkpoint(tmp_path / "a" / "run" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "b" / "run" / "checkpoints" / "last.pt")
    assert a["global_step"] == b["global_step"]
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    assert [m["epoch"] for m in RunDir(tmp_path / "b" / "run").read_metrics()] == [1, 2]


def test_resume_inside_an_epoch(tmp_path):
    start_training(_options(tmp_path / "a", epochs=1, save_every=3), progress=False)

    class Crash(Exception):
        pass

    from anas.train import loop as train_module

    original = train_module.supernet_trainee
    calls = {"n": 0}

    def crashing_trainee(*args, **kwargs):
        trainee = original(*args, **kwargs)
        step = trainee.step

        def crashing_step(images, labels, index):
            calls["n"] += 1
            if calls["n"] == 5:
                raise Crash
            return step(images, labels, index)

        trainee.step = crashing_step
        return trainee

    train_module.supernet_trainee = crashing_trainee
    try:
        with pytest.raises(Crash):
            start_training(_options(tmp_path / "b", epochs=1, save_every=3), progress=False)
    finally:
        train_module.supernet_trainee = original
    assert load_checkpoint(tmp_path / "b" / "run" / "checkpoints" / "last.pt")["step_in_epoch"] == 3
    resume_training(str(tmp_path / "b" / "run"), {}, progress=False)
    a = load_checkpoint(tmp_path / "a" / "run" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "b" / "run" / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_extending_a_finished_run(tmp_path):
    start_training(_options(tmp_path, epochs=1), progress=False)
    summary = resume_training(str(tmp_path / "run"), {"epochs": 2}, progress=False)
    assert summary.epochs == 2


@pytest.mark.slow
def test_training_improves_on_digits(tmp_path):
    summary = start_training({"space": "tiny", "data": "digits", "epochs": 3, "sampler": "uniform", "lr": 0.4,
                              "calib_batches": 4, "run_dir": str(tmp_path / "run")}, progress=False)
    assert summary.largest["acc1"] > 40  # 10 classes: chance is 10 %


def _trainer(folder, **extra) -> Trainee:
    options = {k: v for k, v in _options(folder, sampler="uniform", **extra).items() if k != "prior_samples"}
    config = build_config(options)
    return supernet_trainee(set_up(config, RunDir(config.run_dir), load_space("tiny")))


def _batch(seed: int = 0, size: int = 16):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(size, 3, 32, 32, generator=gen), torch.randint(0, 10, (size,), generator=gen)


def _seeded_step(trainer: Trainee, images, labels, seed: int) -> tuple[float, float]:
    """One sandwich step with torch's RNG seeded, so that runs compared step by step draw
    the same drop-connect and dropout masks."""
    torch.manual_seed(seed)
    losses = trainer.step(images, labels, seed)
    return losses.largest, losses.others


def test_bf16_autocast_trains_on_the_cpu(tmp_path):
    """--amp bf16 runs the subnets in bfloat16 (the same autocast code path as on CUDA) while
    the weights and the optimizer stay in float32."""
    plain, bf16 = _trainer(tmp_path / "a"), _trainer(tmp_path / "b", amp="bf16")
    initial = [p.detach().clone() for p in plain.model.parameters()]
    images, labels = _batch()
    with bf16.parts.autocast():
        assert bf16.model(images).dtype == torch.bfloat16
    for step in range(2):
        loss_plain, distill_plain = _seeded_step(plain, images, labels, step)
        loss_bf16, distill_bf16 = _seeded_step(bf16, images, labels, step)
        assert loss_bf16 == pytest.approx(loss_plain, rel=1e-2) and distill_bf16 == pytest.approx(distill_plain, rel=1e-2)
    assert all(p.dtype == torch.float32 for p in bf16.model.parameters())

    def update(trainer):
        return torch.cat([(p.detach() - i).flatten() for p, i in zip(trainer.model.parameters(), initial)])

    # bf16 rounding, not a different training run: the two updates point the same way
    assert torch.nn.functional.cosine_similarity(update(plain), update(bf16), dim=0) > 0.99


def test_channels_last_trains_like_contiguous_memory(tmp_path):
    plain, channels_last = _trainer(tmp_path / "a"), _trainer(tmp_path / "b", channels_last=True)
    assert channels_last.model.first_conv.conv.weight.is_contiguous(memory_format=torch.channels_last)
    initial = [p.detach().clone() for p in plain.model.parameters()]
    for step in range(2):
        images, labels = _batch(step)
        _seeded_step(plain, images, labels, step)
        _seeded_step(channels_last, images.contiguous(memory_format=torch.channels_last), labels, step)
    moved = max((a - i).abs().max().item() for a, i in zip(plain.model.parameters(), initial))
    assert moved > 1e-5
    for (name, a), b in zip(plain.model.named_parameters(), channels_last.model.parameters()):
        assert torch.allclose(a, b, rtol=0, atol=1e-7), name


def test_gradient_scaler_path_of_fp16_leaves_the_update_unchanged(tmp_path):
    """--amp fp16 trains through a GradScaler (scale the losses, unscale before clipping,
    skip steps with inf/NaN gradients). A CPU GradScaler runs the same sequence: with a
    power-of-two scale the weights come out exactly as without it, and a non-finite
    gradient skips the step and halves the scale."""
    plain, scaled = _trainer(tmp_path / "a"), _trainer(tmp_path / "b")
    scaled.parts.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    for step in range(2):
        images, labels = _batch(step)
        _seeded_step(plain, images, labels, step)
        _seeded_step(scaled, images, labels, step)
    for (name, a), b in zip(plain.model.named_parameters(), scaled.model.parameters()):
        assert torch.equal(a, b), name
    before = [p.detach().clone() for p in scaled.model.parameters()]
    images, labels = _batch(2)
    images[0, 0, 0, 0] = float("inf")
    scaled.step(images, labels, 2)
    assert all(torch.equal(a, b) for a, b in zip(before, scaled.model.parameters()))
    assert scaled.parts.scaler.get_scale() == 2.0**9


def test_fp16_needs_cuda(tmp_path):
    with pytest.raises(AnasError, match="fp16 needs CUDA"):
        _trainer(tmp_path, amp="fp16", device="cpu")


@pytest.mark.parametrize("options, message", [
    ({"sampler": "bestup"}, "unknown sampler"),
    ({"num_subnets": 1}, "--num-subnets"),
    ({"estimator": "oracle"}, "unknown estimator"),
    ({"amp": "fp8"}, "unknown --amp"),
    ({"epochs": "many"}, "epochs"),
])
def test_bad_options(options, message):
    with pytest.raises(AnasError, match=message):
        build_config(options)


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_bad_inputs_on_the_command_line(run_cli, tmp_path):
    run = tmp_path / "run"
    assert run_cli("train", "--data", "fake", "--epochs", "1", "--batch-size", "16", "--calib-batches", "1",
                   "--prior-samples", "1000", "--run-dir", run, "--quiet").code == 0
    before = _snapshot(run)
    empty = tmp_path / "empty"
    (empty / "train").mkdir(parents=True)
    (empty / "val").mkdir()
    (tmp_path / "nockpt").mkdir()
    cases = [
        (["train", "--sampler", "bestup-3"], ["unknown sampler 'bestup-3'"]),
        (["train", "--data", "imagefolder", "--data-dir", tmp_path / "missing"], ["does not exist"]),
        (["train", "--data", "imagefolder", "--data-dir", empty], ["no images"]),
        (["train", "--data", "cifar10", "--data-dir", empty], ["--download"]),
        (["train", "--resume", tmp_path / "nockpt"], ["has no checkpoint"]),
        (["train", "--resume", tmp_path / "nowhere"], ["does not exist"]),
        (["train", "--resume", run, "--space", "cifar"], ["of space tiny, not cifar"]),
        (["train", "--run-dir", run, "--data", "fake"], ["already holds a checkpoint"]),
        (["train", "--config", tmp_path / "absent.yaml"], ["does not exist"]),
    ]
    for args, fragments in cases:
        assert_one_line_error(run_cli(*args), *fragments)
    assert _snapshot(run) == before  # nothing in the run folder changed
    bad_config = tmp_path / "bad.yaml"
    bad_config.write_text("epochs: [1\n")
    assert_one_line_error(run_cli("train", "--config", bad_config), "not valid YAML")
    bad_config.write_text("epoch: 3\n")
    assert_one_line_error(run_cli("train", "--config", bad_config), "unknown option 'epoch'")


def test_corrupt_checkpoint_is_refused(run_cli, tmp_path):
    run = tmp_path / "run"
    start_training(_options(tmp_path, epochs=1), progress=False)
    ckpt = run / "checkpoints" / "last.pt"
    for garbage in (b"", b"not a checkpoint at all", ckpt.read_bytes()[:1000]):
        ckpt.write_bytes(garbage)
        result = run_cli("train", "--resume", run)
        assert_one_line_error(result, "corrupt")
        assert ckpt.read_bytes() == garbage
    torch.save({"format": "something-else"}, ckpt)
    assert_one_line_error(run_cli("train", "--resume", run), "not an anas supernet checkpoint")


def test_checkpoint_of_another_space_in_the_run_folder(run_cli, tmp_path):
    from anas.space.schema import load_space, space_to_dict

    start_training(_options(tmp_path, epochs=1), progress=False)
    ckpt = tmp_path / "run" / "checkpoints" / "last.pt"
    state = load_checkpoint(ckpt)
    state["space"] = space_to_dict(load_space("cifar"))
    state["config"]["space"] = "cifar"
    torch.save(state, ckpt)  # a checkpoint of another run, copied into this run folder
    assert_one_line_error(run_cli("train", "--resume", tmp_path / "run"), "of space cifar", "names space tiny")


def test_cli_json_summary(run_cli, tmp_path):
    result = run_cli("train", "--data", "fake", "--epochs", "1", "--batch-size", "16", "--calib-batches", "1",
                     "--sampler", "uniform", "--run-dir", tmp_path / "r", "--json")
    assert result.code == 0, result.stderr
    data = result.json()
    assert data["epochs"] == 1 and set(data["largest"]) >= {"acc1", "acc5", "mflops", "arch"}
    assert math.isfinite(data["images_per_second"])


def test_train_log_notes_glibcs_malloc_variables(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1073741824")
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    result = run_cli("train", "--data", "fake", "--epochs", "1", "--batch-size", "64", "--calib-batches", "1",
                     "--sampler", "uniform", "--run-dir", tmp_path / "run", "--quiet")
    assert result.code == 0, result.stderr
    started = (tmp_path / "run" / "train.log").read_text().splitlines()[0]
    assert started.endswith("steps per epoch, malloc MALLOC_TRIM_THRESHOLD_=1073741824")
    assert_one_line_error(run_cli("train", "--keep-freed-memory"), "No such option: --keep-freed-memory")
