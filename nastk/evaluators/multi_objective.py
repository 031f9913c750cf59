"""Objectives and constraints: the evaluator's score plus the costs a deployment cares about, the Pareto front, and
constrained search.

**Objectives** are looked up by name in :data:`OBJECTIVES` (a :class:`~nastk.registry.Registry`, so a
package adds its own through the entry-point group ``nastk.objectives``; Python code calls
:func:`register_objective`). Built in: ``score`` (the result's own objective, maximised; ``acc`` is
its older name), ``psnr`` (the same, named for an evaluator whose score is a PSNR in dB, as a super-resolution
supernet's: refused with one line for any other evaluator), ``params`` and ``flops`` (``params_m``/``flops_m``, millions, from :meth:`SearchSpace.cost`), the HW-NAS-Bench
columns (``edgegpu_latency`` ...; ``latency``/``energy`` are EdgeGPU's). Any other metric, one an
evaluator returns (a key of ``Result.metrics``) or one the space's ``cost()`` returns (NB201:
``params_m``, ``flops_m``; a space may add ``latency_ms``, ``bitops_g`` ...), is an objective without
registering it: ``metric:NAME[:min|max]`` (``min`` when no direction is given).

**Constraints** (``--constraint 'flops<=300'``, repeatable or comma-separated; config key
``constraints``) are ``NAME OP VALUE``: NAME an objective name, the metric of one (``flops_m``) or
``metric:NAME``; OP one of ``<= < >= >``; VALUE in the metric's own units (``flops`` is in millions:
``flops<=300`` is 300 MFLOPs, and a bound of 100000 or more on a metric in millions is refused as the
likely mistake ``flops<=300e6``). :class:`ObjectivesEvaluator` adds to every result ``feasible`` (1/0)
and ``violation:<constraint>`` (how far the value is beyond the bound, in its units; 0 when satisfied,
None when not measured). A constraint whose metric comes from the space's ``cost()`` or HW-NAS-Bench is
checked *before* evaluating: a violating architecture is recorded as infeasible without being
evaluated (``cost_s`` 0, ``protocol["skipped"]`` says why). An infeasible result has no objective value
(:attr:`Result.value` is NaN), which every strategy already ranks worst, so the winner is the best
feasible architecture; optuna strategies also tell the study the violations
(``Trial.set_constraint``: constrained TPE, GP and NSGA-II's constrained domination).

The Pareto front of a search's history comes from optuna's own non-dominated sorting
(``Study.best_trials``), so nastk has no sorting code of its own.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from nastk.architecture import Architecture
from nastk.benchmarks import hw_nas_bench
from nastk.errors import ConfigError, EvaluationError, PluginError, UnknownNameError
from nastk.evaluator import FEASIBLE, Evaluator, Result
from nastk.registry import Registry
from nastk.space import SearchSpace
from nastk.trial import Trial

#: Prefix of the per-constraint metrics a constrained run adds (``violation:flops<=300``).
VIOLATION = "violation:"
#: The protocol key of a result recorded without evaluating it (its value says which constraint).
SKIPPED = "skipped"
#: The generic objective form: ``metric:NAME[:min|max]``.
METRIC_PREFIX = "metric:"
#: Metrics that :meth:`SearchSpace.cost` always returns (a space without ``cost()`` cannot give them).
COST_METRICS = frozenset({"params_m", "flops_m"})
#: ``unit`` of an objective counted in millions (bounds of 100000 or more are refused as a unit slip).
MILLIONS = "millions"
_IMPLAUSIBLE_MILLIONS = 1e5
_DIRECTIONS = {"max": "maximize", "maximize": "maximize", "min": "minimize", "minimize": "minimize"}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*\Z")
_METRIC = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./\-]*\Z")


@dataclass(frozen=True)
class Objective:
    """One objective: its CLI name, the metric it reads (None: the result's own objective), direction,
    a label for plots and the metric's unit (``millions``, ``ms``, ...; for messages). ``score``: for the
    result's own objective, the evaluator metric it must be (``psnr``); None: whatever the evaluator scores."""

    name: str
    metric: Optional[str]
    direction: str  # "maximize" or "minimize"
    label: str
    unit: str = ""
    score: Optional[str] = None

    def value(self, result: Result, raw: bool = False) -> float:
        """The objective's value in ``result``; NaN when missing or not finite. ``score`` of an infeasible
        result is NaN too, unless ``raw`` (the measured value, for constraint checks and optuna)."""
        if self.metric is None:
            return result.raw_value if raw else result.value
        return _number(result.metrics.get(self.metric))

    @property
    def worst(self) -> float:
        """The value ranked worst in this objective's direction (an infeasible trial's stand-in)."""
        return -math.inf if self.direction == "maximize" else math.inf


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value) if math.isfinite(value) else math.nan


