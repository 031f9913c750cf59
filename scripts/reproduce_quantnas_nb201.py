"""QuantNAS on NB201-style classification (methods.md 11A, issue 26): noise vs shared-weights search vs random
architectures at matched BitOps, on the shared CIFAR-10 subset, paired over seeds.

Per seed, each search method trains the ``qnas-nb201`` supernet with the ``quantnas`` step (the sibling of
``reproduce_quantnas.py``'s SR searches: same step options, no ADQ -- see the space's docstring) on the first
``--train-size`` images of the subset (half for the weights, half for alpha), average-pooled to ``--image-size``;
the argmax (op, bits) architecture of the last epoch is then trained from scratch as the stand-alone quantized
network (``space.build``: real LSQ + HWGQ, tracked BatchNorm; SGD Nesterov, cosine, the same epochs and the seed's
initialisation and batch order for every architecture) on the same images, and scored on held-out training images
(the ``--select-size`` images after them in the subset's fixed order: the comparison) and on the test images
(reported only). The random baseline of a seed is, of ``RANDOM_DRAWS`` random architectures with bits in ``--bits``,
the one whose BitOps is nearest that seed's noise architecture's.

    NASTK_DATA=/abs/path/benchmarks nice -n 5 .venv/bin/python scripts/reproduce_quantnas_nb201.py --jobs 2 \\
        > quantnas_nb201.log 2>&1

Resumable: a finished job (``<work>/<job>/result.json``) is skipped, an unfinished search continues from its
checkpoint.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reproduce_quantnas import METHODS, pareto, run_search  # noqa: E402  (the SR searches' step options, the front)

SPACE = "qnas-nb201"
#: search methods (without ADQ: NB201 ops end in BatchNorm) and what they mean
NB201_METHODS = ("noise", "shared")
RANDOM_DRAWS = 200


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(NB201_METHODS), choices=list(NB201_METHODS))
    parser.add_argument("--bits", default="2,4,8", help="bit-widths the search may pick (the supernet's --bits)")
    parser.add_argument("--C", type=int, default=8)
    parser.add_argument("--N", type=int, default=1)
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--train-size", type=int, default=2000, help="images searched (half for alpha) and retrained on")
    parser.add_argument("--select-size", type=int, default=1000, help="held-out training images the comparison reads")
    parser.add_argument("--epochs", type=int, default=10, help="search epochs")
    parser.add_argument("--batch-size", type=int, default=32, help="search batch (QuantNAS' 32)")
    parser.add_argument("--arch-warmup", type=int, default=4)
    parser.add_argument("--arch-lr", type=float, default=3e-3)
    parser.add_argument("--bitops-penalty", type=float, default=1e-3)
    parser.add_argument("--retrain-epochs", type=int, default=15)
    parser.add_argument("--retrain-lr", type=float, default=0.05)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--work", default="runs/quantnas_nb201")
    parser.add_argument("--out", default="docs/results/quantnas_nb201")
    parser.add_argument("--report-only", action="store_true",
                        help="write the report from the jobs finished so far (nothing is trained)")
    args = parser.parse_args()
    from search_spaces.quantnas_nb201 import search_bits

    args.bits = ",".join(map(str, search_bits(args.bits)))  # one clear line for a bad --bits, before any work
    return args


def images(args):
    """(train x, y), (held-out training x, y), (test x, y) at ``--image-size``, the subset's fixed order."""
    from nastk.datasets import downsample, load_dataset, mixed

    data = downsample(load_dataset("cifar10"), args.image_size)
    x, y = mixed(data.x_train, data.y_train)
    if args.train_size + args.select_size > len(x):
        raise SystemExit(f"--train-size + --select-size must be at most {len(x)} (the subset's training images)")
    cut = args.train_size
    return (x[:cut], y[:cut]), (x[cut:cut + args.select_size], y[cut:cut + args.select_size]), (data.x_test, data.y_test)


