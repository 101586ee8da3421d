"""`anas export --to onnx --quantize int8`: the int8 file, its report and its failures.

One real int8 export (of `max`, on a run trained in seconds on fake data) is shared by most
tests; the failure paths replace the fp32 writer and the quantizer with a copy of that file,
so they take a second. Whether int8 keeps the accuracy of a *trained* network is measured
by benchmarks/int8.py on the default run (the fake run is at chance, so it cannot tell).
"""

import contextlib
import io
import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import assert_one_line_error, train_tiny_run

import anas.export.onnx as onnx_module
import anas.export.quantize as quantize_module
from anas.cli import main
from anas.errors import AnasError
from anas.evaluate.trained import load_trained_run
from anas.export.subnet import ExportOptions, export_subnet, prepare_subnet
from anas.nn.accuracy import at_resolution, evaluate
from anas.space.arch import parse_arch

INT8_KEYS = ("top1_agreement", "acc1_fp32", "acc1_int8", "bytes", "latency_ms")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return train_tiny_run(tmp_path_factory.mktemp("quantize") / "run")


@pytest.fixture(scope="module")
def exported(run_dir):
    """`anas export --arch max --to onnx --quantize int8 --json` to the default path."""
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["export", "--run", str(run_dir), "--arch", "max", "--to", "onnx", "--quantize", "int8", "--json"])
    assert code == 0
    return json.loads(stdout.getvalue())


@pytest.fixture
def int8_copy(exported, monkeypatch):
    """Make exports fast: the fp32 writer and the quantizer copy the int8 file of `exported`."""
    source = exported["path"]
    monkeypatch.setattr(onnx_module, "write_onnx", lambda net, path, metadata, opset: shutil.copy(source, path))
    monkeypatch.setattr(quantize_module, "quantize_onnx", lambda fp32, out, chunks: shutil.copy(source, out))
    return source


def test_int8_file_is_written_to_the_default_path_and_loads(exported, run_dir):
    path = run_dir / "exports" / "max-int8.onnx"
    assert exported["path"] == str(path) and path.is_file()
    assert exported["ok"] and exported["written"] and exported["verified"]
    assert not list((run_dir / "exports").glob(".*"))  # no temporaries
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], {"input": np.zeros((3, 3, 32, 32), dtype=np.float32)})[0]
    assert logits.shape == (3, 10) and np.isfinite(logits).all()


def test_int8_file_holds_quantized_ops_int8_weights_and_the_metadata(exported, run_dir):
    model = onnx.load(str(run_dir / "exports" / "max-int8.onnx"))
    onnx.checker.check_model(model, full_check=True)
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("QuantizeLinear") >= 10 and ops.count("DequantizeLinear") >= 10
    weights = [w for w in model.graph.initializer if w.data_type == onnx.TensorProto.INT8]
    assert sum(np.prod(w.dims) for w in weights) > 0.9 * exported["params_m"] * 1e6  # nearly all weights
    assert [i.name for i in model.graph.input] == ["input"] and [o.name for o in model.graph.output] == ["logits"]
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["input_name"] == "input" and json.loads(meta["resolution"]) == 32 and meta["class_names"]
    quantization = json.loads(meta["quantization"])
    assert quantization["type"] == "int8" and quantization["calibration_images"] == 256


def test_json_reports_agreement_accuracies_sizes_and_latencies(exported, run_dir):
    for key in ("path", "format", "max_abs_diff", "top1_agree", "verified_images", "tolerance", "ok", "written"):
        assert key in exported  # the keys of every export stay
    assert all(exported[key] is not None for key in INT8_KEYS)
    assert exported["quantize"] == "int8" and exported["format"] == "onnx" and exported["tolerance"] is None
    assert 0.5 <= exported["top1_agreement"] <= 1.0 and exported["verified_images"] == 32
    assert 0.0 <= exported["acc1_fp32"] <= 100.0 and 0.0 <= exported["acc1_int8"] <= 100.0
    assert exported["val_images"] == 64 and exported["quant_calib_images"] == 256  # fake data: 64 val images
    sizes = exported["bytes"]
    assert sizes["int8"] == (run_dir / "exports" / "max-int8.onnx").stat().st_size
    assert sizes["int8"] * 2.5 < sizes["fp32"]
    assert set(exported["latency_ms"]) == {"fp32", "int8"} and all(v > 0 for v in exported["latency_ms"].values())


def test_reported_accuracies_are_those_of_the_subnet_and_of_the_file(exported, run_dir):
    run = load_trained_run(run_dir)
    arch = parse_arch(run.space, "max")
    net = prepare_subnet(run, arch, run.config.calib_batches)
    fp32 = evaluate(net, at_resolution(run.evaluation_batches("val"), 32))
    assert exported["acc1_fp32"] == pytest.approx(fp32.acc1)
    session = ort.InferenceSession(exported["path"], providers=["CPUExecutionProvider"])
    hits = sum(int((session.run(["logits"], {"input": images.numpy()})[0].argmax(1) == labels.numpy()).sum())
               for images, labels in at_resolution(run.evaluation_batches("val"), 32))
    assert exported["acc1_int8"] == pytest.approx(100.0 * hits / 64)