#: Objectives by name; packages add theirs through the entry-point group ``nastk.objectives`` (an
#: entry point names an :class:`Objective`), Python code through :func:`register_objective`.
OBJECTIVES: Registry[Objective] = Registry("objective", group="nastk.objectives", instance_of=Objective)
_BUILT_IN: Tuple[str, ...] = ()


def _register_built_ins() -> None:
    global _BUILT_IN
    from nastk.benchmarks.hw_nas_bench import COLUMNS, units

    built_in = [Objective("score", None, "maximize",
                          "the evaluator's own objective (an accuracy, a proxy's score, a PSNR, ...)"),
                Objective("psnr", None, "maximize", "PSNR (dB)", "dB", score="psnr"),
                Objective("params", "params_m", "minimize", "parameters (M)", MILLIONS),
                Objective("flops", "flops_m", "minimize", "FLOPs (M)", MILLIONS),
                # mixed-precision spaces (quant:SPACE): multiply-adds x weight bits x activation bits, weight bits
                Objective("bitops", "bitops_m", "minimize", "BitOps (M)", MILLIONS),
                Objective("model_size", "model_size_kb", "minimize", "model size (kB)", "kB"),
                # EQ-Net's budget: the mean of the searched layers' weight and activation bits
                Objective("avg_bits", "avg_bits", "minimize", "average bits", "bits")]
    hardware = {}
    for column in COLUMNS:
        _, unit = units(column)
        hardware[column] = Objective(column, column, "minimize", f"{column.replace('_', ' ')} ({unit})", unit)
    built_in += list(hardware.values())
    built_in += [replace(hardware["edgegpu_latency"], name="latency"),
                 replace(hardware["edgegpu_energy"], name="energy")]
    for objective in built_in:
        OBJECTIVES.register(objective.name, objective)
    _BUILT_IN = tuple(o.name for o in built_in)


#: Older spellings still read (configs of earlier runs, habits): ``acc`` was ``score``'s name while the
#: evaluator's objective was always an accuracy.
OLD_NAMES = {"acc": "score"}


_register_built_ins()


