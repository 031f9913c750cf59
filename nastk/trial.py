"""The record of a search: one typed :class:`Trial` per evaluation, the :class:`SearchOutcome` that
collects them (best so far, cost, anytime trajectory) and the :class:`Stop` rule that ends a search.

The one search loop (:func:`nastk.engine.drive`) produces exactly these on both of its back-ends:
the run folder's journal (:func:`nastk.run_folder.run_search`) and an optuna storage shared by parallel
workers (:mod:`nastk.parallel`). Summaries, Pareto fronts, ``nastk runs`` and reproduction reports
read them, never back-end-specific dicts.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional

from nastk.architecture import Architecture
from nastk.errors import ConfigError
from nastk.evaluator import Result


def objective_key(value: Optional[float]) -> float:
    """Sort key that ranks NaN (and missing) objectives last."""
    return value if value is not None and math.isfinite(value) else -math.inf


def best_so_far(values: Iterable[Optional[float]], direction: str = "maximize") -> List[int]:
    """After each value, the index of the best one so far (the first of equals; NaN and None rank last).
    The one definition of an anytime curve: summaries' trajectories, ``nastk runs show`` and plots use it."""
    if direction not in ("maximize", "minimize"):
        raise ConfigError(f"direction must be maximize or minimize, got {direction!r}")
    sign = 1.0 if direction == "maximize" else -1.0
    indices, best, best_key = [], -1, -math.inf
    for index, value in enumerate(values):
        key = objective_key(None if value is None else sign * value)
        if best < 0 or key > best_key:
            best, best_key = index, key
        indices.append(best)
    return indices


@dataclass(frozen=True)
class Trial:
    """One evaluation: which architecture, its result, when it ran and on which worker."""

    step: int
    arch: str
    result: Result
    started: float = 0.0  # unix time the evaluation began
    finished: float = 0.0
    worker: Optional[str] = None  # host:pid of a parallel worker; None on the sequential engine
    number: Optional[int] = None  # the optuna trial number on the parallel engine

    @property
    def wall_s(self) -> float:
        return max(0.0, self.finished - self.started)

    def to_record(self) -> Dict[str, Any]:
        """The journal line (also the form summaries and ``--format json`` show)."""
        record = {"step": self.step, "arch": self.arch, "result": self.result.to_dict(),
                  "wall_s": round(self.wall_s, 6), "started": round(self.started, 6)}
        if self.worker is not None:
            record["worker"] = self.worker
        if self.number is not None:
            record["trial"] = self.number
        return record

    @classmethod
    def from_record(cls, record: Dict[str, Any]) -> "Trial":
        """A journal line back as a trial (shape checked by :func:`is_record` first). Journals written
        before trials carried their start time have only ``wall_s``."""
        started = float(record.get("started", 0.0))
        return cls(record["step"], record["arch"], Result.from_dict(record["result"]), started,
                   started + float(record.get("wall_s", 0.0)), record.get("worker"), record.get("trial"))


def is_record(record: Any, step: int) -> bool:
    """A journal line as the engine writes it: its step number, an architecture string and a result."""
    return record_problem(record, step) is None