def search(args, method: str, seed: int) -> dict:
    import torch

    from nastk.oneshot.trainer import OneShotConfig

    torch.set_num_threads(1)
    folder = Path(args.work, f"search-{method}-seed{seed}")
    if (folder / "result.json").is_file():
        return json.loads((folder / "result.json").read_text())
    step_options, _ = METHODS[method]  # the SR methods' step options (ADQ is a supernet option NB201 lacks)
    config = OneShotConfig.for_step(
        "quantnas", space=SPACE, dataset="cifar10", image_size=args.image_size,
        supernet={"C": args.C, "N": args.N, "bits": args.bits}, seed=seed, epochs=args.epochs,
        train_size=args.train_size, batch_size=args.batch_size, valid_size=0,
        step_options={**step_options, "arch_warmup_epochs": args.arch_warmup, "arch_lr": args.arch_lr,
                      "bitops_penalty": args.bitops_penalty})
    return run_search(config, folder, args.device, method=method, seed=seed)


def retrain(args, name: str, arch_str: str, seed: int) -> dict:
    """The stand-alone quantized network of ``arch_str`` trained from scratch; top-1 on held-out and test images."""
    import torch

    from nastk.space import get_space
    from nastk.standalone_training import TrainingConfig, accuracy, train_model

    torch.set_num_threads(1)
    folder = Path(args.work, f"retrain-{name}-seed{seed}")
    if (folder / "result.json").is_file():
        return json.loads((folder / "result.json").read_text())
    started = time.perf_counter()
    space = get_space(SPACE)
    arch = space.from_str(arch_str)
    (x, y), held_out, test = images(args)
    torch.manual_seed(seed)  # the seed's initialisation, the same for every method's architecture
    model = space.build(arch, 10, C=args.C, N=args.N)
    loss = train_model(model, x, y, TrainingConfig(epochs=args.retrain_epochs, batch_size=64, lr=args.retrain_lr),
                       device=args.device, seed=seed)
    result = {"name": name, "seed": seed, "arch": arch_str, "bitops": bitops(args, arch_str),
              "select_acc": accuracy(model, *held_out, device=args.device),
              "test_acc": accuracy(model, *test, device=args.device),
              "train_acc": accuracy(model, x, y, device=args.device), "final_train_loss": loss,
              "retrain_s": round(time.perf_counter() - started, 1)}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "result.json").write_text(json.dumps(result, indent=1))
    return result


def bitops(args, arch_str: str) -> float:
    """BitOps of the trained network (C, N of the run) on one ``--image-size`` image."""
    from nastk.space import get_space

    space = get_space(SPACE)
    return space.cost(space.from_str(arch_str), input_size=args.image_size, C=args.C, N=args.N)["bitops"]


def matched_random(args, target_bitops: float, seed: int) -> str:
    """Of ``RANDOM_DRAWS`` random architectures with bits in ``--bits`` (seeded), the one nearest ``target_bitops``
    in log BitOps."""
    import torch

    from nastk.space import get_space
    from search_spaces.quantnas_nb201 import edge_options, search_bits

    torch.set_num_threads(1)
    space = get_space(SPACE)
    options = edge_options(search_bits(args.bits))
    rng = np.random.default_rng([seed, 26, 201])
    names = [c.name for c in space.get_choice_model().choices]
    archs = [space.arch_of({n: options[rng.integers(len(options))] for n in names}) for _ in range(RANDOM_DRAWS)]
    gaps = [abs(np.log(bitops(args, a.to_str()) / target_bitops)) for a in archs]
    return archs[int(np.argmin(gaps))].to_str()


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    if args.report_only:
        folder = Path(args.work)
        read = lambda pattern: [json.loads(p.read_text()) for p in sorted(folder.glob(pattern))]  # noqa: E731
        searches, retrained = read("search-*/result.json"), read("retrain-*/result.json")
        previous = Path(args.out + ".json")
        previous = json.loads(previous.read_text()) if previous.is_file() else {}
        key = lambda r: (r["name"], r["seed"])  # noqa: E731
        if sorted(previous.get("retrained", []), key=key) == sorted(retrained, key=key) and not previous.get("partial"):
            args.jobs = previous["args"]["jobs"]  # the finished run's report, re-rendered with its wall time
            write_report(args, searches, retrained, previous["wall_s"])
            return
        wall = sum(r["search_s"] for r in searches) + sum(r["retrain_s"] for r in retrained)
        write_report(args, searches, retrained, wall, partial=True)
        return
    images(args)  # the data are there and the sizes fit, before any job starts
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        found = [f.result() for f in [pool.submit(search, args, m, s) for s in args.seeds for m in args.methods]]
        print(f"searches done at {time.perf_counter() - started:.0f} s", flush=True)
        jobs = [(r["method"], r["arch"], r["seed"]) for r in found]
        if "noise" in args.methods:
            for r in found:
                if r["method"] == "noise":
                    jobs.append(("random", matched_random(args, bitops(args, r["arch"]), r["seed"]), r["seed"]))
        retrained = [f.result() for f in [pool.submit(retrain, args, *job) for job in jobs]]
    write_report(args, found, retrained, time.perf_counter() - started)


