"""Reproduce RoBoT on NB201 (methods.md 9.2, 9.3) from a pool of architectures with proxy values.

Pools (``--pool``):

* ``suite-zero`` (default): for each dataset the shared NAS-Bench-Suite-Zero table that covers it
  (cifar10 and ImageNet16-120: the 9,445 Suite-Zero architectures; cifar100: the 725-architecture
  early sample), with that dataset's proxies.
* ``nastk-cifar10``: nastk's own proxies (``--pool-csv``, by default
  ``docs/results/proxies_nb201_cifar10_scores.csv`` written by ``scripts/correlate_proxies.py``: a fixed
  random NB201 sample, proxies from one CIFAR-10 batch of 64), the CPU plan of methods.md 9.3. The same
  CIFAR-10 proxies serve all three tasks. ``--pool-rows N`` uses the first N rows (the file grows while
  its job runs); by default every row present. Regularized evolution (nastk's ``re``, on the full space)
  is added as the spec's baseline.

Every query is answered by the NB201 table with RoBoT's objective, the cifar10-valid 12-epoch validation
accuracy (for all three tasks), and costs its recorded 12-epoch training time; the winner is reported by
its own dataset's 200-epoch test accuracy. Beside RoBoT: the greedy top-T of each single proxy
(deterministic), the greedy top-T of the unweighted average of the normalised proxies, and random search
with T distinct queries from the same pool.

Usage: NASTK_DATA=../shared/benchmarks .venv/bin/python scripts/reproduce_robot.py \
           [--pool suite-zero|nastk-cifar10] [--pool-csv CSV] [--pool-rows N] \
           [--datasets cifar10 cifar100 ImageNet16-120] [--seeds 10 11 ... 19] [--budget 20] [--out OUT]
Results are saved after every run in OUT.json; a rerun skips what is there (and starts a dataset afresh
when its pool has changed).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np

from nastk.benchmarks.proxy_tables import read_proxy_table
from nastk.benchmarks.registry import benchmark_for
from nastk.errors import ConfigError
from nastk.evaluators.benchmark import BenchmarkEvaluator
from nastk.paths import atomic_write
from nastk.protocol import Protocol
from nastk.run_folder import run_search
from nastk.space import get_space
from nastk.strategies.robot import DEFAULT_PROXIES, ProxyPool, RoBoT, load_proxy_pool
from nastk.strategy import make_strategy

OBJECTIVE = "cifar10-valid/valid/12"
DATASETS = ("cifar10", "cifar100", "ImageNet16-120")
PUBLISHED = {"cifar10": 94.36, "cifar100": 73.51, "ImageNet16-120": 46.34}
#: Other rows of RoBoT's Table 2 (methods.md 9.2): REA and RS with 12,000 s of queries each.
PUBLISHED_REA = {"cifar10": "93.92 ± 0.30", "cifar100": "71.84 ± 0.99", "ImageNet16-120": "45.15 ± 0.89"}
NASTK_CSV = "docs/results/proxies_nb201_cifar10_scores.csv"
DEFAULT_OUT = {"suite-zero": "docs/results/robot_nb201", "nastk-cifar10": "docs/results/robot_nb201_nastk_pool"}


def load_nastk_pool(space, path, rows=None):
    """nastk's proxy CSV as a RoBoT pool: its first ``rows`` rows (all by default)."""
    table = read_proxy_table(path, names=DEFAULT_PROXIES)
    count = len(table) if rows is None else int(rows)
    if not 1 <= count <= len(table):
        raise ConfigError(f"--pool-rows {rows}: {path} has {len(table)} rows")
    values = table.values[:count]
    pool = ProxyPool([space.from_str(text) for text in table.arch_strs[:count]], values, list(DEFAULT_PROXIES))
    info = {"csv": str(path), "rows": count, "rows_in_file": len(table),
            "nan": {name: int(np.isnan(values[:, j]).sum()) for j, name in enumerate(DEFAULT_PROXIES)},
            "raw_range": {name: [float(np.nanmin(values[:, j])), float(np.nanmax(values[:, j]))]
                          for j, name in enumerate(DEFAULT_PROXIES)}}
    return pool, info, values


def pool_signature(pool, values):
    digest = hashlib.sha1("\n".join(arch.to_str() for arch in pool.archs).encode())
    digest.update(np.ascontiguousarray(values, dtype=np.float64).tobytes())
    return digest.hexdigest()[:16]


