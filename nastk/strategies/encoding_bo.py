"""BO on an architecture encoding (``bo-encoding``), for spaces optuna cannot express directly.

Any space has :meth:`~nastk.space.SearchSpace.encode`. This strategy lets an optuna sampler (GP by
default, or TPE) search the box spanned by the encodings of a candidate pool: each proposal x is
projected to the valid architecture whose encoding is nearest (Euclidean), and the sampler is told
that architecture's result at x, i.e. it optimises f(project(x)), the usual relax-and-round scheme.
The pool is a given one (``pool``: e.g. an incomplete benchmark's architectures, the only ones it can
score), else the whole space when it can be enumerated (NB201: 15,625 cells), otherwise ``pool_size``
architectures sampled once with the strategy's seed.

Because many points project to one architecture, the objective is piecewise constant in x; the GP is
therefore not told the objective is noise-free.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import numpy as np
import optuna

from nastk.architecture import Architecture
from nastk.errors import ConfigError
from nastk.options import Int, Option, Text
from nastk.strategies.optuna_search import OptunaStrategy

SAMPLERS = ("gp", "tpe")


class EncodingBO(OptunaStrategy):
    """BO (optuna GP or TPE) over a space's numeric encoding, projected to the nearest valid architecture."""

    name = "bo-encoding"
    searches_pool = True
    requires = ()
    OPTIONS = OptunaStrategy.OPTIONS + (
        Option("sampler", Text(choices=SAMPLERS, nullable=False), "optuna sampler over the encoding box"),
        Option("pool_size", Int(minimum=1), "candidate architectures sampled when the space is too large to enumerate"))

    def __init__(self, space, seed: int = 0, objectives=None, n_startup_trials: int = 10,
                 sampler: str = "gp", pool_size: int = 20_000, pool: Optional[Sequence[Architecture]] = None):
        super().__init__(space, seed, objectives, n_startup_trials)
        self.given_pool = None if pool is None else list(dict.fromkeys(pool))
        if self.given_pool is not None:
            if not self.given_pool:
                raise ConfigError("bo-encoding was given an empty candidate pool")
            pool_size = len(self.given_pool)
        if sampler not in SAMPLERS:
            raise ConfigError(f"unknown bo-encoding sampler {sampler!r}; known: {', '.join(SAMPLERS)}")
        if int(pool_size) < 1:
            raise ConfigError(f"pool_size must be at least 1, got {pool_size}")
        self.sampler_name, self.pool_size = sampler, int(pool_size)
        self.uses_torch = sampler == "gp"
        self._build_pool()

    def _build_pool(self) -> None:
        """The candidates, their encodings restricted to the dimensions that vary, and the box."""
        if self.given_pool is not None:
            self.pool = list(self.given_pool)
        elif "enumerate" in self.space.capabilities and len(self.space) <= self.pool_size:
            self.pool = list(self.space.enumerate())
        else:
            unique: Dict[Architecture, None] = {}
            for _ in range(self.pool_size * 3):
                unique.setdefault(self.space.sample(self.rng), None)
                if len(unique) == self.pool_size:
                    break
            self.pool = list(unique)
        encodings = np.stack([np.asarray(self.space.encode(arch), dtype=np.float64) for arch in self.pool])
        low, high = encodings.min(axis=0), encodings.max(axis=0)
        self.dims = np.flatnonzero(high > low)  # constant dimensions tell nothing apart
        self.low, self.high = low[self.dims], high[self.dims]
        self.encodings = encodings[:, self.dims]

    def make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        if self.sampler_name == "tpe":
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=self.n_startup_trials)
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=self.n_startup_trials)

    def propose(self, trial: optuna.Trial) -> Architecture:
        x = np.array([trial.suggest_float(f"x{d}", lo, hi) for d, lo, hi in zip(self.dims, self.low, self.high)])
        return self.project(x)

    def project(self, x: np.ndarray) -> Architecture:
        """The pool architecture whose encoding is nearest to ``x`` (first one on ties)."""
        distances = ((self.encodings - x) ** 2).sum(axis=1)
        return self.pool[int(np.argmin(distances))]

    def options(self) -> Dict[str, Any]:
        return {**super().options(), "sampler": self.sampler_name, "pool_size": self.pool_size}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if state["seed"] != self.seed:  # a sampled pool depends on the seed
            self.seed, self.rng = state["seed"], np.random.default_rng(state["seed"])
            self._build_pool()
        super().load_state_dict(state)