def record_problem(record: Any, step: int) -> Optional[str]:
    """What makes ``record`` not a journal line of evaluation ``step`` (None when it is one): the wrong
    shape or step, a cost or time that is negative or not a finite number, a metric that is not a number
    (None: not computed; text: a label), or an objective that is not a number. Replaying such a line
    would add an impossible cost or rank a label as a score."""
    if not isinstance(record, dict):
        return f"a {type(record).__name__}, not a record"
    if record.get("step") != step or isinstance(record.get("step"), bool):
        return f"step {_shown(record.get('step'))}, expected {step}"
    if not isinstance(record.get("arch"), str):
        return "no architecture string"
    result = record.get("result")
    if not (isinstance(result, dict) and isinstance(result.get("metrics"), dict)
            and isinstance(result.get("objective"), str) and isinstance(result.get("protocol", {}), dict)):
        return "no result with metrics, objective and protocol"
    for where, key, value in [("", "wall_s", record.get("wall_s", 0.0)), ("", "started", record.get("started", 0.0)),
                              ("result ", "cost_s", result.get("cost_s"))]:
        if not _is_number(value) or not math.isfinite(value) or value < 0:
            return f"{where}{key} {_shown(value)} is not a finite number >= 0"
    for name, value in result["metrics"].items():
        if not (value is None or isinstance(value, str) or _is_number(value)):
            return f"metric {_shown(name)} is {_shown(value)}, not a number"
    objective = result["metrics"].get(result["objective"])
    if isinstance(objective, str):
        return f"objective {_shown(result['objective'])} is {_shown(objective)}, not a number"
    if record.get("worker") is not None and not isinstance(record["worker"], str):
        return f"worker {_shown(record['worker'])} is not a name"
    if record.get("trial") is not None and (not isinstance(record["trial"], int) or isinstance(record["trial"], bool)):
        return f"trial number {_shown(record['trial'])} is not a whole number"
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass
class SearchOutcome:
    """Every trial of a search in order, with the best so far kept as they arrive."""

    trials: List[Trial] = field(default_factory=list)
    replayed: int = 0  # trials read back from the journal / study rather than evaluated now
    best: Optional[Trial] = None
    #: the best trial's architecture as an object of its space (what final evaluation and export need)
    best_arch: Optional[Architecture] = None
    #: summed evaluation cost so far (kept as trials arrive: the stop rule reads it after every trial)
    cost_s: float = 0.0
    #: what the back-end adds to the run's summary (a parallel run: its study); empty on the run folder's journal
    details: Dict[str, Any] = field(default_factory=dict)

    def add(self, trial: Trial, arch: Architecture) -> None:
        self.trials.append(trial)
        self.cost_s += trial.result.cost_s
        if self.best is None or objective_key(trial.result.value) > objective_key(self.best.result.value):
            self.best, self.best_arch = trial, arch

    @property
    def evaluated(self) -> int:
        return len(self.trials) - self.replayed

    @property
    def best_result(self) -> Optional[Result]:
        return self.best.result if self.best else None

    @property
    def total_cost_s(self) -> float:
        return float(self.cost_s)

    def trajectory(self) -> List[List[Optional[float]]]:
        """After each trial: cumulative cost, best-so-far objective and that architecture's test accuracy."""
        rows, cost = [], 0.0
        for trial, best in zip(self.trials, best_so_far(t.result.value for t in self.trials)):
            cost += trial.result.cost_s
            result = self.trials[best].result
            rows.append([round(cost, 3), _finite(result.value), _finite(result.metrics.get("test_accuracy"))])
        return rows


def _finite(value: Any) -> Optional[float]:
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


@dataclass(frozen=True)
class Stop:
    """When a search ends: at ``queries`` trials, or earlier once the summed evaluation cost (simulated
    by a benchmark, measured by training) exceeds ``cost_s`` or the search has run ``wall_s`` seconds,
    but never before ``min_queries`` trials, nor before the first: limits are checked after an evaluation,
    so a search always has a result (``--max-wall 1e-300`` makes one evaluation, not an empty run)."""

    queries: int
    cost_s: Optional[float] = None
    wall_s: Optional[float] = None
    min_queries: int = 0

    def __post_init__(self):
        if isinstance(self.queries, bool) or not isinstance(self.queries, int) or self.queries < 1:
            raise ConfigError(f"budget must be a whole number >= 1, got {self.queries!r}")
        for name in ("cost_s", "wall_s"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
                raise ConfigError(f"{name} must be a number > 0, got {value!r}")
        if not 0 <= self.min_queries <= self.queries:
            raise ConfigError(f"min_queries must be between 0 and the budget {self.queries}, got {self.min_queries}")

    @classmethod
    def of(cls, budget) -> "Stop":
        """A Stop from a plain query budget (or a Stop itself)."""
        return budget if isinstance(budget, Stop) else cls(budget)

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "Stop":
        """A run config's stop rule: its ``budget`` and, when given, its ``stop`` limits."""
        limits = config.get("stop") or {}
        return cls(config["budget"], limits.get("cost_s"), limits.get("wall_s"))

    def ended(self, outcome: SearchOutcome, started: float) -> bool:
        """Whether the trials of ``outcome`` (a search started at ``time.monotonic()`` ``started``) end it:
        the one stop check of the sequential engine, every parallel worker and their coordinator."""
        return self.reached(len(outcome.trials), outcome.cost_s, started)

    def reached(self, queries: int, cost_s: float, started: float) -> bool:
        if queries >= self.queries:
            return True
        if queries < max(self.min_queries, 1):
            return False
        return ((self.cost_s is not None and cost_s > self.cost_s)
                or (self.wall_s is not None and time.monotonic() - started > self.wall_s))