def query_set(evaluator, archs):
    """Best-by-objective of a set of queried architectures, as RoBoT reports it."""
    results = [evaluator.evaluate(arch) for arch in archs]
    best = max(results, key=lambda r: r.value)
    return {"test": best.metrics["test_accuracy"], "objective": best.value, "cost_s": sum(r.cost_s for r in results)}


def nb201_index(evaluator, arch):
    return int(evaluator.table.positions([arch])[0])


def run_robot(space, pool, evaluator, dataset, seed, budget):
    strategy = RoBoT(space, seed=seed, budget=budget, dataset=dataset, pool=pool)
    outcome = run_search(strategy, evaluator, budget)
    return {"test": outcome.best_result.metrics["test_accuracy"], "objective": outcome.best_result.value,
            "cost_s": outcome.total_cost_s, "bo_distinct": strategy.distinct_bo_queries,
            "winner_idx": nb201_index(evaluator, outcome.best_arch),
            "best_weights": dict(zip(pool.names, np.round(strategy.best_weights, 4).tolist()))}


def run_re(space, evaluator, seed, budget):
    """nastk's regularized evolution on the full NB201 space (population 10, sample 3)."""
    outcome = run_search(make_strategy("re", space, seed=seed), evaluator, budget)
    distinct = len({record.arch for record in outcome.trials})
    return {"test": outcome.best_result.metrics["test_accuracy"], "objective": outcome.best_result.value,
            "cost_s": outcome.total_cost_s, "distinct": distinct}


def greedy(pool, evaluator, weights, budget):
    return query_set(evaluator, [pool.archs[row] for row in pool.ranking(weights)[:budget]])


def random_pool_search(pool, evaluator, seed, budget):
    rows = np.random.default_rng(seed).choice(len(pool), size=budget, replace=False)
    return query_set(evaluator, [pool.archs[row] for row in rows])


