"""Search strategies compared on NAS-Bench-201 (``nastk reproduce nb201``).

Every strategy runs on the one engine (:func:`nastk.run.run_search`) against the benchmark evaluator
under NB201's search protocol: each query returns the 12-epoch validation accuracy (cifar10 searches
use cifar10-valid) and costs the simulated time of that training; a run reports the 200-epoch test
accuracy of the architecture with the best search objective. Two budgets are compared:

* **equal queries**: the first ``budget`` queries of every run;
* **equal simulated training time**: T = the mean time random search spends on ``budget`` queries
  (per dataset); each run keeps the queries whose cumulative cost fits in T.

A run continues until both budgets are spent (at most ``max_queries``); stopping a sequential search
later does not change its earlier queries, so one run gives both results. Relative improvement
(methods.md section 14) is over the random-search average of the same budget; Welch's t-test gives
p against random search.
"""
from __future__ import annotations

import math
import platform
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from nastk.errors import ConfigError
from nastk.trial import Stop

STRATEGIES = ("random", "re", "bo-tpe", "bo-gp", "nsga2")
LABELS = {"random": "Random search", "re": "Regularized evolution (REA)", "bo-tpe": "BO, TPE (optuna)",
          "bo-gp": "BO, GP (optuna)", "nsga2": "NSGA-II (optuna), accuracy only"}
DATASETS = ("cifar10", "cifar100", "ImageNet16-120")
#: Best 200-epoch test accuracy in the space (methods.md 0.2, computed from the benchmark tables).
OPTIMUM = {"cifar10": 94.37, "cifar100": 73.51, "ImageNet16-120": 47.31}
#: Recalled from the NB201 paper (Dong & Yang, ICLR 2020), not checked against its text: mean +- std
#: test accuracy of REA and random search under its 12-epoch-validation search protocol.
PUBLISHED = {"REA": {"cifar10": (93.92, 0.30), "cifar100": (71.84, 0.99), "ImageNet16-120": (45.54, 1.03)},
             "RS": {"cifar10": (93.70, 0.36), "cifar100": (71.04, 1.07), "ImageNet16-120": (44.57, 1.25)}}
TIME_GRID = 60


@dataclass
class Settings:
    strategies: Tuple[str, ...] = STRATEGIES
    datasets: Tuple[str, ...] = DATASETS
    seeds: Tuple[int, ...] = tuple(range(20))
    budget: int = 100
    max_queries: int = 300
    jobs: int = 1

    @classmethod
    def quick(cls) -> "Settings":
        """A small version for CI: every strategy, one dataset, two seeds, 20 queries."""
        return cls(datasets=("cifar10",), seeds=(0, 1), budget=20, max_queries=60)


@dataclass
class Trace:
    """One search: per query, the search objective, the test accuracy and the simulated cost."""

    strategy: str
    dataset: str
    seed: int
    objective: List[float] = field(default_factory=list)
    test: List[float] = field(default_factory=list)
    cost: List[float] = field(default_factory=list)
    archs: List[str] = field(default_factory=list)
    wall_s: float = 0.0

    def best_test(self, n: int) -> float:
        """Test accuracy of the best-objective architecture among the first ``n`` queries (first on ties)."""
        keys = [v if math.isfinite(v) else -math.inf for v in self.objective[:n]]
        return self.test[int(np.argmax(keys))] if keys else math.nan

    def queries_within(self, seconds: float) -> int:
        return int(np.searchsorted(np.cumsum(self.cost), seconds, side="right"))

    def best_test_curve(self, n: int) -> np.ndarray:
        """Best-so-far (by objective) test accuracy after 1..n queries."""
        return np.array([self.best_test(k) for k in range(1, n + 1)])


def search_trace(strategy: str, dataset: str, seed: int, stop: Union[int, Stop]) -> Trace:
    """Run one search on the engine until ``stop`` (a query budget or a :class:`~nastk.trial.Stop`)."""
    from nastk.evaluators.benchmark import BenchmarkEvaluator
    from nastk.run import run_search
    from nastk.space import get_space
    from nastk.strategy import make_strategy

    trace = Trace(strategy, dataset, seed)

    started = time.perf_counter()
    space = get_space("nb201")
    outcome = run_search(make_strategy(strategy, space, seed=seed), BenchmarkEvaluator(dataset), stop)
    for trial in outcome.trials:
        trace.objective.append(float(trial.result.metrics["accuracy"]))
        trace.test.append(float(trial.result.metrics["test_accuracy"]))
        trace.cost.append(float(trial.result.cost_s))
        trace.archs.append(trial.arch)
    trace.wall_s = time.perf_counter() - started
    return trace


