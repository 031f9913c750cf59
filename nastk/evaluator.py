"""Evaluators turn an architecture into a :class:`Result`: benchmark look-ups, zero-cost proxies,
supernet inheritance and real training all share this one interface, so any strategy can use any of them.
"""
from __future__ import annotations

import abc
import math
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from nastk.architecture import Architecture


@dataclass(frozen=True)
class Result:
    """Named metrics of one evaluation plus what it cost.

    ``objective`` names the metric a strategy maximises; ``cost_s`` is the (real or simulated) time
    the evaluation represents; ``protocol`` records how the numbers were obtained.
    """

    metrics: Dict[str, float]
    cost_s: float = 0.0
    objective: str = "accuracy"
    protocol: Dict[str, Any] = field(default_factory=dict)

    @property
    def value(self) -> float:
        """The objective value; NaN (never an exception) when it is missing or not finite."""
        value = self.metrics.get(self.objective, math.nan)
        return float(value) if value is not None and math.isfinite(value) else math.nan

    def to_dict(self) -> Dict[str, Any]:
        return {"metrics": dict(self.metrics), "cost_s": self.cost_s, "objective": self.objective,
                "protocol": dict(self.protocol)}

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Result":
        return cls(dict(data["metrics"]), float(data.get("cost_s", 0.0)), data.get("objective", "accuracy"),
                   dict(data.get("protocol", {})))


class Evaluator(abc.ABC):
    """``evaluate(arch) -> Result``. Subclasses describe themselves in :meth:`describe`."""

    #: Metric name the evaluator's results use as objective.
    objective: str = "accuracy"

    @abc.abstractmethod
    def evaluate(self, arch: Architecture) -> Result:
        ...

    def describe(self) -> Dict[str, Any]:
        return {"evaluator": type(self).__name__, "objective": self.objective}

    def final_metrics(self, arch: Architecture) -> Optional[Dict[str, float]]:
        """Metrics to report for the search's winner (e.g. its benchmark test accuracy), if any."""
        return None


class CachedEvaluator(Evaluator):
    """Wraps an evaluator so each architecture is evaluated at most once per process."""

    def __init__(self, inner: Evaluator):
        self.inner = inner
        self.objective = inner.objective
        self._cache: Dict[Architecture, Result] = {}

    def evaluate(self, arch: Architecture) -> Result:
        if arch not in self._cache:
            self._cache[arch] = self.inner.evaluate(arch)
        return self._cache[arch]

    def describe(self) -> Dict[str, Any]:
        return self.inner.describe()

    def final_metrics(self, arch: Architecture) -> Optional[Dict[str, float]]:
        return self.inner.final_metrics(arch)
