"""ShiftNAS (methods.md 2; experimental, partly reconstructed [R]) vs bin-uniform sampling without the shift vs
uniform single-path sampling on the tiny elastic MBConv space, at equal training compute (one child
forward-backward per batch, the same epochs, data, recipe and seeds).

Reduced setting (CPU): space ``mobilenet`` (methods.md 12.3), the shared CIFAR-10 subset (2,500 training images,
the last 500 in nastk's class-mixed order held out from weight training -- Eq. 8's held-out split and what
selection scores on -- and 1,000 test images, reported only), 4 equal-width FLOPs bins, SGD-Nesterov lr 0.1
cosine, wd 5e-5, batch 128, BN momentum 0 while training and per-child BN recalibration before scoring.

* ``uniform``: ``--step single_path --sampler uniform`` (SPOS);
* ``bin_uniform``: ``--step shiftnas --sampler bin_uniform``: uniform bins + architecture generator, B never
  updated (the paper's ablation baseline);
* ``shiftnas``: ``--step shiftnas --sampler shifted``: learned B (Eq. 8) + generator.

Measured: the uniform-sampling FLOPs histogram; B over training; the generator's error |F(G(c)) - c| / c over
a sweep of budgets; per bin, best and mean held-out / test accuracy of fixed children (the same for every
method and seed) and Kendall tau against children trained stand alone (short training, shared across
methods and seeds, reused from scripts/reproduce_sandwich_mbconv.py's cache when the same child and recipe);
the generator's child for two budgets vs the best child regularized evolution finds on the uniform supernet
(supernet evaluator, held-out split, --constraint flops<=budget).

    NASTK_DATA=../shared/benchmarks nice -n 10 .venv/bin/python scripts/reproduce_shiftnas.py --jobs 2 > shiftnas.log 2>&1

Resumable: finished pieces (``<work>/.../result.json``) are skipped; the report is rewritten at the end.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

METHODS = ("uniform", "bin_uniform", "shiftnas")
CHILD_SEED = 1234  # the fixed per-bin children (the same for every method and seed)
#: ShiftNAS options of the reduced setting ([R] where the paper's values do not fit a 6-epoch CPU run)
SHIFT_OPTIONS = {"bins": 4, "generator_warmup": 80, "generator_lr": 1e-2, "resource_weight": 1.0, "shift_every": 5, "shift_draws": 4,
                 "shift_lr": 0.05, "warmup_fraction": 1 / 3}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-size", type=int, default=2500)
    parser.add_argument("--held-out", type=float, default=0.2)
    parser.add_argument("--children", type=int, default=4, help="fixed children evaluated per bin (default 4)")
    parser.add_argument("--standalone", type=int, default=0, help="of those, at least this many per bin trained alone besides the cached ones (default 0)")
    parser.add_argument("--standalone-epochs", type=int, default=8)
    parser.add_argument("--calibration", type=int, nargs=2, default=[5, 200], metavar=("BATCHES", "SIZE"))
    parser.add_argument("--budgets", type=float, nargs=2, default=[2.5, 4.5], help="MFLOPs budgets of the generator "
                        "vs evolution comparison")
    parser.add_argument("--search-queries", type=int, default=15)
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--work", default="runs/shiftnas_mbconv")
    parser.add_argument("--standalone-cache", default="runs/sandwich_mbconv/standalone",
                        help="stand-alone results of reproduce_sandwich_mbconv.py reused when the child and epochs match")
    parser.add_argument("--out", default="docs/results/shiftnas_mbconv")
    parser.add_argument("--report-only", action="store_true", help="write the report from the finished pieces only")
    return parser.parse_args()


def common_options(args, seed: int) -> dict:
    return {"space": "mobilenet", "dataset": args.dataset, "train_size": args.train_size, "held_out_fraction": args.held_out,
            "supernet": {"bn_momentum": 0.0}, "valid_size": 0, "seed": seed, "epochs": args.epochs, "batch_size": 128,
            "lr": 0.1, "nesterov": True, "weight_decay": 5e-5}


def config_for(args, method: str, seed: int):
    from nastk.oneshot.trainer import OneShotConfig

    if method == "uniform":
        return OneShotConfig.for_step("single_path", sampler="uniform", **common_options(args, seed))
    return OneShotConfig.for_step("shiftnas", sampler="shifted" if method == "shiftnas" else "bin_uniform",
                                  step_options=SHIFT_OPTIONS, **common_options(args, seed))


def bins_and_children(args):
    """The 4 FLOPs bins and, per bin, the fixed children: the cached stand-alone children of that bin first, then
    children drawn uniformly within the bin (seeded)."""
    import torch

    from nastk.oneshot.complexity import make_bins, path_cost
    from nastk.oneshot.shiftnas import BinPathSampler
    from nastk.registry import get_space

    space = get_space("mobilenet")
    torch.manual_seed(0)
    supernet = space.supernet(10)
    sampler = BinPathSampler(supernet)
    sampler.configure(bins=SHIFT_OPTIONS["bins"])
    bins = sampler.bins
    per_bin = [[] for _ in range(bins.count)]
    for arch in cached_standalone(args):
        path = supernet.path_of_arch(space.from_str(arch))
        per_bin[bins.index(path_cost(supernet, path))].append(arch)
    rng = np.random.default_rng(CHILD_SEED)
    for k in range(bins.count):
        tries = 0
        while len(per_bin[k]) < args.children and tries < 500:
            arch = supernet.arch_of_path(sampler.path_in_bin(k, rng)).to_str()
            if arch not in per_bin[k]:
                per_bin[k].append(arch)
            tries += 1
    return bins, per_bin


def cached_standalone(args):
    folder = Path(args.standalone_cache)
    found = []
    for result in sorted(folder.glob("*/result.json")) if folder.is_dir() else []:
        r = json.loads(result.read_text())
        if r.get("epochs") == args.standalone_epochs:
            found.append(r["arch"])
    return found


def run_standalone(args, arch_str: str) -> dict:
    """One child trained alone with reproduce_sandwich_mbconv's recipe (reused from its cache when present)."""
    digest = hashlib.sha1(arch_str.encode()).hexdigest()[:12]
    cached = Path(args.standalone_cache) / digest / "result.json"
    if cached.is_file() and json.loads(cached.read_text()).get("epochs") == args.standalone_epochs:
        return {**json.loads(cached.read_text()), "reused": str(cached)}
    import reproduce_sandwich_mbconv as sandwich

    options = argparse.Namespace(work=args.work, standalone_epochs=args.standalone_epochs, train_size=args.train_size,
                                 held_out=args.held_out, dataset=args.dataset, device=args.device)
    return sandwich.run_standalone(options, arch_str)


