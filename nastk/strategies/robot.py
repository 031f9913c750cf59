"""RoBoT (ICLR 2024): BO over the weights of an ensemble of zero-cost proxies, then greedy exploitation.

methods.md sections 9 and 6.1. Each candidate architecture of a pool has M proxy values, min-max
normalised over the pool (NaN contributes 0). For weights w in [-1, 1]^M the combined score is
S_w(a) = sum_m w_m * proxy_m(a); BO maximises F(w) = f(argmax_a S_w(a)), f being the queried
objective (NB201: 12-epoch validation accuracy). After ``budget`` BO steps, the rest of the query
budget walks the ranking of the best weights.

Why ``bayesian-optimization`` (``bayes_opt``): it is the library RoBoT itself used, so the GP
(Matern 2.5, alpha 1e-6, normalised targets, 5 restarts), UCB with kappa = 2.576, its acquisition
maximiser (10,000 random points + 10 L-BFGS-B starts) and the single random first point are the
library defaults the spec describes, with nothing hand-written. Its ``suggest``/``register``
ask-tell API fits nastk's ask/tell engine; optuna's GPSampler would differ in kernel, acquisition
and start-up design.

Queries and the budget. The engine's budget counts asks, while a BO step whose argmax architecture
was already queried is free in RoBoT. So this strategy never asks an architecture twice:

* a BO step whose argmax was already observed is completed inside :meth:`ask` with the known value
  (registered with the BO library, no new query), and BO moves on to its next suggestion;
* a BO step whose argmax is new is asked for; :meth:`tell` completes the step with its value;
* after ``budget`` BO steps (T in the paper, so BO may have found only T0 <= T distinct archs),
  every further ask is the best weights' next-ranked architecture not yet queried.

With the engine's budget equal to ``budget`` this is RoBoT's procedure exactly: T BO steps, then
greedy filling until |Q| = T. An exactly repeated weight vector is not registered twice (the 1.2.0
library's behaviour). A non-finite objective is registered as the worst value seen so far.

Resume. All randomness is the BO library's ``RandomState(seed)``, so the same seed and the same
told values give the same proposals, which is what the engine's replay needs. ``state_dict`` holds
the seed and the told (architecture, value) history; ``load_state_dict`` replays that history
through a fresh optimiser, reproducing the GP and RNG state without pickling library objects.
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from nastk.architecture import Architecture
from nastk.errors import ConfigError, RunError
from nastk.evaluator import Result
from nastk.options import Option, Text
from nastk.strategy import Strategy

KAPPA = 2.576
#: The images that score a proxy the table lacks, per table dataset (NB201's cifar10-valid uses cifar10's).
TABLE_IMAGES = {"cifar10-valid": "cifar10"}
DEFAULT_PROXIES = ("grad_norm", "snip", "grasp", "fisher", "synflow", "jacob_cov")


class ProxyPool:
    """Candidate architectures with min-max normalised proxy values; scores are weighted sums."""

    def __init__(self, archs: Sequence[Architecture], values: np.ndarray, names: Sequence[str]):
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 2 or values.shape != (len(archs), len(names)) or not len(archs):
            raise ConfigError(f"a proxy pool needs a (archs x proxies) matrix, got {values.shape} for "
                              f"{len(archs)} archs and {len(names)} proxies")
        self.archs = list(archs)
        self.names = list(names)
        self.row = {arch: i for i, arch in enumerate(self.archs)}
        if len(self.row) != len(self.archs):
            raise ConfigError("the proxy pool lists some architecture twice")
        with warnings.catch_warnings():  # an all-NaN column is allowed: it contributes 0
            warnings.simplefilter("ignore", RuntimeWarning)
            low, high = np.nanmin(values, axis=0), np.nanmax(values, axis=0)
        span = high - low
        scaled = (values - low) / np.where(span > 0, span, 1.0)
        normalised = np.where(span > 0, scaled, values)  # constant metrics stay unnormalised
        self.normalised = np.nan_to_num(normalised, nan=0.0, posinf=0.0, neginf=0.0)

    def __len__(self) -> int:
        return len(self.archs)

    def scores(self, weights: np.ndarray) -> np.ndarray:
        return self.normalised @ np.asarray(weights, dtype=np.float64)

    def ranking(self, weights: np.ndarray) -> np.ndarray:
        """Pool rows from best to worst combined score (ties: pool order)."""
        return np.argsort(-self.scores(weights), kind="stable")


def load_proxy_pool(space, dataset: Optional[str] = None, proxy_table: Optional[str] = None,
                    proxies: Sequence[str] = DEFAULT_PROXIES, device=None) -> ProxyPool:
    """The pool of a proxy table (default: the shared table covering ``dataset``).

    A proxy that is not a column of the table but a nastk proxy (a user's included: a registered name or
    ``package.module:function``) is computed for every architecture of the pool by
    :func:`~nastk.evaluators.proxy.score_architectures` (the space's own network, ``dataset``'s batch,
    seed 0, on ``device``; None: where networks are built), cached in the nastk cache folder, so it
    is computed once per pool.
    """
    from nastk.benchmarks.proxy_tables import default_table_path, read_proxy_table

    if proxy_table is None and dataset is None:
        raise ConfigError("RoBoT needs a --dataset (to pick the shared proxy table) or a --proxy-table")
    path = proxy_table or default_table_path(dataset)
    table = read_proxy_table(path, dataset=dataset)
    archs = [space.from_str(text) for text in table.arch_strs]
    missing = [name for name in proxies if not _is_column(table, name)]
    computed = _computed_columns(space, archs, missing, table.source, dataset, device) if missing else {}
    values = np.column_stack([computed[name] if name in computed else table.column(name) for name in proxies])
    return ProxyPool(archs, values, list(proxies))


def _is_column(table, name: str) -> bool:
    try:
        table.column(name)
    except ConfigError:
        return False
    return True


def _computed_columns(space, archs, names: Sequence[str], source: str, dataset: Optional[str],
                      device) -> Dict[str, np.ndarray]:
    """Values of the nastk proxies ``names`` (not columns of the table) for ``archs``; a name that is
    not a proxy either is one line naming both."""
    from nastk.errors import UnknownNameError
    from nastk.evaluators.proxy import score_architectures
    from nastk.paths import cache_root
    from nastk.proxies import get_proxy

    for name in names:
        try:
            get_proxy(name)
        except UnknownNameError as error:
            raise ConfigError(f"proxy table {source} has no column {name!r}, and it is no proxy nastk can "
                              f"compute: {error}") from None
    scored = score_architectures(space, archs, names, dataset=TABLE_IMAGES.get(dataset, dataset or "cifar10"),
                                 device=device, cache_path=cache_root() / f"robot_proxies_{space.name}.jsonl")
    return scored.scores


def _proxy_list(proxies: Union[None, str, Sequence[str]]) -> Tuple[str, ...]:
    if proxies is None:
        return DEFAULT_PROXIES
    names = [p.strip() for p in proxies.split(",")] if isinstance(proxies, str) else [str(p) for p in proxies]
    if not names or not all(names):
        raise ConfigError(f"--proxies must be a comma-separated list of proxy names, got {proxies!r}")
    return tuple(names)


class RoBoT(Strategy):
    """BO over proxy-ensemble weights (GP-UCB via ``bayes_opt``), then greedy exploitation."""

    name = "robot"
    RUN_OPTIONS = ("budget", "dataset")  # T BO steps = the run's budget; the proxy table covering the dataset
    OPTIONS = (Option("proxy_table", Text(), "CSV(.gz) of proxy values with an arch_str column (default: the shared "
                                             "NAS-Bench-Suite-Zero table covering --dataset)"),
               Option("proxies", Text(lists=True), "proxy columns to combine (default grad_norm,snip,grasp,fisher,"
                                                   "synflow,jacob_cov); a nastk proxy the table lacks, e.g. "
                                                   "pkg.mod:func, is computed for the pool"))

    def __init__(self, space, seed: int = 0, budget: int = 20, dataset: Optional[str] = None,
                 proxy_table: Optional[str] = None, proxies: Union[None, str, Sequence[str]] = None,
                 pool: Union[None, ProxyPool, Tuple[Sequence[Architecture], np.ndarray]] = None, device=None):
        super().__init__(space, seed)
        if int(budget) < 1:
            raise ConfigError(f"RoBoT needs a budget (number of BO steps) of at least 1, got {budget}")
        self.budget, self.dataset, self.proxy_table = int(budget), dataset, proxy_table
        self.proxies = _proxy_list(proxies)
        if pool is None:
            pool = load_proxy_pool(space, dataset, proxy_table, self.proxies, device)
        elif not isinstance(pool, ProxyPool):
            archs, values = pool
            pool = ProxyPool(archs, values, self.proxies)
        self.pool = pool
        self._keys = [f"w{i:02d}" for i in range(len(self.pool.names))]
        self._reset()

    def _reset(self) -> None:
        from bayes_opt import BayesianOptimization
        from bayes_opt.acquisition import UpperConfidenceBound

        self.optimizer = BayesianOptimization(
            f=None, pbounds={key: (-1.0, 1.0) for key in self._keys},
            acquisition_function=UpperConfidenceBound(kappa=KAPPA),
            random_state=np.random.RandomState(self.seed), verbose=0)
        self.observed: Dict[int, float] = {}          # pool row -> objective value
        self.history: List[Tuple[str, float]] = []    # told (arch, value), in order
        self.trace: List[Dict[str, Any]] = []         # one entry per completed BO step
        self._registered: set = set()
        self._pending: Optional[Tuple[np.ndarray, int]] = None
        self.best_weights: Optional[np.ndarray] = None
        self.best_value = -math.inf
        self._exploit_order: Optional[np.ndarray] = None

    def options(self) -> Dict[str, Any]:
        return {"budget": self.budget, "dataset": self.dataset, "proxy_table": self.proxy_table,
                "proxies": list(self.proxies)}

    @property
    def bo_steps(self) -> int:
        return len(self.trace)

    @property
    def distinct_bo_queries(self) -> int:
        """T0: architectures BO itself queried (the rest of the budget is exploitation)."""
        return sum(step["new"] for step in self.trace)

    # --- ask / tell -------------------------------------------------------------------------------
    def ask(self) -> Architecture:
        while self.bo_steps < self.budget:
            if self._pending is None:
                weights = self._suggest()
                row = int(np.argmax(self.pool.scores(weights)))
                if row in self.observed:  # a free duplicate: complete the step without a query
                    self._complete_step(weights, row, new=False)
                    continue
                self._pending = (weights, row)
            return self.pool.archs[self._pending[1]]
        return self.pool.archs[self._next_exploit_row()]

    def tell(self, arch: Architecture, result: Result) -> None:
        row = self.pool.row.get(arch)
        if row is None:
            raise ConfigError(f"RoBoT was told about {arch.to_str()}, which is not in its proxy pool")
        self.observed[row] = result.value
        self.history.append((arch.to_str(), result.value))
        if self._pending is not None and self._pending[1] == row:
            weights, self._pending = self._pending[0], None
            self._complete_step(weights, row, new=True)

    # --- internals ------------------------------------------------------------------------------
    def _suggest(self) -> np.ndarray:
        params = self.optimizer.suggest()
        return np.array([float(params[key]) for key in self._keys])

    def _complete_step(self, weights: np.ndarray, row: int, new: bool) -> None:
        value = self.observed[row]
        target = value if math.isfinite(value) else min(
            (v for v in self.observed.values() if math.isfinite(v)), default=0.0)
        point = tuple(weights.tolist())
        if point not in self._registered:
            self._registered.add(point)
            self.optimizer.register(dict(zip(self._keys, weights)), target)
        if target >= self.best_value:  # ties go to the later weights, as in RoBoT
            self.best_value, self.best_weights = target, weights
        self.trace.append({"weights": weights.tolist(), "arch": self.pool.archs[row].to_str(),
                           "value": value, "new": new})

    def _next_exploit_row(self) -> int:
        if self._exploit_order is None:
            self._exploit_order = self.pool.ranking(self.best_weights)
        for row in self._exploit_order:
            if int(row) not in self.observed:
                return int(row)
        raise ConfigError(f"RoBoT has queried all {len(self.pool)} architectures of its pool; lower the budget")

    # --- state ----------------------------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        state = super().state_dict()
        state.update(options=self.options(), history=[[arch, value] for arch, value in self.history])
        return state

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Replay the told history through a fresh optimiser seeded like the original."""
        self.seed = state["seed"]
        self._reset()
        for arch_str, value in state["history"]:
            arch = self.ask()
            if arch.to_str() != arch_str:
                raise RunError(f"RoBoT state replay diverged: proposed {arch.to_str()}, the state holds {arch_str}")
            self.tell(arch, Result({"objective": value}, objective="objective"))
        super().load_state_dict(state)