def published_match(evaluator):
    """NB201 architectures whose three 200-epoch test accuracies round to the published RoBoT numbers."""
    columns = [evaluator.table.column(Protocol(d, "test", 200)) for d in DATASETS]
    hit = np.ones(len(columns[0]), dtype=bool)
    for column, dataset in zip(columns, DATASETS):
        hit &= np.round(column, 2) == PUBLISHED[dataset]
    objective = evaluator.table.column(evaluator.search_protocol)
    rank = {int(i): int((objective > objective[i]).sum()) + 1 for i in np.flatnonzero(hit)}
    return [{"idx": i, "arch": evaluator.table.arch_at(i).to_str(), "objective": float(objective[i]),
             "objective_rank": rank[i], **{d: float(c[i]) for d, c in zip(DATASETS, columns)}} for i in rank]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", choices=sorted(DEFAULT_OUT), default="suite-zero")
    parser.add_argument("--pool-csv", default=NASTK_CSV, help="nastk-cifar10 pool: the proxy CSV")
    parser.add_argument("--pool-rows", type=int, default=None, help="nastk-cifar10 pool: use the first N rows")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(range(10, 20)))
    parser.add_argument("--budget", type=int, default=20)
    parser.add_argument("--out", default=None, help="default: docs/results/robot_nb201 (suite-zero) or "
                                                    "docs/results/robot_nb201_nastk_pool (nastk-cifar10)")
    args = parser.parse_args()
    args.out = args.out or DEFAULT_OUT[args.pool]
    out = Path(args.out + ".json")
    results = json.loads(out.read_text()) if out.is_file() else {}
    space = get_space("nb201")

    def save():
        with atomic_write(out, "w") as handle:
            json.dump(results, handle, indent=1)

    if args.pool == "nastk-cifar10":
        shared_pool, pool_info, shared_values = load_nastk_pool(space, args.pool_csv, args.pool_rows)
    for dataset in args.datasets:
        if args.pool == "nastk-cifar10":
            pool, values, info = shared_pool, shared_values, dict(pool_info)
        else:
            pool = load_proxy_pool(space, dataset, proxies=DEFAULT_PROXIES)
            values, info = pool.normalised, {}
        signature = pool_signature(pool, values)
        evaluator = BenchmarkEvaluator(benchmark_for("nb201"), dataset, OBJECTIVE)
        entry = results.get(dataset, {})
        known = entry.get("pool", {})
        if known.get("signature", signature) != signature or known.get("size", len(pool)) != len(pool):
            print(f"{dataset}: the pool changed ({known.get('size')} -> {len(pool)} archs); starting afresh", flush=True)
            entry = {}
        results[dataset] = entry
        for key in ("robot", "random", "greedy") + (("re",) if args.pool == "nastk-cifar10" else ()):
            entry.setdefault(key, {})
        tests = evaluator.table.accuracies(pool.archs, evaluator.report_protocol)
        objective = evaluator.table.accuracies(pool.archs, evaluator.search_protocol)
        shares = {name: [round(float(np.mean(pool.normalised[:, j] < 0.01)), 3),
                         round(float(np.mean(pool.normalised[:, j] > 0.99)), 3)] for j, name in enumerate(pool.names)}
        entry["pool"] = {"kind": args.pool, "size": len(pool), "signature": signature, **info,
                         "normalised_below_0.01_above_0.99": shares,
                         "optimum": float(np.nanmax(tests)),
                         "best_by_objective_test": float(tests[int(np.nanargmax(objective))]),
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
            if "re" in entry and str(seed) not in entry["re"]:
                entry["re"][str(seed)] = run_re(space, evaluator, seed, args.budget)
        for i, name in enumerate(DEFAULT_PROXIES):
            entry["greedy"][name] = greedy(pool, evaluator, np.eye(len(DEFAULT_PROXIES))[i], args.budget)
        entry["greedy"]["average"] = greedy(pool, evaluator, np.ones(len(DEFAULT_PROXIES)), args.budget)
        save()
    results_meta = {"published_match": published_match(BenchmarkEvaluator(benchmark_for("nb201"), "cifar10", OBJECTIVE))}
    write_markdown({d: e for d, e in results.items() if not d.startswith("_")}, results_meta, args)


def _flags(args):
    """The non-default flags of this invocation, for the results page."""
    flags = "" if args.pool == "suite-zero" else f" --pool {args.pool}"
    if args.pool != "suite-zero" and args.pool_csv != NASTK_CSV:
        flags += f" --pool-csv {args.pool_csv}"
    if args.pool_rows is not None:
        flags += f" --pool-rows {args.pool_rows}"
    if args.seeds != list(range(10, 20)):
        flags += f" --seeds $(seq {min(args.seeds)} {max(args.seeds)})"
    if args.out != DEFAULT_OUT[args.pool]:
        flags += f" --out {args.out}"
    return flags + (f" --budget {args.budget}" if args.budget != 20 else "")


def _mean_std(values):
    return f"{np.mean(values):.2f} ± {np.std(values):.2f}"


def _suite_zero_intro():
    return ("Proxies: grad_norm, snip, grasp, fisher, synflow, jacob_cov (`jacov`) from the shared NAS-Bench-Suite-Zero "
            "tables. Pools: cifar10 and ImageNet16-120 use the 9,445 Suite-Zero architectures of that dataset "
            "(nets with cut-off branches removed); cifar100 uses the 725-architecture early sample, the only cifar100 "
            "proxy data. ")


def _nastk_intro(entry):
    info = entry["pool"]
    nan = ", ".join(f"{name} {count}" for name, count in info["nan"].items() if count) or "none"
    return (f"Proxies: grad_norm, snip, grasp, fisher, synflow, jacob_cov computed by nastk (`{info['csv']}`, written "
            "by `scripts/correlate_proxies.py`: one CIFAR-10 batch of 64, full-size C=16 N=5 networks, seed 0) for the "
            f"first **{info['rows']}** rows of its fixed uniform random NB201 sample ({info['rows_in_file']} rows in the "
            "file when this ran" + ("; its job grows it to 1,000" if info["rows_in_file"] < 1000 else "")
            + f"). Missing values (NaN: {nan}) contribute 0, as in "
            "RoBoT. **The same CIFAR-10 proxies serve all three tasks** (RoBoT computed proxies on each task's own "
            "data). RoBoT, random search and the greedy baselines are restricted to this pool, so the pool optimum "
            "bounds them; regularized evolution (nastk's `re`: population 10, tournament 3, its own duplicates count as "
            "queries) searches the full 15,625-architecture space, as the issue asks (methods.md 9.3 would run it on "
            "the pool). ")


def write_markdown(results, meta, args):
    nastk_pool = args.pool == "nastk-cifar10"
    first = next(iter(results.values()))
    title = "RoBoT on NB201 with nastk's own proxies" if nastk_pool else "RoBoT on NB201"
    lines = [f"# {title}: {args.budget} queries, seeds {min(args.seeds)}..{max(args.seeds)}", "",
             f"Command: `NASTK_DATA=../shared/benchmarks .venv/bin/python scripts/reproduce_robot.py{_flags(args)}`  ",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores; table look-ups and BO only, "
             f"{np.mean([r.get('wall_s', np.nan) for e in results.values() for r in e['robot'].values()]):.1f} s wall "
             "per RoBoT run on average (`wall_s` in the JSON)", "",
             (_nastk_intro(first) if nastk_pool else _suite_zero_intro())
             + "Queries return the cifar10-valid 12-epoch validation accuracy for all three tasks "
             f"(`--objective {OBJECTIVE}`), as RoBoT does; the reported number is the winner's 200-epoch test accuracy on "
             "the task's dataset (mean ± population std over seeds). Search cost = sum of the queried archs' recorded "
             "12-epoch training times (cifar10-valid).", ""]
    has_re = all("re" in e and e["re"] for e in results.values())
    head = ("| dataset | pool | RoBoT | RoBoT median [min] | published RoBoT | best single proxy, greedy top-T | "
            "average of proxies, greedy | random (T from pool) | " + ("RE (full space) | " if has_re else "")
            + "pool optimum | pool's best-by-objective | NB201 optimum | RoBoT cost (s) | T0 (BO distinct) |")
    lines += [head, "|" + "---|" * head.count(" | ") + "---|"]
    for dataset, entry in results.items():
        robot = list(entry["robot"].values())
        single = {k: v for k, v in entry["greedy"].items() if k != "average"}
        best_name = max(single, key=lambda k: single[k]["test"])
        pool = entry["pool"]
        lines.append(
            f"| {dataset} | {pool['size']} | {_mean_std([r['test'] for r in robot])} | "
            f"{np.median([r['test'] for r in robot]):.2f} [{min(r['test'] for r in robot):.2f}] | {PUBLISHED[dataset]:.2f} | "
            f"{single[best_name]['test']:.2f} ({best_name}) | {entry['greedy']['average']['test']:.2f} | "
            f"{_mean_std([r['test'] for r in entry['random'].values()])} | "
            + (f"{_mean_std([r['test'] for r in entry['re'].values()])} | " if has_re else "")
            + f"{pool['optimum']:.2f} | {pool.get('best_by_objective_test', float('nan')):.2f} | "
            f"{pool['global_optimum']:.2f} | {np.mean([r['cost_s'] for r in robot]):.0f} | "
            f"{np.mean([r['bo_distinct'] for r in robot]):.1f} |")
    lines += ["", "\"Pool's best-by-objective\": the test accuracy of the pool architecture with the best objective, "
              "what a search that queried it reports.", "",
              "Each single proxy, greedy top-T (test accuracy of the best-by-objective of its top T):", "",
              "| dataset | " + " | ".join(DEFAULT_PROXIES) + " |", "|---|" + "---|" * len(DEFAULT_PROXIES)]
    for dataset, entry in results.items():
        lines.append(f"| {dataset} | " + " | ".join(f"{entry['greedy'][n]['test']:.2f}" for n in DEFAULT_PROXIES) + " |")
    lines += ["", "Seeds whose winner has the median test accuracy: " + ", ".join(
        f"{d} {sum(abs(r['test'] - np.median([q['test'] for q in e['robot'].values()])) < 1e-6 for r in e['robot'].values())}"
        f"/{len(e['robot'])}" for d, e in results.items()) + ".", "", "Per-seed RoBoT test accuracy:", ""]
    for dataset, entry in results.items():
        lines.append(f"* {dataset}: " + ", ".join(f"{s}: {r['test']:.2f}" for s, r in entry["robot"].items()))
    if has_re:
        lines += ["", "Per-seed RE test accuracy:", ""]
        for dataset, entry in results.items():
            lines.append(f"* {dataset}: " + ", ".join(f"{s}: {r['test']:.2f}" for s, r in entry["re"].items()))
    lines += ["", "Notes:"] + (_nastk_notes(results, meta) if nastk_pool else _suite_zero_notes(results, meta))
    lines.append(f"* BO: `bayes_opt` {version('bayesian-optimization')} (`suggest`/`register`), GP-UCB kappa 2.576, "
                 "Matern 2.5, 1 random initial point, T BO steps; repeated argmax architectures cost no query "
                 "(see `nastk/strategies/robot.py`).")
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")


def _match_text(meta):
    match = meta["published_match"]
    if not match:
        return "no NB201 architecture has all three published test accuracies"
    m = match[0]
    return (f"NB201 architecture {m['idx']} (`{m['arch']}`) has test accuracies {m['cifar10']:.3f} / "
            f"{m['cifar100']:.3f} / {m['ImageNet16-120']:.3f}, the only one matching all three, and is the "
            f"{'2nd' if m['objective_rank'] == 2 else '#' + str(m['objective_rank'])}-best of NB201 by the search "
            f"objective ({m['objective']:.2f})")


def _below_optimum(entry):
    """RoBoT seeds whose winner's objective is below the pool's best objective."""
    best = max(r["objective"] for r in entry["robot"].values())
    return {s: r for s, r in entry["robot"].items() if r["objective"] < best - 1e-9}


def _suite_zero_notes(results, meta):
    c10 = results.get("cifar10")
    stuck = ""
    if c10:
        bad = _below_optimum(c10)
        stuck = (f" In cifar10, {len(bad)} of {len(c10['robot'])} seeds end below the pool's best objective: " + "; ".join(
            f"{s}: objective {r['objective']:.2f}, test {r['test']:.2f} (synflow {r['best_weights']['synflow']:+.2f}, "
            f"jacob_cov {r['best_weights']['jacob_cov']:+.2f})" for s, r in bad.items()) + ".") if bad else ""
    return [
        "* \"Best single proxy\" is chosen in hindsight per task (the best of the six), as in RoBoT's table.",
        "* **Why not 94.36 / 73.51 / 46.34 ± 0.00.** (1) The published numbers are one architecture: " + _match_text(meta)
        + ". ± 0.00 at exactly its accuracies on all three tasks means all 30 published runs returned it, so none of "
        "them queried NB201's best-by-objective architecture (idx 13714, hp12 84.89 > 84.75, which would have won; "
        "test 94.37 / 73.09 / 46.33). Our successful seeds do query 13714 (the greedy top-T "
        "of synflow-heavy weights holds it), hence our cifar10 median 94.37 is 0.01 *above* the published 94.36 "
        "and ImageNet16-120's 46.33 0.01 below; the 725-architecture cifar100 pool holds neither (its best is 73.17). "
        "(2) The spread is a minority of seeds in which the 20 BO steps never reach the good part of the weight box. "
        "F(w) = objective(argmax_a S_w(a)) is piecewise constant: over the 9,445-arch cifar10 pool only about 65 "
        "architectures are argmaxes at all; the region whose argmax is idx 9930 (hp12 84.75) covers about 10 % of "
        "[-1, 1]^6, and a trap whose argmax has objective 73.56 (test 86.37 / 86.45) about 8 % "
        "(`docs/results/robot_bo_versions.md`, measured on the pool as first read, see (5))." + stuck + " Once BO's best "
        "value is such a plateau, UCB keeps sampling near it and the greedy phase exploits that weaker ranking. "
        "(3) Neither nastk's code nor the library version causes it. nastk's ask/tell RoBoT reproduces the library's "
        "own `maximize` loop seed for seed (`tests/test_robot.py`). On the pool as first read, the same loop under "
        "RoBoT's `bayesian-optimization==1.2.0` with RoBoT's requirements (scikit-learn 1.2.2, numpy 1.19.5, "
        "scipy 1.7.0) ended below the pool's best objective in 12 of 100 runs (seeds 10..59, two seedings) against "
        "nastk's 7 of 50 (Fisher p = 0.80); which seeds fail changes with the library and the seeding, the rate does "
        "not (`docs/results/robot_bo_versions.md`, `scripts/robot_bo_versions.py`). (4) Ten seeds cannot tell "
        "± 0.00 from a failure rate of a few to 15 %: at 0.88 success per seed, 10 of 10 succeed with probability "
        "0.28. The published runs also used SamsungLabs' proxy values on all 15,625 architectures (not available "
        "here), a different landscape whose failure rate cannot be measured. (5) Suite-Zero stores a failed "
        "computation as -1e8 (jacov, nwot, epe_nas and zen of one architecture per dataset). Read as a number, that "
        "value dominates min-max normalisation (normalised jacob_cov above 0.99 for the whole pool); nastk's table "
        "reader now reads it as missing (contributing 0), which these runs use. Seeds 10..59 ending below their "
        "pool's best objective, value read as a number -> as missing: cifar10 7 -> 2 of 50 (Fisher p = 0.16), "
        "cifar100 4 -> 9 (p = 0.23), ImageNet16-120 4 -> 4; so the fix moves which seeds fail, not how often "
        "in any significant way, and the 10-seed tables move with it. \"Within 0.1 of the published numbers\" holds for the median and for most seeds on "
        "every task, not for the mean of every set of 10 seeds.",
        "* Reproducibility: the BO trajectory is sensitive to floating-point details. Rerunning the committed seeds "
        "with the same code on this machine gave the same winner for each of seeds 10..29 checked, but a different trajectory "
        "(T0 and cost) for seeds 13, 24 and 29; rerun results may differ in those columns.",
        "* The pools are subsets of NB201, so the pool optimum bounds what any method can reach"
        + "".join(f"; the {d} pool lacks the NB201 optimum ({e['pool']['optimum']:.2f} < {e['pool']['global_optimum']:.2f})"
                  for d, e in results.items() if e["pool"]["optimum"] < e["pool"]["global_optimum"] - 1e-9) + ".",
        "* On ImageNet16-120 (and cifar100) the search signal is cifar10-valid's 12-epoch accuracy, so the "
        "best-by-objective architecture need not be the task's optimum even when it is queried.",
        "* More seeds: `--seeds $(seq 10 59) --out docs/results/robot_nb201_seeds10-59` (50 runs per dataset). "
        "nastk's own proxies: `--pool nastk-cifar10` (`docs/results/robot_nb201_nastk_pool.md`)."]


def _nastk_notes(results, meta):
    notes = ["* \"Best single proxy\" is chosen in hindsight per task (the best of the six), as in RoBoT's table.",
             "* One pool and one objective serve all three tasks, so RoBoT's queries (and the greedy and random "
             "baselines') are the same for the three datasets; only the reported test accuracy differs.",
             "* Published RoBoT (94.36 / 73.51 / 46.34) searched all 15,625 architectures with per-task proxies; "
             "a ~1,000-architecture pool usually lacks those architectures, so compare with the pool optimum and the "
             "pool's best-by-objective, not with the published numbers. Published REA for reference (12,000 s budget, "
             "not 20 queries): " + ", ".join(f"{d} {v}" for d, v in PUBLISHED_REA.items()) + "."]
    entry = next(iter(results.values()))
    shares = entry["pool"].get("normalised_below_0.01_above_0.99")
    if shares:
        notes.append("* Min-max normalisation of nastk's raw proxy values is dominated by outliers (share of the pool "
                     "below 0.01 / above 0.99 after normalisation: " + "; ".join(
                         f"{n} {a:.2f} / {b:.2f}" for n, (a, b) in shares.items()) + "; raw ranges: " + ", ".join(
                         f"{n} {lo:.3g}..{hi:.3g}" for n, (lo, hi) in entry["pool"].get("raw_range", {}).items())
                     + "). Where one proxy's share below 0.01 is near 1 (synflow, spanning many orders of magnitude), "
                     "its normalised value only separates the largest few architectures; this follows the spec "
                     "(raw values, min-max), as RoBoT did with its own values.")
    bad = {s: r for s, r in entry["robot"].items()
           if r["test"] < np.median([q["test"] for q in entry["robot"].values()]) - 1e-9}
    if bad:
        notes.append(f"* Seeds below the median in {next(iter(results))}: " + "; ".join(
            f"{s} (objective {r['objective']:.2f}, test {r['test']:.2f}; best weights synflow "
            f"{r['best_weights']['synflow']:+.2f}, jacob_cov {r['best_weights']['jacob_cov']:+.2f})" for s, r in bad.items())
            + (". As on the Suite-Zero pool (`docs/results/robot_nb201.md`), BO's best weights there rank by a "
               "combination with negative synflow, and the greedy phase exploits that weaker ranking."
               if all(r["best_weights"]["synflow"] < 0 for r in bad.values()) else "."))
    accept = []
    for dataset, entry in results.items():
        robot = np.mean([r["test"] for r in entry["robot"].values()])
        re_mean = np.mean([r["test"] for r in entry["re"].values()]) if entry.get("re") else float("nan")
        single = max(v["test"] for k, v in entry["greedy"].items() if k != "average")
        accept.append(f"{dataset}: RoBoT {robot:.2f} {'≥' if robot >= re_mean else '<'} RE {re_mean:.2f}, "
                      f"{'≥' if robot >= single - 1e-9 else '<'} best single proxy {single:.2f}")
    notes.append("* methods.md 9.3 acceptance (RoBoT mean ≥ REA and ≥ best single proxy): " + "; ".join(accept) + ".")
    return notes


if __name__ == "__main__":
    main()
