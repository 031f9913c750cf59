"""A query strategy that lives only in the tests, loaded by ``module:Class`` like a user's package would be,
with options of its own (so the CLI must build its flags from the declaration)."""
from nastk.options import Float, Option
from nastk.strategy import Strategy
from nastk.trial import objective_key


class GreedyWalk(Strategy):
    """Mutate the best architecture so far with probability ``explore``, else sample a new one."""

    name = "greedy-walk"
    requires = ("mutate",)
    OPTIONS = (Option("explore", Float(minimum=0, maximum=1), "probability of a fresh random architecture"),)

    def __init__(self, space, seed: int = 0, explore: float = 0.25):
        super().__init__(space, seed)
        self.explore, self.best = explore, None

    def ask(self):
        if self.best is None or self.rng.random() < self.explore:
            return self.space.sample(self.rng)
        return self.space.mutate(self.best[0], self.rng)

    def tell(self, arch, result):
        if self.best is None or objective_key(result.value) > objective_key(self.best[1]):
            self.best = (arch, result.value)
