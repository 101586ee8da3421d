"""The evolutionary search that produced the published AttentiveNAS models (REFERENCE
section 6)."""

from __future__ import annotations

import numpy as np

from anas.search.problem import Evaluated, SearchProblem
from anas.search.strategies.strategy import register_strategy


@register_strategy("evolution")
def run_evolution(problem: SearchProblem, budget: int, seed: int, population: int = 512,
                  mutations: int = 128, crossovers: int = 128, mutate_prob: float = 0.2,
                  crossover_prob: float = 0.5, bucket_mflops: float = 10.0) -> None:
    """The AttentiveNAS search: a parent population, per iteration ``mutations`` mutants
    (each gene resampled with ``mutate_prob``) and ``crossovers`` children (each gene from
    either parent with ``crossover_prob``); the next parents are the best per
    ``bucket_mflops`` bucket (round robin over buckets). Defaults: 512 + 20 x 256 calls."""
    rng = np.random.default_rng(seed)
    if budget < population + mutations + crossovers:
        population = max(2, budget // 2)
        mutations = crossovers = max(1, (budget - population) // 2)
    parents = problem.sample_in_band(population, rng)
    problem.evaluate(parents)
    while problem.calls + mutations + crossovers <= budget:
        mutants = parents[rng.integers(0, len(parents), mutations)].copy()
        resample = rng.random(mutants.shape) < mutate_prob
        mutants[resample] = problem.genome.random(mutations, rng)[resample]
        mothers = parents[rng.integers(0, len(parents), crossovers)]
        fathers = parents[rng.integers(0, len(parents), crossovers)]
        children = np.where(rng.random(mothers.shape) < crossover_prob, mothers, fathers)
        problem.evaluate(problem.repair(np.concatenate([mutants, children]), rng))
        archive = problem.archive()
        parents = _best_per_bucket(archive, population, bucket_mflops)


def _best_per_bucket(archive: Evaluated, population: int, bucket_mflops: float) -> np.ndarray:
    """Up to ``population`` genomes: the best predicted per MFLOPs bucket, round robin."""
    index = np.flatnonzero(archive.feasible)
    if len(index) == 0:
        index = np.arange(len(archive.genes))
    buckets = np.floor(archive.mflops[index] / bucket_mflops).astype(np.int64)
    order = index[np.lexsort((-archive.pred_acc1[index], buckets))]
    sorted_buckets = np.floor(archive.mflops[order] / bucket_mflops).astype(np.int64)
    rank_in_bucket = np.arange(len(order)) - np.searchsorted(sorted_buckets, sorted_buckets)
    chosen = order[np.lexsort((sorted_buckets, rank_in_bucket))][:population]
    return archive.genes[chosen]
