"""AutoSpace (Zhou et al., ICCV 2021): evolve a search space from the data.

Per stage a population of candidate blocks (:mod:`anas.space.evolve`) evolves. Each
generation:

1. every stage draws ``candidates`` members (never-scored ones first, then tournament
   winners) into a mixed layer ``y = sum_k softmax(a)_k block_k(x)``; the stage's blocks
   share its logits ``a``;
2. a network of mixed stages (the source space's largest widths, depths and resolution)
   trains for ``steps`` steps from scratch on the data: SGD on the weights, Adam on the
   logits, with the loss ``cross-entropy + flops_penalty * sum_stages sum_k softmax(a)_k
   dMFLOPs_k / MFLOPs_ref`` (``dMFLOPs_k``: what candidate ``k`` adds to the largest
   subnet over its stage's cheapest candidate; ``MFLOPs_ref``: the source space's largest);
3. each drawn member's fitness moves toward ``candidates * softmax(a)_k`` (1 is an even
   share), an exponential moving average over generations;
4. from the second generation on, before drawing, each stage replaces its weakest scored
   members (never a reference block: the source space's own) by mutants of tournament
   winners, each with one field changed.

At the end, the ``keep`` fittest candidates of each stage become that stage's choices,
within ``max_flops`` for the largest subnet (:func:`anas.space.evolve.evolved_space`).
The folder holds ``state.json`` (after every generation: an interrupted evolution resumes
there), ``evolution.csv`` and the space YAML. Under ``torchrun`` the mixed network trains
data parallel (gradients averaged over ranks, so every rank learns the same logits).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from anas.checks import check_seed
from anas.device import resolve_device
from anas.errors import AnasError
from anas.io import atomic_write, atomic_write_json, read_json
from anas.nn.static import ClassifierHead, ConvBNAct, InvertedResidual, Shortcut, initialize
from anas.progress import progress_bars
from anas.space.arch import largest_arch
from anas.space.evolve import (
    Block,
    Evolved,
    Member,
    Population,
    Universe,
    candidate_mflops,
    check_budget,
    evolved_space,
    initial_populations,
    largest_mflops,
    stage_universes,
)
from anas.space.schema import load_space, space_from_dict, space_to_dict, write_space
from anas.space.space import SearchSpace
from anas.train.config import option
from anas.train.data import DATASETS, DataConfig, DataSplits, load_data, make_loader
from anas.train.distributed import (
    DistContext,
    all_reduce_gradients,
    broadcast_parameters,
    init_distributed,
    process_group,
)

STATE_FILE = "state.json"
CSV_FILE = "evolution.csv"
STATE_FORMAT = "anas-space-evolution"
RESUMABLE_CHANGES = {"generations", "device", "max_flops", "keep", "name"}  # may differ on resume


@dataclass
class EvolveConfig:
    """Every option of ``anas space evolve`` (the command adds ``--dir``, ``--out``, ``--fresh``)."""

    space: str = option("tiny", "Space to start from (its blocks are the reference); built-in or YAML.", short="-s")
    data: str = option("digits", f"Dataset: {' | '.join(DATASETS)}.")
    data_dir: str | None = option(None, "Folder of cifar files or of train/ and val/ (imagefolder).")
    generations: int = option(10, "Generations of evolution.")
    population: int = option(12, "Candidate blocks per stage (the reference blocks included).")
    candidates: int = option(4, "Candidates per mixed layer each generation.")
    steps: int = option(200, "Training steps of the mixed network per generation.")
    batch_size: int = option(32, "Images per step and process.", short="-b")
    lr: float = option(0.05, "SGD learning rate of the mixed network's weights (cosine over the steps).")
    arch_lr: float = option(0.01, "Adam learning rate of the mixed layers' logits.")
    flops_penalty: float = option(0.0, "lambda of the MFLOPs penalty in the mixed network's loss (per the source "
                                       "space's largest MFLOPs; --max-flops holds the budget either way).")
    fitness_momentum: float = option(0.5, "Fitness <- m fitness + (1 - m) share, each time a candidate is scored.")
    tournament: int = option(3, "Entrants per tournament (drawing and picking parents).")
    children: int = option(2, "Mutants per stage and generation (replacing the weakest non-reference members).")
    keep: int = option(2, "Fittest candidates per stage that become its choices.")
    max_flops: float | None = option(None, "Budget (MFLOPs) of the evolved space's largest subnet.",
                                     default_text="none")
    kernels: str = option("3,5,7", "Universe: kernel sizes (comma-separated, odd).")
    expands: str = option("1,2,3,4,6", "Universe: expand ratios (comma-separated).")
    se: str = option("off,on", "Universe: squeeze-excite settings (off, on).")
    activations: str = option("relu,swish", "Universe: activations (relu, swish, hswish).")
    name: str | None = option(None, "Name of the evolved space.", default_text="SPACE-evolved")
    seed: int = option(0, "Seed of the evolution and of the mixed networks.")
    device: str = option("auto", "cpu, cuda[:N] or auto.")

    def __post_init__(self):
        checks = [
            (self.generations >= 1, "--generations must be at least 1"),
            (self.candidates >= 2, "--candidates must be at least 2 (a mixed layer compares them)"),
            (self.population >= self.candidates, "--population must be at least --candidates"),
            (self.steps >= 1, "--steps must be at least 1"),
            (self.batch_size >= 1, "--batch-size must be at least 1"),
            (self.lr > 0 and self.arch_lr > 0, "--lr and --arch-lr must be positive"),
            (0 <= self.flops_penalty < math.inf, "--flops-penalty must be a finite number >= 0"),
            (0 <= self.fitness_momentum < 1, "--fitness-momentum must be in [0, 1)"),
            (self.tournament >= 1, "--tournament must be at least 1"),
            (self.children >= 0, "--children must be at least 0"),
            (self.keep >= 1, "--keep must be at least 1"),
            (self.max_flops is None or self.max_flops > 0, "--max-flops must be positive"),
        ]
        for ok, message in checks:
            if not ok:
                raise AnasError(message)
        check_seed(self.seed)

    def universe(self) -> Universe:
        return Universe(kernels=tuple(_numbers(self.kernels, "--kernels", int)),
                        expands=tuple(_numbers(self.expands, "--expands", float)),
                        se=tuple(_switches(self.se)), activations=tuple(_items(self.activations)))

    def space_name(self, source: SearchSpace) -> str:
        return self.name or f"{source.name}-evolved"

    def default_dir(self) -> Path:
        stem = Path(self.space).stem if self.space.endswith((".yaml", ".yml")) else self.space
        return Path("runs") / f"evolve-{stem}-{self.data}-seed{self.seed}"


def _items(text: str) -> list[str]:
    return [item.strip() for item in str(text).split(",") if item.strip()]


def _numbers(text: str, option_name: str, kind: type) -> list:
    values = []
    for item in _items(text):
        try:
            value = float(item)
        except ValueError:
            raise AnasError(f"{option_name}: {item!r} is not a number") from None
        if kind is int and value != int(value):
            raise AnasError(f"{option_name}: {item!r} is not a whole number")
        values.append(kind(value))
    return sorted(set(values))


def _switches(text: str) -> list[bool]:
    names = {"off": False, "on": True}
    unknown = [item for item in _items(text) if item not in names]
    if unknown:
        raise AnasError(f"--se: {unknown[0]!r} is neither off nor on")
    return sorted({names[item] for item in _items(text)})


# ----------------------------------------------------------------------------------------
# The mixed network
# ----------------------------------------------------------------------------------------


def candidate_block(block: Block, c_in: int, c_out: int, stride: int) -> InvertedResidual:
    """The static network's inverted-residual block for a candidate (the mixed layer uses
    its ``residual`` branch)."""
    return InvertedResidual(c_in, c_out, block.kernel, block.expand, stride, block.se, block.activation)


class MixedLayer(nn.Module):
    """``shortcut(x) + sum_k w_k branch_k(x)``: the candidates' blocks share the layer's
    shortcut (identity, or pooling and a 1x1 conv), so their weighted sum is ``sum_k w_k
    block_k(x)`` with one skip path; ``w`` comes from the stage."""

    def __init__(self, candidates: list[Block], c_in: int, c_out: int, stride: int):
        super().__init__()
        self.blocks = nn.ModuleList(candidate_block(b, c_in, c_out, stride) for b in candidates)
        self.shortcut = Shortcut(c_in, c_out, stride) if stride > 1 or c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + sum(w * block.residual(x) for w, block in zip(weights, self.blocks))


class MixedStage(nn.Module):
    """A stage whose every layer mixes its candidates by ``softmax(logits)``."""

    def __init__(self, candidates: list[Block], c_in: int, c_out: int, depth: int, stride: int):
        super().__init__()
        self.candidates = list(candidates)
        self.logits = nn.Parameter(torch.zeros(len(candidates)))
        self.layers = nn.ModuleList(MixedLayer(candidates, c_in if j == 0 else c_out, c_out, stride if j == 0 else 1)
                                    for j in range(depth))

    def weights(self) -> torch.Tensor:
        return F.softmax(self.logits, dim=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.weights()
        for layer in self.layers:
            x = layer(x, weights)
        return x


class MixedNet(nn.Module):
    """The source space's largest subnet with a :class:`MixedStage` per stage."""

    def __init__(self, space: SearchSpace, candidates: list[list[Block]], num_classes: int):
        super().__init__()
        arch = largest_arch(space)
        first = space.first_conv
        self.first_conv = ConvBNAct(space.in_channels, arch.width[0], first.kernel_size, first.stride,
                                    activation=space.activation)
        stages, channels = [], arch.width[0]
        for i, stage in enumerate(space.stages):
            stages.append(MixedStage(candidates[i], channels, arch.width[i + 1], arch.depth[i], stage.stride))
            channels = arch.width[i + 1]
        self.stages = nn.Sequential(*stages)
        self.head = ClassifierHead(channels, space.head.expand_ratio * channels, arch.width[-1], num_classes,
                                   space.dropout, space.activation)
        blocks = [b for s in stages for layer in s.layers for b in layer.blocks if isinstance(b, InvertedResidual)]
        initialize(self, blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.first_conv(x)))

    def logits(self) -> list[nn.Parameter]:
        return [stage.logits for stage in self.stages]

    def stage_weights(self) -> list[np.ndarray]:
        return [stage.weights().detach().cpu().double().numpy() for stage in self.stages]