def _traces(jobs: Sequence[Tuple], workers: int, progress: Optional[Callable[[Trace], None]]) -> List[Trace]:
    """Run ``search_trace(*job)`` for every job, in ``workers`` processes when more than one."""
    out = []
    if workers <= 1:
        for job in jobs:
            out.append(search_trace(*job))
            if progress:
                progress(out[-1])
        return out
    import multiprocessing

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for trace in pool.map(search_trace, *zip(*jobs)):
            out.append(trace)
            if progress:
                progress(trace)
    return out


def compare(settings: Settings, progress: Optional[Callable[[Trace], None]] = None) -> Dict[str, Any]:
    """Run every (dataset, strategy, seed) and summarise both budgets; returns a JSON-able dict."""
    unknown = [s for s in settings.strategies if s not in LABELS]
    if unknown or "random" not in settings.strategies:
        raise ConfigError(f"strategies must include random (the baseline) and come from {', '.join(LABELS)}; "
                          f"got {', '.join(settings.strategies)}")
    if settings.max_queries < settings.budget:
        raise ConfigError(f"max_queries ({settings.max_queries}) must be at least the budget ({settings.budget})")
    started = time.perf_counter()
    # Random search first: its mean cost of `budget` queries is the equal-time budget T.
    random_runs = _traces([("random", d, s, settings.max_queries) for d in settings.datasets for s in settings.seeds],
                          settings.jobs, progress)
    seconds = {d: float(np.mean([sum(t.cost[:settings.budget]) for t in random_runs if t.dataset == d]))
               for d in settings.datasets}
    others = [(name, d, s, Stop(settings.max_queries, cost_s=seconds[d], min_queries=settings.budget))
              for d in settings.datasets for name in settings.strategies if name != "random" for s in settings.seeds]
    traces = random_runs + _traces(others, settings.jobs, progress)
    return {"settings": asdict(settings), "time_budget_s": seconds, "optimum": OPTIMUM,
            "published": {k: {d: list(v) for d, v in row.items()} for k, row in PUBLISHED.items()},
            "results": {d: _summarise([t for t in traces if t.dataset == d], settings, seconds[d])
                        for d in settings.datasets},
            "wall_s": round(time.perf_counter() - started, 1), "machine": machine()}


def _summarise(traces: List[Trace], settings: Settings, seconds: float) -> Dict[str, Any]:
    from scipy.stats import ttest_ind

    from nastk.metrics import relative_improvement

    by_name = {name: [t for t in traces if t.strategy == name] for name in settings.strategies}
    baseline = {"queries": [t.best_test(settings.budget) for t in by_name["random"]],
                "time": [t.best_test(t.queries_within(seconds)) for t in by_name["random"]]}
    grid = np.linspace(0, seconds, TIME_GRID + 1)[1:]
    out = {}
    for name, runs in by_name.items():
        row: Dict[str, Any] = {}
        for budget, values in (("queries", [t.best_test(settings.budget) for t in runs]),
                               ("time", [t.best_test(t.queries_within(seconds)) for t in runs])):
            test = ttest_ind(values, baseline[budget], equal_var=False) if name != "random" else None
            row[budget] = {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                           "values": values, "ri_percent": relative_improvement(values, baseline[budget]),
                           "p_vs_random": None if test is None or math.isnan(test.pvalue) else float(test.pvalue)}
        curves = np.stack([t.best_test_curve(settings.budget) for t in runs])
        timed = np.stack([[t.best_test(t.queries_within(s)) for s in grid] for t in runs])
        row["curve_queries"] = {"mean": curves.mean(0).tolist(), "sem": _sem(curves).tolist()}
        with warnings.catch_warnings():  # NaN where a run's first query does not fit yet
            warnings.simplefilter("ignore", RuntimeWarning)
            row["curve_time"] = {"seconds": grid.tolist(), "mean": np.nanmean(timed, 0).tolist(),
                                 "sem": _sem(timed).tolist()}
        row["queries_within_time"] = float(np.mean([t.queries_within(seconds) for t in runs]))
        row["capped_runs"] = sum(len(t.cost) >= settings.max_queries and sum(t.cost) <= seconds for t in runs)
        row["unique_archs"] = float(np.mean([len(set(t.archs[:settings.budget])) for t in runs]))
        row["ms_per_query"] = float(1000 * np.mean([t.wall_s / max(len(t.cost), 1) for t in runs]))
        out[name] = row
    return out


