"""NSGA-II (pymoo) on integer genomes: predicted accuracy against MFLOPs (and latency)."""

from __future__ import annotations

import numpy as np

from anas.search.problem import SearchProblem
from anas.search.strategies.strategy import register_strategy


@register_strategy("nsga2")
def run_nsga2(problem: SearchProblem, budget: int, seed: int, population: int = 256) -> None:
    """NSGA-II from pymoo on integer genes, with band sampling and band repair."""
    from pymoo.algorithms.moo.nsga2 import NSGA2, binary_tournament
    from pymoo.core.duplicate import DuplicateElimination
    from pymoo.core.mating import Mating
    from pymoo.core.problem import Problem
    from pymoo.core.repair import Repair
    from pymoo.core.sampling import Sampling
    from pymoo.operators.crossover.sbx import SBX
    from pymoo.operators.mutation.pm import PM
    from pymoo.operators.repair.rounding import RoundingRepair
    from pymoo.operators.selection.tournament import TournamentSelection
    from pymoo.optimize import minimize

    rng = np.random.default_rng(seed)
    population = max(4, min(population, budget // 4))
    n_constraints = 2 + (2 if problem.params else 0) + (2 if problem.latency else 0)
    n_objectives = 3 if problem.latency_objective else 2

    class _Problem(Problem):
        def __init__(self):
            super().__init__(n_var=problem.genome.length, n_obj=n_objectives, n_ieq_constr=n_constraints,
                             xl=np.zeros(problem.genome.length), xu=(problem.genome.sizes - 1).astype(float), vtype=int)

        def _evaluate(self, x, out, *args, **kwargs):
            result = problem.evaluate(np.rint(x).astype(np.int64))
            objectives = [-result.pred_acc1, result.mflops]
            constraints = [problem.flops.lo - result.mflops, result.mflops - problem.flops.hi]
            if problem.params is not None:
                constraints += [problem.params.lo - result.params_m, result.params_m - problem.params.hi]
            if problem.latency is not None:
                latency = np.nan_to_num(result.latency_ms, nan=1e9)
                constraints += [problem.latency.lo - latency, latency - problem.latency.hi]
            if problem.latency_objective:  # untimed (out-of-band) subnets rank last
                objectives.append(np.nan_to_num(result.latency_ms, nan=1e9))
            out["F"] = np.stack(objectives, axis=1)
            out["G"] = np.stack(constraints, axis=1)

    class _BandSampling(Sampling):
        def _do(self, _problem, n_samples, **kwargs):
            return problem.sample_in_band(n_samples, rng).astype(float)

    class _KeyDuplicates(DuplicateElimination):
        """Duplicates by genome key: linear time instead of pymoo's pairwise distances."""

        def _do(self, pop, other, is_duplicate):
            keys = problem.genome.keys(np.rint(pop.get("X")).astype(np.int64))
            if other is None:
                first = np.unique(keys, return_index=True)[1]
                duplicate = np.ones(len(keys), dtype=bool)
                duplicate[first] = False
            else:
                duplicate = np.isin(keys, problem.genome.keys(np.rint(other.get("X")).astype(np.int64)))
            is_duplicate |= duplicate
            return is_duplicate

    class _BandRepair(Repair):
        def _do(self, _problem, x, **kwargs):
            genes = np.clip(np.rint(x).astype(np.int64), 0, problem.genome.sizes - 1)
            return problem.repair(genes, rng).astype(float)

    crossover = SBX(prob=0.9, eta=15, vtype=float, repair=RoundingRepair())
    mutation = PM(eta=20, vtype=float, repair=RoundingRepair())
    # In a narrow band repaired offspring often repeat known subnets: a few mating rounds
    # per generation are enough (pymoo's default tries up to 100).
    mating = Mating(TournamentSelection(func_comp=binary_tournament), crossover, mutation, repair=_BandRepair(),
                    eliminate_duplicates=_KeyDuplicates(), n_max_iterations=3)
    algorithm = NSGA2(pop_size=population, sampling=_BandSampling(), crossover=crossover, mutation=mutation,
                      repair=_BandRepair(), eliminate_duplicates=_KeyDuplicates(), mating=mating)
    minimize(_Problem(), algorithm, ("n_eval", budget), seed=seed, verbose=False)
