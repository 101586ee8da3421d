"""``anas import``: the authors' checkpoint layout, safe reading, and starting a run from it."""

import os

import pytest
import torch
from authors_layout import to_authors_layout
from conftest import TINY_FAKE_RUN, assert_one_line_error

from anas.evaluate.trained import load_trained_run
from anas.nn.supernet import Supernet
from anas.published.importer import authors_names
from anas.runtime.rundir import initialize_from_run, load_checkpoint


class AttrDict(dict):
    """Like the authors' configuration object: a dict whose keys are attributes."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.__dict__ = self


def _randomized_supernet(space, num_classes=10, seed=0):
    torch.manual_seed(seed)
    supernet = Supernet(space, num_classes)
    with torch.no_grad():
        for tensor in supernet.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand_like(tensor) + 0.1)
    return supernet


def _authors_file(path, supernet, edit=None, legacy=True):
    state = to_authors_layout(supernet)
    if edit is not None:
        edit(state)
    torch.save({"epoch": 360, "args": AttrDict(arch="attentive_nas_dynamic_model", n_classes=10),
                "state_dict": state, "optimizer": {"state": {}, "param_groups": []}, "lr_scheduler": {}},
               path, _use_new_zipfile_serialization=not legacy)
    return path


def _import(run_cli, checkpoint, out, *extra):
    return run_cli("import", checkpoint, "--from", "attentivenas", "--space", "tiny", "--num-classes", "10",
                   "--out", out, *extra)


def test_the_layout_is_the_authors_one(attentive):
    names = authors_names(attentive, Supernet(attentive, 1000).state_dict())
    assert names["first_conv.conv.weight"] == "first_conv.conv.conv.weight"
    assert names["stages.1.0.expand.bn.running_var"] == \
        "blocks.2.mobile_inverted_conv.inverted_bottleneck.bn.bn.running_var"  # mb1 holds 2 blocks at most
    assert names["stages.6.0.se.reduce.weight"] == "blocks.35.mobile_inverted_conv.depth_conv.se.fc.reduce.weight"
    assert names["stages.6.1.project.conv.weight"] == "blocks.36.mobile_inverted_conv.point_linear.conv.conv.weight"
    assert names["head.mix.weight"] == "last_conv.feature_mix_layer.conv.conv.weight"
    assert names["head.classifier.bias"] == "classifier.linear.linear.bias"
    layout = to_authors_layout(Supernet(attentive, 1000))
    assert len(layout) == 1468  # as many tensors as the authors' supernet holds
    assert "module.blocks.36.shortcut.conv.conv.weight" in layout
    assert "module.first_conv.bn.bn_tracking.1.running_mean" in layout


@pytest.mark.parametrize("legacy", [True, False])
def test_round_trip_gives_identical_tensors(run_cli, tmp_path, tiny, legacy):
    supernet = _randomized_supernet(tiny)
    checkpoint = _authors_file(tmp_path / "ckpt.pth.tar", supernet, legacy=legacy)
    result = _import(run_cli, checkpoint, tmp_path / "run", "--json")
    assert result.code == 0, result.stderr
    report = result.json()
    assert report["tensors"] == len(supernet.state_dict())
    assert report["unused"]["bn_tracking"] > 0 and report["other_entries"] == ["args", "epoch", "lr_scheduler",
                                                                              "optimizer"]
    assert report["stand_ins"] == [f"{__name__}.AttrDict"]
    imported = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["model"]
    for name, tensor in supernet.state_dict().items():
        assert torch.equal(imported[name], tensor), name
    log = (tmp_path / "run" / "train.log").read_text()
    assert report["sha256"] in log and "BN statistics tracking" in log and "training state" in log
    run = load_trained_run(tmp_path / "run")  # every command starts from this
    assert run.config.data == "imagefolder" and run.num_classes == 10


@pytest.mark.parametrize("edit, fragments", [
    (lambda s: s.pop("module.blocks.3.mobile_inverted_conv.depth_conv.bn.bn.bias"),
     ["has no tensor module.blocks.3.mobile_inverted_conv.depth_conv.bn.bn.bias"]),
    (lambda s: s.update({"module.head.fc.weight": torch.zeros(2)}), ["unexpected tensor module.head.fc.weight"]),
    (lambda s: s.update({"module.first_conv.conv.conv.weight": torch.zeros(16, 3, 5, 5)}),
     ["module.first_conv.conv.conv.weight has shape (16, 3, 5, 5)", "needs (16, 3, 3, 3)"]),
])
def test_missing_unexpected_or_misshaped_tensors_are_refused(run_cli, tmp_path, tiny, edit, fragments):
    checkpoint = _authors_file(tmp_path / "ckpt.pth.tar", _randomized_supernet(tiny), edit)
    assert_one_line_error(_import(run_cli, checkpoint, tmp_path / "run"), *fragments)
    assert not (tmp_path / "run").exists()


def test_another_class_count_or_space_is_refused(run_cli, tmp_path, tiny):
    checkpoint = _authors_file(tmp_path / "ckpt.pth.tar", _randomized_supernet(tiny))
    result = run_cli("import", checkpoint, "--from", "alphanet", "--space", "tiny", "--num-classes", "100",
                     "--out", tmp_path / "run")
    assert_one_line_error(result, "classifier.linear.linear.weight has shape (10, 128)", "100 classes")
    assert_one_line_error(run_cli("import", checkpoint, "--from", "alphanet", "--out", tmp_path / "run"),
                          "space attentive-nas with 1000 classes needs")
    assert not (tmp_path / "run").exists()


class _WritesAMarker:
    """A pickle that would create a file when unpickled by the full machinery."""

    def __init__(self, marker, via):
        self.marker, self.via = marker, via

    def __reduce__(self):
        if self.via == "system":
            return os.system, (f"touch {self.marker}",)
        return open, (str(self.marker), "w")


@pytest.mark.parametrize("via", ["system", "open"])
def test_a_crafted_pickle_never_runs(run_cli, tmp_path, tiny, via):
    marker = tmp_path / "marker"
    checkpoint = tmp_path / "evil.pth.tar"
    state = to_authors_layout(_randomized_supernet(tiny))
    torch.save({"args": _WritesAMarker(marker, via), "state_dict": state}, checkpoint,
               _use_new_zipfile_serialization=False)
    result = _import(run_cli, checkpoint, tmp_path / "run")
    assert not marker.exists()
    if result.code == 0:  # loaded inertly
        assert "placeholder" in (tmp_path / "run" / "train.log").read_text()
    else:  # refused: torch blocks the module, or the inert stand-in cannot take the call's arguments
        assert_one_line_error(result, str(checkpoint))
        assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", None])
def test_files_that_are_not_checkpoints(run_cli, tmp_path, tiny, content):
    path = tmp_path / "bad.pth"
    if content is None:  # truncated
        _authors_file(path, _randomized_supernet(tiny))
        path.write_bytes(path.read_bytes()[:2000])
    else:
        path.write_bytes(content)
    assert_one_line_error(_import(run_cli, path, tmp_path / "run"))
    assert not (tmp_path / "run").exists()
    assert_one_line_error(_import(run_cli, tmp_path / "missing.pth", tmp_path / "run"), "does not exist")


def test_train_init_starts_from_the_imported_weights(run_cli, tmp_path, tiny):
    supernet = _randomized_supernet(tiny, num_classes=12)
    checkpoint = _authors_file(tmp_path / "ckpt.pth.tar", supernet)
    result = run_cli("import", checkpoint, "--from", "attentivenas", "--space", "tiny", "--num-classes", "12",
                     "--out", tmp_path / "imported")
    assert result.code == 0, result.stderr
    fresh = Supernet(tiny, 10)
    kept = initialize_from_run(fresh, tmp_path / "imported", tiny)
    assert kept == ["head.classifier.weight", "head.classifier.bias"]  # 12 classes there, 10 here
    for name, tensor in fresh.state_dict().items():
        if name not in kept:
            assert torch.equal(tensor, supernet.state_dict()[name]), name
    args = [f"--{key.replace('_', '-')}={value}" for key, value in TINY_FAKE_RUN.items()]
    result = run_cli("train", *args, "--init", tmp_path / "imported", "--run-dir", tmp_path / "tuned", "--json")
    assert result.code == 0, result.stderr
    log = (tmp_path / "tuned" / "train.log").read_text()
    assert f"weights from {tmp_path / 'imported'}, classifier re-initialized" in log
    assert_one_line_error(run_cli("train", *args, "--space", "cifar", "--init", tmp_path / "imported",
                                  "--run-dir", tmp_path / "other"), "space tiny, not cifar")


def _image_folder(root, classes=("a", "b"), per_class=4):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for name in classes:
            (root / split / name).mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 255, (36, 36, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    return root


def test_an_imported_run_evaluates_and_exports_on_an_image_folder(run_cli, tmp_path, tiny):
    checkpoint = _authors_file(tmp_path / "ckpt.pth.tar", _randomized_supernet(tiny))
    assert _import(run_cli, checkpoint, tmp_path / "run").code == 0
    folder = _image_folder(tmp_path / "images")
    result = run_cli("export", "--run", tmp_path / "run", "--arch", "min", "--to", "pt", "--calib-batches", "1",
                     "--data-dir", folder, "--json")
    assert result.code == 0, result.stderr
    assert result.json()["verified_images"] == 8 and result.json()["calib_batches"] == 1
    result = run_cli("export", "--run", tmp_path / "run", "--arch", "min", "--to", "pt", "--out", tmp_path / "x.pt")
    assert_one_line_error(result, "--data-dir")  # imported without a data folder: evaluation needs one