def write_report(args, searches, retrained, wall_s: float, partial: bool = False) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import stats

    from nastk.paths import save_figure

    names = [m for m in list(args.methods) + ["random"] if any(r["name"] == m for r in retrained)]
    by = {(r["name"], r["seed"]): r for r in retrained}
    search_by = {(r["method"], r["seed"]): r for r in searches}
    spread = lambda v: np.std(v, ddof=1) if len(v) > 1 else 0.0  # noqa: E731
    lines = [f"# QuantNAS on NB201-style classification (CIFAR-10 subset), {len(args.seeds)} paired seeds", "",
             f"Command: `nice -n 5 .venv/bin/python scripts/reproduce_quantnas_nb201.py --jobs {args.jobs}"
             + ("" if args.seeds == [0, 1, 2] else f" --seeds {' '.join(map(str, args.seeds))}") + "`; "
             f"machine: {platform.machine()}, {os.cpu_count()} cores shared with other jobs, CPU, one thread per job, "
             + (f"wall {wall_s / 60:.1f} min." if not partial else
                f"written by `--report-only` from the {len(searches)} searches and {len(retrained)} retrainings "
                f"finished (their summed time {wall_s / 60:.1f} min)."), "",
             f"Setting (reduced): space `{SPACE}` (NB201's 6 edges, each none / skip / avg pool or a conv 1x1 / 3x3 at "
             f"bits {{{args.bits}}}; stem, reductions and classifier fixed 8-bit; C = {args.C}, N = {args.N}), the shared "
             f"CIFAR-10 subset average-pooled to {args.image_size} x {args.image_size}; search on the first "
             f"{args.train_size} training images (half weights, half alpha), {args.epochs} epochs of batch "
             f"{args.batch_size} (crop + flip; alpha from epoch {args.arch_warmup}, Adam {args.arch_lr:g}; weights Adam "
             f"1e-3 cosine), eta = {args.bitops_penalty:g}, entropy c = 1e-3 with QuantNAS' w1 w2 schedule, no ADQ. "
             f"Every architecture (the last epoch's argmax) trained from scratch as the stand-alone quantized network "
             f"(real LSQ + HWGQ) for {args.retrain_epochs} epochs on the same {args.train_size} images (SGD Nesterov "
             f"{args.retrain_lr:g}, cosine, wd 5e-4, batch 64, no augmentation; per seed the same initialisation seed and "
             f"batch order for every method). Top-1 on `select` = the next {args.select_size} training images of the "
             f"subset's fixed order, never trained on (the comparison), and on the 1,000 test images (reported only). "
             f"BitOps = MACs x b_w x b_a of every quantized conv of the trained network on one "
             f"{args.image_size} x {args.image_size} image.", "",
             "| method | BitOps (M) | select acc | test acc | search s | retrain s |", "|---|---|---|---|---|---|"]
    for name in names:
        rows = [by[(name, s)] for s in args.seeds if (name, s) in by]
        sel, tst = [r["select_acc"] for r in rows], [r["test_acc"] for r in rows]
        bit = [r["bitops"] / 1e6 for r in rows]
        searched = [search_by[(name, s)]["search_s"] for s in args.seeds if (name, s) in search_by]
        lines.append(f"| {name} | {np.mean(bit):.1f} ({', '.join(f'{b:.1f}' for b in bit)}) | "
                     f"{np.mean(sel):.2f} ± {spread(sel):.2f} | {np.mean(tst):.2f} ± {spread(tst):.2f} | "
                     f"{np.mean(searched) if searched else 0:.0f} | {np.mean([r['retrain_s'] for r in rows]):.0f} |")
    lines += ["", "Mean ± sample std over seeds. Paired differences per seed (the seed fixes the search, the random "
              "draw and the retraining's initialisation and batch order), two-sided paired t-test (scipy.stats.ttest_rel) "
              "over the seeds:", ""]
    tests = {}
    pairs = [(a, b) for a, b in (("noise", "shared"), ("noise", "random"), ("shared", "random")) if a in names and b in names]
    for first, other in pairs:
        for split in ("select_acc", "test_acc"):
            common = [s for s in args.seeds if (first, s) in by and (other, s) in by]
            if len(common) < 2:
                continue
            a, b = [by[(first, s)][split] for s in common], [by[(other, s)][split] for s in common]
            diff = np.subtract(a, b)
            p = float(stats.ttest_rel(a, b).pvalue)  # nan when every seed's difference is the same
            tests[f"{first}-{other}/{split}"] = {"mean_diff": float(diff.mean()), "n": len(diff), "t_p": p,
                                                 "diffs": diff.tolist()}
            lines.append(f"- {first} - {other}, {split.replace('_acc', '')}: {diff.mean():+.2f} points over {len(diff)} "
                         f"seeds ({', '.join(f'{d:+.1f}' for d in diff)}; t-test p = {p:.3f})")
    lines += ["", f"Architectures (argmax of the last search epoch; random: of {RANDOM_DRAWS} draws, the nearest BitOps "
              "to noise's):", "", "| method | seed | BitOps (M) | select acc | test acc | architecture |",
              "|---|---|---|---|---|---|"]
    for name in names:
        for s in args.seeds:
            if (name, s) in by:
                r = by[(name, s)]
                lines.append(f"| {name} | {s} | {r['bitops'] / 1e6:.1f} | {r['select_acc']:.1f} | {r['test_acc']:.1f} | "
                             f"`{r['arch']}` |")
    points = [(r["bitops"], r["select_acc"]) for r in retrained]
    front = pareto(points)
    lines += ["", f"Accuracy-vs-BitOps front (select images): {len(front)} of {len(points)} architectures are "
              "non-dominated: " + ", ".join(f"{retrained[i]['name']} seed {retrained[i]['seed']} "
                                            f"({points[i][0] / 1e6:.1f} M, {points[i][1]:.1f} %)"
                                            for i in sorted(front, key=lambda i: points[i][0])) + ".",
              f"Plot: `{Path(args.out).name}.png`.", "", WHAT_IT_SHOWS]
    fig, ax = plt.subplots(figsize=(6, 4))
    for name in names:
        keys = [(name, s) for s in args.seeds if (name, s) in by]
        ax.scatter([by[k]["bitops"] / 1e6 for k in keys], [by[k]["select_acc"] for k in keys], label=name)
    ax.set_xlabel(f"BitOps (M, one {args.image_size}x{args.image_size} image)")
    ax.set_ylabel("top-1 on held-out training images (%)")
    ax.set_title(f"QuantNAS on {SPACE}, {len(args.seeds)} seeds")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, args.out + ".png", dpi=120)
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    Path(args.out + ".json").write_text(json.dumps({"args": vars(args), "searches": searches, "retrained": retrained,
                                                    "tests": tests, "wall_s": wall_s, "partial": partial}, indent=1))
    print("\n".join(lines))


