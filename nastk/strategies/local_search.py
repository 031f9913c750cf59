"""Local search with best improvement (White et al. 2021, "Exploring the loss landscape in NAS"; NASLib's
``LocalSearch``): from the best of ``initial_size`` random architectures, evaluate the whole
neighbourhood, move to its best member if that improves on the current one, and restart from a random
architecture at a local optimum.

Neighbours already evaluated are not queried again (their results are remembered), so a query is
never spent twice on one architecture within a search.

``pool`` confines it to given architectures (an incomplete benchmark's): random points are drawn from
the pool and an architecture's neighbours are its nearest pool members (:class:`~nastk.pool.ArchPool`).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

from nastk.architecture import Architecture
from nastk.errors import ConfigError
from nastk.evaluator import Result
from nastk.options import Int, Option
from nastk.pool import ArchPool
from nastk.strategy import Strategy
from nastk.trial import objective_key


class LocalSearch(Strategy):
    """Best-improvement local search over the space's neighbours, with random restarts."""

    name = "ls"
    searches_pool = True
    requires = ("neighbors",)
    sequential_because = ("local search walks one path, evaluating the current architecture's neighbourhood "
                          "before it moves; results of other workers' walks arriving in between would "
                          "move it off its own")
    OPTIONS = (Option("initial_size", Int(minimum=1), "random architectures evaluated before the first move"),)

    def __init__(self, space, seed: int = 0, initial_size: int = 10, pool: Optional[Sequence[Architecture]] = None):
        super().__init__(space, seed)
        if isinstance(initial_size, bool) or not isinstance(initial_size, int) or initial_size < 1:
            raise ConfigError(f"local search needs initial_size >= 1, got {initial_size!r}")
        self.initial_size = initial_size
        #: where random points and neighbours come from: the space, or the given pool
        self.operators = space if pool is None else ArchPool(pool, "local search")
        self.known: Dict[str, float] = {}        # every evaluated architecture's objective value
        self.current: Optional[Tuple[str, float]] = None   # where the search stands
        self.queue: List[str] = []               # unevaluated neighbours of ``current``, in query order
        self.neighbourhood: List[str] = []       # all neighbours of ``current``
        self.restarting = False                  # the next ask is a random restart
        self.asked = 0
        self.restarts = 0

    def options(self) -> Dict[str, Any]:
        return {"initial_size": self.initial_size}

    def ask(self) -> Architecture:
        self.asked += 1
        if self.asked <= self.initial_size or self.restarting:
            return self.operators.sample(self.rng)
        while not self.queue:
            if not self._step():
                self.restarting = True
                self.restarts += 1
                return self.operators.sample(self.rng)
        return self.space.from_str(self.queue.pop(0))

    def tell(self, arch: Architecture, result: Result) -> None:
        key = arch.to_str()
        self.known[key] = result.value
        if self.restarting:  # the restart point becomes the current architecture
            self.restarting = False
            self._move_to(key)
        elif self.asked == self.initial_size and self.current is None:
            self._move_to(max(self.known, key=lambda a: objective_key(self.known[a])))

    def _move_to(self, arch: str) -> None:
        self.current = (arch, self.known[arch])
        neighbours = [n.to_str() for n in self.operators.neighbors(self.space.from_str(arch))]
        order = self.rng.permutation(len(neighbours))
        self.neighbourhood = [neighbours[i] for i in order]
        self.queue = [n for n in self.neighbourhood if n not in self.known]

    def _step(self) -> bool:
        """The neighbourhood is evaluated: move to its best member if it improves; False at a local optimum."""
        if self.current is None:  # fewer evaluations than initial_size were told (cannot happen in a run)
            return False
        best = max(self.neighbourhood, key=lambda a: objective_key(self.known.get(a)), default=None)
        if best is None or objective_key(self.known.get(best)) <= objective_key(self.current[1]):
            return False
        self._move_to(best)
        return True

    def state_dict(self) -> Dict[str, Any]:
        state = super().state_dict()
        state.update(options=self.options(), known=self.known, current=self.current, queue=self.queue,
                     neighbourhood=self.neighbourhood, restarting=self.restarting, asked=self.asked,
                     restarts=self.restarts)
        return state

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.known = dict(state["known"])
        self.current = tuple(state["current"]) if state["current"] else None
        self.queue, self.neighbourhood = list(state["queue"]), list(state["neighbourhood"])
        self.restarting, self.asked, self.restarts = state["restarting"], state["asked"], state["restarts"]
