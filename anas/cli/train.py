"""``anas train``: train a supernet (sandwich rule, in-place distillation, attentive sampling)."""

from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from anas.cli import allocator, app
from anas.cli.common import err, out, print_json
from anas.train.loop import TrainConfig, TrainSummary, resume_training, start_training

D = TrainConfig()  # the defaults, shown in --help


def _h(text: str, default) -> str:
    return f"{text} (default: {default})"


@app.command()
def train(
    space: Optional[str] = typer.Option(None, "--space", "-s", help=_h("Built-in space or YAML file.", D.space)),
    data: Optional[str] = typer.Option(None, "--data", help=_h("digits | cifar10 | cifar100 | imagefolder | fake.", D.data)),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="Folder of cifar files or of train/ and val/ (imagefolder)."),
    download: Optional[bool] = typer.Option(None, "--download/--no-download", help=_h("Let torchvision download CIFAR into --data-dir.", D.download)),
    holdout: Optional[float] = typer.Option(None, "--holdout", help=_h("Fraction of the training split reserved for predictor data.", D.holdout)),
    num_classes: Optional[int] = typer.Option(None, "--num-classes", help="Classifier size (default: the dataset's)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help=_h("Epochs of the schedule.", D.epochs)),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", help=_h("Images per step and process.", D.batch_size)),
    lr: Optional[float] = typer.Option(None, "--lr", help=_h("Learning rate per 256 images (scaled by the global batch).", D.lr)),
    warmup_epochs: Optional[float] = typer.Option(None, "--warmup-epochs", help=_h("Linear warm-up, then cosine to 0 per batch.", D.warmup_epochs)),
    momentum: Optional[float] = typer.Option(None, "--momentum", help=_h("SGD momentum.", D.momentum)),
    nesterov: Optional[bool] = typer.Option(None, "--nesterov/--no-nesterov", help=_h("Nesterov momentum.", D.nesterov)),
    weight_decay: Optional[float] = typer.Option(None, "--weight-decay", help=_h("On conv and linear weights; none on BN and biases.", D.weight_decay)),
    label_smoothing: Optional[float] = typer.Option(None, "--label-smoothing", help=_h("For the largest subnet's label loss.", D.label_smoothing)),
    dropout: Optional[float] = typer.Option(None, "--dropout", help="Before the classifier, largest subnet only (default: the space's)."),
    drop_connect: Optional[float] = typer.Option(None, "--drop-connect", help=_h("Largest drop-connect rate, largest subnet only.", D.drop_connect)),
    drop_connect_stages: Optional[int] = typer.Option(None, "--drop-connect-stages", help=_h("Drop-connect in this many last stages.", D.drop_connect_stages)),
    grad_clip: Optional[float] = typer.Option(None, "--grad-clip", help=_h("Clip gradients by value (0: off).", D.grad_clip)),
    num_subnets: Optional[int] = typer.Option(None, "--num-subnets", help=_h("Subnets per step: largest, sampled ones, smallest.", D.num_subnets)),
    sampler: Optional[str] = typer.Option(None, "--sampler", help=_h("uniform | bestup-kN | worstup-kN.", D.sampler)),
    estimator: Optional[str] = typer.Option(None, "--estimator", help=_h("Scores attentive candidates: loss | predictor.", D.estimator)),
    predictor: Optional[str] = typer.Option(None, "--predictor", help="Predictor folder of anas predict-fit (with --estimator predictor)."),
    flops_step: Optional[float] = typer.Option(None, "--flops-step", help="MFLOPs bin width of the FLOPs prior (default: range / 70)."),
    prior_samples: Optional[int] = typer.Option(None, "--prior-samples", help=_h("Subnets sampled to build the FLOPs prior.", D.prior_samples)),
    calib_batches: Optional[int] = typer.Option(None, "--calib-batches", help=_h("Training batches for BN recalibration before evaluation.", D.calib_batches)),
    eval_every: Optional[int] = typer.Option(None, "--eval-every", help=_h("Evaluate smallest and largest every N epochs (0: only at the end).", D.eval_every)),
    device: Optional[str] = typer.Option(None, "--device", help=_h("auto | cpu | cuda.", D.device)),
    amp: Optional[str] = typer.Option(None, "--amp", help=_h("none | bf16 | fp16 (fp16 on CUDA).", D.amp)),
    channels_last: Optional[bool] = typer.Option(None, "--channels-last/--no-channels-last", help=_h("Channels-last memory format.", D.channels_last)),
    keep_freed_memory: Optional[bool] = typer.Option(None, "--keep-freed-memory/--no-keep-freed-memory", help=_h("Have glibc's malloc keep freed memory for the next step (faster CPU steps; the process keeps its peak memory).", D.keep_freed_memory)),
    workers: Optional[int] = typer.Option(None, "--workers", help=_h("Data-loading worker processes.", D.workers)),
    seed: Optional[int] = typer.Option(None, "--seed", help=_h("Seed of weights, data order and subnet sampling.", D.seed)),
    run_dir: Optional[str] = typer.Option(None, "--run-dir", help="Run folder (default: runs/<space>-<data>-<sampler>-<time>)."),
    save_every: Optional[int] = typer.Option(None, "--save-every", help=_h("Also checkpoint every N steps (0: each epoch only).", D.save_every)),
    config: Optional[str] = typer.Option(None, "--config", help="YAML file of options; flags override it."),
    resume: Optional[str] = typer.Option(None, "--resume", help="Continue the run in this folder from its last checkpoint."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    json_output: bool = typer.Option(False, "--json", help="Print the final summary as one JSON object."),
) -> None:
    """Train a supernet with the sandwich rule, in-place distillation and attentive sampling."""
    options = {k: v for k, v in locals().items() if k not in ("config", "resume", "quiet", "json_output")}
    progress = not (quiet or json_output)
    if keep_freed_memory is not False:
        allocator.keep_freed_memory()
    if resume is not None:
        if config is not None:
            err.print("note: --config is ignored with --resume (the run keeps its configuration)")
        summary = resume_training(resume, options, progress=progress)
    else:
        summary = start_training(options, config, progress=progress)
    _report(summary, json_output)


def _report(summary: TrainSummary | None, json_output: bool) -> None:
    if summary is None:  # not the main process of a distributed run
        return
    if json_output:
        print_json(summary.to_dict())
        return
    table = Table(title=f"validation accuracy after {summary.epochs} epochs (BN recalibrated)")
    for column in ("subnet", "MFLOPs", "params (M)", "top-1 (%)", "top-5 (%)", "loss"):
        table.add_column(column, justify="left" if column == "subnet" else "right")
    for name in ("smallest", "largest"):
        row = getattr(summary, name)
        table.add_row(name, f"{row['mflops']:.2f}", f"{row['params_m']:.3f}", f"{row['acc1']:.2f}",
                      f"{row['acc5']:.2f}", f"{row['loss']:.3f}")
    out.print(table)
    out.print(f"run written to {summary.run_dir} ({summary.seconds:.0f} s, {summary.images_per_second:,.0f} images/s)")
