"""Search strategies compared on a space's benchmark (``nastk reproduce SPACE``).

Every strategy runs on the one engine (:func:`nastk.run_folder.run_search`) against the evaluator of the
space's benchmark (:func:`nastk.benchmarks.registry.benchmark_for`), under that benchmark's own
protocols: each query returns the search objective (NB201: the 12-epoch validation accuracy, cifar10
searches querying cifar10-valid; the DARTS 214-genotype table has no validation split, so its searches
select by the 600-epoch test accuracy, an oracle the report says it is) and costs the simulated
training time the benchmark records; a run reports the architecture with the best search objective
by its accuracy under the benchmark's report protocol (NB201: 200-epoch test). Two budgets:

* **equal queries**: the first ``budget`` queries of every run;
* **equal simulated training time**: T = the mean time random search spends on ``budget`` queries
  (per dataset); each run keeps the queries whose cumulative cost fits in T. Skipped when the
  benchmark records no training time (every query costs 0 s, as in the DARTS table).

A run continues until both budgets are spent (at most ``max_queries``); stopping a sequential search
later does not change its earlier queries, so one run gives both results. Relative improvement
(methods.md section 14) is over the random-search average of the same budget; Welch's t-test gives
p against random search.

An incomplete benchmark (DARTS: 214 of ~1e18 architectures) cannot score anything else, so its
searches stay in its architectures: random search draws from them and ``bo-encoding`` projects onto
them; strategies that propose from the whole space are refused.
"""
from __future__ import annotations

import math
import platform
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from nastk.errors import CapabilityError, ConfigError
from nastk.evaluators.benchmark import BenchmarkEvaluator
from nastk.trial import Stop

#: What a report compares by default on a complete benchmark (those whose ``requires`` the space meets).
STRATEGIES = ("random", "re", "bo-tpe", "bo-gp", "nsga2")
#: The strategies that can search a given pool of architectures, all an incomplete benchmark can score.
POOL_STRATEGIES = ("random", "bo-encoding")
LABELS = {"random": "Random search", "re": "Regularized evolution (REA)", "bo-tpe": "BO, TPE (optuna)",
          "bo-gp": "BO, GP (optuna)", "nsga2": "NSGA-II (optuna), accuracy only",
          "bo-encoding": "BO on the encoding (optuna GP)"}
#: Published results nastk has for a space: who published them, and per method the mean +- std test
#: accuracy per dataset. NB201's are recalled from the paper (Dong & Yang, ICLR 2020), not checked
#: against its text: REA and random search under its 12-epoch-validation search protocol.
PUBLISHED = {"nb201": ("NB201", {
    "REA": {"cifar10": (93.92, 0.30), "cifar100": (71.84, 0.99), "ImageNet16-120": (45.54, 1.03)},
    "RS": {"cifar10": (93.70, 0.36), "cifar100": (71.04, 1.07), "ImageNet16-120": (44.57, 1.25)}})}
#: The report's notes on each strategy's settings, for the strategies it compares, in this order.
SETTING_NOTES = (
    (("bo-tpe", "bo-gp"), "BO-TPE and BO-GP start with 10 random trials (optuna's default); the GP (log EI) is "
                          "told the objective is noise-free (a table look-up is)"),
    (("nsga2",), "NSGA-II has population 10 with optuna's uniform crossover (prob. 0.9) and mutation (each of the "
                 "space's n parameters with prob. 1/n; NB201: 1/6 per edge)"),
    (("re",), "REA population 10, tournament 3 (NB201's settings)"),
    (("bo-encoding",), "BO on the encoding starts with 10 random trials, then optuna's GP proposes points of the box "
                       "spanned by the candidates' encodings, each projected to the nearest candidate"),
)
TIME_GRID = 60


