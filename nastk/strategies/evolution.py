"""Regularized (aging) evolution, Real et al. 2019, with NB201's REA defaults.

The first ``population_size`` architectures are random; afterwards each child is a mutation of the
best of ``sample_size`` members drawn from the population, and the *oldest* member dies when a child
joins, so good architectures must keep being rediscovered.

``pool`` confines it to given architectures (an incomplete benchmark's): the random members are drawn
from the pool and a mutation moves to one of the parent's nearest pool members (:class:`~nastk.pool.ArchPool`).
"""
from __future__ import annotations

from collections import deque
from typing import Any, Dict, Optional, Sequence

from nastk.architecture import Architecture
from nastk.errors import ConfigError
from nastk.evaluator import Result
from nastk.options import Int, Option
from nastk.pool import ArchPool
from nastk.strategy import Strategy
from nastk.trial import objective_key


class RegularizedEvolution(Strategy):
    """Regularized (aging) evolution: tournament selection, mutation, oldest member dies.

    Asynchronous on parallel workers: each worker's instance is told every worker's results as they
    arrive, so its population is the ``population_size`` latest results of the whole search (random
    architectures until it is full) and its children are mutations of that population's tournament winners.
    """

    name = "re"
    searches_pool = True
    asynchronous = True
    requires = ("mutate",)
    OPTIONS = (Option("population_size", Int(minimum=1), "architectures alive at once (NB201's REA: 10)"),
               Option("sample_size", Int(minimum=1), "tournament size: members drawn to pick a parent (NB201's REA: 3)"))

    def __init__(self, space, seed: int = 0, population_size: int = 10, sample_size: int = 3,
                 pool: Optional[Sequence[Architecture]] = None):
        super().__init__(space, seed)
        if population_size < 1 or not 1 <= sample_size <= population_size:
            raise ConfigError(
                f"regularized evolution needs population_size >= 1 and 1 <= sample_size <= population_size, "
                f"got {population_size} and {sample_size}")
        self.population_size = population_size
        self.sample_size = sample_size
        #: where samples and mutations come from: the space, or the given pool
        self.operators = space if pool is None else ArchPool(pool, "regularized evolution")
        self.population: deque = deque()  # (arch, value), oldest first
        self.asked = 0

    def options(self) -> Dict[str, Any]:
        return {"population_size": self.population_size, "sample_size": self.sample_size}

    def ask(self) -> Architecture:
        self.asked += 1
        if len(self.population) < self.population_size:  # sequentially: the first population_size asks
            return self.operators.sample(self.rng)
        picks = self.rng.choice(len(self.population), size=min(self.sample_size, len(self.population)), replace=False)
        parent = max((self.population[i] for i in sorted(picks)), key=lambda member: objective_key(member[1]))[0]
        return self.operators.mutate(parent, self.rng)

    def tell(self, arch: Architecture, result: Result) -> None:
        self.population.append((arch, result.value))
        if len(self.population) > self.population_size:
            self.population.popleft()

    def state_dict(self) -> Dict[str, Any]:
        state = super().state_dict()
        state.update(asked=self.asked, population=[[a.to_str(), v] for a, v in self.population])
        return state

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.asked = state["asked"]
        self.population = deque((self.space.from_str(a), v) for a, v in state["population"])
