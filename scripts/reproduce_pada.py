"""PA&DA vs uniform SPOS on NB201 (methods.md 1.5): ranking consistency and gradient variance.

Reduced setting (default, CPU): supernet C=8, N=1, the shared 5k CIFAR-10 training images, 40 epochs,
batch 64, lr 0.025; both samplers with identical seeds and budget; the same fixed list of random
architectures ranked on the 1k test images against NB201's 200-epoch CIFAR-10 test accuracy.
Supernet gradient variance (10 minibatches at fixed weights) is measured every few epochs, under
the run's own sampling distributions and under uniform ones at the same weights.

    NASTK_DATA=../shared/benchmarks nice -n 10 .venv/bin/python scripts/reproduce_pada.py > repro.log 2>&1
    ... --full [--dataset /path/cifar10_full.npz] [--device cuda]     # C=16, N=5, 250 epochs, batch 256, lr 0.05

Resumable: finished runs are skipped (``<work>/<sampler>-seed<S>/result.json``), unfinished ones
continue from their last epoch checkpoint; the report is rewritten after every run.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from nastk.datasets import load_dataset, mixed
from nastk.oneshot.ranking import benchmark_truth, rank, sample_architectures
from nastk.oneshot.trainer import OneShotConfig, load_trained, train
from nastk.oneshot.variance import gradient_variance
from nastk.paths import atomic_write
from nastk.space import get_space

REDUCED = {"C": 8, "N": 1, "epochs": 40, "batch_size": 64, "lr": 0.025, "train_size": 5000}
FULL = {"C": 16, "N": 5, "epochs": 250, "batch_size": 256, "lr": 0.05, "train_size": None}
VARIANCE_SEED = 12345  # the same minibatch draws for every run and distribution (common random numbers)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="PA&DA's full setting (C=16, N=5, 250 epochs, batch 256, lr 0.05, all training images)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--samplers", nargs="+", default=["uniform", "pada"])
    for name in ("C", "N", "epochs", "batch_size", "train_size"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--dataset", default="cifar10", help="cifar10 (shared 5k/1k subset) or an .npz with full CIFAR-10 in the same layout")
    parser.add_argument("--archs", type=int, default=100, help="size of the fixed architecture list (default 100)")
    parser.add_argument("--arch-seed", type=int, default=0)
    parser.add_argument("--variance-every", type=int, default=5, help="measure gradient variance every this many epochs (and at the end)")
    parser.add_argument("--variance-batches", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", help="run folders (default runs/pada_nb201[_full])")
    parser.add_argument("--out", help="report prefix (default docs/results/pada_nb201[_full])")
    args = parser.parse_args()
    setting = dict(FULL if args.full else REDUCED)
    for name in setting:
        if getattr(args, name) is not None:
            setting[name] = getattr(args, name)
    suffix = "_full" if args.full else ""
    args.work = Path(args.work or f"runs/pada_nb201{suffix}")
    args.out = args.out or f"docs/results/pada_nb201{suffix}"
    return args, setting


def config_for(setting, sampler: str, seed: int, dataset: str) -> OneShotConfig:
    return OneShotConfig(space="nb201", dataset=dataset, sampler=sampler, supernet={"C": setting["C"], "N": setting["N"]},
                         epochs=setting["epochs"], train_size=setting["train_size"], batch_size=setting["batch_size"],
                         lr=setting["lr"], valid_size=500, seed=seed)


def variance_callback(path: Path, every: int, batches: int):
    """After epoch e: gradient variance at the current weights, own distributions and uniform ones."""
    def callback(trainer, record):
        epoch = record["epoch"]
        print(f"  epoch {epoch + 1}/{trainer.config.epochs} loss {record['train_loss']:.4f} acc {record['train_acc']:.2f} "
              f"valid {record['test_acc']} {record.get('op_probs', '')} {record['epoch_s']:.1f}s", flush=True)
        if (epoch + 1) % every and epoch + 1 != trainer.config.epochs:
            return
        allowed = trainer.supernet.allowed
        uniform_paths = allowed / allowed.sum(axis=1, keepdims=True)
        row = {"epoch": epoch, "uniform": gradient_variance(trainer, uniform_paths, np.arange(len(trainer.x)), batches, VARIANCE_SEED)}
        if trainer.config.sampler != "uniform":
            row["own"] = gradient_variance(trainer, trainer.path_sampler.probabilities(),
                                           trainer.data_sampler.epoch_indices(), batches, VARIANCE_SEED)
        else:
            row["own"] = row["uniform"]
        with open(path, "a") as handle:
            handle.write(json.dumps(row) + "\n")
    return callback


def run_one(args, setting, sampler, seed, archs, truth, protocol, eval_data):
    run_dir = args.work / f"{sampler}-seed{seed}"
    result_path = run_dir / "result.json"
    if result_path.is_file():
        return json.loads(result_path.read_text())
    print(f"== {sampler} seed {seed} -> {run_dir}", flush=True)
    config = config_for(setting, sampler, seed, args.dataset)
    started = time.perf_counter()
    summary = train(config, run_dir, resume=(run_dir / "config.json").is_file(), device=args.device, progress=False,
                    callbacks=[variance_callback(run_dir / "variance.jsonl", args.variance_every, args.variance_batches)])
    supernet, _, epoch = load_trained(run_dir, args.device)
    rank_started = time.perf_counter()
    x, y = eval_data
    ranking = rank(supernet, archs, x, y, truth, protocol, device=args.device, batch_size=500)
    rank_s = time.perf_counter() - rank_started
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    variance = [json.loads(line) for line in (run_dir / "variance.jsonl").read_text().splitlines()] \
        if (run_dir / "variance.jsonl").is_file() else []
    result = {"sampler": sampler, "seed": seed, "epochs": epoch, "kendall": ranking.kendall, "spearman": ranking.spearman,
              "precision_at": ranking.precision, "scores": ranking.scores.tolist(),
              "train_wall_s": summary["train_wall_s"], "rank_wall_s": round(rank_s, 2),
              "session_wall_s": round(time.perf_counter() - started, 2),
              "op_probs": [r.get("op_probs") for r in history], "op_counts": [r["op_counts"] for r in history],
              "train_loss": [r["train_loss"] for r in history], "test_acc": [r["test_acc"] for r in history],
              "variance": variance}
    with atomic_write(result_path, "w") as handle:
        json.dump(result, handle)
    print(f"== {sampler} seed {seed}: tau {ranking.kendall:.4f} rho {ranking.spearman:.4f} "
          f"train {summary['train_wall_s']:.0f}s rank {rank_s:.0f}s", flush=True)
    return result


def mean_std(values):
    values = np.asarray(values, dtype=float)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def report(args, setting, archs, truth, protocol, results):
    """Rewrite <out>.json and <out>.md from the finished runs."""
    by = {(r["sampler"], r["seed"]): r for r in results}
    samplers = [s for s in args.samplers if any(k[0] == s for k in by)]
    paired = [s for s in args.seeds if all((name, s) in by for name in args.samplers)]
    out = {"setting": setting, "dataset": args.dataset, "archs": [a.to_str() for a in archs], "truth": protocol,
           "truth_values": truth.tolist(), "runs": results, "machine": f"{platform.machine()}, {os.cpu_count()} cores",
           "threads": args.threads, "device": args.device}
    lines = [f"# PA&DA vs uniform SPOS on NB201 ({'full' if args.full else 'reduced'} setting)", "",
             f"Command: `NASTK_DATA=../shared/benchmarks nice -n 10 .venv/bin/python scripts/reproduce_pada.py"
             f"{' --full' if args.full else ''}`  ",
             f"Machine: {out['machine']}, torch threads {args.threads}, device {args.device}. Generated by the script; "
             "numbers update as runs finish.", "",
             "## Setting", "",
             f"Supernet C={setting['C']}, N={setting['N']} (NB201 cell, BN affine=False / batch statistics), "
             f"{setting['train_size'] or 'all'} training images of `{args.dataset}` (fixed class-mixed subset), "
             f"{setting['epochs']} epochs, batch {setting['batch_size']}, SGD lr {setting['lr']} (cosine to 0), "
             "momentum 0.9, wd 2.5e-4, grad-clip 5, random crop + flip. Both samplers use the same seeds, "
             f"budget and code path. Ranked: the same {len(archs)} random architectures (seed {args.arch_seed}) "
             f"for every run, by supernet accuracy on the 1,000 test images, against `{protocol}`.", ""]
    if paired:
        lines += ["## Kendall tau (paired by seed)", "",
                  "| seed | " + " | ".join(f"{s} tau" for s in args.samplers) + " | " +
                  " | ".join(f"{s} rho" for s in args.samplers) + " | " + " | ".join(f"{s} P@10" for s in args.samplers) + " |",
                  "|---|" + "---|" * (3 * len(args.samplers))]
        for seed in paired:
            cells = [f"{by[(s, seed)]['kendall']:.4f}" for s in args.samplers]
            cells += [f"{by[(s, seed)]['spearman']:.4f}" for s in args.samplers]
            cells += [f"{by[(s, seed)]['precision_at'].get('10', by[(s, seed)]['precision_at'].get(10, float('nan'))):.2f}" for s in args.samplers]
            lines.append(f"| {seed} | " + " | ".join(cells) + " |")
        taus = {s: [by[(s, seed)]["kendall"] for seed in paired] for s in args.samplers}
        rhos = {s: [by[(s, seed)]["spearman"] for seed in paired] for s in args.samplers}
        lines.append("| **mean ± std** | " + " | ".join("%.4f ± %.4f" % mean_std(taus[s]) for s in args.samplers) + " | "
                     + " | ".join("%.4f ± %.4f" % mean_std(rhos[s]) for s in args.samplers) + " | " + " | " * (len(args.samplers) - 1) + " |")
        out["kendall"] = {s: dict(zip(("mean", "std"), mean_std(taus[s])), values=taus[s]) for s in args.samplers}
        if len(args.samplers) == 2 and len(paired) >= 2:
            a, b = args.samplers
            diff = np.array(taus[b]) - np.array(taus[a])
            t_test = stats.ttest_rel(taus[b], taus[a])
            wilcoxon = stats.wilcoxon(taus[b], taus[a]) if np.any(diff != 0) else None
            out["paired_test"] = {"difference": diff.tolist(), "mean_difference": float(diff.mean()),
                                  "ttest_rel": {"statistic": float(t_test.statistic), "pvalue": float(t_test.pvalue)},
                                  "wilcoxon_pvalue": float(wilcoxon.pvalue) if wilcoxon else None, "n": len(paired)}
            verdict = "ahead of" if diff.mean() > 0 else "not ahead of"
            lines += ["", f"Paired difference {b} − {a} in tau: {', '.join(f'{d:+.4f}' for d in diff)} "
                      f"(mean {diff.mean():+.4f}); paired t-test t = {t_test.statistic:.3f}, p = {t_test.pvalue:.3f}"
                      + (f"; Wilcoxon signed-rank p = {wilcoxon.pvalue:.3f}" if wilcoxon else "")
                      + f" (n = {len(paired)} seeds; std is the sample std).", "",
                      f"**{b} is {verdict} {a}** in this setting"
                      + (" (not significant at 5%)." if t_test.pvalue >= 0.05 else " (p < 0.05).")]
    lines += ["", "## Supernet gradient variance at fixed weights", "",
              "Total variance (trace of the covariance) of the flattened minibatch gradient over "
              f"{args.variance_batches} minibatches (batch {setting['batch_size']}, augmentation on, inactive "
              "parameters count as 0), at the final weights of each run; `own` = paths from the run's op "
              "distribution and examples from its next-epoch index list, `uniform` = uniform paths and examples "
              "at the same weights. The same random draws for every run (common random numbers).", "",
              "Normalised = total variance / ‖mean gradient‖² (noise-to-signal; the mean over the same 10 minibatches).", "",
              "| sampler | seeds | own distribution | uniform distribution | own / uniform | normalised own | normalised uniform |",
              "|---|---|---|---|---|---|---|"]
    variance_table = {}
    for s in samplers:
        finals = [by[(s, seed)]["variance"][-1] for seed in args.seeds if (s, seed) in by and by[(s, seed)]["variance"]]
        if not finals:
            continue
        own = [f["own"]["total_variance"] for f in finals]
        uni = [f["uniform"]["total_variance"] for f in finals]
        ratio = [o / u for o, u in zip(own, uni)]
        normalised = {kind: [f[kind]["total_variance"] / f[kind]["mean_gradient_sq_norm"] for f in finals]
                      for kind in ("own", "uniform")}
        variance_table[s] = {"own": own, "uniform": uni, "ratio": ratio, "normalised": normalised}
        lines.append(f"| {s} | {len(finals)} | {'%.4g ± %.2g' % mean_std(own)} | {'%.4g ± %.2g' % mean_std(uni)} | "
                     f"{'%.3f ± %.3f' % mean_std(ratio)} | {'%.3g ± %.2g' % mean_std(normalised['own'])} | "
                     f"{'%.3g ± %.2g' % mean_std(normalised['uniform'])} |")
    out["gradient_variance_final"] = variance_table
    trajectory = _variance_trajectory(by, samplers, args.seeds)
    if trajectory:
        epochs = sorted({e for s in trajectory for e in trajectory[s]})
        lines += ["", "Trajectory (mean over seeds, own distribution; epoch = after that many epochs):", "",
                  "| epoch | " + " | ".join(samplers) + " |", "|---|" + "---|" * len(samplers)]
        for e in epochs:
            lines.append(f"| {e + 1} | " + " | ".join(f"{trajectory[s][e]:.4g}" if e in trajectory[s] else "" for s in samplers) + " |")
        out["gradient_variance_trajectory"] = {s: {str(e): v for e, v in t.items()} for s, t in trajectory.items()}
    pada_runs = [by[(s, seed)] for s in samplers if s != "uniform" for seed in args.seeds if (s, seed) in by]
    if pada_runs:
        probs = np.array([[p if p else [0.2] * 5 for p in r["op_probs"]] for r in pada_runs]).mean(0)
        counts = np.array([r["op_counts"] for r in pada_runs]).sum(0).astype(float)
        share = counts / counts.sum(1, keepdims=True)
        ops = ("none", "skip", "conv1x1", "conv3x3", "pool")
        lines += ["", "## PA&DA op distribution over training (mean over seeds)", "",
                  "p_e+1 after epoch e, and the share of each op among the paths actually sampled in epoch e:", "",
                  "| epoch | " + " | ".join(f"p({o})" for o in ops) + " | " + " | ".join(f"used {o}" for o in ops) + " |",
                  "|---|" + "---|" * 10]
        for e in range(len(probs)):
            if e % max(1, len(probs) // 10) == 0 or e == len(probs) - 1:
                lines.append(f"| {e + 1} | " + " | ".join(f"{p:.3f}" for p in probs[e]) + " | " + " | ".join(f"{p:.3f}" for p in share[e]) + " |")
        out["pada_op_probs_mean"] = probs.tolist()
    lines += _why(archs, truth, by, samplers, args.seeds, out)
    lines += ["", "## Wall time", "", "| sampler | seed | train s | rank s | epochs |", "|---|---|---|---|---|"]
    for r in sorted(results, key=lambda r: (r["seed"], r["sampler"])):
        lines.append(f"| {r['sampler']} | {r['seed']} | {r['train_wall_s']:.0f} | {r['rank_wall_s']:.0f} | {r['epochs']} |")
    total = sum(r["train_wall_s"] + r["rank_wall_s"] for r in results)
    lines += ["", f"Total: {total / 60:.1f} min of training + ranking (variance measurements not included)."]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(Path(args.out + ".json"), "w") as handle:
        json.dump(out, handle, indent=1)
    notes = Path(args.out + ".notes.md")
    with atomic_write(Path(args.out + ".md"), "w") as handle:
        handle.write("\n".join(lines) + "\n" + (("\n" + notes.read_text()) if notes.is_file() else ""))


def _why(archs, truth, by, samplers, seeds, out):
    """What the supernet's scores follow: the number of convolutions (which the ground truth follows)
    or a skip connection from the cell input to its output (a shortcut that trains fast)."""
    convs = np.array([sum(op.startswith("nor_conv") for op in a.choices) for a in archs])
    shortcut = np.array([a.choices[3] == "skip_connect" for a in archs])  # edge 3<-0
    lines = ["", "## What the supernet scores follow", "",
             f"Over the {len(archs)} ranked architectures the ground truth follows the number of convolutions "
             f"(Kendall tau {stats.kendalltau(convs, truth).statistic:+.3f}); a skip connection on edge 3<-0 "
             f"(a shortcut from cell input to output, {shortcut.sum()} architectures) goes with "
             f"{truth[shortcut].mean() - truth[~shortcut].mean():+.2f} points of true accuracy.", "",
             "*Within-#conv tau* is Kendall tau inside groups of architectures with the same number of "
             "convolutions (groups of >= 5, weighted by their pairs): the ranking skill left once the conv count "
             f"is fixed (the conv count alone scores {stats.kendalltau(convs, truth).statistic:+.3f} overall, 0 within groups).", "",
             "| sampler | tau(score, #conv) | within-#conv tau | score gap shortcut − rest (points) | mean supernet accuracy |",
             "|---|---|---|---|---|"]
    rows = {}
    for s in samplers:
        runs = [by[(s, seed)] for seed in seeds if (s, seed) in by]
        scores = [np.array(r["scores"]) for r in runs]
        tau_conv = [stats.kendalltau(sc, convs).statistic for sc in scores]
        gap = [sc[shortcut].mean() - sc[~shortcut].mean() for sc in scores]
        mean_acc = [sc.mean() for sc in scores]
        within = [_within_groups_tau(sc, truth, convs) for sc in scores]
        rows[s] = {"tau_score_convs": tau_conv, "within_conv_tau": within, "shortcut_gap": gap, "mean_accuracy": mean_acc}
        lines.append(f"| {s} | {'%+.3f ± %.3f' % mean_std(tau_conv)} | {'%+.3f ± %.3f' % mean_std(within)} | "
                     f"{'%+.2f ± %.2f' % mean_std(gap)} | {'%.2f ± %.2f' % mean_std(mean_acc)} |")
    out["score_diagnostics"] = rows
    return lines


def _within_groups_tau(scores, truth, groups, min_size=5):
    taus, weights = [], []
    for value in np.unique(groups):
        member = groups == value
        if member.sum() >= min_size:
            taus.append(stats.kendalltau(scores[member], truth[member]).statistic)
            weights.append(member.sum() * (member.sum() - 1) / 2)
    return float(np.average(np.nan_to_num(taus), weights=weights)) if weights else float("nan")


def _variance_trajectory(by, samplers, seeds):
    trajectory = {}
    for s in samplers:
        rows = {}
        for seed in seeds:
            for row in by.get((s, seed), {}).get("variance", []):
                rows.setdefault(row["epoch"], []).append(row["own"]["total_variance"])
        trajectory[s] = {e: float(np.mean(v)) for e, v in rows.items()}
    return {s: t for s, t in trajectory.items() if t}


def main():
    args, setting = parse_args()
    torch.set_num_threads(args.threads)
    space = get_space("nb201")
    archs = sample_architectures(space, args.archs, args.arch_seed)
    truth, protocol = benchmark_truth(space, archs, "cifar10")
    data = load_dataset(args.dataset)
    eval_data = mixed(data.x_test, data.y_test)
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / "archs.txt").write_text("".join(a.to_str() + "\n" for a in archs))
    results = []
    for seed in args.seeds:
        for sampler in args.samplers:
            results.append(run_one(args, setting, sampler, seed, archs, truth, protocol, eval_data))
            report(args, setting, archs, truth, protocol, results)
    print(f"report: {args.out}.md", flush=True)


if __name__ == "__main__":
    main()