@dataclass
class Settings:
    """What to compare. Empty ``strategies`` or ``datasets`` mean the space's defaults (:func:`resolve`)."""

    space: str = "nb201"
    strategies: Tuple[str, ...] = ()
    datasets: Tuple[str, ...] = ()
    seeds: Tuple[int, ...] = tuple(range(20))
    budget: int = 100
    max_queries: int = 300
    jobs: int = 1

    @classmethod
    def quick(cls, space: str = "nb201") -> "Settings":
        """A small version for CI: every default strategy, the first default dataset, two seeds, 20 queries."""
        return cls(space=space, datasets=default_datasets(space)[:1], seeds=(0, 1), budget=20, max_queries=60)

    @property
    def searches(self) -> int:
        return len(self.strategies) * len(self.datasets) * len(self.seeds)


# --- what may run -----------------------------------------------------------------------------------
def space_benchmark(space_name: str):
    """(space, its benchmark); a one-line error for an unknown space or one without a benchmark."""
    from nastk import evaluators
    from nastk.space import get_space

    space = get_space(space_name)
    return space, evaluators.space_benchmark(space, None)


def default_strategies(space_name: str) -> Tuple[str, ...]:
    """The strategies the space can run and its benchmark can score: on a complete benchmark those of
    :data:`STRATEGIES`, on an incomplete one those of :data:`POOL_STRATEGIES`, whose ``requires`` it meets."""
    space, benchmark = space_benchmark(space_name)
    return tuple(name for name in (STRATEGIES if benchmark.complete else POOL_STRATEGIES)
                 if not _missing_capabilities(space, name))


def default_datasets(space_name: str) -> Tuple[str, ...]:
    """The benchmark's datasets, less those that only stand in for another during search (NB201's
    cifar10-valid, the search split of cifar10)."""
    _, benchmark = space_benchmark(space_name)
    searched = {d: BenchmarkEvaluator(benchmark, d).search_protocol.dataset for d in benchmark.datasets}
    stand_ins = {used for dataset, used in searched.items() if used != dataset}
    return tuple(d for d in benchmark.datasets if d not in stand_ins)


def _missing_capabilities(space, strategy: str) -> List[str]:
    from nastk.strategy import STRATEGIES as REGISTERED

    return [c for c in REGISTERED.get(strategy).requires if c not in space.capabilities]


def _distinct(values: Sequence) -> tuple:
    return tuple(dict.fromkeys(values))


def _whole(value: Any, minimum: int) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= minimum


def resolve(settings: Settings) -> Settings:
    """``settings`` with the space's default strategies and datasets filled in and every value checked,
    each problem one :class:`~nastk.errors.NastkError` line, before anything runs or is written."""
    if not settings.seeds or not all(_whole(s, 0) for s in settings.seeds):
        raise ConfigError(f"seeds must be one or more whole numbers >= 0, got {list(settings.seeds)}")
    if not _whole(settings.budget, 1):
        raise ConfigError(f"budget must be a whole number >= 1, got {settings.budget!r}")
    if not _whole(settings.max_queries, 1) or settings.max_queries < settings.budget:
        raise ConfigError(f"max_queries ({settings.max_queries}) must be at least the budget ({settings.budget})")
    if not _whole(settings.jobs, 1):
        raise ConfigError(f"jobs must be a whole number >= 1, got {settings.jobs!r}")
    space, benchmark = space_benchmark(settings.space)
    strategies = _distinct(settings.strategies) or default_strategies(settings.space)
    _check_strategies(strategies, space, benchmark)
    datasets = _distinct(settings.datasets) or default_datasets(settings.space)
    unknown = [d for d in datasets if d not in benchmark.datasets]
    if unknown:
        raise ConfigError(f"benchmark {benchmark.name!r} has no dataset {', '.join(map(repr, unknown))}; "
                          f"it has: {', '.join(benchmark.datasets)}")
    for dataset in datasets:
        BenchmarkEvaluator(benchmark, dataset)  # a benchmark lacking its protocols says which it has
    return replace(settings, strategies=strategies, datasets=datasets, seeds=_distinct(settings.seeds))


