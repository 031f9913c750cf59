"""Random search: uniform samples from the space, the baseline every method must beat."""
from __future__ import annotations

from typing import Optional, Sequence

from nastk.architecture import Architecture
from nastk.errors import ConfigError
from nastk.evaluator import Result
from nastk.strategy import Strategy


class RandomSearch(Strategy):
    """Uniform random sampling (with replacement), the baseline every method must beat.

    ``pool`` confines it to given architectures (an incomplete benchmark's, the only ones it can score),
    drawn uniformly with replacement like the space's samples."""

    name = "random"
    searches_pool = True
    asynchronous = True  # each parallel worker draws from its own seed stream

    def __init__(self, space, seed: int = 0, pool: Optional[Sequence[Architecture]] = None):
        super().__init__(space, seed)
        if pool is not None and not len(pool):
            raise ConfigError("random search was given an empty candidate pool")
        self.pool = None if pool is None else list(pool)

    def ask(self) -> Architecture:
        if self.pool is not None:
            return self.pool[int(self.rng.integers(len(self.pool)))]
        return self.space.sample(self.rng)

    def tell(self, arch: Architecture, result: Result) -> None:
        pass  # random search ignores feedback
