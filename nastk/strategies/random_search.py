"""Random search: uniform samples from the space, the baseline every method must beat."""
from __future__ import annotations

from nastk.architecture import Architecture
from nastk.evaluator import Result
from nastk.strategy import Strategy


class RandomSearch(Strategy):
    """Uniform random sampling (with replacement), the baseline every method must beat."""

    name = "random"

    def ask(self) -> Architecture:
        return self.space.sample(self.rng)

    def tell(self, arch: Architecture, result: Result) -> None:
        pass  # random search ignores feedback
