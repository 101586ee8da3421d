"""``anas export``: a trained subnet as ONNX, TorchScript or a plain PyTorch file, verified."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from anas.cli import app
from anas.cli.common import err, out, print_json
from anas.errors import AnasError
from anas.export.onnx import DEFAULT_OPSET
from anas.export.subnet import FORMATS, ExportConfig, ExportResult, export_subnet


@app.command()
def export(
    run: Optional[Path] = typer.Option(None, "--run", "-r", help="Run folder written by anas train (default: the latest under ./runs with a checkpoint)."),
    arch: Optional[str] = typer.Option(None, "--arch", "-a", help="Subnet: JSON file (e.g. a search's best.json), JSON string, min, max, random, or a model name (default: the run's latest search-*/best.json, else max)."),
    to: str = typer.Option(..., "--to", "-t", help=f"Format: {' | '.join(FORMATS)}."),
    out_path: Optional[Path] = typer.Option(None, "--out", "-o", help="Output file (default: RUN/exports/<name>.onnx|ts|pt)."),
    calib_batches: Optional[int] = typer.Option(None, "--calib-batches", min=1, help="Training batches for BN recalibration (default: the run's calib_batches)."),
    no_calibrate: bool = typer.Option(False, "--no-calibrate", help="Keep the supernet's BN statistics."),
    opset: Optional[int] = typer.Option(None, "--opset", help=f"ONNX opset (default: {DEFAULT_OPSET})."),
    device: str = typer.Option("cpu", "--device", help="Device for loading and BN recalibration: cpu or cuda (files are exported on the CPU)."),
    no_verify: bool = typer.Option(False, "--no-verify", help="Do not load the file back and compare it with PyTorch."),
    tolerance: float = typer.Option(ExportConfig.tolerance, "--tolerance", min=0.0,
                                    help="Largest allowed absolute difference of the logits in the verification."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """Export a subnet of a trained run with its weights and recalibrated BN; verify the file."""
    if no_calibrate and calib_batches is not None:
        raise AnasError("--calib-batches and --no-calibrate exclude each other")
    config = ExportConfig(calibrate=not no_calibrate, calib_batches=calib_batches, opset=opset,
                          device=device, verify=not no_verify, tolerance=tolerance)
    fmt = to.strip().lower()
    if json_output:
        result = export_subnet(run, arch, fmt, out_path, config)
    else:
        with err.status(f"exporting {arch or 'the latest search result'} to {fmt}..."):
            result = export_subnet(run, arch, fmt, out_path, config)
        if "run" in result.chosen:
            err.print(f"run: {result.run} (the latest under ./runs with a checkpoint)")
        if "arch" in result.chosen:
            err.print(f"arch: {result.arch_spec} (the run's latest search result, else its largest subnet)")
    _report(result, result.arch_spec, json_output)
    if not result.ok:
        check = result.verification
        print(f"anas: error: the {fmt} export differs from the PyTorch subnet by {check.max_abs_diff:.3g} "
              f"(more than {check.tolerance:g}) on {check.images} validation images; "
              f"nothing was written to {result.path}", file=sys.stderr)
        raise typer.Exit(1)


def _report(result: ExportResult, arch_spec: str, json_output: bool) -> None:
    if json_output:
        print_json(result.to_dict())
        return
    if not result.ok:
        return  # the error line says it all
    table = Table(title=f"{arch_spec} exported as {result.fmt}", show_header=False)
    table.add_row("resolution", str(result.arch.resolution))
    table.add_row("MFLOPs", f"{result.mflops:.2f}")
    table.add_row("params (M)", f"{result.params_m:.3f}")
    table.add_row("BN recalibration", f"{result.calib_batches} training batches" if result.calib_batches else "off")
    if result.opset is not None:
        table.add_row("ONNX opset", str(result.opset))
    check = result.verification
    if check is None:
        table.add_row("verified", "no (--no-verify)")
    else:
        table.add_row("max |diff| of logits", f"{check.max_abs_diff:.2e} ({check.images} validation images)")
        table.add_row("top-1 agrees", "yes" if check.top1_agree else "no")
    out.print(table)
    out.print(f"wrote {result.path}")