def _check_strategies(strategies: Tuple[str, ...], space, benchmark) -> None:
    unknown = [s for s in strategies if s not in LABELS]
    if unknown:
        raise ConfigError(f"unknown strategy {', '.join(map(repr, unknown))} for reproduce; it compares "
                          f"{', '.join(LABELS)}")
    if "random" not in strategies:
        raise ConfigError(f"strategies must include random (the baseline); got {', '.join(strategies)}")
    if not benchmark.complete:
        outside = [s for s in strategies if s not in POOL_STRATEGIES]
        if outside:
            raise ConfigError(
                f"{_title(benchmark)} scores only its {len(benchmark.archs())} architectures of space {space.name!r} "
                f"(an incomplete benchmark), so only strategies that search that pool can run: "
                f"{', '.join(POOL_STRATEGIES)}; {', '.join(outside)} would propose architectures it cannot score")
    for name in strategies:
        missing = _missing_capabilities(space, name)
        if missing:
            raise CapabilityError(f"strategy {name} needs capability {', '.join(missing)}, which space "
                                  f"{space.name!r} lacks (it has: {', '.join(sorted(space.capabilities)) or 'none'})")


def _title(benchmark) -> str:
    return benchmark.title or f"benchmark {benchmark.name}"


def check_out_dir(path) -> Path:
    """``path`` as a folder the report can be written into (created later); a one-line error if it or
    a parent is a file, or it cannot be written."""
    import os

    out = Path(path)
    existing = next((p for p in (out, *out.parents) if p.exists()), Path("."))
    if not existing.is_dir():
        raise ConfigError(f"cannot write the report into {out}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write the report into {out}: {existing} is not writable")
    return out


def search_strategy(name: str, space, seed: int, benchmark):
    """The strategy ``name`` on ``space``, confined to the benchmark's architectures when the benchmark
    is incomplete (only :data:`POOL_STRATEGIES` take such a pool)."""
    from nastk.strategy import make_strategy

    if benchmark.complete:
        return make_strategy(name, space, seed=seed)
    return make_strategy(name, space, seed=seed, pool=benchmark.archs())


# --- running the searches ---------------------------------------------------------------------------
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


def search_trace(strategy: str, dataset: str, seed: int, stop: Union[int, Stop], space: str = "nb201") -> Trace:
    """Run one search of ``space`` on its benchmark until ``stop`` (a query budget or a :class:`~nastk.trial.Stop`)."""
    from nastk.run_folder import run_search

    trace = Trace(strategy, dataset, seed)
    started = time.perf_counter()
    searched, benchmark = space_benchmark(space)
    outcome = run_search(search_strategy(strategy, searched, seed, benchmark),
                         BenchmarkEvaluator(benchmark, dataset), stop)
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


def benchmark_facts(settings: Settings) -> Dict[str, Any]:
    """What the report says about the benchmark: its names, whether it is complete, how many
    architectures it scores, and per dataset the search and report protocols, where a query's cost
    comes from, and the best reported accuracy among its architectures (the space's optimum when complete)."""
    space, benchmark = space_benchmark(settings.space)
    archs = benchmark.archs()
    protocols, optimum = {}, {}
    for dataset in settings.datasets:
        evaluator = BenchmarkEvaluator(benchmark, dataset)
        cost = evaluator.evaluate(archs[0]).protocol.get("cost", "not stated")
        protocols[dataset] = {"search": evaluator.search_protocol.key, "report": evaluator.report_protocol.key,
                              "cost": cost}
        optimum[dataset] = benchmark.optimum(dataset, evaluator.report_protocol.key)
    return {"space": space.name, "name": benchmark.name, "title": _title(benchmark), "complete": benchmark.complete,
            "architectures": len(archs), "protocols": protocols, "optimum": optimum}