def register_objective(name: str, metric: Optional[str], direction: str, label: str = "", unit: str = "",
                       replace_existing: bool = False) -> Objective:
    """Make ``--objectives score,NAME`` and ``--constraint 'NAME<=X'`` read ``metric`` (a key of the
    evaluator's ``Result.metrics`` or of the space's ``cost()``; None: the result's own objective)
    in ``direction`` (``maximize``/``minimize``, or ``max``/``min``). ``unit``: the metric's unit, for
    messages (``millions`` also refuses bounds of 100000 or more, the likely unit slip).

    Registered names live in this process: a run that other processes resume or join (``--workers``)
    needs the registration there too; a package's entry point (group ``nastk.objectives``) or the
    ``metric:NAME`` form needs nothing.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"an objective name is a word such as bitops (letters, digits, _ . -), got {name!r}")
    if name in _BUILT_IN or (name in OBJECTIVES and not replace_existing):
        raise ConfigError(f"objective {name!r} is already registered"
                          + ("" if name in _BUILT_IN else " (replace_existing=True replaces it)"))
    if metric is not None and (not isinstance(metric, str) or not _METRIC.match(metric)):
        raise ConfigError(f"objective {name}: metric must be a metric name such as bitops_g, got {metric!r}")
    objective = Objective(name, metric, _direction(direction, name), label or name, unit)
    OBJECTIVES.register(name, objective)
    return objective


def _direction(text: Any, what: str) -> str:
    direction = _DIRECTIONS.get(str(text).lower()) if isinstance(text, str) else None
    if direction is None:
        raise ConfigError(f"objective {what}: direction must be min or max (minimize/maximize), got {text!r}")
    return direction


def objective_names() -> List[str]:
    """Every objective name that ``--objectives`` takes (registered and installed), built-ins first."""
    return list(_BUILT_IN) + [n for n in OBJECTIVES.names() if n not in _BUILT_IN]


def _unknown(kind: str, names: Sequence[str]) -> ConfigError:
    return ConfigError(f"unknown {kind} {', '.join(names) or '(none given)'}; known: {', '.join(objective_names())}, "
                       f"or metric:NAME[:min|max] for any metric the evaluator or the space's cost() returns")


def get_objective(name: str) -> Objective:
    """The objective ``name`` means: a registered one (or an entry point's), or ``metric:NAME[:min|max]``."""
    objective = _lookup(name)
    if objective is None:
        raise _unknown("objective", [str(name)])
    return objective


def _lookup(name: Any) -> Optional[Objective]:
    """``name``'s objective; None when no objective has that name (a malformed metric: form raises)."""
    if not isinstance(name, str) or not name.strip():
        return None
    name = OLD_NAMES.get(name.strip(), name.strip())
    if name.startswith(METRIC_PREFIX):
        metric, _, direction = name[len(METRIC_PREFIX):].partition(":")
        if not _METRIC.match(metric):
            raise ConfigError(f"objective {name!r}: write metric:NAME[:min|max], NAME a metric such as bitops_g")
        direction = _direction(direction or "min", name)
        return Objective(f"{METRIC_PREFIX}{metric}:{direction[:3]}", metric, direction, metric, _unit_of(metric))
    try:
        objective = OBJECTIVES.get(name)
    except PluginError:  # a name that resolves to something unusable says so itself
        raise
    except UnknownNameError:
        return None
    if not isinstance(objective, Objective):
        raise ConfigError(f"objective {name!r} does not name a nastk.evaluators.multi_objective.Objective "
                          f"(got a {type(objective).__name__})")
    return objective if objective.name == name else replace(objective, name=name)


def _unit_of(metric: str) -> str:
    """The unit a built-in objective gives ``metric`` (so ``metric:flops_m`` is in millions too)."""
    for name in _BUILT_IN:
        objective = OBJECTIVES.get(name)
        if objective.metric == metric:
            return objective.unit
    return ""


def parse_objectives(spec: Union[None, str, Sequence[str]]) -> Tuple[Objective, ...]:
    """``"score,params,metric:bitops_g:min"`` (or a list of names) -> objectives; the first must be ``score``
    (the evaluator's own objective; ``acc`` is its older name; ``psnr`` when it is a PSNR: :func:`check_scores`).
    Each keeps its canonical name (``metric:bitops_g`` -> ``metric:bitops_g:min``), which run configs record."""
    if spec is None:
        return (OBJECTIVES.get("score"),)
    names = [n.strip() for n in spec.split(",")] if isinstance(spec, str) else [str(n) for n in spec]
    found = [_lookup(name) for name in names]
    unknown = [name for name, objective in zip(names, found) if objective is None]
    if unknown or not names:
        raise _unknown("objective(s)", unknown)
    canonical = [o.name for o in found]
    own = [o for o in found if o.metric is None]  # the evaluator's own score: first, and once
    if found[0].metric is not None or len(own) != 1 or len(set(canonical)) != len(canonical):
        raise ConfigError(f"--objectives must start with score (the evaluator's objective; acc is its older name, psnr "
                          f"names it when it is a PSNR) and name each objective once, got {','.join(names)}")
    return tuple(found)


def check_scores(evaluator: Evaluator, objectives: Sequence[Objective], constraints: Sequence["Constraint"] = (),
                 space: str = "") -> None:
    """Refuse, in one line, an objective or constraint naming the evaluator's score as what it is not (``psnr``
    with an evaluator whose score is an accuracy)."""
    for named, what in [(o, "objective") for o in objectives] + [(c.objective, f"constraint {c.text}:")
                                                                 for c in constraints]:
        if named.score and evaluator.objective != named.score:
            kind = evaluator.describe().get("evaluator", type(evaluator).__name__)
            where = f" on {space}" if space else ""
            raise ConfigError(f"{what} {named.name} names the evaluator's score only when it is a {named.label}; the "
                              f"{kind} evaluator{where} scores {evaluator.objective} (use score)")


# --- constraints ---------------------------------------------------------------------------------
_CONSTRAINT = re.compile(r"\s*(?P<name>[^<>=\s]+)\s*(?P<op><=|>=|<|>)\s*(?P<value>[^<>=]*?)\s*\Z")
_FORM = "NAME OP VALUE, OP one of <=, <, >=, > (e.g. flops<=300, quoted in a shell: --constraint 'flops<=300')"


@dataclass(frozen=True)
class Constraint:
    """``objective op bound``, e.g. FLOPs (millions) <= 300; ``text`` is how run configs record it."""

    objective: Objective
    op: str
    bound: float
    text: str

    @property
    def metric(self) -> Optional[str]:
        return self.objective.metric

    def violation(self, value: float) -> float:
        """How far ``value`` is beyond the bound, in the metric's units: 0 when satisfied, > 0 when
        violated (a strict bound met with equality counts as a tiny violation), NaN when ``value`` is."""
        if not math.isfinite(value):
            return math.nan
        excess = value - self.bound if self.op in ("<=", "<") else self.bound - value
        if excess > 0:
            return excess
        if excess == 0 and self.op in ("<", ">"):
            return math.ulp(max(abs(self.bound), 1.0))
        return 0.0

    def describe(self) -> str:
        unit = f" {self.objective.unit}" if self.objective.unit else ""
        metric = self.metric or "the search objective"
        return f"{self.text} ({metric}{unit})"


def parse_constraints(spec: Union[None, str, Sequence[str]]) -> Tuple[Constraint, ...]:
    """``"flops<=300,params<1.5"`` (or a list of such strings; None or empty: none) -> constraints."""
    if spec is None:
        return ()
    items = [spec] if isinstance(spec, str) else list(spec)
    if not all(isinstance(item, str) for item in items):
        raise ConfigError(f"constraints must be strings such as 'flops<=300', got {items!r}"[:200])
    texts = [part for item in items for part in item.split(",")]
    if len(texts) == 1 and not texts[0].strip():
        return ()
    constraints = [_constraint(text) for text in texts]
    seen = set()
    for constraint in constraints:
        if constraint.text in seen:
            raise ConfigError(f"constraint {constraint.text} is given twice")
        seen.add(constraint.text)
    return tuple(constraints)


def _constraint(text: str) -> Constraint:
    if not text.strip():
        raise ConfigError(f"empty constraint in the list; each is {_FORM}")
    shown = text.strip()[:80] + ("..." if len(text.strip()) > 80 else "")
    match = _CONSTRAINT.match(text)
    if match is None:
        raise ConfigError(f"bad constraint {shown!r}: expected {_FORM}")
    name, op, number = match.group("name"), match.group("op"), match.group("value")
    objective = _constraint_objective(name)
    try:
        if not number.isascii():
            raise ValueError(number)
        bound = float(number)
        if not math.isfinite(bound):
            raise ValueError(number)
    except ValueError:
        raise ConfigError(f"bad constraint {shown!r}: {number!r} is not a finite number") from None
    if objective.unit == MILLIONS and abs(bound) >= _IMPLAUSIBLE_MILLIONS:
        raise ConfigError(f"constraint {shown!r}: {name} is counted in millions ({objective.metric}), so this bound "
                          f"would mean {bound * 1e6:.3g}; for a bound of {bound:.3g} write {name}{op}{_format(bound / 1e6)}")
    return Constraint(objective, op, bound, f"{name}{op}{_format(bound)}")


def _constraint_objective(name: str) -> Objective:
    """What a constraint's NAME reads: an objective name, a registered objective's metric (``flops_m``)
    or ``metric:NAME``."""
    if name.startswith(METRIC_PREFIX):
        metric = name[len(METRIC_PREFIX):]
        if ":" in metric:
            raise ConfigError(f"constraint on {name!r}: a constraint names its metric without a direction "
                              f"(metric:NAME)")
        return get_objective(name)
    objective = _lookup(name)
    if objective is not None:
        return objective
    for known in objective_names():
        objective = OBJECTIVES.get(known)
        if isinstance(objective, Objective) and objective.metric == name:
            return replace(objective, name=name)
    raise ConfigError(f"unknown constraint metric {name!r}; known: {', '.join(objective_names())} "
                      f"(params and flops in millions, latency in ms, energy in mJ), or metric:NAME for any metric "
                      f"the evaluator or the space's cost() returns")


def _format(number: float) -> str:
    """A bound as written back into a constraint (300.0 -> 300, 0.1 -> 0.1, 3e-07 -> 3e-07)."""
    if number.is_integer() and abs(number) < 1e15:
        return str(int(number))
    return repr(number)


def format_value(value: Any, unit: str = "") -> str:
    """A value with its unit as summaries print it (``26.4412 dB``, ``3325.6448 M``; ``-`` when missing)."""
    from nastk.progress import format_score

    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "-"
    unit = "M" if unit == MILLIONS else unit
    return f"{format_score(value)} {unit}" if unit else format_score(value)


def score_objective(metric: Optional[str]) -> Optional[Objective]:
    """The built-in objective that names an evaluator's score ``metric`` (``psnr``), for its label and unit."""
    for name in _BUILT_IN:
        objective = OBJECTIVES.get(name)
        if objective.score is not None and objective.score == metric:
            return objective
    return None


def violations(result: Result) -> Dict[str, Optional[float]]:
    """A constrained result's violation of each constraint, by constraint text (empty: unconstrained)."""
    return {key[len(VIOLATION):]: value for key, value in result.metrics.items() if key.startswith(VIOLATION)}


def constraint_summary(history: Sequence[Trial], constraints: Sequence[str]) -> Dict[str, Any]:
    """How many of a search's trials were feasible, infeasible, and infeasible without being evaluated."""
    infeasible = [trial for trial in history if trial.result.infeasible]
    return {"constraints": list(constraints), "feasible": len(history) - len(infeasible),
            "infeasible": len(infeasible),
            "not_evaluated": sum(1 for trial in infeasible if SKIPPED in trial.result.protocol)}


# --- the evaluator -------------------------------------------------------------------------------
class ObjectivesEvaluator(Evaluator):
    """Adds the metrics the run's objectives and constraints read to another evaluator's results: every
    key of the space's ``cost()`` (params_m, flops_m, ...: computed on ``dataset``'s input) and the
    HW-NAS-Bench costs, when some objective or constraint reads one; with ``constraints``, also
    ``feasible`` and ``violation:<constraint>``, and architectures violating a cost constraint are not
    evaluated at all."""

    def __init__(self, inner: Evaluator, space: SearchSpace, dataset: str, objectives: Sequence[Objective],
                 constraints: Sequence[Constraint] = ()):
        self.inner, self.space, self.dataset = inner, space, dataset
        network = inner.network_options()
        #: the cost() keywords of the networks the inner evaluator scores (None: those of the dataset's network)
        self.network = None if network is None else tuple(sorted(network.items()))
        self.objective = inner.objective
        self.objectives = tuple(objectives)
        self.constraints = tuple(constraints)
        metrics = {o.metric for o in self.objectives if o.metric} | {c.metric for c in self.constraints if c.metric}
        self.hardware = metrics & set(hw_nas_bench.COLUMNS)
        self.cost_metrics = metrics & COST_METRICS  # only cost() gives these
        self.other_metrics = metrics - self.hardware - self.cost_metrics  # cost() keys or the evaluator's
        self.has_cost = type(space).cost is not SearchSpace.cost or "build" in space.capabilities
        if self.cost_metrics and type(space).cost is SearchSpace.cost:
            space.require("build")
        if self.hardware and space.name != hw_nas_bench.SPACE:
            raise ConfigError(f"hardware costs come from HW-NAS-Bench, which covers {hw_nas_bench.SPACE} only, "
                              f"not {space.name!r}")
        if self.hardware:  # a missing or corrupt table, or a dataset it lacks: refused before the run starts
            hw_nas_bench.default_hw_table().columns.get(hw_nas_bench._dataset(dataset))
        self._cost_keys: Optional[frozenset] = None  # what the space's cost() returns, once it has been called
        self._cost_error = ""
        self._metrics_checked = False

    def _wants_cost(self) -> bool:
        if self.cost_metrics:
            return True
        if not self.other_metrics or not self.has_cost:
            return False
        return self._cost_keys is None or bool(self.other_metrics & self._cost_keys)

    def costs(self, arch: Architecture) -> Dict[str, float]:
        """The metrics known without evaluating ``arch``: its space's ``cost()`` and HW-NAS-Bench costs."""
        out: Dict[str, float] = {}
        if self._wants_cost():
            try:
                cost = _network_cost(self.space, arch, self.dataset, self.network)
            except Exception as error:
                if self.cost_metrics or self._cost_keys is not None:
                    raise
                # Only asked to learn which metrics cost() gives: they are then the evaluator's to give.
                self._cost_keys, self._cost_error = frozenset(), " ".join(f"{type(error).__name__}: {error}".split())
                return self.costs(arch)
            if self._cost_keys is None:
                self._cost_keys = frozenset(cost)
            out.update(cost)
        if self.hardware:
            from nastk.benchmarks.hw_nas_bench import default_hw_table

            out.update(default_hw_table().metrics(arch, self.dataset))
        return out

    def evaluate(self, arch: Architecture) -> Result:
        costs = self.costs(arch)
        if self.constraints:
            early = {c.text: c.violation(_number(costs[c.metric])) for c in self.constraints if c.metric in costs}
            broken = [text for text, amount in early.items() if not amount <= 0]
            if broken:
                metrics = {**costs, FEASIBLE: 0, **{VIOLATION + c.text: early.get(c.text) for c in self.constraints}}
                return Result(metrics, 0.0, self.inner.objective,
                              {SKIPPED: f"violates {', '.join(broken)} (from the space's costs, before evaluating)"})
        result = self.inner.evaluate(arch)
        metrics = {**result.metrics, **costs}
        self._check_metrics(metrics)
        if self.constraints:
            measured = {c.text: result.raw_value if c.metric is None else _number(metrics.get(c.metric))
                        for c in self.constraints}
            amounts = {VIOLATION + c.text: c.violation(measured[c.text]) for c in self.constraints}
            metrics[FEASIBLE] = int(all(amount <= 0 for amount in amounts.values()))
            metrics.update(amounts)
        return Result(metrics, result.cost_s, result.objective, result.protocol)

    def _check_metrics(self, metrics: Dict[str, Any]) -> None:
        """On the first evaluated result: every metric an objective or constraint reads is there."""
        if self._metrics_checked:
            return
        self._metrics_checked = True
        wanted = [o.metric for o in self.objectives if o.metric] + [c.metric for c in self.constraints if c.metric]
        missing = [metric for metric in dict.fromkeys(wanted) if metric not in metrics]
        if missing:
            cost_keys = ", ".join(sorted(self._cost_keys or ())) or (
                f"none ({self._cost_error[:100]})" if self._cost_error else "none")
            given = ", ".join(k for k in metrics if k not in (self._cost_keys or ()) and k not in hw_nas_bench.COLUMNS)
            raise EvaluationError(f"no metric {', '.join(missing)} to optimise or constrain: the space's cost() gives "
                                  f"{cost_keys}; the evaluator's results give {given or 'none'}")

    def final_metrics(self, arch: Architecture) -> Optional[Dict[str, float]]:
        final = self.inner.final_metrics(arch)
        return None if final is None else {**final, **self.costs(arch)}

    def final_model(self):
        return self.inner.final_model()

    def describe(self) -> Dict[str, Any]:
        described = {**self.inner.describe(), "objectives": [o.name for o in self.objectives]}
        if self.constraints:
            described["constraints"] = [c.text for c in self.constraints]
        return described


@lru_cache(maxsize=65536)
def _network_cost(space: SearchSpace, arch: Architecture, dataset: str,
                  network: Optional[Tuple[Tuple[str, Any], ...]] = None) -> Dict[str, float]:
    """Every cost the space's ``cost()`` gives for the stand-alone network for ``dataset``: params_m and
    flops_m, and whatever else the space adds. The network has the classes and input size a benchmark
    states for ``dataset`` (the space's own benchmark first; e.g. NB201's ImageNet16-120: 120 classes,
    16x16), else the space's defaults; ``network`` (the evaluator's :meth:`~nastk.evaluator.Evaluator.network_options`,
    as ``(name, value)`` pairs) replaces that when the evaluator says which network it scores.

    Counting runs one tiny forward pass of many small ops, where extra threads only add overhead.
    """
    import torch

    from nastk.benchmarks.registry import benchmark_for, dataset_network_options, has_benchmark

    if network is not None:
        options = dict(network)
    else:
        options = benchmark_for(space.name).network_options(dataset) if has_benchmark(space.name) else {}
        options = options or dataset_network_options(dataset)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return dict(space.cost(arch, **options))
    finally:
        torch.set_num_threads(threads)


def with_objectives(evaluator: Evaluator, space: SearchSpace, config: Dict[str, Any]) -> Evaluator:
    """The run's evaluator with the metrics its ``objectives`` and ``constraints`` need (unchanged when
    neither is set)."""
    objectives = parse_objectives(config.get("objectives"))
    constraints = parse_constraints(config.get("constraints"))
    check_scores(evaluator, objectives, constraints, space.name)
    if len(objectives) == 1 and not constraints:
        return evaluator
    dataset = config["evaluator"].get("dataset") or "cifar10"
    return ObjectivesEvaluator(evaluator, space, dataset, objectives, constraints)


# --- the Pareto front ------------------------------------------------------------------------------
def pareto_front(history: Sequence[Trial], objectives: Sequence[Objective]) -> List[Dict[str, Any]]:
    """The non-dominated evaluations of a search's trials, one per architecture,
    best search objective first. Evaluations with a missing objective value cannot be ranked and are left out."""
    study = _scored_study(history, objectives)
    front = sorted(study.best_trials, key=lambda t: (-t.values[0], t.number))
    rows, seen = [], set()
    for trial in front:
        arch = trial.user_attrs["arch"]
        if arch not in seen:
            seen.add(arch)
            rows.append({"arch": arch, **{o.name: v for o, v in zip(objectives, trial.values)},
                         "test_accuracy": trial.user_attrs.get("test_accuracy")})
    return rows


def _scored_study(history: Sequence[Trial], objectives: Sequence[Objective]):
    """An in-memory optuna study holding the history's objective vectors (the input its sorting needs)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=[o.direction for o in objectives])
    trials = []
    for trial in history:
        result = trial.result
        values = [o.value(result) for o in objectives]
        if all(math.isfinite(v) for v in values):
            trials.append(optuna.trial.create_trial(
                values=values, user_attrs={"arch": trial.arch,
                                           "test_accuracy": result.metrics.get("test_accuracy")}))
    study.add_trials(trials)
    return study


def front_staircase(history: Sequence[Trial], quality: Objective, objective: Objective) -> Tuple[List[float], List[float]]:
    """The two-objective front of ``history`` (``objective`` on x, ``quality`` on y) as the corner points of a
    staircase drawn with ``where="post"``, in the order it is drawn."""
    pair = sorted((row[objective.name], row[quality.name]) for row in pareto_front(history, (quality, objective)))
    if objective.direction == "maximize":
        pair.reverse()
    return [x for x, _ in pair], [y for _, y in pair]


def plot_pareto(history: Sequence[Trial], objectives: Sequence[Objective], path, title: str = "") -> None:
    """Search objective against each other objective: every evaluation (grey), the front over all
    objectives (red points) and the two-objective front of each panel (staircase)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nastk.paths import save_figure

    front = {row["arch"] for row in pareto_front(history, objectives)}
    quality, others = objectives[0], objectives[1:]
    fig, axes = plt.subplots(1, len(others), figsize=(4.5 * len(others), 4), squeeze=False)
    results = [(trial.arch, trial.result) for trial in history]
    for axis, objective in zip(axes[0], others):
        points = [(objective.value(result), quality.value(result), arch in front) for arch, result in results]
        axis.scatter([x for x, _, on in points if not on], [y for _, y, on in points if not on],
                     s=10, c="0.65", label="evaluated")
        axis.scatter([x for x, _, on in points if on], [y for _, y, on in points if on],
                     s=18, c="C3", label="Pareto front, all objectives")
        xs, ys = front_staircase(history, quality, objective)
        axis.step(xs, ys, where="post", c="C0", lw=1, label="front of these two")
        axis.set_xlabel(objective.label)
        axis.set_ylabel(quality.label)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    try:
        save_figure(fig, path, dpi=120)
    finally:
        plt.close(fig)