def _sem(values: np.ndarray) -> np.ndarray:
    count = np.sum(np.isfinite(values), axis=0)
    return np.nanstd(values, axis=0, ddof=1) / np.sqrt(np.maximum(count, 1)) if values.shape[0] > 1 else np.zeros(values.shape[1])


def machine() -> Dict[str, Any]:
    import os

    import optuna

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "python": platform.python_version(), "optuna": optuna.__version__}


# --- the report ------------------------------------------------------------------------------------
def write_report(report: Dict[str, Any], out_dir, name: str, command: str) -> Dict[str, str]:
    """``<name>.md``, ``<name>.json`` and ``<name>_anytime.png`` in ``out_dir``; returns their paths."""
    import json
    from pathlib import Path

    from nastk.paths import atomic_write

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / f"{name}.md", "json": out / f"{name}.json", "plot": out / f"{name}_anytime.png"}
    plot_anytime(report, paths["plot"])
    with atomic_write(paths["json"], "w") as handle:
        json.dump({**report, "command": command}, handle, indent=1)
    with atomic_write(paths["markdown"], "w") as handle:
        handle.write(markdown(report, command, paths["plot"].name))
    return {key: str(path) for key, path in paths.items()}


def _cell(stats: Dict[str, Any]) -> str:
    return f"{stats['mean']:.2f} ± {stats['std']:.2f}"


def _ri(stats: Dict[str, Any]) -> str:
    p = stats["p_vs_random"]
    return f"{stats['ri_percent']:+.2f}%" + ("" if p is None else f" (p={p:.2g})")