def run_supernet(args, method: str, seed: int, children) -> dict:
    import torch

    from nastk.oneshot.ranking import inherited_accuracies
    from nastk.oneshot.trainer import load_trained, train

    torch.set_num_threads(1)
    folder = Path(args.work) / f"{method}-seed{seed}"
    result_path = folder / "result.json"
    if result_path.is_file():
        return score_missing_children(args, folder, json.loads(result_path.read_text()), children)
    config = config_for(args, method, seed)
    train(config, folder, resume=(folder / "config.json").is_file(), device=args.device, progress=False)
    supernet, config, _ = load_trained(folder, args.device)
    space = supernet.space
    import reproduce_sandwich_mbconv as sandwich

    _, x_train, ((x_test, y_test), (x_held, y_held)) = sandwich.eval_data(config)
    batches, size = args.calibration
    calibration = list(x_train[:batches * size].split(size))
    history = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    result = {"method": method, "seed": seed, "train_s": round(sum(r["epoch_s"] for r in history), 1),
              "steps": sum(r["steps"] for r in history), "history": history, "children": {}}
    flat = [a for archs in children for a in archs]
    generated = {}
    if method != "uniform":
        from nastk.oneshot.shiftnas import generated_child, load_generator

        supernet, generator, bins = load_generator(folder, args.device)
        sweep = np.linspace(bins.low + 0.02 * (bins.high - bins.low), bins.high, 15)
        result["generator_sweep"] = [{"budget": float(c), "cost": generated_child(supernet, generator, bins, float(c))[1]}
                                     for c in sweep]
        for c in list(bins.values) + list(args.budgets):
            arch, cost, _ = generated_child(supernet, generator, bins, float(c))
            generated[f"{c:.4f}"] = {"arch": arch.to_str(), "cost": cost}
        state = torch.load(folder / "checkpoint.pt", map_location="cpu", weights_only=False)
        result["trajectory"] = state["step"]["path_sampler"]["trajectory"]
    archs = flat + [g["arch"] for g in generated.values()]
    parsed = [space.from_str(a) for a in archs]
    common = dict(device=args.device, batch_size=500, calibration=calibration)
    held = inherited_accuracies(supernet, parsed, x_held, y_held, **common).tolist()
    test = inherited_accuracies(supernet, parsed, x_test, y_test, **common).tolist()
    result["children"] = {a: {"held_out": h, "test": t} for a, h, t in zip(archs, held, test)}
    result["generated"] = {c: {**g, **result["children"][g["arch"]]} for c, g in generated.items()}
    if method != "uniform":
        for budget in args.budgets:  # the generator's child exported with inherited weights
            arch, cost, child = generated_child(supernet, generator, bins, float(budget))
            torch.save({"arch": arch.to_str(), "cost_mflops": cost, "state_dict": child.state_dict()},
                       folder / f"generated_{budget:g}.pt")
    result_path.write_text(json.dumps(result, indent=1))
    return result


