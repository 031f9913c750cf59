"""Evaluators turn an architecture into a :class:`Result`: benchmark look-ups, zero-cost proxies,
supernet inheritance and real training all share this one interface, so any strategy can use any of them.
"""
from __future__ import annotations

import abc
import math
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

from nastk.architecture import Architecture
from nastk.errors import EvaluationError
from nastk.options import Option
from nastk.plain_data import plain


#: The metric a constrained run adds to every result: 1 when it satisfies every constraint, else 0
#: (:mod:`nastk.evaluators.multi_objective`); an infeasible result has no objective value.
FEASIBLE = "feasible"


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

    def __post_init__(self):
        # Proxies and training loops return numpy or torch scalars; the journal and summaries need plain
        # numbers, so they are converted here, once, rather than failing at the journal write.
        metrics = {str(name): _metric_value(value, name) for name, value in dict(self.metrics).items()}
        cost = _metric_value(self.cost_s, None)
        if isinstance(cost, str):
            raise EvaluationError(f"cost_s of an evaluation result must be a number, got {cost[:60]!r}")
        protocol = plain(dict(self.protocol), default=str) if self.protocol else {}
        object.__setattr__(self, "metrics", metrics)
        object.__setattr__(self, "protocol", protocol)
        object.__setattr__(self, "cost_s", 0.0 if cost is None else float(cost))

    @property
    def value(self) -> float:
        """The objective value; NaN (never an exception) when it is missing or not finite, and when the
        result is infeasible (``metrics["feasible"] == 0``, set by ``--constraint``): every strategy
        ranks a NaN objective worst, so an infeasible architecture never wins or becomes a parent."""
        return math.nan if self.infeasible else self.raw_value

    @property
    def raw_value(self) -> float:
        """The objective value whether or not the result satisfies the run's constraints (NaN when it
        is missing or not finite)."""
        value = self.metrics.get(self.objective, math.nan)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return math.nan
        return float(value) if math.isfinite(value) else math.nan

    @property
    def infeasible(self) -> bool:
        """Whether the result violates a constraint of its run (``metrics["feasible"] == 0``)."""
        return self.metrics.get(FEASIBLE) == 0

    def to_dict(self) -> Dict[str, Any]:
        return {"metrics": dict(self.metrics), "cost_s": self.cost_s, "objective": self.objective,
                "protocol": dict(self.protocol)}

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Result":
        return cls(dict(data["metrics"]), float(data.get("cost_s", 0.0)), data.get("objective", "accuracy"),
                   dict(data.get("protocol", {})))


def _metric_value(value: Any, name: Optional[str]) -> Optional[float]:
    """A metric as a Python number (None stays None: a metric the evaluator could not compute; a string is
    kept as a label, e.g. an evaluation id)."""
    if value is None or isinstance(value, (int, float, str)) and not isinstance(value, bool):
        return value
    try:
        converted = plain(value)
    except TypeError:
        converted = value
    if isinstance(converted, bool) or not isinstance(converted, (int, float)):
        what = "cost_s" if name is None else f"metric {name!r}"
        raise EvaluationError(f"{what} of an evaluation result must be a number, got a {type(value).__name__} "
                              f"({str(value)[:60]})")
    return converted


class Evaluator(abc.ABC):
    """``evaluate(arch) -> Result``. Subclasses describe themselves in :meth:`describe`.

    An evaluator registered in ``nastk.evaluators.EVALUATORS`` (``--evaluator KIND[:TARGET]``) declares
    what a run config needs to rebuild it: its ``OPTIONS``, the constructor argument ``TARGET`` fills,
    and whether it builds networks (then it gets the space's ``BUILD_OPTIONS`` as ``build_options``).
    Its module must import cheaply (torch inside methods), because the CLI reads these declarations to
    build its flags.
    """

    #: Metric name the evaluator's results use as objective.
    objective: str = "accuracy"
    #: Options of this evaluator (flags, config keys, constructor keywords); see :class:`nastk.options.Option`.
    OPTIONS: Tuple[Option, ...] = ()
    #: The constructor argument that the text after ``KIND:`` fills (``proxy:synflow`` -> ``proxy``), or None.
    target: Optional[str] = None
    #: What ``target`` names, for messages and help (``NAME``, ``RUN_DIR``, ``PATH``).
    target_metavar: str = "VALUE"
    #: Whether it builds the space's networks (and so takes the space's build options, e.g. NB201's C and N).
    builds_networks: bool = False
    #: Whether those networks default to the space's own size (``build()``'s defaults) rather than the
    #: smaller ones its ``BUILD_OPTIONS`` declare for training searches.
    full_size_networks: bool = False
    #: A training-free evaluator whose winner is also reported with the space's benchmark ground truth.
    reports_benchmark: bool = False
    #: Whether a finished search has retrained its winner (:meth:`final_model`), so its run folder must hold
    #: the weights (``winner.pt``) that ``nastk export`` loads.
    retrains_winner: bool = False
    #: Values of options added later that a run config written before they existed implicitly used
    #: (read back in their place, so a resumed run keeps scoring as it did).
    UNRECORDED_DEFAULTS: Dict[str, Any] = {}

    @classmethod
    def from_config(cls, space, config: Dict[str, Any], seed: int = 0, *, device) -> "Evaluator":
        """The evaluator a run config's ``evaluator`` mapping describes (keys: ``target``, the declared
        options, ``build``), running its networks on ``device`` (required: the run's ``--device``)."""
        kwargs = {option.name: config[option.name] for option in cls.OPTIONS if option.name in config}
        if cls.target:
            kwargs[cls.target] = config[cls.target]
        if cls.builds_networks:
            kwargs["build_options"] = config.get("build", {})
        return cls(space, seed=seed, device=device, **kwargs)

    @classmethod
    def settle_config(cls, space, config: Dict[str, Any]) -> None:
        """Fill in or check a new run config's evaluator mapping before anything runs (default: as is)."""

    @classmethod
    def fingerprint(cls, config: Dict[str, Any]) -> Optional[str]:
        """A digest of the file this evaluator's results come from (a saved predictor, a supernet's
        checkpoint), or None when there is none. The run config records it (``evaluator.fingerprint``), so
        a run whose file was replaced is refused on resume instead of mixing two evaluators in one journal."""
        return None

    @abc.abstractmethod
    def evaluate(self, arch: Architecture) -> Result:
        ...

    def describe(self) -> Dict[str, Any]:
        return {"evaluator": type(self).__name__, "objective": self.objective}

    def final_metrics(self, arch: Architecture) -> Optional[Dict[str, float]]:
        """Metrics to report for the search's winner (e.g. its benchmark test accuracy), if any."""
        return None

    def final_model(self):
        """The winner's network as :meth:`final_metrics` trained it (a ``torch.nn.Module``), or None when
        this evaluator trains nothing; the run folder keeps its weights for ``nastk export``."""
        return None

    def network_options(self) -> Optional[Dict[str, Any]]:
        """Keywords of the space's ``cost()`` describing the networks this evaluator scores (a super-resolution
        supernet's scale and width), which ``--objectives`` / ``--constraint`` costs use; None: not said (the
        costs of the network the run's dataset describes)."""
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

    def final_model(self):
        return self.inner.final_model()

    def network_options(self) -> Optional[Dict[str, Any]]:
        return self.inner.network_options()