def compare(settings: Settings, progress: Optional[Callable[[Trace], None]] = None) -> Dict[str, Any]:
    """Run every (dataset, strategy, seed) and summarise both budgets; returns a JSON-able dict."""
    settings = resolve(settings)
    facts = benchmark_facts(settings)
    optimum = facts.pop("optimum")
    started = time.perf_counter()
    # Random search first: its mean cost of `budget` queries is the equal-time budget T.
    random_runs = _traces([("random", d, s, settings.max_queries, settings.space)
                           for d in settings.datasets for s in settings.seeds], settings.jobs, progress)
    seconds = {d: float(np.mean([sum(t.cost[:settings.budget]) for t in random_runs if t.dataset == d]))
               for d in settings.datasets}
    equal_time = all(math.isfinite(s) and s > 0 for s in seconds.values())  # queries that cost nothing: no T

    def stop(dataset: str) -> Union[int, Stop]:
        return Stop(settings.max_queries, cost_s=seconds[dataset], min_queries=settings.budget) if equal_time \
            else settings.budget

    others = [(name, d, s, stop(d), settings.space)
              for d in settings.datasets for name in settings.strategies if name != "random" for s in settings.seeds]
    traces = random_runs + _traces(others, settings.jobs, progress)
    published_by, published = PUBLISHED.get(facts["space"], (None, {}))
    return {"settings": asdict(settings), "benchmark": facts, "equal_time": equal_time, "time_budget_s": seconds,
            "optimum": optimum, "published_by": published_by,
            "published": {k: {d: list(v) for d, v in row.items()} for k, row in published.items()},
            "results": {d: _summarise([t for t in traces if t.dataset == d], settings,
                                      seconds[d] if equal_time else None)
                        for d in settings.datasets},
            "wall_s": round(time.perf_counter() - started, 1), "machine": machine()}


def _summarise(traces: List[Trace], settings: Settings, seconds: Optional[float]) -> Dict[str, Any]:
    """Per strategy: results at equal queries and, when ``seconds`` (T) is given, at equal simulated time."""
    from scipy.stats import ttest_ind

    from nastk.metrics import relative_improvement

    by_name = {name: [t for t in traces if t.strategy == name] for name in settings.strategies}
    best = {"queries": lambda t: t.best_test(settings.budget)}
    if seconds is not None:
        best["time"] = lambda t: t.best_test(t.queries_within(seconds))
    baseline = {budget: [value(t) for t in by_name["random"]] for budget, value in best.items()}
    out = {}
    for name, runs in by_name.items():
        row: Dict[str, Any] = {}
        for budget, value in best.items():
            values = [value(t) for t in runs]
            test = ttest_ind(values, baseline[budget], equal_var=False) if name != "random" else None
            row[budget] = {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                           "values": values, "ri_percent": relative_improvement(values, baseline[budget]),
                           "p_vs_random": None if test is None or math.isnan(test.pvalue) else float(test.pvalue)}
        curves = np.stack([t.best_test_curve(settings.budget) for t in runs])
        row["curve_queries"] = {"mean": curves.mean(0).tolist(), "sem": _sem(curves).tolist()}
        if seconds is not None:
            grid = np.linspace(0, seconds, TIME_GRID + 1)[1:]
            timed = np.stack([[t.best_test(t.queries_within(s)) for s in grid] for t in runs])
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

    from nastk.paths import atomic_write, make_folder

    out = make_folder(check_out_dir(out_dir))
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


def _budgets(report: Dict[str, Any]) -> Tuple[str, ...]:
    return ("queries", "time") if report["equal_time"] else ("queries",)


