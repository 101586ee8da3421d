"""The data side of AutoSpace (evolving a search space): candidate blocks, the universe they
come from, each stage's population with its fitness, tournament selection, mutation, and
the search space the fittest candidates make.

A candidate block is one inverted-residual block setting of a stage: (kernel size, expand
ratio, squeeze-excite on/off, activation). The fitness that ranks them comes from the
weight a mixed layer learns for each (``anas.autospace.evolve``); this module only keeps
score, and is pure (numpy random generators passed in, no torch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from itertools import product

import numpy as np

from anas.errors import AnasError
from anas.space.arch import largest_arch
from anas.space.cost import arch_costs, mflops_range
from anas.space.search_space import ACTIVATIONS, SearchSpace, Stage, stage_input_sizes

DEFAULT_KERNELS = (3, 5, 7)
DEFAULT_EXPANDS = (1.0, 2.0, 3.0, 4.0, 6.0)
DEFAULT_SE = (False, True)
DEFAULT_ACTIVATIONS = ("relu", "swish")
FIELDS = ("kernel", "expand", "se", "activation")
NEUTRAL_FITNESS = 1.0  # an even share of a mixed layer


@dataclass(frozen=True, order=True)
class Block:
    """One candidate block of a stage."""

    kernel: int
    expand: float
    se: bool
    activation: str

    @property
    def label(self) -> str:
        return f"k{self.kernel} e{self.expand:g} {'se' if self.se else 'no-se'} {self.activation}"

    def to_dict(self) -> dict:
        return {"kernel": self.kernel, "expand": self.expand, "se": self.se, "activation": self.activation}

    @classmethod
    def from_dict(cls, data: dict) -> Block:
        return cls(int(data["kernel"]), float(data["expand"]), bool(data["se"]), str(data["activation"]))


@dataclass(frozen=True)
class Universe:
    """The values each field of a candidate block may take."""

    kernels: tuple[int, ...] = DEFAULT_KERNELS
    expands: tuple[float, ...] = DEFAULT_EXPANDS
    se: tuple[bool, ...] = DEFAULT_SE
    activations: tuple[str, ...] = DEFAULT_ACTIVATIONS

    def __post_init__(self):
        for name, values in (("kernels", self.kernels), ("expands", self.expands), ("se", self.se),
                             ("activations", self.activations)):
            if not values:
                raise AnasError(f"the universe's --{name} is empty: give at least one value")
        bad_kernel = [k for k in self.kernels if k < 1 or k % 2 == 0]
        if bad_kernel:
            raise AnasError(f"--kernels: kernel sizes must be odd and positive, got {bad_kernel[0]}")
        if any(not 0 < e <= 64 for e in self.expands):
            raise AnasError(f"--expands: expand ratios must be in (0, 64], got {list(self.expands)}")
        unknown = [a for a in self.activations if a not in ACTIVATIONS]
        if unknown:
            raise AnasError(f"--activations: unknown activation {unknown[0]!r} (known: {', '.join(ACTIVATIONS)})")

    def stage_blocks(self, max_kernel: int) -> list[Block]:
        """Every block of the universe whose kernel fits a stage's input of ``max_kernel`` pixels."""
        kernels = [k for k in self.kernels if k <= max_kernel]
        return [Block(k, float(e), s, a) for k, e, s, a in product(kernels, self.expands, self.se, self.activations)]

    def cheapest(self) -> Block:
        """The block of least MFLOPs: smallest kernel and expand ratio, no SE when allowed."""
        return Block(min(self.kernels), float(min(self.expands)), min(self.se), self.activations[0])


def reference_blocks(stage: Stage) -> list[Block]:
    """The blocks a written stage can run: its kernel sizes with its expand ratios."""
    return [Block(k, float(e), stage.se, stage.activation) for k in stage.kernel_sizes for e in stage.expand_ratios]


@dataclass
class Member:
    """A candidate in a population: its fitness (None until first scored) and whether it
    belongs to the reference (the space evolution started from; never replaced)."""

    block: Block
    reference: bool = False
    fitness: float | None = None
    born: int = 0

    def to_dict(self) -> dict:
        return {**self.block.to_dict(), "reference": self.reference, "fitness": self.fitness, "born": self.born}

    @classmethod
    def from_dict(cls, data: dict) -> Member:
        return cls(Block.from_dict(data), bool(data["reference"]), data["fitness"], int(data["born"]))