def markdown(report: Dict[str, Any], command: str, plot_name: str) -> str:
    settings, results = report["settings"], report["results"]
    datasets, strategies = settings["datasets"], settings["strategies"]
    seeds = settings["seeds"]
    head = "| method | " + " | ".join(datasets) + " |\n|---|" + "---|" * len(datasets) + "\n"
    lines = [
        "# NAS-Bench-201 search: random, REA, BO (TPE, GP) and NSGA-II",
        "",
        f"Command: `{command}` ({len(seeds)} seeds: {seeds[0]}..{seeds[-1]}; wall {report['wall_s']:.0f} s on "
        f"{report['machine']['cpus']} CPUs, {report['machine']['platform']}, Python {report['machine']['python']}, "
        f"optuna {report['machine']['optuna']}).",
        "",
        "Protocol (NB201's search protocol): every query returns the 12-epoch validation accuracy (cifar10 "
        "searches query cifar10-valid) and costs that training's simulated time; a run returns the "
        "architecture with the best validation accuracy, reported here by its 200-epoch test accuracy "
        "(mean ± std over seeds). Every query counts, also a repeated architecture.",
        "",
        f"## Equal query budget ({settings['budget']} queries)",
        "",
        head.rstrip("\n"),
    ]
    for name in strategies:
        lines.append(f"| {LABELS[name]} | " + " | ".join(_cell(results[d][name]["queries"]) for d in datasets) + " |")
    lines.append("| optimum of the space | " + " | ".join(f"{OPTIMUM[d]:.2f}" for d in datasets) + " |")
    for key, label in (("REA", "NB201 paper, REA (recalled, not verified)"), ("RS", "NB201 paper, RS (recalled, not verified)")):
        lines.append(f"| {label} | " + " | ".join(
            "{:.2f} ± {:.2f}".format(*PUBLISHED[key][d]) if d in PUBLISHED[key] else "n/a" for d in datasets) + " |")
    lines += ["", "## Equal simulated training time", "",
              "T per dataset = mean simulated time random search spends on "
              f"{settings['budget']} queries: " + ", ".join(
                  f"{d} {report['time_budget_s'][d] / 3600:.2f} h" for d in datasets) + ". "
              "(cifar100 and ImageNet16-120 times are estimated from the recorded cifar10-valid times; see "
              "docs/architecture.md.)", "", head.rstrip("\n")]
    for name in strategies:
        lines.append(f"| {LABELS[name]} | " + " | ".join(
            f"{_cell(results[d][name]['time'])} ({results[d][name]['queries_within_time']:.0f} q)" for d in datasets) + " |")
    lines += ["", "(q: mean number of queries that fit in T.)", "",
              "## Relative improvement over random search (methods.md 14)", "",
              "RI = 100 (mean method accuracy - mean random accuracy) / mean random accuracy; p from Welch's t-test "
              "against the random-search runs.", "",
              "| method | " + " | ".join(f"{d}, {b}" for d in datasets for b in ("queries", "time")) + " |",
              "|---|" + "---|" * (2 * len(datasets))]
    for name in strategies:
        if name != "random":
            lines.append(f"| {LABELS[name]} | " + " | ".join(
                _ri(results[d][name][b]) for d in datasets for b in ("queries", "time")) + " |")
    lines += ["", "## Anytime performance", "",
              f"![anytime curves]({plot_name})", "",
              "Mean best-so-far test accuracy (shaded: ± standard error over seeds) against queries and against "
              "simulated training time.", "",
              "## Diagnostics", "",
              "| method | " + " | ".join(f"{d}: distinct archs / {settings['budget']} q" for d in datasets)
              + " | wall ms per query (cifar10) |",
              "|---|" + "---|" * (len(datasets) + 1)]
    for name in strategies:
        lines.append(f"| {LABELS[name]} | " + " | ".join(f"{results[d][name]['unique_archs']:.1f}" for d in datasets)
                     + f" | {results[datasets[0]][name]['ms_per_query']:.1f} |")
    capped = {d: {n: results[d][n]["capped_runs"] for n in strategies if results[d][n]["capped_runs"]} for d in datasets}
    lines += ["", "Notes:", "",
              "- The published NB201 numbers come from a different setting (their own simulated time budget and "
              "seed count) and are shown for orientation only; they are recalled from the paper, not checked.",
              "- Settings: BO-TPE and BO-GP start with 10 random trials (optuna's default); the GP (log EI) is told "
              "the objective is noise-free (a table look-up is); NSGA-II has population 10 with optuna's uniform "
              "crossover (prob. 0.9) and mutation (1/6 per edge); REA population 10, tournament 3 (NB201's settings).",
              "- Runs stopped at max_queries before spending T: "
              + (", ".join(f"{d}: {v}" for d, v in capped.items() if v) or "none") + "."]
    return "\n".join(lines) + "\n"


def plot_anytime(report: Dict[str, Any], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets, strategies = report["settings"]["datasets"], report["settings"]["strategies"]
    fig, axes = plt.subplots(2, len(datasets), figsize=(4.6 * len(datasets), 7.2), squeeze=False)
    for column, dataset in enumerate(datasets):
        for name in strategies:
            row = report["results"][dataset][name]
            for axis, curve, xs in ((axes[0][column], row["curve_queries"], np.arange(1, len(row["curve_queries"]["mean"]) + 1)),
                                    (axes[1][column], row["curve_time"], np.array(row["curve_time"]["seconds"]) / 3600)):
                mean, sem = np.array(curve["mean"]), np.array(curve["sem"])
                axis.plot(xs, mean, label=LABELS[name], lw=1.4)
                axis.fill_between(xs, mean - sem, mean + sem, alpha=0.2)
        for axis in axes[:, column]:
            axis.axhline(OPTIMUM[dataset], c="k", ls=":", lw=1, label="optimum")
            axis.grid(alpha=0.3)
            axis.set_ylabel("test accuracy of best-so-far (%)")
        low = min(np.nanmin(report["results"][dataset][n]["curve_queries"]["mean"][len(
            report["results"][dataset][n]["curve_queries"]["mean"]) // 5:]) for n in strategies)
        for axis in axes[:, column]:
            axis.set_ylim(low - 0.5, OPTIMUM[dataset] + 0.3)
        axes[0][column].set_title(dataset)
        axes[0][column].set_xlabel("queries")
        axes[1][column].set_xlabel("simulated training time (h)")
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
