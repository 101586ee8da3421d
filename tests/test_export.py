import contextlib
import io
import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import assert_one_line_error

from anas.cli import main
from anas.errors import CheckpointError
from anas.evaluate.trained import load_trained_run
from anas.export.interface import EXPORT_BATCH
from anas.export.pt import PlainPyTorchFormat, load_subnet
from anas.export.subnet import prepare_subnet, validation_images
from anas.space.arch import parse_arch
from anas.space.schema import space_from_dict
from anas.train.loop import start_training

FORMATS = {"onnx": "onnx", "torchscript": "ts", "pt": "pt"}
# A search result as `anas search` writes it: the subnet plus keys that --arch ignores.
BEST = {"resolution": 28, "width": [8, 16, 16, 32, 64], "depth": [2, 1, 3], "kernel_size": [5, 3, 3],
        "expand_ratio": [1, 6, 4], "acc1": 91.5, "mflops": 1.2, "rank": 1}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "run"
    start_training({"space": "tiny", "data": "digits", "epochs": 1, "batch_size": 64, "calib_batches": 2,
                    "sampler": "uniform", "run_dir": str(path)}, progress=False)
    return path


@pytest.fixture(scope="module")
def best_json(run_dir):
    path = run_dir.parent / "best.json"
    path.write_text(json.dumps(BEST))
    return path


@pytest.fixture(scope="module")
def run(run_dir):
    return load_trained_run(run_dir)


@pytest.fixture(scope="module")
def exported(run_dir, best_json):
    """`anas export --json` of max and of best.json in every format, to the default paths."""
    results = {}
    for fmt in FORMATS:
        for spec in ("max", str(best_json)):
            stdout = io.StringIO()
            with contextlib.redirect_stdout(stdout):
                code = main(["export", "--run", str(run_dir), "--arch", spec, "--to", fmt, "--json"])
            assert code == 0, (fmt, spec, code)
            results[fmt, "best" if spec.endswith(".json") else spec] = json.loads(stdout.getvalue())
    return results


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("name", ["max", "best"])
def test_every_format_exports_and_verifies_on_validation_images(exported, run_dir, fmt, name):
    result = exported[fmt, name]
    assert result["path"] == str(run_dir / "exports" / f"{name}.{FORMATS[fmt]}")
    assert (run_dir / "exports" / f"{name}.{FORMATS[fmt]}").is_file()
    assert result["format"] == fmt and result["ok"] and result["written"] and result["verified"]
    assert result["max_abs_diff"] <= 1e-4 and result["top1_agree"] is True
    assert result["verified_images"] > EXPORT_BATCH  # the dynamic batch axis is exercised
    assert result["calib_batches"] == 2  # the run's calib_batches
    expected = {"max": 32, "best": 28}[name]
    assert result["resolution"] == expected == result["arch"]["resolution"]
    assert result["mflops"] > 0 and result["params_m"] > 0
    if name == "best":
        assert result["arch"] == {k: v for k, v in BEST.items() if k in result["arch"]}
    assert not list((run_dir / "exports").glob(".*"))  # no temporary files