@dataclass
class Population:
    """The candidates of one stage and the blocks it may draw new ones from."""

    stage: str
    members: list[Member]
    allowed: list[Block] = field(repr=False)

    def blocks(self) -> list[Block]:
        return [m.block for m in self.members]

    def draw(self, count: int, tournament: int, rng: np.random.Generator) -> list[Member]:
        """``count`` distinct members for a mixed layer: candidates never scored first (in
        random order), then tournament winners (the fittest of ``tournament`` drawn at random)."""
        pool = list(self.members)
        drawn = []
        for _ in range(min(count, len(pool))):
            fresh = [m for m in pool if m.fitness is None]
            if fresh:
                winner = fresh[rng.integers(len(fresh))]
            else:
                entrants = rng.choice(len(pool), size=min(tournament, len(pool)), replace=False)
                winner = max((pool[i] for i in entrants), key=lambda m: m.fitness)
            pool.remove(winner)
            drawn.append(winner)
        return drawn

    def score(self, drawn: list[Member], weights: np.ndarray, momentum: float) -> None:
        """Move each drawn member's fitness toward ``len(drawn) * weight`` (1 = an even share of
        the mixed layer): an exponential moving average that starts from 1, so that one lucky
        draw among weak rivals does not put a newcomer on top."""
        for member, weight in zip(drawn, weights):
            previous = NEUTRAL_FITNESS if member.fitness is None else member.fitness
            member.fitness = momentum * previous + (1 - momentum) * float(len(drawn) * weight)

    def mutate(self, children: int, tournament: int, generation: int, rng: np.random.Generator) -> None:
        """Add up to ``children`` new members, each a tournament winner with one field
        changed, in place of the weakest scored members that are not references."""
        for _ in range(children):
            replaceable = [m for m in self.members if not m.reference and m.fitness is not None]
            scored = [m for m in self.members if m.fitness is not None]
            if not replaceable or not scored:
                break
            child = self._child(scored, tournament, rng)
            if child is None:
                break
            self.members.remove(min(replaceable, key=lambda m: m.fitness))
            self.members.append(Member(child, born=generation))

    def _child(self, scored: list[Member], tournament: int, rng: np.random.Generator) -> Block | None:
        present = set(self.blocks())
        entrants = rng.choice(len(scored), size=min(tournament, len(scored)), replace=False)
        parent = max((scored[i] for i in entrants), key=lambda m: m.fitness).block
        neighbours = [b for b in self.allowed if b not in present and _differences(b, parent) == 1]
        if not neighbours:  # every neighbour is present: any block not yet in the population
            neighbours = [b for b in self.allowed if b not in present]
        return neighbours[rng.integers(len(neighbours))] if neighbours else None

    def ranked(self) -> list[Member]:
        """Scored members, fittest first (ties: the cheaper-looking block, by its fields)."""
        scored = [m for m in self.members if m.fitness is not None]
        return sorted(scored, key=lambda m: (-m.fitness, m.block))

    def to_dict(self) -> dict:
        return {"stage": self.stage, "members": [m.to_dict() for m in self.members]}


def _differences(a: Block, b: Block) -> int:
    return sum(getattr(a, name) != getattr(b, name) for name in FIELDS)


def initial_populations(space: SearchSpace, universes: list[list[Block]], size: int,
                        rng: np.random.Generator) -> list[Population]:
    """Per stage: the reference blocks, then distinct random blocks of the stage's universe
    (``universes``, from :func:`stage_universes`) up to ``size`` members."""
    populations = []
    for stage, allowed in zip(space.stages, universes):
        references = reference_blocks(stage)
        if size <= len(references):
            raise AnasError(f"--population {size} leaves no room beside stage {stage.name}'s {len(references)} "
                            f"reference blocks: use at least {len(references) + 1}")
        others = [b for b in allowed if b not in references]
        order = rng.permutation(len(others))[: size - len(references)]
        members = [Member(b, reference=True) for b in references] + [Member(others[j]) for j in sorted(order)]
        populations.append(Population(stage.name, members, allowed))
    return populations