def score_missing_children(args, folder: Path, result: dict, children) -> dict:
    """A finished run's result with the fixed children it has not scored yet (a larger ``--children``)
    scored on its trained supernet, exactly as :func:`run_supernet` scores them, and saved."""
    missing = [a for archs in children for a in archs if a not in result["children"]]
    if not missing:
        return result
    import torch

    from nastk.oneshot.ranking import inherited_accuracies
    from nastk.oneshot.trainer import load_trained
    import reproduce_sandwich_mbconv as sandwich

    torch.set_num_threads(1)
    supernet, config, _ = load_trained(folder, args.device)
    _, x_train, ((x_test, y_test), (x_held, y_held)) = sandwich.eval_data(config)
    batches, size = args.calibration
    common = dict(device=args.device, batch_size=500, calibration=list(x_train[:batches * size].split(size)))
    parsed = [supernet.space.from_str(a) for a in missing]
    held = inherited_accuracies(supernet, parsed, x_held, y_held, **common).tolist()
    test = inherited_accuracies(supernet, parsed, x_test, y_test, **common).tolist()
    result["children"].update({a: {"held_out": h, "test": t} for a, h, t in zip(missing, held, test)})
    (folder / "result.json").write_text(json.dumps(result, indent=1))
    return result


def run_search(args, seed: int, budget: float) -> dict:
    """Regularized evolution on the uniform supernet (held-out split, BN recalibration) under flops <= budget."""
    import torch

    from nastk.cli import main as nastk_main

    torch.set_num_threads(1)
    folder = Path(args.work) / "search" / f"re-seed{seed}-flops{budget:g}"
    done = folder / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    supernet_dir = Path(args.work) / f"uniform-seed{seed}"
    if folder.exists() and not (folder / "summary.json").is_file():
        shutil.rmtree(folder)
    started = time.perf_counter()
    code = nastk_main(["search", "--space", "mobilenet", "--strategy", "re", "--evaluator", f"supernet:{supernet_dir}",
                       "--constraint", f"flops<={budget:g}", "--budget", str(args.search_queries), "--seed", str(seed),
                       "--run-dir", str(folder), "--no-progress", "--format", "json"])
    if code != 0:
        raise RuntimeError(f"search failed with exit {code}")
    summary = json.loads((folder / "summary.json").read_text())
    result = {"seed": seed, "budget": budget, "summary_best": summary.get("best"), "wall_s": time.perf_counter() - started}
    done.write_text(json.dumps(result, indent=1))
    return result


