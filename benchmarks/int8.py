"""What ``anas export --to onnx --quantize int8`` gains and loses on the default run.

    python benchmarks/int8.py [--run RUN_DIR]

1. Trains the README's main job, ``anas train`` with no arguments (the ``tiny`` space on
   the embedded digits, 12 epochs), into a temporary folder; ``--run`` takes an existing
   run instead.
2. Exports ``max`` (the acceptance subnet) and ``min`` as int8 ONNX, as the command line
   does, and reports the validation top-1 of the fp32 PyTorch subnet and of the int8 file
   (all 360 validation digits), the top-1 agreement on the verification images, the sizes
   of the fp32 and int8 ONNX files and their onnxruntime latencies (CPU, batch 1, one
   thread; re-measured here as the median of 500 runs).
3. The size ratio is also given against the fp32 file without the exporter's per-node debug
   metadata (what ``quant_pre_process`` drops), so that the ratio of the weights and graph
   alone is known too.

Targets for ``max``: at most 1 point of top-1 lost, an int8 file at least 2.5x smaller than
the fp32 one. The latency ratio is reported whatever it is.

Prints the figures and writes benchmarks/results/int8.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import onnx
import onnxruntime
import torch
from onnxruntime.quantization import quant_pre_process

from anas.export.quantize import latency_ms
from anas.export.subnet import ExportOptions, export_subnet
from anas.options import build
from anas.train.loop import start_training

RESULTS = Path(__file__).resolve().parent / "results"
ARCHS = ("max", "min")
MAX_ACC1_LOSS = 1.0  # points of validation top-1
MIN_SIZE_RATIO = 2.5
LATENCY_RUNS = 500


def train_default(folder: Path) -> tuple[Path, float]:
    """``anas train`` with no arguments, into ``folder/run``; returns the run and the seconds."""
    start = time.perf_counter()
    start_training({"run_dir": str(folder / "run")}, progress=False)
    return folder / "run", time.perf_counter() - start


def stripped_size(fp32: Path, folder: Path) -> int:
    """Bytes of the fp32 file after ``quant_pre_process`` (no per-node debug metadata)."""
    prepared = folder / f"{fp32.stem}-prepared.onnx"
    quant_pre_process(str(fp32), str(prepared))
    return prepared.stat().st_size


def figures(run: Path, arch: str, folder: Path) -> dict:
    """Export ``arch`` as fp32 and as int8 ONNX and collect what the int8 export reports."""
    start = time.perf_counter()
    result = export_subnet(build(ExportOptions, {"run": str(run), "arch": arch, "to": "onnx", "quantize": "int8",
                                                 "out": str(folder / f"{arch}-int8.onnx")}))
    seconds = time.perf_counter() - start
    if not result.ok:
        raise SystemExit(f"the int8 export of {arch} failed: {result.error()}")
    fp32 = export_subnet(build(ExportOptions, {"run": str(run), "arch": arch, "to": "onnx",
                                               "out": str(folder / f"{arch}.onnx")})).path  # the same fp32 file, kept
    data = result.to_dict()
    image = torch.zeros(1, 3, result.arch.resolution, result.arch.resolution)
    latency = {"fp32": latency_ms(fp32, image, LATENCY_RUNS), "int8": latency_ms(result.path, image, LATENCY_RUNS)}
    ops = [node.op_type for node in onnx.load(str(result.path)).graph.node]
    stripped = stripped_size(fp32, folder)
    return {
        "arch": arch, "resolution": data["resolution"], "mflops": data["mflops"], "params_m": data["params_m"],
        "export_seconds": round(seconds, 2),
        "acc1_fp32": data["acc1_fp32"], "acc1_int8": data["acc1_int8"], "val_images": data["val_images"],
        "acc1_loss": data["acc1_fp32"] - data["acc1_int8"],
        "top1_agreement": data["top1_agreement"], "verified_images": data["verified_images"],
        "max_abs_diff": data["max_abs_diff"],
        "bytes": {**data["bytes"], "fp32_without_node_metadata": stripped},
        "size_ratio": data["bytes"]["fp32"] / data["bytes"]["int8"],
        "size_ratio_without_node_metadata": stripped / data["bytes"]["int8"],
        "latency_ms_export": data["latency_ms"],
        "latency_ms": latency, "latency_ratio_int8_over_fp32": latency["int8"] / latency["fp32"],
        "quantize_linear_nodes": ops.count("QuantizeLinear"), "dequantize_linear_nodes": ops.count("DequantizeLinear"),
    }


def report(row: dict) -> None:
    print(f"{row['arch']}: val top-1 fp32 {row['acc1_fp32']:.2f}% -> int8 {row['acc1_int8']:.2f}% "
          f"({row['acc1_loss']:+.2f} points lost, {row['val_images']} images); "
          f"top-1 agreement {row['top1_agreement']:.1%} of {row['verified_images']}")
    sizes = row["bytes"]
    print(f"  size: fp32 {sizes['fp32']:,} B -> int8 {sizes['int8']:,} B ({row['size_ratio']:.2f}x smaller; "
          f"{row['size_ratio_without_node_metadata']:.2f}x against the fp32 file without node metadata, "
          f"{sizes['fp32_without_node_metadata']:,} B)")
    print(f"  latency (batch 1, 1 thread, median of {LATENCY_RUNS}): fp32 {row['latency_ms']['fp32']:.3f} ms, "
          f"int8 {row['latency_ms']['int8']:.3f} ms (int8/fp32 = {row['latency_ratio_int8_over_fp32']:.2f}); "
          f"export {row['export_seconds']:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="an existing run of `anas train` (default: train one now)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="anas-int8-bench-") as name:
        folder = Path(name)
        run, train_seconds = (args.run, None) if args.run else train_default(folder)
        if train_seconds is not None:
            print(f"trained the default run in {train_seconds:.0f} s")
        rows = [figures(run, arch, folder) for arch in ARCHS]
    for row in rows:
        report(row)
    target = rows[0]
    passed = {"acc1_loss": target["acc1_loss"] <= MAX_ACC1_LOSS, "size_ratio": target["size_ratio"] >= MIN_SIZE_RATIO}
    print(f"targets for max: top-1 loss <= {MAX_ACC1_LOSS} point: {'met' if passed['acc1_loss'] else 'MISSED'}; "
          f"int8 >= {MIN_SIZE_RATIO}x smaller: {'met' if passed['size_ratio'] else 'MISSED'}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "int8.json").write_text(json.dumps({
        "run": "anas train with no arguments (tiny space, digits, 12 epochs)" if train_seconds else str(args.run),
        "train_seconds": None if train_seconds is None else round(train_seconds, 1),
        "quantization": "onnxruntime quantize_static, QDQ, uint8 activations, int8 weights, per tensor, MinMax, "
                        "256 calibration images",
        "targets": {"max_acc1_loss": MAX_ACC1_LOSS, "min_size_ratio": MIN_SIZE_RATIO, "met": passed},
        "subnets": rows,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
                    "onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__},
    }, indent=2) + "\n")
    print(f"wrote {RESULTS / 'int8.json'}")


if __name__ == "__main__":
    main()