def _protocol_lines(report: Dict[str, Any]) -> List[str]:
    """How queries are scored and charged, per dataset, and what that means (an oracle objective, a pool)."""
    facts, datasets = report["benchmark"], report["settings"]["datasets"]
    protocols = facts["protocols"]
    lines = [f"Protocol ({facts['title']}'s own, as its benchmark evaluator applies it): every query returns the "
             "search objective below and costs the training time the benchmark records for it (simulated); a run "
             "returns the architecture with the best search objective, reported here by its accuracy under the "
             "report protocol (mean ± std over seeds). Every query counts, also a repeated architecture.", "",
             "| dataset | search objective | reported | cost of a query |", "|---|---|---|---|"]
    lines += [f"| {d} | {protocols[d]['search']} | {protocols[d]['report']} | {protocols[d]['cost']} |" for d in datasets]
    oracle = [d for d in datasets if protocols[d]["search"].split("/")[1] == "test"]
    if oracle:
        lines += ["", f"**The search objective is a test accuracy** ({', '.join(oracle)}): {facts['title']} has no "
                      "validation split, so every search selects by the very accuracy it reports, an oracle protocol. "
                      "These numbers show how fast each strategy finds good architectures, not how a search "
                      "guided by validation accuracy would generalise."]
    if not facts["complete"]:
        count = facts["architectures"]
        lines += ["", f"**Search pool.** The benchmark has results for only {count} architectures of the "
                      f"{facts['space']} space and can score nothing else, so every search is confined to them: "
                      f"random search draws uniformly from the {count} (with replacement), BO on the encoding "
                      f"projects each proposal to the nearest of them. The optimum row is the best of these {count}, "
                      "not of the space."]
    return lines


def markdown(report: Dict[str, Any], command: str, plot_name: str) -> str:
    settings, results, facts = report["settings"], report["results"], report["benchmark"]
    datasets, strategies = settings["datasets"], settings["strategies"]
    seeds, budgets = settings["seeds"], _budgets(report)
    head = "| method | " + " | ".join(datasets) + " |\n|---|" + "---|" * len(datasets)
    optimum_label = "optimum of the space" if facts["complete"] else f"best of the {facts['architectures']} benchmark architectures"
    lines = [
        f"# Search strategies on {facts['title']} (space {facts['space']})",
        "",
        "Compared: " + ", ".join(LABELS[name] for name in strategies) + ".",
        "",
        f"Command: `{command}` ({len(seeds)} seeds: {seeds[0]}..{seeds[-1]}; wall {report['wall_s']:.0f} s on "
        f"{report['machine']['cpus']} CPUs, {report['machine']['platform']}, Python {report['machine']['python']}, "
        f"optuna {report['machine']['optuna']}).",
        "",
        *_protocol_lines(report),
        "",
        f"## Equal query budget ({settings['budget']} queries)",
        "",
        head,
    ]
    for name in strategies:
        lines.append(f"| {LABELS[name]} | " + " | ".join(_cell(results[d][name]["queries"]) for d in datasets) + " |")
    lines.append(f"| {optimum_label} | " + " | ".join(f"{report['optimum'][d]:.2f}" for d in datasets) + " |")
    for method, row in report["published"].items():
        lines.append(f"| {report['published_by']} paper, {method} (recalled, not verified) | " + " | ".join(
            "{:.2f} ± {:.2f}".format(*row[d]) if d in row else "n/a" for d in datasets) + " |")
    lines += ["", "## Equal simulated training time", ""]
    if report["equal_time"]:
        estimated = {d: facts["protocols"][d]["cost"] for d in datasets
                     if facts["protocols"][d]["cost"].startswith("estimated")}
        lines += ["T per dataset = mean simulated time random search spends on "
                  f"{settings['budget']} queries: " + ", ".join(
                      f"{d} {report['time_budget_s'][d] / 3600:.2f} h" for d in datasets) + "."
                  + (f" ({' and '.join(estimated)} times are {' / '.join(sorted(set(estimated.values())))}; "
                     "see docs/architecture.md.)" if estimated else ""), "", head]
        for name in strategies:
            lines.append(f"| {LABELS[name]} | " + " | ".join(
                f"{_cell(results[d][name]['time'])} ({results[d][name]['queries_within_time']:.0f} q)" for d in datasets) + " |")
        lines += ["", "(q: mean number of queries that fit in T.)"]
    else:
        lines.append(f"Skipped: {facts['title']} records no training time (every query costs 0 s), so strategies are "
                     "compared at equal query budgets only.")
    lines += ["", "## Relative improvement over random search (methods.md 14)", "",
              "RI = 100 (mean method accuracy - mean random accuracy) / mean random accuracy; p from Welch's t-test "
              "against the random-search runs.", "",
              "| method | " + " | ".join(f"{d}, {b}" for d in datasets for b in budgets) + " |",
              "|---|" + "---|" * (len(budgets) * len(datasets))]
    for name in strategies:
        if name != "random":
            lines.append(f"| {LABELS[name]} | " + " | ".join(
                _ri(results[d][name][b]) for d in datasets for b in budgets) + " |")
    lines += ["", "## Anytime performance", "",
              f"![anytime curves]({plot_name})", "",
              "Mean best-so-far test accuracy (shaded: ± standard error over seeds) against queries"
              + (" and against simulated training time." if report["equal_time"] else "."), "",
              "## Diagnostics", "",
              "| method | " + " | ".join(f"{d}: distinct archs / {settings['budget']} q" for d in datasets)
              + f" | wall ms per query ({datasets[0]}) |",
              "|---|" + "---|" * (len(datasets) + 1)]
    for name in strategies:
        lines.append(f"| {LABELS[name]} | " + " | ".join(f"{results[d][name]['unique_archs']:.1f}" for d in datasets)
                     + f" | {results[datasets[0]][name]['ms_per_query']:.1f} |")
    lines += ["", "Notes:", ""]
    if report["published"]:
        lines.append(f"- The published {report['published_by']} numbers come from a different setting (their own "
                     "simulated time budget and seed count) and are shown for orientation only; they are recalled "
                     "from the paper, not checked.")
    notes = [text for names, text in SETTING_NOTES if any(name in strategies for name in names)]
    if notes:
        lines.append("- Settings: " + "; ".join(notes) + ".")
    if report["equal_time"]:
        capped = {d: {n: results[d][n]["capped_runs"] for n in strategies if results[d][n]["capped_runs"]}
                  for d in datasets}
        lines.append("- Runs stopped at max_queries before spending T: "
                     + (", ".join(f"{d}: {v}" for d, v in capped.items() if v) or "none") + ".")
    return "\n".join(lines) + "\n"


