"""EAGAN's survivor selection (CARS-NSGA, methods.md section 5.2) as optuna NSGA-II's elite selection.

The first objective is the quality one (EAGAN: IS; here the search objective). For every other
objective m, the population is sorted into non-dominated fronts twice: on (quality, m) and on
(quality, reversed m), the second protecting e.g. large models that the first would crowd out.
The fronts of all sortings are merged level by level (front 0 of every sorting, then front 1, ...),
whole merged fronts are kept while they fit, and the front that overflows is sampled uniformly at
random. There is no crowding distance: that is textbook NSGA-II, optuna's default selection.

Non-dominated sorting is optuna's own (``_fast_non_domination_rank``, the routine its NSGA-II uses).
The random draw is seeded by the run seed and the population's trial numbers, so every worker of a
parallel search and every replay of a resumed one selects the same survivors.
"""
from __future__ import annotations

from typing import List, Sequence

import numpy as np
from optuna.study import StudyDirection
from optuna.study._multi_objective import _fast_non_domination_rank


def merged_fronts(losses: np.ndarray) -> List[List[int]]:
    """EAGAN's merged fronts of a (population x objectives) loss matrix (lower is better)."""
    losses = np.asarray(losses, dtype=float)
    primary = losses[:, :1]
    sortings = [primary] if losses.shape[1] == 1 else [
        np.hstack([primary, sign * losses[:, [k]]]) for k in range(1, losses.shape[1]) for sign in (1.0, -1.0)]
    ranks = [_fast_non_domination_rank(values) for values in sortings]
    fronts, placed = [], set()
    for level in range(max(int(r.max()) for r in ranks) + 1):
        front = []
        for rank in ranks:
            for index in np.flatnonzero(rank == level):
                if int(index) not in placed:
                    placed.add(int(index))
                    front.append(int(index))
        if front:
            fronts.append(front)
    return fronts


def select(losses: np.ndarray, size: int, rng: np.random.Generator) -> List[int]:
    """Indices of ``size`` survivors: whole merged fronts, then a uniform draw from the one that overflows."""
    chosen: List[int] = []
    for front in merged_fronts(losses):
        if len(chosen) + len(front) <= size:
            chosen.extend(front)
        else:
            chosen.extend(int(i) for i in rng.choice(front, size - len(chosen), replace=False))
            break
    return chosen


class EaganSelection:
    """``elite_population_selection_strategy`` for :class:`optuna.samplers.NSGAIISampler`."""

    def __init__(self, population_size: int, seed: int = 0):
        self.population_size, self.seed = int(population_size), int(seed)

    def __call__(self, study, population: Sequence) -> list:
        population = list(population)
        if not population:
            return []
        signs = np.array([-1.0 if d == StudyDirection.MAXIMIZE else 1.0 for d in study.directions])
        losses = np.array([trial.values for trial in population], dtype=float) * signs
        rng = np.random.default_rng([self.seed, *sorted(trial.number for trial in population)])
        return [population[i] for i in select(losses, min(self.population_size, len(population)), rng)]