def best_of_search(args, seed: int, budget: float):
    """The best feasible architecture of an evolution run (by held-out score), from its journal."""
    from nastk.evaluator import Result

    folder = Path(args.work) / "search" / f"re-seed{seed}-flops{budget:g}"
    best = None
    for line in (folder / "journal.jsonl").read_text().splitlines():
        record = json.loads(line)
        result = Result.from_dict(record["result"])
        value = result.value
        if value != value or result.metrics.get("feasible", 1) == 0:
            continue
        if best is None or value > best[1]:
            best = (record["arch"], value)
    return best


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    Path(args.work).mkdir(parents=True, exist_ok=True)
    bins, children = bins_and_children(args)
    cached = set(cached_standalone(args))
    standalone_archs = [a for archs in children for i, a in enumerate(archs) if i < args.standalone or a in cached]
    print(f"bins {bins.edges}; children per bin {[len(c) for c in children]}; stand-alone {len(standalone_archs)}", flush=True)
    results, standalone, searches = [], [], []
    if args.report_only:  # whatever has finished: result.json of supernet runs and searches, cached stand-alone children
        work = Path(args.work)
        results = [json.loads((work / f"{m}-seed{s}" / "result.json").read_text()) for s in args.seeds for m in args.methods
                   if (work / f"{m}-seed{s}" / "result.json").is_file()]
        standalone = [run_standalone(args, a) for a in standalone_archs]
        searches = [json.loads(p.read_text()) for p in sorted((work / "search").glob("re-seed*-flops*/result.json"))]
        searches = [r for r in searches if r["seed"] in args.seeds and r["budget"] in args.budgets]
        write_report(args, bins, children, results, standalone, evaluate_winners(args, searches), time.perf_counter() - started)
        return
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [("supernet", pool.submit(run_supernet, args, m, s, children)) for s in args.seeds for m in args.methods]
        futures += [("standalone", pool.submit(run_standalone, args, a)) for a in standalone_archs]
        for kind, future in futures:
            out = future.result()
            (results if kind == "supernet" else standalone).append(out)
            print(f"done {kind} {out.get('method', out.get('arch', ''))[:60]} {out.get('seed', '')} "
                  f"at {time.perf_counter() - started:.0f} s", flush=True)
        if "uniform" in args.methods:
            futures = [pool.submit(run_search, args, s, b) for s in args.seeds for b in args.budgets]
            for future in futures:
                searches.append(future.result())
                print(f"done search {searches[-1]['seed']} {searches[-1]['budget']} at {time.perf_counter() - started:.0f} s",
                      flush=True)
    # the evolution winners scored with the same recalibration and splits as the generator's children
    winners = evaluate_winners(args, searches)
    write_report(args, bins, children, results, standalone, winners, time.perf_counter() - started)


def evaluate_winners(args, searches) -> list:
    import torch

    from nastk.oneshot.ranking import inherited_accuracies
    from nastk.oneshot.trainer import load_trained
    import reproduce_sandwich_mbconv as sandwich

    torch.set_num_threads(1)
    rows = []
    for search in searches:
        seed, budget = search["seed"], search["budget"]
        best = best_of_search(args, seed, budget)
        if best is None:
            continue
        supernet, config, _ = load_trained(Path(args.work) / f"uniform-seed{seed}", args.device)
        _, x_train, ((x_test, y_test), (x_held, y_held)) = sandwich.eval_data(config)
        batches, size = args.calibration
        calibration = list(x_train[:batches * size].split(size))
        arch = supernet.space.from_str(best[0])
        common = dict(device=args.device, batch_size=500, calibration=calibration)
        rows.append({"seed": seed, "budget": budget, "arch": best[0], "cost": supernet.space.cost(arch)["flops_m"],
                     "held_out": float(inherited_accuracies(supernet, [arch], x_held, y_held, **common)[0]),
                     "test": float(inherited_accuracies(supernet, [arch], x_test, y_test, **common)[0])})
    return rows