@dataclass(frozen=True)
class MixedTraining:
    """How a generation's mixed network trains."""

    steps: int
    lr: float
    arch_lr: float
    flops_penalty: float


def train_mixed(net: MixedNet, batches: Iterator, settings: MixedTraining, flops: list[torch.Tensor],
                ctx: DistContext = DistContext(), on_step: Callable[[], None] | None = None) -> float:
    """Train ``net`` for ``settings.steps`` steps; ``flops[i][k]`` is candidate ``k`` of stage
    ``i``'s share of the penalty. Returns the mean loss of the last quarter of the steps."""
    logits = net.logits()
    weights = [p for p in net.parameters() if all(p is not q for q in logits)]
    weight_opt = torch.optim.SGD(weights, lr=settings.lr, momentum=0.9, nesterov=True, weight_decay=4e-5)
    logit_opt = torch.optim.Adam(logits, lr=settings.arch_lr, betas=(0.5, 0.999), weight_decay=1e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(weight_opt, settings.steps)
    losses = []
    net.train()
    for _ in range(settings.steps):
        images, labels = next(batches)
        loss = F.cross_entropy(net(images), labels)
        if settings.flops_penalty:
            expected = sum((stage.weights() * cost).sum() for stage, cost in zip(net.stages, flops))
            loss = loss + settings.flops_penalty * expected
        weight_opt.zero_grad(set_to_none=True)
        logit_opt.zero_grad(set_to_none=True)
        loss.backward()
        all_reduce_gradients(list(net.parameters()), ctx)
        weight_opt.step()
        logit_opt.step()
        schedule.step()
        losses.append(float(loss.detach()))
        if on_step is not None:
            on_step()
    return float(np.mean(losses[-max(1, len(losses) // 4):]))


def relative_flops(space: SearchSpace, candidates: list[list[Block]]) -> list[np.ndarray]:
    """Per stage, what each candidate adds to the largest subnet over the stage's cheapest,
    in units of the space's largest subnet's MFLOPs."""
    reference = largest_mflops(space)
    result = []
    for i, blocks in enumerate(candidates):
        mflops = np.array([candidate_mflops(space, i, b) for b in blocks])
        result.append((mflops - mflops.min()) / reference)
    return result


Scorer = Callable[[list[list[Block]], int], tuple[list[np.ndarray], float]]
"""Gives a generation's weights: (the drawn blocks of each stage, generation) -> (per stage
the softmax weight of each drawn block, the training loss or NaN)."""


class TrainingScorer:
    """Scores candidates by training a mixed network on the data (the AutoSpace fitness)."""

    def __init__(self, config: EvolveConfig, space: SearchSpace, data: DataSplits, ctx: DistContext,
                 device: torch.device, progress_bar=None):
        self.config, self.space, self.ctx, self.device, self.bar = config, space, ctx, device, progress_bar
        self.train_images, self.num_classes = data.train, data.num_classes
        self.settings = MixedTraining(config.steps, config.lr, config.arch_lr, config.flops_penalty)

    def __call__(self, candidates: list[list[Block]], generation: int) -> tuple[list[np.ndarray], float]:
        torch.manual_seed(self.config.seed * 1_000_003 + generation)
        net = MixedNet(self.space, candidates, self.num_classes).to(self.device)
        broadcast_parameters(net, self.ctx)
        flops = [torch.as_tensor(f, dtype=torch.float32, device=self.device)
                 for f in relative_flops(self.space, candidates)]
        loss = train_mixed(net, self._batches(generation), self.settings, flops, self.ctx,
                           on_step=None if self.bar is None else self.bar.advance)
        return net.stage_weights(), loss

    def _batches(self, generation: int) -> Iterator:
        epoch = 0
        while True:
            loader = make_loader(self.train_images, self.config.batch_size, shuffle=True, seed=self.config.seed,
                                 epoch=generation * 10_000 + epoch, drop_last=True, rank=self.ctx.rank,
                                 world_size=self.ctx.world_size)
            if len(loader) == 0:
                raise AnasError(f"--batch-size {self.config.batch_size} is larger than the "
                                f"{len(self.train_images)} training images")
            for images, labels in loader:
                yield images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)
            epoch += 1


# ----------------------------------------------------------------------------------------
# The evolution and its folder
# ----------------------------------------------------------------------------------------


@dataclass
class Evolution:
    """Where an evolution stands: its populations after ``generation`` generations and the
    rows of ``evolution.csv`` so far."""

    config: EvolveConfig
    source: SearchSpace
    populations: list[Population]
    generation: int = 0
    rows: list[dict] | None = None

    def to_dict(self) -> dict:
        return {"format": STATE_FORMAT, "version": 1, "config": asdict(self.config),
                "source": space_to_dict(self.source), "generation": self.generation,
                "populations": [p.to_dict() for p in self.populations], "rows": self.rows or []}


@dataclass(frozen=True)
class EvolveSummary:
    source: SearchSpace
    evolved: Evolved
    path: Path
    folder: Path
    generations: int
    fitness: list[list[dict]]  # per stage, each member's block, fitness and whether it is a reference

    def to_dict(self) -> dict:
        return {"path": str(self.path), "folder": str(self.folder), "space": self.evolved.space.name,
                "from": self.source.name, "generations": self.generations,
                "largest_mflops": largest_mflops(self.evolved.space),
                "source_largest_mflops": largest_mflops(self.source),
                "trimmed_for_budget": self.evolved.trimmed,
                "stages": [{"stage": s.name, "blocks": [b.label for b in blocks], "population": members}
                           for s, blocks, members in zip(self.evolved.space.stages, self.evolved.blocks, self.fitness)]}


def evolve_space(options: dict, folder: str | Path | None = None, out: str | Path | None = None,
                 fresh: bool = False, progress: bool = True, scorer: Scorer | None = None) -> EvolveSummary | None:
    """Run (or resume) an evolution with ``options`` (``EvolveConfig`` fields; None: default)
    in ``folder``; write the evolved space to ``out``. None on the non-main ranks of a
    distributed job."""
    config = EvolveConfig(**{k: v for k, v in options.items() if v is not None})
    source = load_space(config.space)
    universe = config.universe()
    universes = stage_universes(source, universe)
    check_budget(source, universe, config.max_flops)
    folder = Path(folder) if folder is not None else config.default_dir()
    device = resolve_device(config.device, allow_auto=True)
    ctx = init_distributed(device.type)
    if device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank) if ctx.enabled else device
    with process_group(ctx):
        state = _start_or_resume(config, source, universes, folder, fresh)
        trains = state.generation < config.generations and scorer is None
        data = load_data(DataConfig(name=config.data, data_dir=config.data_dir, resolution=max(source.resolutions),
                                    seed=config.seed)) if trains else None  # bad data fails before any bar shows
        with progress_bars(progress and ctx.is_main) as bars:
            generations = bars.add(f"evolving {source.name}", config.generations, completed=state.generation)
            steps = bars.add("training mixed layers", (config.generations - state.generation) * config.steps)
            if trains:
                scorer = TrainingScorer(config, source, data, ctx, device, steps)
            while state.generation < config.generations:
                _run_generation(state, scorer)
                if ctx.is_main:
                    _save(state, folder)
                generations.advance(note=_best_note(state.populations))
        if not ctx.is_main:
            return None
        name = config.space_name(source)
        evolved = evolved_space(source, state.populations, config.keep, name, config.max_flops)
        path = write_space(evolved.space, Path(out) if out is not None else folder / f"{name}.yaml")
        fitness = [[{"block": m.block.label, "fitness": m.fitness, "reference": m.reference} for m in p.ranked()]
                   for p in state.populations]
        return EvolveSummary(source, evolved, path, folder, state.generation, fitness)


def _run_generation(state: Evolution, scorer: Scorer) -> None:
    config, generation = state.config, state.generation
    rng = np.random.default_rng([config.seed, generation])
    if generation > 0:
        for population in state.populations:
            population.mutate(config.children, config.tournament, generation, rng)
    drawn = [p.draw(config.candidates, config.tournament, rng) for p in state.populations]
    weights, loss = scorer([[m.block for m in members] for members in drawn], generation)
    for population, members, stage_weights in zip(state.populations, drawn, weights):
        population.score(members, np.asarray(stage_weights), config.fitness_momentum)
    state.rows = (state.rows or []) + _rows(state.populations, drawn, weights, generation, loss)
    state.generation += 1


def _rows(populations: list[Population], drawn: list[list[Member]], weights: list[np.ndarray], generation: int,
          loss: float) -> list[dict]:
    rows = []
    for population, members, stage_weights in zip(populations, drawn, weights):
        share = {id(m): float(w) for m, w in zip(members, stage_weights)}
        for member in population.members:
            rows.append({"generation": generation, "stage": population.stage, "block": member.block.label,
                         **member.block.to_dict(), "reference": member.reference, "born": member.born,
                         "weight": share.get(id(member), float("nan")), "fitness": member.fitness,
                         "loss": loss})
    return rows


def _best_note(populations: list[Population]) -> str:
    return "  ".join(f"{p.stage} {p.ranked()[0].fitness:.2f}" for p in populations if p.ranked())


def _start_or_resume(config: EvolveConfig, source: SearchSpace, universes: list[list[Block]], folder: Path,
                     fresh: bool) -> Evolution:
    path = folder / STATE_FILE
    if fresh or not path.exists():
        rng = np.random.default_rng([config.seed, 1 << 20])
        return Evolution(config, source, initial_populations(source, universes, config.population, rng))
    data = read_json(path, "evolution state")
    try:
        if data.get("format") != STATE_FORMAT:
            raise ValueError(f"format is {data.get('format')!r}")
        saved = data["config"]
        changed = [f.name for f in fields(EvolveConfig)
                   if f.name not in RESUMABLE_CHANGES and saved.get(f.name) != getattr(config, f.name)]
        populations = [Population(p["stage"], [Member.from_dict(m) for m in p["members"]], allowed)
                       for p, allowed in zip(data["populations"], universes)]
        generation, rows, saved_source = int(data["generation"]), list(data["rows"]), data["source"]
        stages_saved = len(data["populations"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise AnasError(f"{path} is corrupt or not an anas evolution state ({exc}): pass --fresh to start over") \
            from None
    if changed:
        raise AnasError(f"{folder} holds an evolution with other options ({', '.join(changed)}): pass --fresh to "
                        f"replace it, or another --dir")
    if saved_source != space_to_dict(source) or stages_saved != source.num_stages:
        raise AnasError(f"{folder} evolved another version of space {config.space}: pass --fresh to start over, "
                        f"or another --dir")
    return Evolution(config, source, populations, generation, rows)


def evolution_source(space_file: Path) -> SearchSpace | None:
    """The space that the evolution whose folder holds ``space_file`` started from; None
    when the file is not in an evolution's folder."""
    state = space_file.parent / STATE_FILE
    if not space_file.is_file() or not state.is_file():
        return None
    source = read_json(state, "evolution state").get("source")
    return space_from_dict(source, str(state)) if isinstance(source, dict) else None


def _save(state: Evolution, folder: Path) -> None:
    """``evolution.csv``, then ``state.json`` (the point a resumed evolution starts from)."""
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / CSV_FILE, lambda tmp: pd.DataFrame(state.rows).to_csv(tmp, index=False))
    atomic_write_json(folder / STATE_FILE, state.to_dict())