def test_human_output_shows_the_int8_figures(run_cli, run_dir, tmp_path, int8_copy):
    out = tmp_path / "small.onnx"
    result = run_cli("export", "--run", run_dir, "--arch", "max", "--to", "ONNX", "--quantize", "INT8", "--out", out)
    assert result.code == 0, result.stderr
    text = " ".join(result.stdout.split())
    for row in ("exported as onnx (int8)", "256 training images", "top-1 agreement", "of 32 validation images",
                "val top-1 fp32 -> int8", "(64 images)", "size fp32 -> int8", "x smaller", "latency fp32 -> int8",
                f"wrote {out}"):
        assert row in text, row
    assert "max |diff|" not in text  # the tolerance on the logits does not apply to int8
    assert out.is_file()


def test_no_verify_reports_sizes_only(run_cli, run_dir, tmp_path, int8_copy):
    out = tmp_path / "m.onnx"
    result = run_cli("export", "--run", run_dir, "--arch", "max", "--to", "onnx", "--quantize", "int8", "--out", out,
                     "--no-verify", "--json")
    assert result.code == 0, result.stderr
    data = result.json()
    assert data["written"] and not data["verified"] and out.is_file()
    assert data["bytes"]["int8"] == out.stat().st_size and data["bytes"]["fp32"] > 0
    assert data["top1_agreement"] is None and data["acc1_int8"] is None and data["latency_ms"] is None


def test_fp32_exports_have_the_new_keys_as_null_but_the_agreement(run_cli, run_dir, tmp_path):
    result = run_cli("export", "--run", run_dir, "--arch", "min", "--to", "pt", "--out", tmp_path / "m.pt", "--json")
    data = result.json()
    assert result.code == 0 and data["quantize"] is None and data["top1_agreement"] == 1.0
    assert data["bytes"] is None and data["acc1_int8"] is None and data["latency_ms"] is None


def test_low_top1_agreement_fails_with_exit_1_and_writes_nothing(run_cli, run_dir, tmp_path, int8_copy, monkeypatch):
    real = quantize_module.session_forward

    def shifted(session):  # an int8 model whose top-1 class is never the PyTorch one
        forward = real(session)
        return lambda images: torch.roll(forward(images), 1, dims=1)

    monkeypatch.setattr(quantize_module, "session_forward", shifted)
    out = tmp_path / "m.onnx"
    out.write_text("previous export")
    result = run_cli("export", "--run", run_dir, "--arch", "max", "--to", "onnx", "--quantize", "int8", "--out", out,
                     "--json")
    assert result.code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("anas: error: the int8 model agrees with the PyTorch subnet")
    assert "0 of 32 validation images (fewer than 50%)" in lines[0] and "nothing was written" in lines[0]
    data = result.json()
    assert data["ok"] is False and data["written"] is False and data["top1_agreement"] == 0.0
    assert out.read_text() == "previous export" and [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


def test_an_int8_file_that_does_not_load_fails_with_exit_1(run_cli, run_dir, tmp_path, int8_copy, monkeypatch):
    monkeypatch.setattr(quantize_module, "quantize_onnx", lambda fp32, out, chunks: out.write_bytes(b"not onnx"))
    out = tmp_path / "new" / "m.onnx"
    result = run_cli("export", "--run", run_dir, "--arch", "max", "--to", "onnx", "--quantize", "int8", "--out", out)
    assert result.code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("anas: error: onnxruntime ")
    assert "cannot load the int8 model" in lines[0] and f"nothing was written to {out}" in lines[0]
    assert "Traceback" not in result.stderr and not (tmp_path / "new").exists()


@pytest.mark.parametrize("args, message", [
    (["--to", "pt", "--quantize", "int8"], "--quantize goes with --to onnx, not --to pt"),
    (["--to", "torchscript", "--quantize", "int8"], "--quantize goes with --to onnx, not --to torchscript"),
    (["--to", "onnx", "--quantize", "int4"], "unknown --quantize 'int4': use int8"),
    (["--to", "onnx", "--quantize", "fp16"], "unknown --quantize 'fp16': use int8"),
])
def test_bad_quantize_options_are_refused_before_any_work(run_cli, tmp_path, args, message):
    result = run_cli("export", "--run", tmp_path / "no-run", "--arch", "max", *args)  # the run does not exist
    assert_one_line_error(result, message)
    assert not list(tmp_path.iterdir())


def test_python_api_refuses_a_bad_quantize_too(tmp_path):
    from anas.options import build

    with pytest.raises(AnasError, match="unknown --quantize 'uint4'"):
        export_subnet(build(ExportOptions, {"run": str(tmp_path / "no-run"), "arch": "max", "to": "onnx",
                                            "quantize": "uint4"}))
