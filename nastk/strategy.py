"""The query-strategy interface: ask for architectures, be told their results, save and restore state.

Strategies see only :class:`~nastk.architecture.Architecture` values and :class:`~nastk.evaluator.Result`
objects, so any strategy works with any evaluator. ``state_dict``/``load_state_dict`` round-trip
through JSON, which lets a run checkpoint a strategy or hand it to another process.
"""
from __future__ import annotations

import abc
from typing import Any, Dict, Tuple

import numpy as np

from nastk.architecture import Architecture
from nastk.evaluator import Result
from nastk.options import Option
from nastk.registry import Registry
from nastk.space import SearchSpace


class Strategy(abc.ABC):
    """Base class of query strategies (random search, evolution, BO, ...)."""

    name: str = ""
    #: Space capabilities this strategy needs; checked at construction.
    requires: Tuple[str, ...] = ()
    #: The strategy's own hyper-parameters (constructor keywords, run-config ``strategy_options``, CLI flags).
    OPTIONS: Tuple[Option, ...] = ()
    #: Settings of the whole run the strategy also receives as constructor keywords (``budget``,
    #: ``dataset``, ``objectives``: a multi-objective strategy lists the last).
    RUN_OPTIONS: Tuple[str, ...] = ()

    def __init__(self, space: SearchSpace, seed: int = 0):
        space.require(*self.requires)
        self.space = space
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    @abc.abstractmethod
    def ask(self) -> Architecture:
        """The next architecture to evaluate."""

    @abc.abstractmethod
    def tell(self, arch: Architecture, result: Result) -> None:
        """Record the result of an architecture returned by :meth:`ask`."""

    def state_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "seed": self.seed, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.seed = state["seed"]
        self.rng.bit_generator.state = state["rng"]

    def options(self) -> Dict[str, Any]:
        """Hyper-parameters, recorded in the run's config."""
        return {}


STRATEGIES: Registry[type] = Registry("strategy", group="nastk.strategies")
STRATEGIES.register("random", "nastk.strategies.random_search:RandomSearch")
STRATEGIES.register("re", "nastk.strategies.evolution:RegularizedEvolution")
STRATEGIES.register("robot", "nastk.strategies.robot:RoBoT")
STRATEGIES.register("bo-tpe", "nastk.strategies.optuna_search:TPESearch")
STRATEGIES.register("bo-gp", "nastk.strategies.optuna_search:GPSearch")
STRATEGIES.register("nsga2", "nastk.strategies.optuna_search:NSGA2Search")
STRATEGIES.register("bo-encoding", "nastk.strategies.encoding_bo:EncodingBO")
STRATEGIES.register("ls", "nastk.strategies.local_search:LocalSearch")


def make_strategy(name: str, space: SearchSpace, seed: int = 0, **options) -> Strategy:
    return STRATEGIES.get(name)(space, seed=seed, **options)
