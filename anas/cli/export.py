"""``anas export``: a trained subnet as ONNX (fp32 or int8), TorchScript or a plain PyTorch file, verified."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from anas.cli import app
from anas.cli.common import DATA_DIR_OPTION, err, out, print_json
from anas.errors import AnasError
from anas.export.onnx import DEFAULT_OPSET
from anas.export.quantize import CALIB_IMAGES, MIN_TOP1_AGREEMENT, QUANTIZE_CHOICES
from anas.export.subnet import FORMATS, ExportConfig, ExportResult, export_subnet


@app.command()
def export(
    run: Optional[Path] = typer.Option(None, "--run", "-r", help="Run folder written by anas train (default: the latest under ./runs with a checkpoint)."),
    arch: Optional[str] = typer.Option(None, "--arch", "-a", help="Subnet: JSON file (e.g. a search's best.json), JSON string, min, max, random, or a model name (default: the run's latest search-*/best.json, else max)."),
    to: str = typer.Option(..., "--to", "-t", help=f"Format: {' | '.join(FORMATS)}."),
    out_path: Optional[Path] = typer.Option(None, "--out", "-o", help="Output file (default: RUN/exports/<name>.onnx|ts|pt, <name>-int8.onnx with --quantize)."),
    calib_batches: Optional[int] = typer.Option(None, "--calib-batches", min=1, help="Training batches for BN recalibration (default: the run's calib_batches)."),
    no_calibrate: bool = typer.Option(False, "--no-calibrate", help="Keep the supernet's BN statistics."),
    opset: Optional[int] = typer.Option(None, "--opset", help=f"ONNX opset (default: {DEFAULT_OPSET})."),
    device: str = typer.Option("cpu", "--device", help="Device for loading and BN recalibration: cpu or cuda (files are exported on the CPU)."),
    data_dir: Optional[str] = DATA_DIR_OPTION,
    no_verify: bool = typer.Option(False, "--no-verify", help="Do not load the file back and compare it with PyTorch."),
    tolerance: float = typer.Option(ExportConfig.tolerance, "--tolerance", min=0.0,
                                    help="Largest allowed absolute difference of the logits in the verification (not with --quantize)."),
    quantize: Optional[str] = typer.Option(None, "--quantize", help=f"{' | '.join(QUANTIZE_CHOICES)}: static quantization of the ONNX file, calibrated on {CALIB_IMAGES} training images; the int8 file must agree with PyTorch on the top-1 class of at least {MIN_TOP1_AGREEMENT:.0%} of the verification images."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """Export a subnet of a trained run with its weights and recalibrated BN; verify the file."""
    if no_calibrate and calib_batches is not None:
        raise AnasError("--calib-batches and --no-calibrate exclude each other")
    quantize = quantize.strip().lower() if quantize is not None else None
    config = ExportConfig(calibrate=not no_calibrate, calib_batches=calib_batches, opset=opset,
                          device=device, data_dir=data_dir, verify=not no_verify, tolerance=tolerance,
                          quantize=quantize)
    fmt = to.strip().lower()
    if json_output:
        result = export_subnet(run, arch, fmt, out_path, config)
    else:
        target = f"{fmt} ({quantize})" if quantize else fmt
        with err.status(f"exporting {arch or 'the latest search result'} to {target}..."):
            result = export_subnet(run, arch, fmt, out_path, config)
        if "run" in result.chosen:
            err.print(f"run: {result.run} (the latest under ./runs with a checkpoint)")
        if "arch" in result.chosen:
            err.print(f"arch: {result.arch_spec} (the run's latest search result, else its largest subnet)")
    _report(result, result.arch_spec, json_output)
    if not result.ok:
        print(f"anas: error: {result.error()}", file=sys.stderr)
        raise typer.Exit(1)


def _report(result: ExportResult, arch_spec: str, json_output: bool) -> None:
    if json_output:
        print_json(result.to_dict())
        return
    if not result.ok:
        return  # the error line says it all
    kind = f"{result.fmt} ({result.quantize})" if result.quantize else result.fmt
    table = Table(title=f"{arch_spec} exported as {kind}", show_header=False)
    table.add_row("resolution", str(result.arch.resolution))
    table.add_row("MFLOPs", f"{result.mflops:.2f}")
    table.add_row("params (M)", f"{result.params_m:.3f}")
    table.add_row("BN recalibration", f"{result.calib_batches} training batches" if result.calib_batches else "off")
    if result.opset is not None:
        table.add_row("ONNX opset", str(result.opset))
    check = result.verification
    if check is None:
        table.add_row("verified", "no (--no-verify)")
    elif result.quantize is None:
        table.add_row("max |diff| of logits", f"{check.max_abs_diff:.2e} ({check.images} validation images)")
        table.add_row("top-1 agrees", "yes" if check.top1_agree else "no")
    if result.int8 is not None:
        _int8_rows(table, result)
    out.print(table)
    out.print(f"wrote {result.path}")


def _int8_rows(table: Table, result: ExportResult) -> None:
    """The int8 rows: calibration, agreement, accuracy, sizes and latencies, fp32 next to int8."""
    report, check = result.int8, result.verification
    table.add_row("int8 calibration", f"{report.calib_images} training images")
    table.add_row("size fp32 -> int8", f"{report.bytes_fp32 / 1024:,.0f} KiB -> {report.bytes_int8 / 1024:,.0f} KiB "
                                        f"({report.bytes_fp32 / report.bytes_int8:.2f}x smaller)")
    if check is None:
        return
    table.add_row("top-1 agreement", f"{check.top1_agreement:.1%} of {check.images} validation images")
    table.add_row("val top-1 fp32 -> int8", f"{report.acc1_fp32:.2f}% -> {report.acc1_int8:.2f}% "
                                            f"({report.val_images} images)")
    table.add_row("latency fp32 -> int8", f"{_ms(report.latency_fp32_ms)} -> {_ms(report.latency_int8_ms)} "
                                          "(batch 1, 1 thread)")


def _ms(milliseconds: float) -> str:
    return f"{milliseconds:.3f} ms" if milliseconds < 10 else f"{milliseconds:.1f} ms"
