"""Does the bayes_opt version explain RoBoT's outlier seeds? A standalone RoBoT loop for 1.2.0 and 3.x.

RoBoT's own code used ``bayesian-optimization==1.2.0`` (with scikit-learn 1.2.2, numpy 1.19.5, scipy 1.7.0);
nastk uses the installed 3.x. This script runs the same RoBoT loop (methods.md 9.1: BO over weights in
[-1, 1]^M, each BO step queries the argmax architecture of the pool, an architecture seen before costs
nothing, ``maximize(init_points=0, n_iter=T-1)`` = 1 random point + T-1 UCB suggestions with kappa 2.576,
then greedy filling from the best weights until T distinct queries) under either library version, on a
pool exported from nastk, so the two versions can be compared seed by seed and in failure rate.

Steps (``run`` needs only numpy and bayes_opt, so it also runs in a throw-away venv with 1.2.0, e.g. Python 3.9
with RoBoT's requirements: ``pip download bayesian-optimization==1.2.0`` plus wheels of numpy 1.19.5,
scipy 1.7.0, scikit-learn 1.2.2, joblib 1.2.0, threadpoolctl 3.1.0, installed into ``/tmp/bo120/venv39``):

  NASTK_DATA=../shared/benchmarks .venv/bin/python scripts/robot_bo_versions.py export --dir /tmp/robot_bo
  for keys in metric index; do /tmp/bo120/venv39/bin/python scripts/robot_bo_versions.py run \
      --pool /tmp/robot_bo/pool_cifar10.npz --keys $keys --seeds $(seq 10 59) --out /tmp/robot_bo/v120_$keys.json; done
  NASTK_DATA=../shared/benchmarks .venv/bin/python scripts/robot_bo_versions.py report \
      /tmp/robot_bo/v120_metric.json /tmp/robot_bo/v120_index.json --pool /tmp/robot_bo/pool_cifar10.npz \
      --nastk-json docs/results/robot_nb201_seeds10-59.json --out docs/results/robot_bo_versions

nastk's own runs (``--nastk-json``, from ``scripts/reproduce_robot.py``) stand for 3.x: ``run`` under 3.x
with ``--keys index`` is the same computation (``tests/test_robot.py`` checks it against nastk's strategy).
``--variant RUN.json`` adds one line about a run on a modified pool, e.g. ``export --sentinel-as-missing=-1e8``
(Suite-Zero's failure value, found once in jacov, read as missing) then ``run --pool .../pool_cifar10_nosentinel.npz``.

``--keys metric`` names the BO dimensions after the proxies and seeds the library with the int seed, as
RoBoT's search script does (1.2.0 sorts the names; each of its optimiser and target space then owns a
RandomState(seed)); ``--keys index`` uses nastk's keys ``w00..w05`` and one shared RandomState(seed).
Both are the same algorithm; they only map a seed to different random draws.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np

PROXIES = ("grad_norm", "snip", "grasp", "fisher", "synflow", "jacob_cov")
OBJECTIVE = "cifar10-valid/valid/12"


# --- export (project venv) -------------------------------------------------------------------------
def export(args):
    from nastk.benchmarks.registry import benchmark_for
    from nastk.evaluators.benchmark import BenchmarkEvaluator
    from nastk.space import get_space
    from nastk.strategies.robot import load_proxy_pool

    out = Path(args.dir)
    out.mkdir(parents=True, exist_ok=True)
    space = get_space("nb201")
    for dataset in args.datasets:
        name, label = f"pool_{dataset}.npz", dataset
        if args.sentinel_as_missing is None:
            pool = load_proxy_pool(space, dataset, proxies=PROXIES)
        else:  # Suite-Zero writes -1e8 where a proxy failed; read such values as missing (NaN -> 0)
            from nastk.benchmarks.proxy_tables import default_table_path, read_proxy_table
            from nastk.strategies.robot import ProxyPool

            table = read_proxy_table(default_table_path(dataset), dataset=dataset, names=PROXIES)
            values = np.where(table.values <= args.sentinel_as_missing, np.nan, table.values)
            pool = ProxyPool([space.from_str(text) for text in table.arch_strs], values, list(PROXIES))
            name = f"pool_{dataset}_nosentinel.npz"
            label = f"{dataset}, values <= {args.sentinel_as_missing:g} read as missing"
        evaluator = BenchmarkEvaluator(benchmark_for("nb201"), dataset, OBJECTIVE)
        results = [evaluator.evaluate(arch) for arch in pool.archs]
        np.savez(out / name, normalised=pool.normalised, names=np.array(PROXIES),
                 objective=np.array([r.value for r in results]), cost=np.array([r.cost_s for r in results]),
                 test=np.array([r.metrics["test_accuracy"] for r in results]),
                 arch=np.array([a.to_str() for a in pool.archs]), dataset=np.array(label))
        print(f"{out / name}: {len(pool)} architectures")


# --- run (any venv with numpy and bayes_opt 1.2.0 or 3.x) -----------------------------------------
def robot_loop(pool, seed, budget, keys_mode):
    """One RoBoT run; returns the winner and the BO trace."""
    import bayes_opt
    from bayes_opt import BayesianOptimization

    normalised, objective = pool["normalised"], pool["objective"]
    names = [str(n) for n in pool["names"]]
    keys = names if keys_mode == "metric" else [f"w{i:02d}" for i in range(len(names))]
    observed, queried, trace = {}, [], []
    best = {"value": -np.inf, "weights": None}

    def target(**params):  # called once per BO step whose weight vector is new
        weights = np.array([params[key] for key in keys])  # in proxy order
        row = int(np.argmax(normalised @ weights))
        new = row not in observed
        if new:
            observed[row] = float(objective[row])
            queried.append(row)
        value = observed[row]
        if value >= best["value"]:  # ties: the later weights
            best["value"], best["weights"] = value, weights
        trace.append({"weights": np.round(weights, 4).tolist(), "row": row, "value": value, "new": new})
        return value

    pbounds = {key: (-1.0, 1.0) for key in keys}
    random_state = seed if keys_mode == "metric" else np.random.RandomState(seed)
    if hasattr(bayes_opt, "acquisition"):  # 3.x
        from bayes_opt.acquisition import UpperConfidenceBound
        optimizer = BayesianOptimization(f=target, pbounds=pbounds, random_state=random_state, verbose=0,
                                         acquisition_function=UpperConfidenceBound(kappa=2.576))
        optimizer.maximize(init_points=0, n_iter=budget - 1)
    else:  # 1.2.0: maximize's defaults are acq="ucb", kappa=2.576, xi=0
        optimizer = BayesianOptimization(f=target, pbounds=pbounds, random_state=random_state, verbose=0)
        optimizer.maximize(init_points=0, n_iter=budget - 1, acq="ucb", kappa=2.576, xi=0.0)
    bo_distinct = len(queried)
    for row in np.argsort(-(normalised @ best["weights"]), kind="stable"):
        if len(queried) >= budget:
            break
        if int(row) not in observed:
            observed[int(row)] = float(objective[row])
            queried.append(int(row))
    winner = max(queried, key=lambda r: objective[r])  # first best in query order
    return {"test": float(pool["test"][winner]), "objective": float(objective[winner]),
            "arch": str(pool["arch"][winner]), "cost_s": float(pool["cost"][queried].sum()),
            "queried": queried, "bo_distinct": bo_distinct, "bo_steps": budget, "bo_calls": len(trace), "bo_best": best["value"],
            "best_weights": dict(zip(names, np.round(best["weights"], 4).tolist())), "trace": trace}


def run(args):
    import importlib.metadata as metadata

    warnings.filterwarnings("ignore")
    pool = dict(np.load(args.pool))
    out = Path(args.out)
    doc = json.loads(out.read_text()) if out.is_file() else {}
    doc.update({"library": metadata.version("bayesian-optimization"), "scikit-learn": metadata.version("scikit-learn"),
                "numpy": np.__version__, "scipy": metadata.version("scipy"), "python": sys.version.split()[0],
                "keys": args.keys, "pool": str(pool["dataset"]), "pool_size": int(len(pool["arch"])),
                "budget": args.budget})
    runs = doc.setdefault("runs", {})
    for seed in args.seeds:
        if str(seed) in runs:
            continue
        runs[str(seed)] = robot_loop(pool, seed, args.budget, args.keys)
        print(seed, round(runs[str(seed)]["test"], 2), round(runs[str(seed)]["objective"], 2), flush=True)
        out.write_text(json.dumps(doc))


# --- report (project venv) ------------------------------------------------------------------------
def landscape(pool, samples=200_000, seed=0):
    """F(w) over uniform random weights: which architectures are argmaxes, and how often."""
    weights = np.random.default_rng(seed).uniform(-1, 1, size=(samples, pool["normalised"].shape[1]))
    rows = np.concatenate([np.argmax(pool["normalised"] @ weights[i:i + 5000].T, axis=0)
                           for i in range(0, samples, 5000)])
    unique, counts = np.unique(rows, return_counts=True)
    order = np.argsort(-counts)
    return weights, rows, [(int(unique[i]), counts[i] / samples) for i in order]


def report(args):
    import importlib.metadata as metadata

    from nastk.paths import atomic_write

    docs = [json.loads(Path(p).read_text()) for p in args.results]
    pool = dict(np.load(args.pool))
    for path in args.nastk_json or []:  # nastk's own RoBoT runs (scripts/reproduce_robot.py) on the same pool
        entry = json.loads(Path(path).read_text())[str(pool["dataset"])]
        if entry["pool"]["size"] != len(pool["arch"]):
            raise SystemExit(f"{path}: its {pool['dataset']} pool has {entry['pool']['size']} archs, not {len(pool['arch'])}")
        docs.append({"library": f"{metadata.version('bayesian-optimization')} (nastk's RoBoT, {Path(path).name})",
                     "scikit-learn": metadata.version("scikit-learn"), "numpy": np.__version__,
                     "python": sys.version.split()[0], "keys": "index", "runs": entry["robot"]})
    optimum = float(pool["objective"].max())
    lines = [f"# RoBoT's outlier seeds: bayes_opt 1.2.0 (RoBoT's) vs {metadata.version('bayesian-optimization')} (nastk's)",
             "", "Command: see the docstring of `scripts/robot_bo_versions.py` (export, run in each venv, report).  ",
             f"Pool: {pool['dataset']} Suite-Zero pool, {len(pool['arch'])} architectures, proxies "
             f"{', '.join(str(n) for n in pool['names'])} (min-max normalised by nastk's `ProxyPool`); objective "
             f"{OBJECTIVE}; reported: {pool['dataset']} 200-epoch test accuracy. T = 20.", "",
             "| bayes_opt | scikit-learn / numpy / python | BO keys, seeding | seeds | RoBoT test | median [min] | "
             "seeds below the pool optimum | winners (test: count) |", "|---|---|---|---|---|---|---|---|"]
    for doc in docs:
        runs = doc["runs"]
        tests = [r["test"] for r in runs.values()]
        bad = [s for s, r in runs.items() if r["objective"] < optimum - 1e-9]
        winners = {}
        for r in runs.values():
            winners[f"{r['test']:.2f}"] = winners.get(f"{r['test']:.2f}", 0) + 1
        seeds = sorted(int(s) for s in runs)
        keys = ("proxy names, int seed (as RoBoT)" if doc["keys"] == "metric"
                else "w00..w05, shared RandomState (as nastk)")
        lines.append(f"| {doc['library']} | {doc['scikit-learn']} / {doc['numpy']} / {doc['python']} | {keys} | "
                     f"{seeds[0]}..{seeds[-1]} | {np.mean(tests):.2f} ± {np.std(tests):.2f} | "
                     f"{np.median(tests):.2f} [{min(tests):.2f}] | {len(bad)}/{len(runs)}: {', '.join(bad) or '-'} | "
                     + ", ".join(f"{k}: {v}" for k, v in sorted(winners.items(), reverse=True)) + " |")
        if seeds[0] == 10 and len(seeds) >= 10:
            first = [runs[str(s)]["test"] for s in range(10, 20)]
            lines[-1] = lines[-1][:-1] + f"(seeds 10..19: {np.mean(first):.2f} ± {np.std(first):.2f}) |"
    lines += ["", "Seeds below the pool optimum (test / objective; the best weights' synflow and jacob_cov):", ""]
    failures = {}
    for doc in docs:
        bad = {s: r for s, r in doc["runs"].items() if r["objective"] < optimum - 1e-9}
        failures.setdefault(doc["library"].split()[0], []).append((len(bad), len(doc["runs"])))
        lines.append(f"* {doc['library']}, {doc['keys']} keys: " + ("; ".join(
            f"{s}: {r['test']:.2f} / {r['objective']:.2f} (synflow {r['best_weights']['synflow']:+.2f}, "
            f"jacob_cov {r['best_weights']['jacob_cov']:+.2f})" for s, r in bad.items()) or "none"))
    from scipy.stats import fisher_exact

    rates = {lib: (sum(b for b, _ in v), sum(n for _, n in v)) for lib, v in failures.items()}
    lines += ["", "Failure rates (seeds below the pool optimum), all runs of a library together: " + "; ".join(
        f"{lib}: {b}/{n} = {b / n:.2f} (P(10 of 10 seeds succeed) = {(1 - b / n) ** 10:.2f})"
        for lib, (b, n) in rates.items()) + "."]
    if len(rates) == 2:
        (b1, n1), (b2, n2) = rates.values()
        lines[-1] += (f" Fisher's exact test of equal rates: p = {fisher_exact([[b1, n1 - b1], [b2, n2 - b2]])[1]:.2f}.")
    for path in args.variant or []:
        doc = json.loads(Path(path).read_text())
        tests = [r["test"] for r in doc["runs"].values()]
        bad = [s for s, r in doc["runs"].items() if r["objective"] < optimum - 1e-9]
        lines += ["", f"Variant pool `{doc['pool']}` (bayes_opt {doc['library']}, {doc['keys']} keys): RoBoT "
                  f"{np.mean(tests):.2f} ± {np.std(tests):.2f}, median {np.median(tests):.2f} [{min(tests):.2f}], "
                  f"{len(bad)}/{len(tests)} seeds below the pool optimum ({', '.join(bad) or '-'})"]
        same = [d for d in docs if d["library"].split()[0] == doc["library"]]
        if same:
            b0, n0 = sum(sum(r["objective"] < optimum - 1e-9 for r in d["runs"].values()) for d in same), \
                sum(len(d["runs"]) for d in same)
            lines[-1] += (f"; vs {b0}/{n0} on the unmodified pool with the same library, Fisher's exact test "
                          f"p = {fisher_exact([[len(bad), len(tests) - len(bad)], [b0, n0 - b0]])[1]:.2f}")
        lines[-1] += "."
    if len(rates) == 2:
        verdict = ("does not explain" if fisher_exact([[b1, n1 - b1], [b2, n2 - b2]])[1] > 0.05 else "may explain")
        lines += ["", f"Reading: the library version {verdict} the outlier seeds. Both versions run the same algorithm; "
                  "a seed maps to different random draws in each (and in 1.2.0 also with the key names), so *which* "
                  "seeds fail changes, but the share of seeds whose 20 BO steps end on a weaker plateau of F(w) does "
                  "not differ measurably."]
    weights, rows, shares = landscape(pool)
    values = pool["objective"][rows]
    lines += ["", f"Landscape of F(w) = objective(argmax_a S_w(a)) over 200,000 uniform weight vectors: "
              f"{len(shares)} distinct argmax architectures. The largest regions:", "",
              "| pool row | share of [-1,1]^6 | objective (hp12 valid) | test | normalised proxies |", "|---|---|---|---|---|"]
    for row, share in shares[:8]:
        lines.append(f"| {row} | {share:.3f} | {pool['objective'][row]:.2f} | {pool['test'][row]:.2f} | "
                     + ", ".join(f"{n} {v:.2f}" for n, v in zip(pool["names"], pool["normalised"][row])) + " |")
    normalised = pool["normalised"]
    lines += ["", "Min-max normalisation over the pool is dominated by outliers: share of the pool whose normalised "
              "value is below 0.01 / above 0.99: " + "; ".join(
                  f"{n} {np.mean(normalised[:, j] < 0.01):.2f} / {np.mean(normalised[:, j] > 0.99):.2f}"
                  for j, n in enumerate(pool["names"])) + ". So jacob_cov adds a near-constant to every score and "
              "fisher, grad_norm and snip are near 0 for most architectures; small weights on the others decide "
              "among near-ties."]
    best_row = int(np.argmax(pool["objective"]))
    lines += ["", f"The pool's best objective ({optimum:.2f}, `{pool['arch'][best_row]}`, test "
              f"{pool['test'][best_row]:.2f}) is the argmax of {np.mean(rows == best_row):.4f} of the box: BO alone "
              f"never queries it; only the greedy phase of a synflow-heavy weight vector does. "
              f"P(F(w) >= 84) = {np.mean(values >= 84):.3f}.", ""]
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    with atomic_write(Path(args.out + ".json"), "w") as handle:
        json.dump({"runs": [{k: v for k, v in d.items() if k != "runs"} | {"results": {
            s: {k: v for k, v in r.items() if k != "trace"} for s, r in d["runs"].items()}} for d in docs],
            "landscape": [[row, share] for row, share in shares[:20]]}, handle, indent=1)
    print("\n".join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("export")
    p.add_argument("--dir", required=True)
    p.add_argument("--datasets", nargs="+", default=["cifar10"])
    p.add_argument("--sentinel-as-missing", type=float, default=None,
                   help="read proxy values <= this (Suite-Zero's failure value -1e8) as missing")
    p = sub.add_parser("run")
    p.add_argument("--pool", required=True)
    p.add_argument("--seeds", nargs="+", type=int, default=list(range(10, 20)))
    p.add_argument("--budget", type=int, default=20)
    p.add_argument("--keys", choices=["metric", "index"], default="metric")
    p.add_argument("--out", required=True)
    p = sub.add_parser("report")
    p.add_argument("results", nargs="+")
    p.add_argument("--pool", required=True)
    p.add_argument("--variant", nargs="*", help="run JSONs on a modified pool, one line each")
    p.add_argument("--nastk-json", nargs="*", help="reproduce_robot.py results to include (same pool)")
    p.add_argument("--out", default="docs/results/robot_bo_versions")
    args = parser.parse_args()
    {"export": export, "run": run, "report": report}[args.command](args)


if __name__ == "__main__":
    main()
