"""A fixed pool of candidate architectures with the operators query strategies need, kept inside it.

An incomplete benchmark (DARTS' 214 trained genotypes) scores only its own architectures, so a search
of it must propose only those. :class:`ArchPool` gives the space operators that strategies use,
confined to the pool: ``sample`` draws a pool member uniformly; ``neighbors(arch)`` are the other
pool members nearest to ``arch`` (fewest differing choices): all of them within the smallest number
of differing choices that reaches ``min_neighbors`` members (ties included), so a sparse pool still
gives a search somewhere to go, and a pool that is the whole space gives exactly the one-choice
changes (when there are at least ``min_neighbors`` of them, as in NB201 and DARTS cells);
``mutate(arch)`` is one of them, uniformly. Random
search, regularized evolution, local search and ``bo-encoding`` take such a pool (a ``pool``
constructor argument); ``nastk search`` passes the benchmark's architectures to them
(:func:`nastk.strategy.run_strategy`) and refuses strategies that cannot take one.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np

from nastk.architecture import Architecture
from nastk.errors import ConfigError


class ArchPool:
    """Sampling, neighbours and mutation within a given list of architectures (duplicates dropped)."""

    def __init__(self, archs: Sequence[Architecture], what: str = "search", min_neighbors: int = 5):
        self.min_neighbors = max(1, int(min_neighbors))
        self.archs: List[Architecture] = list(dict.fromkeys(archs))
        if not self.archs:
            raise ConfigError(f"{what} was given an empty candidate pool")
        width = len(self.archs[0].choices)
        if any(len(arch.choices) != width or arch.space != self.archs[0].space for arch in self.archs):
            raise ConfigError(f"{what}'s candidate pool mixes architectures of different spaces or layouts")
        # each choice position's values as small integers, so distances are one vectorised comparison
        self._codes: List[Dict[object, int]] = [{} for _ in range(width)]
        self._matrix = np.array([[self._codes[i].setdefault(value, len(self._codes[i]))
                                  for i, value in enumerate(arch.choices)] for arch in self.archs], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.archs)

    def __contains__(self, arch: Architecture) -> bool:
        return self.distances(arch).min() == 0

    def sample(self, rng: np.random.Generator) -> Architecture:
        return self.archs[int(rng.integers(len(self.archs)))]

    def distances(self, arch: Architecture) -> np.ndarray:
        """How many choices each pool member differs from ``arch`` in."""
        row = np.array([codes.get(value, -1) for codes, value in zip(self._codes, arch.choices)], dtype=np.int64)
        return (self._matrix != row).sum(axis=1)

    def neighbors(self, arch: Architecture) -> List[Architecture]:
        """The other pool members nearest to ``arch``, in pool order: every one within the smallest distance
        that reaches ``min_neighbors`` of them (empty for a pool of one)."""
        distances = self.distances(arch)
        others = np.sort(distances[distances > 0])
        if not len(others):
            return []
        radius = others[min(self.min_neighbors, len(others)) - 1]
        return [self.archs[i] for i in np.flatnonzero((distances > 0) & (distances <= radius))]

    def mutate(self, arch: Architecture, rng: np.random.Generator) -> Architecture:
        """One of :meth:`neighbors`, uniformly (``arch`` itself when the pool holds nothing else)."""
        nearest = self.neighbors(arch)
        return nearest[int(rng.integers(len(nearest)))] if nearest else arch