def test_onnx_model_is_valid_and_carries_its_metadata(exported, run_dir):
    model = onnx.load(str(run_dir / "exports" / "max.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert exported["onnx", "max"]["opset"] == 18
    assert [i.name for i in model.graph.input] == ["input"] and [o.name for o in model.graph.output] == ["logits"]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, 32, 32]  # dynamic batch, NCHW
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["input_name"] == "input" and json.loads(meta["resolution"]) == 32
    assert len(json.loads(meta["mean"])) == 3 and len(json.loads(meta["std"])) == 3
    assert json.loads(meta["class_names"]) == [str(d) for d in range(10)]
    assert json.loads(meta["arch"]) == exported["onnx", "max"]["arch"]
    assert space_from_dict(json.loads(meta["space"])).name == "tiny"
    assert meta["anas_version"]


def test_onnx_runs_at_two_batch_sizes_like_the_pytorch_subnet(exported, run, run_dir):
    session = ort.InferenceSession(str(run_dir / "exports" / "best.onnx"), providers=["CPUExecutionProvider"])
    reference = load_subnet(run_dir / "exports" / "best.pt")  # the same subnet, calibrated the same way
    images = validation_images(run, 28, 7)
    for batch in (images[:1], images):
        got = session.run(["logits"], {"input": batch.numpy()})[0]
        with torch.no_grad():
            expected = reference(batch).numpy()
        assert got.shape == (len(batch), 10)
        assert np.abs(got - expected).max() <= 1e-4


def test_torchscript_loads_without_anas(exported, run_dir, tmp_path):
    model, inputs, outputs = run_dir / "exports" / "max.ts", tmp_path / "x.pt", tmp_path / "y.pt"
    torch.save(torch.randn(5, 3, 32, 32), inputs)
    script = (
        "import sys; sys.modules['anas'] = None\n"
        "import json, torch\n"
        "extra = {'anas.json': ''}\n"
        f"m = torch.jit.load({str(model)!r}, _extra_files=extra)\n"
        f"torch.save(m(torch.load({str(inputs)!r})), {str(outputs)!r})\n"
        "print(json.loads(extra['anas.json'])['resolution'])\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "32"
    with torch.no_grad():
        expected = load_subnet(run_dir / "exports" / "max.pt")(torch.load(inputs))
    assert torch.allclose(torch.load(outputs), expected, atol=1e-5)


def test_load_subnet_gives_the_exported_subnet(exported, run, run_dir):
    net = load_subnet(run_dir / "exports" / "best.pt")
    arch = parse_arch(run.space, json.dumps(BEST))
    assert net.arch == arch and not net.training
    assert net.class_names == [str(d) for d in range(10)] and len(net.mean) == len(net.std) == 3
    reference = prepare_subnet(run, arch, 2)
    images = validation_images(run, 28, 16)
    with torch.no_grad():
        assert torch.equal(net(images), reference(images))


def test_load_subnet_refuses_other_files(exported, run_dir, tmp_path):
    other = tmp_path / "other.pt"
    torch.save({"format": "something-else"}, other)
    for path in (other, run_dir / "exports" / "max.onnx", tmp_path / "missing.pt"):
        with pytest.raises(CheckpointError) as info:
            load_subnet(path)
        assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_no_calibrate_keeps_the_supernet_statistics(run_cli, run, run_dir, tmp_path):
    out = tmp_path / "raw.pt"
    result = run_cli("export", "--run", run_dir, "--arch", "min", "--to", "pt", "--out", out, "--no-calibrate", "--json")
    assert result.code == 0, result.stderr
    data = result.json()
    assert data["calib_batches"] == 0 and data["max_abs_diff"] <= 1e-4 and data["path"] == str(out)
    net = load_subnet(out)
    raw = run.extract(parse_arch(run.space, "min"))
    assert torch.equal(net.first_conv.bn.running_mean, raw.first_conv.bn.running_mean)
    calibrated = prepare_subnet(run, parse_arch(run.space, "min"), 2)
    assert not torch.equal(net.first_conv.bn.running_mean, calibrated.first_conv.bn.running_mean)


def test_human_output_is_a_table_and_the_path(run_cli, run_dir, tmp_path):
    out = tmp_path / "a.pt"
    result = run_cli("export", "--run", run_dir, "--arch", "min", "--to", "pt", "--out", out, "--calib-batches", "1")
    assert result.code == 0, result.stderr
    assert "max |diff| of logits" in result.stdout and "1 training batches" in result.stdout
    assert f"wrote {out}" in " ".join(result.stdout.split())


def test_off_space_arch_is_refused(run_cli, run_dir, tmp_path):
    bad = {**BEST, "kernel_size": [5, 7, 3]}
    out = tmp_path / "x.onnx"
    result = run_cli("export", "--run", run_dir, "--arch", json.dumps(bad), "--to", "onnx", "--out", out)
    assert_one_line_error(result, "kernel_size[1] = 7", "allowed: 3, 5")
    assert not list(tmp_path.iterdir())


def test_run_without_checkpoint_is_refused(run_cli, tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_cli("export", "--run", tmp_path / "empty", "--arch", "max", "--to", "pt")
    assert_one_line_error(result, "has no checkpoint")
    assert list(tmp_path.rglob("*")) == [tmp_path / "empty"]


def test_unwritable_out_is_refused(run_cli, run_dir, tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("keep")
    result = run_cli("export", "--run", run_dir, "--arch", "max", "--to", "pt", "--out", blocker / "m.pt")
    assert_one_line_error(result, "is a file, not a folder")
    folder = tmp_path / "folder"
    folder.mkdir()
    result = run_cli("export", "--run", run_dir, "--arch", "max", "--to", "torchscript", "--out", folder)
    assert_one_line_error(result, "is a folder")
    assert blocker.read_text() == "keep" and not list(folder.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt", "folder"]


@pytest.mark.parametrize("args, message", [
    (["--to", "tflite"], "unknown export format 'tflite': use onnx, torchscript, pt"),
    (["--to", "onnx", "--opset", "13"], "--opset 13 is not supported"),
    (["--to", "pt", "--opset", "18"], "--opset goes with --to onnx"),
    (["--to", "pt", "--no-calibrate", "--calib-batches", "3"], "exclude each other"),
    (["--to", "pt", "--device", "tpu"], "unknown --device 'tpu'"),
])
def test_bad_options_are_refused_before_any_work(run_cli, tmp_path, args, message):
    # The run does not even exist: options are checked first.
    result = run_cli("export", "--run", tmp_path / "no-run", "--arch", "max", *args)
    assert_one_line_error(result, message)
    assert not list(tmp_path.iterdir())


def test_a_failed_verification_exits_1_and_replaces_nothing(run_cli, run_dir, tmp_path, monkeypatch):
    real = PlainPyTorchFormat.load

    def off_by_a_little(self, path):  # an export whose logits are off by 1e-3
        forward = real(self, path)
        return lambda images: forward(images) + 1e-3

    monkeypatch.setattr(PlainPyTorchFormat, "load", off_by_a_little)
    out = tmp_path / "m.pt"
    out.write_text("previous export")
    result = run_cli("export", "--run", run_dir, "--arch", "min", "--to", "pt", "--out", out, "--json")
    assert result.code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("anas: error: ") and "differs" in lines[0]
    data = result.json()
    assert data["ok"] is False and data["written"] is False and data["max_abs_diff"] == pytest.approx(1e-3, rel=1e-3)
    assert out.read_text() == "previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]


def test_tolerance_flag_and_no_folder_left_by_a_failed_export(run_cli, run_dir, tmp_path, monkeypatch):
    real = PlainPyTorchFormat.load
    monkeypatch.setattr(PlainPyTorchFormat, "load", lambda self, path: (lambda images: real(self, path)(images) + 1e-3))
    out = tmp_path / "new-folder" / "m.pt"
    failed = run_cli("export", "--run", run_dir, "--arch", "min", "--to", "pt", "--out", out)
    assert failed.code == 1 and "more than 0.0001" in failed.stderr
    assert not (tmp_path / "new-folder").exists()
    passed = run_cli("export", "--run", run_dir, "--arch", "min", "--to", "pt", "--out", out, "--tolerance", "0.01", "--json")
    assert passed.code == 0 and passed.json()["tolerance"] == 0.01 and out.is_file()