def stage_universes(space: SearchSpace, universe: Universe) -> list[list[Block]]:
    """Per stage, the universe's blocks whose kernel fits the stage's input; a stage left
    with none is an error."""
    universes = []
    for stage, sizes in zip(space.stages, stage_input_sizes(space)):
        size = max(sizes)  # at the largest resolution
        allowed = universe.stage_blocks(size)
        if not allowed:
            raise AnasError(f"the universe leaves stage {stage.name} no candidate: its input is {size}x{size} at "
                            f"resolution {max(space.resolutions)} and every --kernels value "
                            f"({', '.join(map(str, universe.kernels))}) is larger")
        universes.append(allowed)
    return universes


# ----------------------------------------------------------------------------------------
# From the fittest candidates to a search space
# ----------------------------------------------------------------------------------------


def stage_from_blocks(stage: Stage, blocks: list[Block]) -> Stage:
    """``stage`` with the choices of ``blocks``: one SE setting and one activation per stage
    (the first block's), the kernel sizes and expand ratios of those blocks that share them."""
    first = blocks[0]
    same = [b for b in blocks if b.se == first.se and b.activation == first.activation]
    expands = sorted({b.expand for b in same})
    return replace(stage, kernel_sizes=tuple(sorted({b.kernel for b in same})),
                   expand_ratios=tuple(int(e) if e == int(e) else e for e in expands), se=first.se,
                   activation=first.activation)


def space_from_blocks(space: SearchSpace, blocks: list[list[Block]], name: str) -> SearchSpace:
    stages = tuple(stage_from_blocks(stage, chosen) for stage, chosen in zip(space.stages, blocks))
    return replace(space, name=name, stages=stages, models={})


def largest_mflops(space: SearchSpace) -> float:
    return arch_costs(space, largest_arch(space))[0]


def least_possible_mflops(space: SearchSpace, universe: Universe) -> float:
    """MFLOPs of the smallest subnet any space evolved from ``space`` can hold: its
    smallest widths, depths and resolution with the universe's cheapest block everywhere."""
    cheap = space_from_blocks(space, [[universe.cheapest()]] * space.num_stages, space.name)
    return mflops_range(cheap)[0]


def check_budget(space: SearchSpace, universe: Universe, max_flops: float | None) -> None:
    if max_flops is None:
        return
    least = least_possible_mflops(space, universe)
    if max_flops < least:
        raise AnasError(f"--max-flops {max_flops:g} is below {least:.3f} MFLOPs, the smallest subnet a space "
                        f"evolved from {space.name} with this universe can hold")


@dataclass(frozen=True)
class Evolved:
    """The evolved space, the blocks each stage took (fittest first) and what the budget removed."""

    space: SearchSpace
    blocks: list[list[Block]]
    trimmed: list[str]


def evolved_space(source: SearchSpace, populations: list[Population], keep: int, name: str,
                  max_flops: float | None = None) -> Evolved:
    """Per stage the ``keep`` fittest candidates (sharing the fittest one's SE setting and
    activation) become the stage's choices.

    With ``max_flops``, while the largest subnet is over budget, one move at a time: a
    stage takes the fittest blocks whose combination (its largest kernel and expand ratio)
    costs less than its current one (when no scored candidate is left below that cost,
    the universe's blocks, the costliest first); once no stage can get cheaper, the
    largest resolution, width or depth choice of one setting goes. Of the possible moves,
    the one that fits the budget with the most MFLOPs left is taken, else the one that
    lowers the largest subnet most."""
    costs = _StageCosts(source)
    stages = [_StageChoice(i, [m.block for m in p.ranked()], p.allowed, math.inf) for i, p in enumerate(populations)]
    trimmed: list[str] = []
    space = source
    while True:
        chosen = [stage.chosen(keep, costs) for stage in stages]
        space = space_from_blocks(space, chosen, name)
        if max_flops is None or largest_mflops(space) <= max_flops:
            return Evolved(space, chosen, trimmed)
        moves = _block_moves(space, stages, chosen, keep, costs) or _choice_moves(space)
        if not moves:  # unreachable after check_budget: the least possible subnet fits
            raise AnasError("no evolved space fits --max-flops")
        fitting = [move for move in moves if move.mflops <= max_flops]
        move = max(fitting, key=lambda m: m.mflops) if fitting else min(moves, key=lambda m: m.mflops)
        trimmed += move.dropped
        stages, space = move.stages or stages, move.space or space