def plot_anytime(report: Dict[str, Any], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nastk.paths import save_figure

    datasets, strategies = report["settings"]["datasets"], report["settings"]["strategies"]
    optimum = report["optimum"]
    rows = 2 if report["equal_time"] else 1
    fig, axes = plt.subplots(rows, len(datasets), figsize=(4.6 * len(datasets), 3.6 * rows), squeeze=False)
    for column, dataset in enumerate(datasets):
        for name in strategies:
            row = report["results"][dataset][name]
            curves = [(axes[0][column], row["curve_queries"], np.arange(1, len(row["curve_queries"]["mean"]) + 1))]
            if report["equal_time"]:
                curves.append((axes[1][column], row["curve_time"], np.array(row["curve_time"]["seconds"]) / 3600))
            for axis, curve, xs in curves:
                mean, sem = np.array(curve["mean"]), np.array(curve["sem"])
                axis.plot(xs, mean, label=LABELS[name], lw=1.4)
                axis.fill_between(xs, mean - sem, mean + sem, alpha=0.2)
        for axis in axes[:, column]:
            axis.axhline(optimum[dataset], c="k", ls=":", lw=1,
                         label="optimum" if report["benchmark"]["complete"] else "best known")
            axis.grid(alpha=0.3)
            axis.set_ylabel("test accuracy of best-so-far (%)")
        low = min(np.nanmin(report["results"][dataset][n]["curve_queries"]["mean"][len(
            report["results"][dataset][n]["curve_queries"]["mean"]) // 5:]) for n in strategies)
        for axis in axes[:, column]:
            axis.set_ylim(low - 0.5, optimum[dataset] + 0.3)
        axes[0][column].set_title(dataset)
        axes[0][column].set_xlabel("queries")
        if report["equal_time"]:
            axes[1][column].set_xlabel("simulated training time (h)")
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    try:
        save_figure(fig, path, dpi=110)
    finally:
        plt.close(fig)
