"""The search-space interface every strategy, proxy and evaluator is written against.

A space is a codec (architecture <-> string), a sampler, an encoder for models, a builder of
stand-alone networks and, optionally, a set of declared capabilities (mutate, neighbors, crossover,
enumerate, graph, supernet). Strategies call :meth:`SearchSpace.require` for what they need, so a
space that lacks a capability fails with a clear :class:`CapabilityError` instead of an
AttributeError deep inside a search.
"""
from __future__ import annotations

import abc
from functools import lru_cache
from typing import Dict, FrozenSet, Iterator, List

import numpy as np

from nastk.architecture import Architecture
from nastk.errors import CapabilityError
from nastk.registry import Registry

#: Capability names a space may declare.
CAPABILITIES = ("enumerate", "mutate", "neighbors", "crossover", "graph", "build", "supernet", "optuna")


class SearchSpace(abc.ABC):
    """Base class of search spaces. Subclasses set ``name`` and ``capabilities``."""

    name: str = ""
    capabilities: FrozenSet[str] = frozenset()

    # --- codec -------------------------------------------------------------------------------
    @abc.abstractmethod
    def to_str(self, arch: Architecture) -> str:
        """The space's canonical string of ``arch``."""

    @abc.abstractmethod
    def from_str(self, text: str) -> Architecture:
        """Parse a string; raises :class:`nastk.errors.ArchitectureError` naming what is wrong."""

    # --- sampling and encoding ---------------------------------------------------------------
    @abc.abstractmethod
    def sample(self, rng: np.random.Generator) -> Architecture:
        """A uniformly random architecture."""

    @abc.abstractmethod
    def encode(self, arch: Architecture) -> np.ndarray:
        """A fixed-length numeric vector (one-hot for categorical spaces) for BO and predictors."""

    # --- optional capabilities ---------------------------------------------------------------
    def require(self, *capabilities: str) -> None:
        missing = [c for c in capabilities if c not in self.capabilities]
        if missing:
            raise CapabilityError(
                f"search space {self.name!r} lacks capability {', '.join(missing)} "
                f"(it declares: {', '.join(sorted(self.capabilities)) or 'none'})"
            )

    def enumerate(self) -> Iterator[Architecture]:
        self.require("enumerate")
        raise NotImplementedError

    def __len__(self) -> int:
        self.require("enumerate")
        raise NotImplementedError

    def mutate(self, arch: Architecture, rng: np.random.Generator) -> Architecture:
        self.require("mutate")
        raise NotImplementedError

    def neighbors(self, arch: Architecture) -> List[Architecture]:
        self.require("neighbors")
        raise NotImplementedError

    def crossover(self, a: Architecture, b: Architecture, rng: np.random.Generator) -> Architecture:
        self.require("crossover")
        raise NotImplementedError

    def suggest(self, trial) -> Architecture:
        """Draw an architecture through an optuna trial's ``suggest_*`` calls (capability ``optuna``).

        Declaring the space's own dimensions lets optuna's samplers (TPE, GP, NSGA-II) model them
        directly instead of a generic encoding; each call must suggest the same named parameters.
        """
        self.require("optuna")
        raise NotImplementedError

    def build(self, arch: Architecture, num_classes: int, **options):
        """A stand-alone ``torch.nn.Module`` for ``arch``."""
        self.require("build")
        raise NotImplementedError

    def cost(self, arch: Architecture, num_classes: int = 10, input_size: int = 32) -> Dict[str, float]:
        """Params and FLOPs (in millions) without training."""
        self.require("build")
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<SearchSpace {self.name}>"


SPACES: Registry[type] = Registry("search space")
SPACES.register("nb201", "search_spaces.nb201:NB201Space")


@lru_cache(maxsize=None)
def get_space(name: str) -> SearchSpace:
    """The (shared, stateless) instance of the space registered as ``name``."""
    return SPACES.get(name)()
