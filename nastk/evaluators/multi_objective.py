"""Multi-objective evaluation: accuracy plus the costs a deployment cares about, and the Pareto front.

:class:`ObjectivesEvaluator` wraps any evaluator and adds cost metrics to each :class:`Result`:
``params_m`` and ``flops_m`` (the stand-alone network, counted by :meth:`SearchSpace.cost`) and the
HW-NAS-Bench latencies and energies (:mod:`nastk.benchmarks.hw_nas_bench`). The result's own
objective is unchanged, so single-objective strategies keep working and multi-objective ones (NSGA-II,
MOTPE) read the extra metrics named by :func:`parse_objectives`.

The Pareto front of a search's history comes from optuna's own non-dominated sorting
(``Study.best_trials``), so nastk has no sorting code of its own.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from nastk.architecture import Architecture
from nastk.benchmarks import hw_nas_bench
from nastk.errors import ConfigError
from nastk.evaluator import Evaluator, Result
from nastk.space import SearchSpace
from nastk.trial import Trial


@dataclass(frozen=True)
class Objective:
    """One objective: its CLI name, the metric it reads (None: the result's own objective), direction."""

    name: str
    metric: Optional[str]
    direction: str  # "maximize" or "minimize"
    label: str

    def value(self, result: Result) -> float:
        value = result.value if self.metric is None else result.metrics.get(self.metric, math.nan)
        return float(value) if value is not None and math.isfinite(value) else math.nan


def _known() -> Dict[str, Objective]:
    from nastk.benchmarks.hw_nas_bench import COLUMNS, units

    known = {"acc": Objective("acc", None, "maximize", "search objective (accuracy)"),
             "params": Objective("params", "params_m", "minimize", "parameters (M)"),
             "flops": Objective("flops", "flops_m", "minimize", "FLOPs (M)")}
    for column in COLUMNS:
        _, unit = units(column)
        known[column] = Objective(column, column, "minimize", f"{column.replace('_', ' ')} ({unit})")
    known["latency"] = Objective("latency", "edgegpu_latency", "minimize", known["edgegpu_latency"].label)
    known["energy"] = Objective("energy", "edgegpu_energy", "minimize", known["edgegpu_energy"].label)
    return known


def parse_objectives(spec: Union[None, str, Sequence[str]]) -> Tuple[Objective, ...]:
    """``"acc,params"`` (or a list of names) -> objectives; the first must be ``acc``."""
    if spec is None:
        return (_known()["acc"],)
    names = [n.strip() for n in spec.split(",")] if isinstance(spec, str) else [str(n) for n in spec]
    known = _known()
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ConfigError(f"unknown objective(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(known)}")
    if names[0] != "acc" or len(set(names)) != len(names):
        raise ConfigError(f"--objectives must start with acc and name each objective once, got {','.join(names)}")
    return tuple(known[n] for n in names)


class ObjectivesEvaluator(Evaluator):
    """Adds params/FLOPs and HW-NAS-Bench costs (on ``dataset``) to another evaluator's results."""

    def __init__(self, inner: Evaluator, space: SearchSpace, dataset: str, objectives: Sequence[Objective]):
        self.inner, self.space, self.dataset = inner, space, dataset
        self.objective = inner.objective
        self.objectives = tuple(objectives)
        metrics = {o.metric for o in self.objectives if o.metric}
        self.needs_cost = bool(metrics & {"params_m", "flops_m"})
        self.needs_hardware = bool(metrics - {"params_m", "flops_m"})
        if self.needs_cost:
            space.require("build")
        if self.needs_hardware and space.name != hw_nas_bench.SPACE:
            raise ConfigError(f"hardware costs come from HW-NAS-Bench, which covers {hw_nas_bench.SPACE} only, "
                              f"not {space.name!r}")

    def costs(self, arch: Architecture) -> Dict[str, float]:
        out: Dict[str, float] = {}
        if self.needs_cost:
            out.update(_network_cost(self.space, arch, self.dataset))
        if self.needs_hardware:
            from nastk.benchmarks.hw_nas_bench import default_hw_table

            out.update(default_hw_table().metrics(arch, self.dataset))
        return out

    def evaluate(self, arch: Architecture) -> Result:
        result = self.inner.evaluate(arch)
        return Result({**result.metrics, **self.costs(arch)}, result.cost_s, result.objective, result.protocol)

    def final_metrics(self, arch: Architecture) -> Optional[Dict[str, float]]:
        final = self.inner.final_metrics(arch)
        return None if final is None else {**final, **self.costs(arch)}

    def final_model(self):
        return self.inner.final_model()

    def describe(self) -> Dict[str, Any]:
        return {**self.inner.describe(), "objectives": [o.name for o in self.objectives]}


@lru_cache(maxsize=65536)
def _network_cost(space: SearchSpace, arch: Architecture, dataset: str) -> Dict[str, float]:
    """Params/FLOPs of the stand-alone network for ``dataset`` (NB201: its classes and input size).

    Counting runs one tiny forward pass of many small ops, where extra threads only add overhead.
    """
    import torch

    from search_spaces.nb201 import NUM_CLASSES

    options = {}
    if dataset in NUM_CLASSES:
        options = {"num_classes": NUM_CLASSES[dataset], "input_size": 16 if dataset == "ImageNet16-120" else 32}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return dict(space.cost(arch, **options))
    finally:
        torch.set_num_threads(threads)


def with_objectives(evaluator: Evaluator, space: SearchSpace, config: Dict[str, Any]) -> Evaluator:
    """The run's evaluator with the cost metrics its ``objectives`` need (unchanged when none are set)."""
    objectives = parse_objectives(config.get("objectives"))
    if len(objectives) == 1:
        return evaluator
    dataset = config["evaluator"].get("dataset") or "cifar10"
    return ObjectivesEvaluator(evaluator, space, dataset, objectives)


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


def plot_pareto(history: Sequence[Trial], objectives: Sequence[Objective], path, title: str = "") -> None:
    """Search objective against each other objective: every evaluation (grey), the front over all
    objectives (red points) and the two-objective front of each panel (staircase)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
        pair = sorted((row[objective.name], row[quality.name]) for row in pareto_front(history, (quality, objective)))
        if objective.direction == "maximize":
            pair.reverse()
        axis.step([x for x, _ in pair], [y for _, y in pair], where="post", c="C0", lw=1,
                  label="front of these two")
        axis.set_xlabel(objective.label)
        axis.set_ylabel(quality.label)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
