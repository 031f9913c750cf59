"""PSNR-vs-BitOps searches over the super-resolution space (issue 26): ``nastk search --objectives psnr,bitops``.

Runs, with nastk's own commands (each printed as the shell command it is), then reports:

1. two ``sr`` supernets on the tiny QuantNAS setting (``skimage-sr`` 32 px patches, first 320, x2, C = 16, Y-PSNR with a
   4-px border): the ``quantnas`` step (noise + ADQ, 10 epochs, the setting of ``scripts/reproduce_quantnas.py``) and
   the ``single_path`` step (SPOS: one uniformly drawn (op, bits) path per batch with real LSQ + HWGQ, 40 epochs);
2. per supernet, ``nsga2`` and ``random`` searches of 30 evaluations over seeds 0, 1, 2 with
   ``--evaluator supernet:RUN --objectives psnr,bitops`` (PSNR on the held-out select images);
3. one ``--evaluator train`` search (random, 20 children trained from scratch on all patches), whose children are
   then scored with each supernet's inherited weights: Kendall tau of inherited vs from-scratch PSNR;
4. the test-image PSNR of every front member (reported, never selected on), hypervolumes, and the fronts' plots.

    nice -n 5 .venv/bin/python scripts/report_sr_search.py > sr_search.log 2>&1

Resumable: a finished supernet or search (its ``summary.json``) is kept, an unfinished search resumes.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import time
from pathlib import Path

import numpy as np

DATA = ["--data", "image_pairs", "--dataset", "skimage-sr", "--scale", "2", "--downscale", "bicubic", "--psnr", "y",
        "--border", "4"]
TINY = ["--C", "16", "--upscale", "2", "--train-size", "320", "--batch-size", "8", "--valid-size", "64",
        "--eval-batch-size", "64", "--no-augment", "--seed", "0", "--no-progress"]
#: supernet name -> (label, nastk supernet train arguments)
SUPERNETS = {
    "quantnas": ("QuantNAS step (noise + ADQ), 10 epochs",
                 ["--step", "quantnas", "--epochs", "10", "--arch-warmup-epochs", "4", "--arch-lr", "0.003",
                  "--bitops-penalty", "0.001", "--quantization", "noise"]),
    "spos": ("single-path step (SPOS, real LSQ + HWGQ), 40 epochs",
             ["--step", "single_path", "--epochs", "40", "--lr", "0.05", "--weight-decay", "0"]),
}
STRATEGIES, SEEDS, BUDGET = ("nsga2", "random"), (0, 1, 2), 30
TRAIN_BUDGET = 20
TRAIN_FLAGS = ["--epochs", "3", "--final-epochs", "6", "--lr", "0.05"]


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="runs/sr_search", help="run folders")
    parser.add_argument("--out", default="docs/results/quantnas_sr_search")
    return parser.parse_args()


def nastk(*argv: str) -> None:
    """One nastk command, in this process, printed as its shell form first."""
    from nastk.cli import main

    print("$ nastk " + " ".join(shlex.quote(a) for a in argv), flush=True)
    started = time.perf_counter()
    code = main(list(argv))
    if code:
        raise SystemExit(f"nastk {argv[0]} failed with exit code {code}")
    print(f"  ({time.perf_counter() - started:.0f} s)", flush=True)


def finished(folder: Path) -> bool:
    return (folder / "summary.json").is_file()


def run_all(work: Path) -> dict:
    supernets = {name: work / f"supernet-{name}" for name in SUPERNETS}
    for name, folder in supernets.items():
        if not finished(folder):
            nastk("supernet", "train", "--space", "sr", *SUPERNETS[name][1], *DATA, *TINY, "--run-dir", str(folder))
    searches = {}
    for name, supernet in supernets.items():
        for strategy in STRATEGIES:
            for seed in SEEDS:
                folder = work / f"{name}-{strategy}-seed{seed}"
                searches[(name, strategy, seed)] = folder
                if not finished(folder):
                    nastk("search", "--space", "sr", "--strategy", strategy, "--objectives", "psnr,bitops",
                          "--evaluator", f"supernet:{supernet}", "--budget", str(BUDGET), "--seed", str(seed),
                          "--run-dir", str(folder), "--no-progress", *(["--resume"] if folder.exists() else []))
    trained = work / "train-random-seed0"
    if not finished(trained):
        nastk("search", "--space", "sr", "--strategy", "random", "--objectives", "psnr,bitops", "--evaluator", "train",
              *TRAIN_FLAGS, "--budget", str(TRAIN_BUDGET), "--run-dir", str(trained), "--no-progress",
              *(["--resume"] if trained.exists() else []))
    return {"supernets": supernets, "searches": searches, "trained": trained}


def hypervolume(points, reference) -> float:
    """Area dominated by (PSNR up, BitOps down) points and bounded by ``reference`` (PSNR floor, BitOps ceiling)."""
    floor, ceiling = reference
    area, best = 0.0, floor
    for bitops, psnr in sorted(p for p in points if p[0] <= ceiling):  # cheapest first: each step adds a strip
        if psnr > best:
            area += (ceiling - bitops) * (psnr - best)
            best = psnr
    return area


def records(folder: Path):
    return [json.loads(line) for line in (folder / "journal.jsonl").read_text().splitlines()]


def bicubic_psnr() -> dict:
    import torch
    from torch.nn import functional as F

    from nastk.oneshot.datamodules import make_data_module
    from nastk.quantization.sr_data import mean_score, whole_images

    class Bicubic(torch.nn.Module):
        def forward(self, x):
            return F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)

    module = make_data_module("image_pairs", {"scale": 2, "downscale": "bicubic", "psnr": "y", "border": 4})
    return {split: mean_score(Bicubic(), whole_images(split, 2), module) for split in ("select", "test")}


def report(args, runs: dict, wall_s: float, load: tuple) -> None:
    from scipy import stats

    from nastk.evaluators.supernet import SupernetEvaluator
    from nastk.space import get_space

    space = get_space("sr")
    evaluators = {name: SupernetEvaluator(space, folder, device="cpu") for name, folder in runs["supernets"].items()}
    bicubic = bicubic_psnr()
    rows, fronts = [], {}
    for (name, strategy, seed), folder in runs["searches"].items():
        summary = json.loads((folder / "summary.json").read_text())
        front = [{**row, "test_psnr": evaluators[name].final_metrics(space.from_str(row["arch"]))["test_psnr"]}
                 for row in summary["pareto_front"]]
        fronts[(name, strategy, seed)] = front
        evaluated = [(r["result"]["metrics"]["bitops_m"], r["result"]["metrics"]["psnr"]) for r in records(folder)]
        rows.append({"supernet": name, "strategy": strategy, "seed": seed, "evaluations": len(evaluated),
                     "cost_s": summary["cost_s"], "front": front, "points": evaluated,
                     "best_psnr": summary["best_objective"], "best_arch": summary["best_arch"],
                     "best_test_psnr": summary["final_metrics"]["test_psnr"]})
    for name in SUPERNETS:  # one reference point per supernet: the worst PSNR and BitOps any of its searches saw
        points = [p for row in rows if row["supernet"] == name for p in row["points"]]
        reference = (min(p[1] for p in points), max(p[0] for p in points))
        for row in rows:
            if row["supernet"] == name:
                row["reference"] = reference
                row["hypervolume"] = hypervolume([(f["bitops"], f["psnr"]) for f in row["front"]], reference)
    trained = [(r["arch"], r["result"]["metrics"]["psnr"], r["result"]["metrics"]["bitops_m"])
               for r in records(runs["trained"])]
    train_summary = json.loads((runs["trained"] / "summary.json").read_text())
    ranking = {}
    for name, evaluator in evaluators.items():
        inherited = [evaluator.evaluate(space.from_str(arch)).metrics["psnr"] for arch, _, _ in trained]
        scratch = [psnr for _, psnr, _ in trained]
        ranking[name] = {"kendall_tau": float(stats.kendalltau(inherited, scratch).statistic),
                         "kendall_p": float(stats.kendalltau(inherited, scratch).pvalue),
                         "spearman_rho": float(stats.spearmanr(inherited, scratch).statistic),
                         "inherited": inherited, "scratch": scratch, "n": len(trained)}
    write(args, runs, rows, ranking, trained, train_summary, bicubic, mixture_check(runs["supernets"]["quantnas"]),
          wall_s, load)


def mixture_check(folder: Path) -> dict:
    """The QuantNAS supernet as it trained (its alpha mixture, noise mode) against its argmax child run alone with real
    quantization (what the supernet evaluator scores), both on the select images, and how peaked its alpha is."""
    import torch

    from nastk.oneshot.datamodules import make_data_module
    from nastk.oneshot.ranking import activate
    from nastk.oneshot.trainer import load_trained
    from nastk.quantization.sr_data import mean_score, whole_images

    supernet, config, _ = load_trained(folder, "cpu")
    module = make_data_module(config.data, config.data_options)
    images = whole_images("select", 2)
    weights = supernet.mixture_weights().detach()
    supernet.quantization.mode = "noise"  # as the quantnas step trained it (the step's default, recorded in the run)
    supernet.quantization.noise.seed(0, "cpu")
    supernet.set_mixture(weights)
    mixture = mean_score(supernet, images, module)
    argmax = supernet.export()
    activate(supernet, argmax)
    options = supernet.allowed.sum(axis=1)  # (op, bits) options per searched layer (the tail has fewer)
    return {"mixture_psnr": mixture, "argmax_child_psnr": mean_score(supernet, images, module), "argmax": argmax.to_str(),
            "largest_probability": [float(w) for w in weights.max(1).values], "options": [int(n) for n in options],
            "largest_over_uniform": [float(w) * int(n) for w, n in zip(weights.max(1).values, options)]}


def write(args, runs, rows, ranking, trained, train_summary, bicubic, mixture, wall_s, load) -> None:
    from nastk.cli import main

    out = Path(args.out)
    by = {(r["supernet"], r["strategy"], r["seed"]): r for r in rows}
    lines = ["# PSNR vs BitOps searches on the tiny super-resolution space (`--objectives psnr,bitops`)", "",
             f"Command: `nice -n 5 .venv/bin/python scripts/report_sr_search.py --work {args.work}` (every nastk command it "
             f"ran is listed below); machine: {platform.machine()}, {os.cpu_count()} cores shared with other jobs "
             f"(load average {load[0]:.1f} at the start, {load[1]:.1f} at the end), CPU, one torch thread; "
             f"wall {wall_s / 60:.1f} min for what this invocation ran (finished runs are kept: the times below are "
             f"each run's own).", "",
             "Setting: space `sr` (1 RFDN-style cell, C = 16, 9 searched layers, (op, bits) with bits {4, 8}), x2, "
             "`skimage-sr` 32 px HR patches (first 320; LR by antialiased bicubic). Y-channel PSNR (BT.601), 4-pixel "
             "border, 8-bit output, on whole images: the searches select on the held-out `select` images (china, "
             "motorcycle_right: never trained on, weights or alpha); the `test` images (astronaut, chelsea, coffee, "
             "rocket, grace_hopper) are reported only. BitOps = MACs x b_w x b_a of every quantized conv on a 64 x 64 LR "
             f"input (`bitops` is in millions). Bicubic upscaling: select {bicubic['select']:.2f} dB, test "
             f"{bicubic['test']:.2f} dB.", "", "Supernets (`nastk supernet train`):", ""]
    for name, (label, flags) in SUPERNETS.items():
        folder = runs["supernets"][name]
        trained_as = json.loads((folder / "summary.json").read_text())
        where = "" if trained_as["run_dir"] == str(folder) else f" into {trained_as['run_dir']} (moved here)"
        lines.append(f"- `{name}`: {label}: `nastk supernet train --space sr {' '.join(flags + DATA + TINY)} "
                     f"--run-dir {folder}`; trained in {trained_as['train_wall_s']:.0f} s{where}")
    lines += ["", f"Searches: `nastk search --space sr --strategy STRATEGY --objectives psnr,bitops --evaluator "
              f"supernet:RUN --budget {BUDGET} --seed SEED --run-dir DIR` for STRATEGY in {', '.join(STRATEGIES)} and "
              f"SEED in {', '.join(map(str, SEEDS))}, on each supernet (one trained supernet per step: the seeds are "
              "the searches', not the supernets').", "",
              "| supernet | strategy | seed | front size | best select PSNR (dB) | its BitOps (M) | its test PSNR (dB) | "
              "hypervolume | search s |", "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        best = next(f for f in row["front"] if f["arch"] == row["best_arch"])
        lines.append(f"| {row['supernet']} | {row['strategy']} | {row['seed']} | {len(row['front'])} | "
                     f"{row['best_psnr']:.3f} | {best['bitops']:.1f} | {row['best_test_psnr']:.3f} | "
                     f"{row['hypervolume']:.1f} | {row['cost_s']:.0f} |")
    lines += ["", "Hypervolume: the area (dB x MBitOps) the front dominates up to the supernet's reference point (the "
              "lowest PSNR and the highest BitOps any of its searches evaluated), so it compares searches of one "
              "supernet only. nsga2 minus random, paired by seed:", ""]
    for name in SUPERNETS:
        diffs = [by[(name, "nsga2", s)]["hypervolume"] - by[(name, "random", s)]["hypervolume"] for s in SEEDS]
        lines.append(f"- {name}: {', '.join(f'{d:+.1f}' for d in diffs)} (mean {np.mean(diffs):+.1f}); with "
                     f"{len(SEEDS)} seeds no test can separate the strategies (the smallest two-sided Wilcoxon p is "
                     f"{2 / 2 ** len(SEEDS):.2f}), so this is no evidence for or against either")
    lines += ["", "Front of the nsga2 seed-0 search on each supernet (select PSNR selects; test PSNR is the same child "
              "scored on the test images, reported only):", ""]
    for name in SUPERNETS:
        lines += [f"`{name}` supernet:", "", "| BitOps (M) | select PSNR (dB) | test PSNR (dB) | architecture |",
                  "|---|---|---|---|"]
        for f in sorted(by[(name, "nsga2", 0)]["front"], key=lambda f: f["bitops"]):
            lines.append(f"| {f['bitops']:.1f} | {f['psnr']:.3f} | {f['test_psnr']:.3f} | `{f['arch']}` |")
        lines.append("")
    lines += [f"From scratch (`--evaluator train`): `nastk search --space sr --strategy random --objectives psnr,bitops "
              f"--evaluator train {' '.join(TRAIN_FLAGS)} --budget {TRAIN_BUDGET} --run-dir {runs['trained']}`: "
              f"{len(trained)} children, each trained 3 epochs (SGD 0.05, cosine, L1) on all 1127 patches and scored on "
              f"the select images: {min(p for _, p, _ in trained):.2f} to {max(p for _, p, _ in trained):.2f} dB; the "
              f"winner ({train_summary['best_objective']:.3f} dB select) retrained 6 epochs: test "
              f"{train_summary['final_metrics']['test_psnr']:.3f} dB; {train_summary['cost_s'] / 60:.1f} min of training "
              f"and scoring for the 20, {train_summary['wall_s'] / 60:.1f} min wall with the retraining. Those {len(trained)} children scored with each "
              "supernet's inherited weights (select images), rank agreement with their from-scratch PSNR:", ""]
    for name, r in ranking.items():
        lines.append(f"- `{name}`: Kendall tau {r['kendall_tau']:.3f} (p = {r['kendall_p']:.3f}), Spearman rho "
                     f"{r['spearman_rho']:.3f}; inherited PSNR {min(r['inherited']):.2f} to {max(r['inherited']):.2f} dB")
    lines += ["", f"The `quantnas` supernet as it trained, its alpha mixture in noise mode, scores "
              f"{mixture['mixture_psnr']:.2f} dB on the select images; its argmax child run alone with real LSQ + HWGQ "
              f"(what the supernet evaluator scores) {mixture['argmax_child_psnr']:.2f} dB. Its largest (op, bits) "
              f"probability per searched layer is {min(mixture['largest_probability']):.2f} to "
              f"{max(mixture['largest_probability']):.2f}, {min(mixture['largest_over_uniform']):.2f} to "
              f"{max(mixture['largest_over_uniform']):.2f} times uniform, after its 10 epochs: the weights trained "
              "inside a mixture that gave every option such a small share."]
    # plots: each supernet's six searches with nastk runs plot (fronts per run), and the nsga2 seed-0 run's own plot
    plots = []
    for name in SUPERNETS:
        target = out.parent / f"{out.name}_{name}.png"
        folders = [str(runs["searches"][(name, s, seed)]) for s in STRATEGIES for seed in SEEDS]
        print(f"$ nastk runs plot {' '.join(folders)} --out {target}")
        if main(["runs", "plot", *folders, "--out", str(target)]):
            raise SystemExit("nastk runs plot failed")
        shutil.copyfile(runs["searches"][(name, "nsga2", 0)] / "pareto.png", out.parent / f"{out.name}_{name}_nsga2_seed0.png")
        plots += [target.name, f"{out.name}_{name}_nsga2_seed0.png"]
    lines += ["", "Plots: " + ", ".join(f"`{p}`" for p in plots) + " (`nastk runs plot` of a supernet's six searches: "
              "best so far, and each run's PSNR-vs-BitOps front with its evaluations faint; the nsga2 seed-0 run's own "
              "`pareto.png`).", "", WHAT_IT_SHOWS]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps({
        "searches": [{k: (list(v) if isinstance(v, tuple) else v) for k, v in row.items()} for row in rows],
        "ranking": ranking, "trained": [{"arch": a, "psnr": p, "bitops_m": b} for a, p, b in trained],
        "train_summary": {k: train_summary[k] for k in ("best_arch", "best_objective", "final_metrics", "cost_s")},
        "bicubic": bicubic, "quantnas_mixture_check": mixture, "wall_s": wall_s, "load_average": list(load),
        "supernets": {name: str(folder) for name, folder in runs["supernets"].items()}}, indent=1))
    print("\n".join(lines))


WHAT_IT_SHOWS = """What this reduced setting can and cannot show. It runs a multi-objective PSNR-vs-BitOps search end to end
on the sr space with both evaluators: inherited weights of a trained supernet and short from-scratch training, selecting
on held-out whole images and reporting the test images beside. It cannot show which strategy finds better fronts (3
search seeds on one supernet each), nor that inherited-weight PSNR predicts the PSNR of a child trained alone beyond the
rank correlation measured above on 20 children with 3 epochs each (and 20 children cannot tell the two supernets'
correlations apart). A QuantNAS (DARTS-style) supernet trains its weights inside a mixture of all (op, bits) options,
each op's output scaled by its probability, and its searched layers see quantization noise, never real LSQ + HWGQ; a
child run alone with real quantization is a network its weights were never trained as, so its inherited PSNR is far
below the mixture's and below bicubic upscaling: those absolute values say nothing about the child trained alone, only
their order may be usable (the rank correlation above). QuantNAS itself never scores children so: it keeps the argmax
and retrains it. A single-path (SPOS) supernet trains each child's exact computation, which is what inherited-weight
scoring assumes. All numbers come from a few hundred optimizer steps on 320 patches; they are not the paper's, and the
dB values are far from those of trained SR networks."""


def main() -> None:
    import torch

    torch.set_num_threads(1)
    args = parse_args()
    work = Path(args.work)
    start_load = os.getloadavg()[0]
    started = time.perf_counter()
    runs = run_all(work)
    wall_s = time.perf_counter() - started
    report(args, runs, wall_s, (start_load, os.getloadavg()[0]))


if __name__ == "__main__":
    main()
