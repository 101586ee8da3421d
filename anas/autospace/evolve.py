"""AutoSpace (Zhou et al., ICCV 2021): evolve a search space from the data.

Per stage a population of candidate blocks (:mod:`anas.autospace.population`) evolves. Each
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
within ``max_flops`` for the largest subnet (:func:`anas.autospace.population.evolved_space`).
The folder holds ``state.json`` (after every generation: an interrupted evolution resumes
there), ``evolution.csv`` and the space YAML. Under ``torchrun`` the mixed network trains
data parallel (gradients averaged over ranks, so every rank learns the same logits).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from anas.autospace.mixed_net import MixedNet, MixedTraining, relative_flops, train_mixed
from anas.autospace.population import (
    Block,
    Evolved,
    Member,
    Population,
    Universe,
    check_budget,
    evolved_space,
    initial_populations,
    largest_mflops,
    stage_universes,
)
from anas.checks import check_at_least, check_seed
from anas.data import DATASETS, DataConfig, DataSplits, load_data, make_loader
from anas.errors import AnasError
from anas.io import atomic_write, atomic_write_json, read_json
from anas.options import HostsPlugins, build, check_unchanged, option
from anas.progress import progress_bars
from anas.runtime.device import DeviceOption, resolve_device
from anas.runtime.distributed import DistContext, broadcast_parameters, init_distributed, process_group
from anas.space.schema import load_space, space_from_dict, space_to_dict, write_space
from anas.space.search_space import SearchSpace

STATE_FILE = "state.json"
CSV_FILE = "evolution.csv"
STATE_FORMAT = "anas-space-evolution"


def _check_candidates(candidates: int, flag: str) -> None:
    check_at_least(candidates, 2, flag, " (a mixed layer compares them)")


def _fixed(default: Any, help: str, **info: Any) -> Any:
    """An option an evolution keeps: continuing it with another value is refused."""
    return option(default, help, fixed_on_resume=True, **info)


@dataclass(frozen=True, kw_only=True)
class EvolveConfig(DeviceOption, HostsPlugins):
    """Every option of ``anas space evolve`` but the command line's own (``--dir``,
    ``--out``, ``--fresh``). An interrupted evolution continues only with the same options,
    except its length (``--generations``), device and what is derived from the populations
    at the end (``--max-flops``, ``--keep``, ``--name``)."""

    space: str = _fixed("tiny", "Space to start from (its blocks are the reference); built-in or YAML.", short="-s")
    data: str = _fixed("digits", "Dataset.", choices=DATASETS)
    generations: int = option(10, "Generations of evolution.", min=1)
    population: int = _fixed(12, "Candidate blocks per stage (the reference blocks included).", min=1)
    candidates: int = _fixed(4, "Candidates per mixed layer each generation.", check=_check_candidates)
    steps: int = _fixed(200, "Training steps of the mixed network per generation.", min=1)
    batch_size: int = _fixed(32, "Images per step and process.", short="-b", min=1)
    lr: float = _fixed(0.05, "SGD learning rate of the mixed network's weights (cosine over the steps).", above=0,
                       finite=True)
    arch_lr: float = _fixed(0.01, "Adam learning rate of the mixed layers' logits.", above=0, finite=True)
    flops_penalty: float = _fixed(0.0, "lambda of the MFLOPs penalty in the mixed network's loss (per the source "
                                       "space's largest MFLOPs; --max-flops holds the budget either way).", min=0,
                                  finite=True)
    fitness_momentum: float = _fixed(0.5, "Fitness <- m fitness + (1 - m) share, each time a candidate is scored.",
                                     min=0, below=1)
    tournament: int = _fixed(3, "Entrants per tournament (drawing and picking parents).", min=1)
    children: int = _fixed(2, "Mutants per stage and generation (replacing the weakest non-reference members).",
                           min=0)
    keep: int = option(2, "Fittest candidates per stage that become its choices.", min=1)
    max_flops: float | None = option(None, "Budget (MFLOPs) of the evolved space's largest subnet.",
                                     default_text="none", above=0)
    kernels: str = _fixed("3,5,7", "Universe: kernel sizes (comma-separated, odd).")
    expands: str = _fixed("1,2,3,4,6", "Universe: expand ratios (comma-separated).")
    se: str = _fixed("off,on", "Universe: squeeze-excite settings (off, on).")
    activations: str = _fixed("relu,swish", "Universe: activations (relu, swish, hswish).")
    name: str | None = option(None, "Name of the evolved space.", default_text="SPACE-evolved")
    seed: int = _fixed(0, "Seed of the evolution and of the mixed networks.", check=check_seed)
    plugins: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if self.population < self.candidates:
            raise AnasError("--population must be at least --candidates")

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
# Scoring candidates by training mixed networks
# ----------------------------------------------------------------------------------------


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
        return {"format": STATE_FORMAT, "version": 1, "config": self.config.to_dict(),
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
    config = build(EvolveConfig, options)
    source = load_space(config.space)
    universe = config.universe()
    universes = stage_universes(source, universe)
    check_budget(source, universe, config.max_flops)
    folder = Path(folder) if folder is not None else config.default_dir()
    device = resolve_device(config.device)
    ctx = init_distributed(device.type)
    device = ctx.device_for(device)
    with process_group(ctx):
        state = _start_or_resume(config, source, universes, folder, fresh)
        trains = state.generation < config.generations and scorer is None
        data = load_data(DataConfig(config.data, config.options_for("data"), max(source.resolutions),
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
        if not isinstance(saved, dict):
            raise ValueError("its config is not a mapping")
        populations = [Population(p["stage"], [Member.from_dict(m) for m in p["members"]], allowed)
                       for p, allowed in zip(data["populations"], universes)]
        generation, rows, saved_source = int(data["generation"]), list(data["rows"]), data["source"]
        stages_saved = len(data["populations"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise AnasError(f"{path} is corrupt or not an anas evolution state ({exc}): pass --fresh to start over") \
            from None
    check_unchanged(EvolveConfig, saved, config.to_dict(), f"the evolution in {folder}",
                    "pass --fresh to replace it, or another --dir")
    if saved_source != space_to_dict(source) or stages_saved != source.num_stages:
        raise AnasError(f"{folder} evolved another version of space {config.space}: pass --fresh to start over, "
                        f"or another --dir")
    return Evolution(config, source, populations, generation, rows)


@dataclass(frozen=True, kw_only=True)
class ShowOptions:
    """Every option of ``anas space show``."""

    space: str = option(help="Space to show: built-in name or YAML file.", argument=True)
    against: str | None = option(None, "Space to compare with.",
                                 default_text="the space an evolution in the file's folder started from")


def spaces_to_compare(options: ShowOptions) -> tuple[SearchSpace, SearchSpace | None]:
    """The space ``anas space show`` shows and the one it compares it with (None: none)."""
    new = load_space(options.space)
    old = load_space(options.against) if options.against is not None else evolution_source(Path(options.space))
    return new, old


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
