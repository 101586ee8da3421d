"""``anas export``: a trained subnet as ONNX (fp32 or int8), TorchScript or a plain PyTorch file, verified."""

from __future__ import annotations

import sys
from typing import Any

import typer
from rich.table import Table

from anas.cli import app
from anas.cli.common import Report, err, out, print_json
from anas.cli.flags import options_command
from anas.export.subnet import ExportOptions, ExportResult, export_subnet
from anas.options import build, values_from_config


@app.command("export")
@options_command(ExportOptions, Report)
def export_command(values: dict[str, Any], cli: Report, config: str | None) -> None:
    """Export a subnet of a trained run with its weights and recalibrated BN; verify the file."""
    options = build(ExportOptions, values_from_config(ExportOptions, values, config))
    if cli.json_output:
        result = export_subnet(options)
    else:
        with err.status(f"exporting {options.arch or 'the latest search result'} to {options.to}..."):
            result = export_subnet(options)
        if "run" in result.chosen:
            err.print(f"run: {result.run} (the latest under ./runs with a checkpoint)")
        if "arch" in result.chosen:
            err.print(f"arch: {result.arch_spec} (the run's latest search result, else its largest subnet)")
    _report(result, result.arch_spec, cli.json_output)
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
