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
from nastk.errors import CapabilityError, NastkError
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
    #: True when the constructor takes ``pool``, a list of architectures to propose from (and nothing
    #: else): a search of an incomplete benchmark gives it the benchmark's architectures (:func:`run_strategy`)
    searches_pool: bool = False
    #: True when :meth:`tell` accepts results of architectures it did not ask for, in any order: parallel
    #: workers (``--workers N``) each run their own instance and tell it every worker's results as they
    #: arrive. A strategy that cannot says why in ``sequential_because`` (the line that refuses it).
    asynchronous: bool = False
    sequential_because: str = "it is not written for results that arrive out of order from other workers"

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


STRATEGIES: Registry[type] = Registry("strategy", group="nastk.strategies", subclass_of=Strategy)
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


def takes_pool(cls: type) -> bool:
    """Whether a strategy class can search a given list of architectures (``searches_pool``)."""
    return bool(getattr(cls, "searches_pool", False))


def run_strategy(config: Dict[str, Any], space: SearchSpace, seed: int) -> Strategy:
    """The strategy of a run config, confined to what its evaluator can score: a search looked up in an
    incomplete benchmark (DARTS' 214 genotypes) proposes only the benchmark's architectures, given as the
    strategy's ``pool``; a strategy that cannot take one is refused, saying which can."""
    from nastk.evaluators import search_pool

    pool = search_pool(space, config["evaluator"])
    if pool is None:
        return make_strategy(config["strategy"], space, seed=seed, **config["strategy_options"])
    archs, reach = pool
    if not takes_pool(STRATEGIES.get(config["strategy"])):
        able = [name for name in STRATEGIES.names() if _loads_and_takes_pool(name)]
        raise CapabilityError(f"{reach} scores only its {len(archs)} architectures of space {space.name!r}, and "
                              f"strategy {config['strategy']!r} proposes from the whole space; strategies that search "
                              f"within them: {', '.join(able)}")
    return make_strategy(config["strategy"], space, seed=seed, pool=archs, **config["strategy_options"])


def _loads_and_takes_pool(name: str) -> bool:
    try:
        return takes_pool(STRATEGIES.get(name))
    except NastkError:  # an installed plug-in that does not load is not offered
        return False