def write_report(args, bins, children, results, standalone, winners, wall_s: float) -> None:
    from nastk.oneshot.complexity import make_bins, plot_histogram, uniform_histogram
    from nastk.registry import get_space
    space = get_space("mobilenet")
    import torch

    torch.manual_seed(0)
    supernet = space.supernet(10)
    histogram = uniform_histogram(supernet, make_bins(supernet, count=bins.count), samples=10000, seed=0)
    plot_histogram(histogram, args.out.replace("mbconv", "histogram") + ".png",
                   "mobilenet: FLOPs of 10,000 uniformly sampled children")
    report(args, bins, children, results, standalone, winners, histogram, wall_s,
           machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, CPU, one thread per run")



# --- the report ---------------------------------------------------------------------------------------------------
def _mean_sd(values):
    values = [v for v in values if v is not None and v == v]
    if not values:
        return float("nan"), float("nan"), 0
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0, len(values)


def _fmt(values, digits=2):
    mean, sd, n = _mean_sd(values)
    return "n/a" if n == 0 else f"{mean:.{digits}f} ± {sd:.{digits}f}"


def per_bin_rows(results, children, truth):
    """Per method, seed and bin: best / mean held-out and test accuracy of the bin's fixed children, Kendall tau
    of their held-out scores against the stand-alone test accuracy (children trained alone in that bin)."""
    from nastk.metrics import kendall_tau

    rows = []
    for r in results:
        for k, archs in enumerate(children):
            scores = [r["children"][a] for a in archs if a in r["children"]]
            common = [a for a in archs if a in truth and a in r["children"]]
            tau = (kendall_tau([r["children"][a]["held_out"] for a in common], [truth[a] for a in common])
                   if len(common) >= 3 else None)
            rows.append({"method": r["method"], "seed": r["seed"], "bin": k, "n": len(scores), "n_standalone": len(common),
                         "best_held_out": max(s["held_out"] for s in scores), "mean_held_out": float(np.mean([s["held_out"] for s in scores])),
                         "best_test": max(s["test"] for s in scores), "mean_test": float(np.mean([s["test"] for s in scores])),
                         "test_of_best_held_out": max(scores, key=lambda s: s["held_out"])["test"],
                         "kendall": None if tau is None or tau != tau else float(tau)})
    return rows


def plot_trajectories(results, bins, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nastk.paths import save_figure

    runs = [r for r in results if r["method"] == "shiftnas" and r.get("trajectory")]
    if not runs:
        return
    fig, axes = plt.subplots(1, len(runs), figsize=(4 * len(runs), 3.2), sharey=True, squeeze=False)
    for ax, r in zip(axes[0], runs):
        steps = [0] + [t[0] for t in r["trajectory"]]
        probs = np.array([[1 / bins.count] * bins.count] + [t[1] for t in r["trajectory"]])
        for k, label in enumerate(bins.labels()):
            ax.plot(steps, probs[:, k], label=f"bin {k}: {label} MFLOPs")
        ax.set_title(f"seed {r['seed']}")
        ax.set_xlabel("iteration")
    axes[0][0].set_ylabel("softmax(B)")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle("ShiftNAS bin probabilities over training (updates after the warm-up)")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def plot_generator(results, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nastk.paths import save_figure

    fig, ax = plt.subplots(figsize=(4.5, 4))
    for r in results:
        if r.get("generator_sweep"):
            c = [s["budget"] for s in r["generator_sweep"]]
            ax.plot(c, [s["cost"] for s in r["generator_sweep"]], marker=".", alpha=0.7, label=f"{r['method']} seed {r['seed']}")
    lims = ax.get_xlim()
    ax.plot(lims, lims, "k--", lw=0.8)
    ax.set_xlabel("requested budget c (MFLOPs)")
    ax.set_ylabel("F(G(c)) (MFLOPs)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def report(args, bins, children, results, standalone, winners, histogram, wall_s: float, machine: str) -> None:
    from scipy import stats

    truth = {r["arch"]: r["test"] for r in standalone}
    rows = per_bin_rows(results, children, truth)
    methods = [m for m in METHODS if any(r["method"] == m for r in results)]
    out = Path(args.out)
    plot_trajectories(results, bins, str(out).replace("mbconv", "bin_probs") + ".png")
    plot_generator(results, str(out).replace("mbconv", "generator") + ".png")
    lines = ["# ShiftNAS vs bin-uniform vs uniform sampling on the tiny MBConv space (CIFAR-10 subset)", "",
             "**Experimental, partly reconstructed [R]** (methods.md 2: no official code; the [R] choices are listed below).", "",
             f"Command: `NASTK_DATA=../shared/benchmarks nice -n 10 .venv/bin/python scripts/reproduce_shiftnas.py --jobs {args.jobs} "
             f"--children {args.children} --standalone {args.standalone}`"
             f" (defaults: {args.epochs} epochs, seeds {args.seeds}); machine: {machine}; wall {wall_s / 60:.0f} min "
             f"(this invocation; cached pieces are reused), shared with other jobs.", "",
             f"Setting: space `mobilenet` (methods.md 12.3), {args.train_size} training images of which {args.held_out:.0%} held "
             f"out (Eq. 8's held-out split and the selection split), 1,000 test images (reported only); SGD-Nesterov lr 0.1 "
             f"cosine, wd 5e-5, batch 128, BN momentum 0 while training; every child scored after cumulative BN recalibration "
             f"on {args.calibration[0]} x {args.calibration[1]} training images. Equal training compute: every method trains one "
             f"child forward-backward per batch for {args.epochs} epochs (the same batches); ShiftNAS also runs "
             f"{SHIFT_OPTIONS['shift_draws']} x 2 held-out forwards per B update and its children as masked largest networks "
             f"(wall time below). ShiftNAS options: `{json.dumps(SHIFT_OPTIONS)}`.", "",
             "## 1. Uniform sampling fills the FLOPs bins unevenly (measured)", "",
             f"{histogram['samples']} uniformly sampled children (`nastk supernet histogram --space mobilenet --bins {bins.count} "
             f"--samples 10000`), FLOPs range {bins.low:.3f}-{bins.high:.3f} MFLOPs, mean {histogram['mean']:.3f}:", "",
             "| bin (MFLOPs) | children | share |", "|---|---|---|"]
    for label, count, share in zip(bins.labels(), histogram["counts"], histogram["shares"]):
        lines.append(f"| {label} | {count} | {share * 100:.2f}% |")
    lines += ["", "Plot: `shiftnas_histogram.png`.", "", "## 2. Learned bin probabilities (ShiftNAS runs)", ""]
    shift_runs = [r for r in results if r["method"] == "shiftnas"]
    if shift_runs:
        lines += ["| seed | B updates | final softmax(B) per bin |", "|---|---|---|"]
        for r in sorted(shift_runs, key=lambda r: r["seed"]):
            final = r["trajectory"][-1][1] if r.get("trajectory") else [1 / bins.count] * bins.count
            lines.append(f"| {r['seed']} | {len(r.get('trajectory', []))} | {', '.join(f'{p:.3f}' for p in final)} |")
        finals = np.array([r["trajectory"][-1][1] for r in shift_runs if r.get("trajectory")])
        if len(finals):
            lines += ["", f"Mean final probability per bin: {', '.join(f'{p:.3f}' for p in finals.mean(0))} (uniform "
                          f"{1 / bins.count:.3f}). Plot: `shiftnas_bin_probs.png`."]
    lines += ["", "## 3. Generator accuracy |F(G(c)) - c| / c", ""]
    for m in ("bin_uniform", "shiftnas"):
        errors = [abs(s["cost"] - s["budget"]) / s["budget"] for r in results if r["method"] == m for s in r.get("generator_sweep", [])]
        if errors:
            lines.append(f"- {m}: mean {np.mean(errors) * 100:.1f}%, median {np.median(errors) * 100:.1f}%, max "
                         f"{np.max(errors) * 100:.1f}% over 15 budgets x {len([r for r in results if r['method'] == m])} seeds "
                         f"(argmax child, no noise). Plot: `shiftnas_generator.png`.")
    lines += ["", "## 4. Per FLOPs bin: children's accuracy and ranking", "",
              f"Fixed children per bin (the same for every method and seed): {[len(c) for c in children]}; of them trained "
              f"stand alone ({args.standalone_epochs} epochs, reproduce_sandwich_mbconv.py's short recipe, test split): "
              f"{[sum(a in truth for a in c) for c in children]}. Kendall tau within a bin: the supernet's held-out scores "
              f"against stand-alone test accuracy (n/a below 3 children). Mean ± sample std over seeds.", "",
              "| bin | method | best held-out | mean held-out | best test | mean test | test of held-out best | Kendall tau |",
              "|---|---|---|---|---|---|---|---|"]
    for k in range(bins.count):
        for m in methods:
            sel = [r for r in rows if r["method"] == m and r["bin"] == k]
            lines.append(f"| {k} ({bins.labels()[k]}) | {m} | " + " | ".join(
                _fmt([r[key] for r in sel], 3 if key == "kendall" else 2)
                for key in ("best_held_out", "mean_held_out", "best_test", "mean_test", "test_of_best_held_out", "kendall")) + " |")
    lines += ["", "Paired differences (same seed and bin), two-sided paired t-test over seeds:", ""]
    for a, b in (("shiftnas", "bin_uniform"), ("shiftnas", "uniform"), ("bin_uniform", "uniform")):
        if a in methods and b in methods:
            for key in ("mean_held_out", "mean_test", "best_held_out"):
                for k in range(bins.count):
                    pairs = [(x[key], y[key]) for x in rows for y in rows if x["method"] == a and y["method"] == b
                             and x["seed"] == y["seed"] and x["bin"] == k == y["bin"]]
                    if len(pairs) >= 2:
                        diff = np.array([p[0] - p[1] for p in pairs])
                        p = stats.ttest_rel([p[0] for p in pairs], [p[1] for p in pairs]).pvalue
                        lines.append(f"- {a} - {b}, {key}, bin {k}: {diff.mean():+.2f} (per seed "
                                     f"{', '.join(f'{d:+.2f}' for d in diff)}; p = {p:.3f})")
    lines += ["", "## 5. Generator's child vs regularized evolution on the uniform supernet", "",
              f"Budgets {args.budgets} MFLOPs. Generator: argmax child of the ShiftNAS (and bin-uniform) run's generator, "
              f"inherited weights extracted by the space (`generated_<budget>.pt` in each run folder), BN recalibrated. "
              f"Evolution: `nastk search --strategy re --evaluator supernet:<uniform run> --constraint flops<=B --budget "
              f"{args.search_queries}` (held-out split), its best feasible child rescored like the generator's.", "",
              "| budget | method | child MFLOPs | held-out | test |", "|---|---|---|---|---|"]
    for budget in args.budgets:
        for m in ("bin_uniform", "shiftnas"):
            gen = [r["generated"][f"{budget:.4f}"] for r in results if r["method"] == m and f"{budget:.4f}" in r.get("generated", {})]
            if gen:
                lines.append(f"| {budget:g} | generator ({m}) | {_fmt([g['cost'] for g in gen], 3)} | "
                             f"{_fmt([g['held_out'] for g in gen])} | {_fmt([g['test'] for g in gen])} |")
        found = [w for w in winners if w["budget"] == budget]
        if found:
            lines.append(f"| {budget:g} | RE on uniform supernet | {_fmt([w['cost'] for w in found], 3)} | "
                         f"{_fmt([w['held_out'] for w in found])} | {_fmt([w['test'] for w in found])} |")
    lines += ["", "## 6. Training cost per run", "", "| method | seed | steps | train s |", "|---|---|---|---|"]
    for r in sorted(results, key=lambda r: (METHODS.index(r["method"]), r["seed"])):
        lines.append(f"| {r['method']} | {r['seed']} | {r['steps']} | {r['train_s']:.0f} |")
    out.parent.mkdir(parents=True, exist_ok=True)
    standalone_counts = " / ".join(str(sum(a in truth for a in archs)) for archs in children)
    standalone_range = f"{min(truth.values()):.0f}-{max(truth.values()):.0f}" if truth else "n/a"
    Path(str(out) + ".md").write_text("\n".join(lines) + "\n" + NOTES.format(standalone_counts=standalone_counts,
                                                                             standalone_range=standalone_range))
    slim = [{k: v for k, v in r.items() if k != "history"} for r in results]
    Path(str(out) + ".json").write_text(json.dumps({"args": vars(args), "bins": bins.to_dict(), "children": children,
                                                    "histogram": histogram, "per_bin": rows, "runs": slim,
                                                    "standalone": standalone, "evolution": winners, "wall_s": wall_s}, indent=1))
    print("\n".join(lines))


NOTES = """
## What this reduced setting can and cannot show

* It can show, measured: the FLOPs imbalance of uniform sampling on a 21-decision elastic space (section 1); that
  the ShiftNAS machinery works end to end in the toolkit -- bins, Gumbel bin draws, the generator trained jointly
  through the mask mapping, Eq. 8 moving B, exact resume, identical DDP replicas (tests/test_shiftnas.py,
  tests/test_ddp_steps.py) -- and in which direction B moves and how well the generator hits a requested budget
  after a short run; and, paired by seed, whether bin-balanced or shifted sampling changes the accuracy or the
  within-bin ranking of fixed children of each bin at equal training steps.
* It cannot show the paper's claims: ImageNet accuracies (ShiftCNN-S 77.2% at 0.24 GFLOPs vs BigNAS-S 76.5%;
  ShiftFormer) are out of reach; 3 epochs on 2,000 CIFAR-10 images (cut from 5 epochs on 4,000 when the shared
  2-core machine ran at a load of ~25 and the longer runs could not finish in time) leave every child far from
  convergence, so small differences between samplers are within seed noise (3 seeds); B receives only about
  six Eq. 8 updates (the paper: every 100 iterations after 50 epochs, for hundreds of epochs), so
  its shift is driven by a few noisy held-out loss differences on one batch each, and its direction here says
  little about the paper's "mass moves to large-FLOPs bins"; within-bin Kendall tau uses {standalone_counts}
  stand-alone children per bin, trained for only 8 epochs (itself a noisy truth: {standalone_range}% test
  accuracy, while the 3-epoch supernets score every child at 28-32%), so a tau of +-0.3 on 10 children is within noise
  (its standard error is about 0.25).
* Equal compute is counted in optimizer steps with one child forward-backward each; ShiftNAS additionally runs
  its child as the masked largest network (about 2.3x a single-path step on this CPU, docs/results/shiftnas_speed.md),
  2 x 4 held-out forwards per B update and the generator's resource-only warm start, so its wall time is larger.
* [R] (reconstructed, not from the paper): bin target = bin centre; 4 equal-width bins instead of a fixed 0.1 G
  step; generator layout (input/embedding/heads), Gumbel temperature 1, straight-through one-hots; lambda = 1 in
  MFLOPs^2; generator Adam 1e-2 and 80 resource-only warm-start steps (batch 8); B's Adam lr 0.05 (paper 1e-3, with far
  more updates); 4 bin draws per update; the generator's sampled child for Eq. 8; BN recalibration before scoring.
"""


if __name__ == "__main__":
    main()