WHAT_IT_SHOWS = """What this reduced setting can and cannot show. It runs QuantNAS end to end on NB201 cells for
classification: the (op, bits) mixture search with quantization noise or shared-weights LSQ + HWGQ, the entropy
schedule and the BitOps penalty, cross-entropy as the task loss, the argmax architecture, and a from-scratch training
of that architecture as a real quantized network, paired over seeds against a random architecture of matched BitOps.
It cannot settle whether noise beats shared weights (or a random choice) on classification: a few hundred search
steps on 1,000 + 1,000 16 px images, a C = 8, N = 1 network, short retraining and 3 seeds give retrained accuracies
whose spread over seeds for one method (the ± column) is as large as the differences between methods, and the
held-out and test images can disagree in sign; with 3 pairs a paired t-test detects only large, consistent
differences, so a non-significant difference is not evidence of no difference. The noise and shared searches end
at different BitOps under one eta (only the random architectures are matched, to noise's), and one eta gives one
point per method and seed, not a front. A short first-order DARTS-style search on NB201 tends to drift to
parameter-free operations (methods.md 4.4); the architectures table shows how far it went here. ADQ is not part of
the comparison: it is an SR trick for BN-free residual blocks, and every NB201 conv op already ends in BatchNorm."""


if __name__ == "__main__":
    main()
