"""Reproduce RoBoT on NB201 (methods.md 9.2) from the shared NAS-Bench-Suite-Zero proxy tables.

For each dataset the pool is the shared table that covers it (cifar10 and ImageNet16-120: the 9,445
Suite-Zero architectures; cifar100: the 725-architecture early sample). Every query is answered by the
NB201 table with RoBoT's objective, the cifar10-valid 12-epoch validation accuracy (for all three
tasks), and costs its recorded 12-epoch training time; the winner is reported by its own dataset's
200-epoch test accuracy. Beside RoBoT: the greedy top-T of each single proxy (deterministic), the
greedy top-T of the unweighted average of the normalised proxies, and random search with T distinct
queries from the same pool.

Usage: NASTK_DATA=../shared/benchmarks .venv/bin/python scripts/reproduce_robot.py \
           [--datasets cifar10 cifar100 ImageNet16-120] [--seeds 10 11 ... 19] [--budget 20] \
           [--out docs/results/robot_nb201]
Results are saved after every run in OUT.json; a rerun skips what is there.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np

from nastk.evaluators.benchmark import BenchmarkEvaluator
from nastk.paths import atomic_write
from nastk.run import run_search
from nastk.space import get_space
from nastk.strategies.robot import DEFAULT_PROXIES, RoBoT, load_proxy_pool

OBJECTIVE = "cifar10-valid/valid/12"
PUBLISHED = {"cifar10": 94.36, "cifar100": 73.51, "ImageNet16-120": 46.34}


def query_set(evaluator, archs):
    """Best-by-objective of a set of queried architectures, as RoBoT reports it."""
    results = [evaluator.evaluate(arch) for arch in archs]
    best = max(results, key=lambda r: r.value)
    return {"test": best.metrics["test_accuracy"], "objective": best.value, "cost_s": sum(r.cost_s for r in results)}


def run_robot(space, pool, evaluator, dataset, seed, budget):
    strategy = RoBoT(space, seed=seed, budget=budget, dataset=dataset, pool=pool)
    outcome = run_search(strategy, evaluator, budget)
    return {"test": outcome.best_result.metrics["test_accuracy"], "objective": outcome.best_result.value,
            "cost_s": outcome.total_cost_s, "bo_distinct": strategy.distinct_bo_queries,
            "best_weights": dict(zip(pool.names, np.round(strategy.best_weights, 4).tolist()))}


def greedy(pool, evaluator, weights, budget):
    return query_set(evaluator, [pool.archs[row] for row in pool.ranking(weights)[:budget]])


def random_pool_search(pool, evaluator, seed, budget):
    rows = np.random.default_rng(seed).choice(len(pool), size=budget, replace=False)
    return query_set(evaluator, [pool.archs[row] for row in rows])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["cifar10", "cifar100", "ImageNet16-120"])
    parser.add_argument("--seeds", nargs="+", type=int, default=list(range(10, 20)))
    parser.add_argument("--budget", type=int, default=20)
    parser.add_argument("--out", default="docs/results/robot_nb201")
    args = parser.parse_args()
    out = Path(args.out + ".json")
    results = json.loads(out.read_text()) if out.is_file() else {}
    space = get_space("nb201")

    def save():
        with atomic_write(out, "w") as handle:
            json.dump(results, handle, indent=1)

    for dataset in args.datasets:
        pool = load_proxy_pool(space, dataset, proxies=DEFAULT_PROXIES)
        evaluator = BenchmarkEvaluator(dataset, OBJECTIVE)
        entry = results.setdefault(dataset, {"robot": {}, "random": {}, "greedy": {}})
        tests = evaluator.table.accuracies(pool.archs, evaluator.report_protocol)
        entry["pool"] = {"size": len(pool), "optimum": float(np.nanmax(tests)),
                         "global_optimum": float(np.nanmax(evaluator.table.column(evaluator.report_protocol))),
                         "objective": evaluator.search_protocol.key, "report": evaluator.report_protocol.key}
        for seed in args.seeds:
            if str(seed) not in entry["robot"]:
                started = time.perf_counter()
                entry["robot"][str(seed)] = {**run_robot(space, pool, evaluator, dataset, seed, args.budget),
                                             "wall_s": round(time.perf_counter() - started, 2)}
                print(dataset, "robot", seed, entry["robot"][str(seed)], flush=True)
                save()
            entry["random"].setdefault(str(seed), random_pool_search(pool, evaluator, seed, args.budget))
        for i, name in enumerate(DEFAULT_PROXIES):
            entry["greedy"][name] = greedy(pool, evaluator, np.eye(len(DEFAULT_PROXIES))[i], args.budget)
        entry["greedy"]["average"] = greedy(pool, evaluator, np.ones(len(DEFAULT_PROXIES)), args.budget)
        save()
    write_markdown(results, args)


def _flags(args):
    """The non-default flags of this invocation, for the results page."""
    flags = ""
    if args.seeds != list(range(10, 20)):
        flags += f" --seeds $(seq {min(args.seeds)} {max(args.seeds)})"
    if args.out != "docs/results/robot_nb201":
        flags += f" --out {args.out}"
    return flags + (f" --budget {args.budget}" if args.budget != 20 else "")


def _mean_std(values):
    return f"{np.mean(values):.2f} ± {np.std(values):.2f}"


def write_markdown(results, args):
    lines = [f"# RoBoT on NB201: {args.budget} queries, seeds {min(args.seeds)}..{max(args.seeds)}", "",
             f"Command: `NASTK_DATA=../shared/benchmarks .venv/bin/python scripts/reproduce_robot.py{_flags(args)}`  ",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores (BO + table look-ups; minutes in total)", "",
             "Proxies: grad_norm, snip, grasp, fisher, synflow, jacob_cov (`jacov`) from the shared NAS-Bench-Suite-Zero "
             "tables. Pools: cifar10 and ImageNet16-120 use the 9,445 Suite-Zero architectures of that dataset "
             "(nets with cut-off branches removed); cifar100 uses the 725-architecture early sample, the only cifar100 "
             "proxy data. Queries return the cifar10-valid 12-epoch validation accuracy for all three tasks "
             f"(`--objective {OBJECTIVE}`), as RoBoT does; the reported number is the winner's 200-epoch test accuracy on "
             "the task's dataset (mean ± population std over seeds). Search cost = sum of the queried archs' recorded "
             "12-epoch training times (cifar10-valid).", "",
             "| dataset | pool | RoBoT | RoBoT median [min] | published RoBoT | best single proxy, greedy top-T | average of proxies, greedy | "
             "random (T from pool) | pool optimum | NB201 optimum | RoBoT cost (s) | T0 (BO distinct) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for dataset, entry in results.items():
        robot = list(entry["robot"].values())
        single = {k: v for k, v in entry["greedy"].items() if k != "average"}
        best_name = max(single, key=lambda k: single[k]["test"])
        lines.append(
            f"| {dataset} | {entry['pool']['size']} | {_mean_std([r['test'] for r in robot])} | "
            f"{np.median([r['test'] for r in robot]):.2f} [{min(r['test'] for r in robot):.2f}] | {PUBLISHED[dataset]:.2f} | "
            f"{single[best_name]['test']:.2f} ({best_name}) | {entry['greedy']['average']['test']:.2f} | "
            f"{_mean_std([r['test'] for r in entry['random'].values()])} | {entry['pool']['optimum']:.2f} | "
            f"{entry['pool']['global_optimum']:.2f} | {np.mean([r['cost_s'] for r in robot]):.0f} | "
            f"{np.mean([r['bo_distinct'] for r in robot]):.1f} |")
    lines += ["", "Each single proxy, greedy top-T (test accuracy of the best-by-objective of its top T):", "",
              "| dataset | " + " | ".join(DEFAULT_PROXIES) + " |", "|---|" + "---|" * len(DEFAULT_PROXIES)]
    for dataset, entry in results.items():
        lines.append(f"| {dataset} | " + " | ".join(f"{entry['greedy'][n]['test']:.2f}" for n in DEFAULT_PROXIES) + " |")
    lines += ["", "Seeds whose winner has the median test accuracy: " + ", ".join(
        f"{d} {sum(abs(r['test'] - np.median([q['test'] for q in e['robot'].values()])) < 1e-6 for r in e['robot'].values())}"
        f"/{len(e['robot'])}" for d, e in results.items()) + ". In the others BO's best weights rank by a "
        "combination in which synflow, the strongest single proxy here, has little or negative weight (see "
        "`best_weights` in the JSON), so the greedy phase exploits a weaker ranking; most land below the median, "
        "which is what moves the mean.",
        "", "Per-seed RoBoT test accuracy:", ""]
    for dataset, entry in results.items():
        lines.append(f"* {dataset}: " + ", ".join(f"{s}: {r['test']:.2f}" for s, r in entry["robot"].items()))
    lines += ["", "Notes:",
              "* \"Best single proxy\" is chosen in hindsight per task (the best of the six), as in RoBoT's table.",
              "* The published numbers used the full 15,625-architecture space and the SamsungLabs proxy values, which "
              "are not available; the pools here are subsets, so the pool optimum bounds what any method can reach"
              + "".join(f"; the {d} pool lacks the NB201 optimum ({e['pool']['optimum']:.2f} < {e['pool']['global_optimum']:.2f})"
                        for d, e in results.items() if e["pool"]["optimum"] < e["pool"]["global_optimum"] - 1e-9) + ".",
              "* On ImageNet16-120 (and cifar100) the search signal is cifar10-valid's 12-epoch accuracy, so the "
              "best-by-objective architecture need not be the task's optimum even when it is queried.",
              "* More seeds: `--seeds $(seq 10 59) --out docs/results/robot_nb201_seeds10-59` (50 runs per dataset).",
              f"* BO: `bayes_opt` {version('bayesian-optimization')} (`suggest`/`register`), GP-UCB kappa 2.576, Matern 2.5, 1 random initial point, "
              "T BO steps; repeated argmax architectures cost no query (see `nastk/strategies/robot.py`)."]
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