class _StageCosts:
    """MFLOPs of ``source``'s largest subnet when a stage holds given blocks: what the
    blocks' largest kernel, largest expand ratio and SE setting cost (cached on those)."""

    def __init__(self, source: SearchSpace):
        self.source = source
        self.cache: dict[tuple, float] = {}

    def __call__(self, index: int, blocks: list[Block]) -> float:
        kernel, expand, se = max(b.kernel for b in blocks), max(b.expand for b in blocks), blocks[0].se
        key = (index, kernel, expand, se)
        if key not in self.cache:
            self.cache[key] = candidate_mflops(self.source, index, Block(kernel, expand, se, blocks[0].activation))
        return self.cache[key]


@dataclass(frozen=True)
class _StageChoice:
    """A stage's blocks in order of preference, and the cost its choice must stay below."""

    index: int
    ranking: list[Block]
    universe: list[Block]
    cap: float

    def chosen(self, keep: int, costs: _StageCosts) -> list[Block]:
        """The first ``keep`` blocks of the ranking that share the first one's SE setting and
        activation and together cost less than ``cap``."""
        chosen: list[Block] = []
        for block in self.ranking:
            same = not chosen or (block.se, block.activation) == (chosen[0].se, chosen[0].activation)
            if same and costs(self.index, [*chosen, block]) < self.cap:
                chosen.append(block)
            if len(chosen) == keep:
                break
        return chosen

    def cheaper(self, chosen: list[Block], costs: _StageCosts) -> _StageChoice | None:
        """The same stage held below what ``chosen`` costs; None when no block is cheaper."""
        cap = costs(self.index, chosen)
        ranking = [b for b in self.ranking if costs(self.index, [b]) < cap]
        if not ranking:  # no scored candidate left: the universe's, costliest first
            ranking = sorted((b for b in self.universe if costs(self.index, [b]) < cap),
                             key=lambda b: (-costs(self.index, [b]), b))
        return _StageChoice(self.index, ranking, self.universe, cap) if ranking else None


@dataclass(frozen=True)
class _Move:
    """A way to lower the largest subnet: cheaper stage choices or a smaller space."""

    mflops: float
    dropped: list[str]
    stages: list[_StageChoice] | None = None
    space: SearchSpace | None = None


def candidate_mflops(space: SearchSpace, index: int, block: Block) -> float:
    """MFLOPs of the largest subnet of ``space`` when stage ``index`` holds only ``block``."""
    stage = stage_from_blocks(space.stages[index], [block])
    stages = tuple(stage if i == index else s for i, s in enumerate(space.stages))
    return largest_mflops(replace(space, stages=stages, models={}))


def _block_moves(space: SearchSpace, stages: list[_StageChoice], chosen: list[list[Block]], keep: int,
                 costs: _StageCosts) -> list[_Move]:
    """Per stage that can get cheaper: the space with that stage's next choice."""
    moves = []
    for i, stage in enumerate(stages):
        cheaper = stage.cheaper(chosen[i], costs)
        if cheaper is None:
            continue
        blocks = cheaper.chosen(keep, costs)
        trial = space_from_blocks(space, [blocks if j == i else c for j, c in enumerate(chosen)], space.name)
        dropped = [f"{space.stages[i].name}: {b.label}" for b in chosen[i] if b not in blocks]
        stages_after = [cheaper if j == i else s for j, s in enumerate(stages)]
        moves.append(_Move(largest_mflops(trial), dropped, stages=stages_after))
    return moves


def _choice_moves(space: SearchSpace) -> list[_Move]:
    """Each way to drop the largest resolution, width or depth choice of one setting."""
    trials = []
    if len(space.resolutions) > 1:
        trials.append(("resolution", replace(space, resolutions=space.resolutions[:-1])))
    first = space.first_conv
    if len(first.widths) > 1:
        trials.append(("first_conv width", replace(space, first_conv=replace(first, widths=first.widths[:-1]))))
    for i, stage in enumerate(space.stages):
        for setting in ("widths", "depths"):
            if len(getattr(stage, setting)) > 1:
                shorter = replace(stage, **{setting: getattr(stage, setting)[:-1]})
                stages = tuple(shorter if j == i else s for j, s in enumerate(space.stages))
                trials.append((f"{stage.name} {setting[:-1]}", replace(space, stages=stages)))
    if len(space.head.widths) > 1:
        trials.append(("head width", replace(space, head=replace(space.head, widths=space.head.widths[:-1]))))
    return [_Move(largest_mflops(trial), [f"largest {label}"], space=trial) for label, trial in trials]
