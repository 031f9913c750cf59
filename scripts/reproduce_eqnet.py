"""EQ-Net (methods.md 11B) in a reduced CPU setting: an elastic quantization supernet vs the same configurations
trained separately with LSQ QAT, the conditional accuracy predictor's Kendall tau on held-out configurations, and
the predictor-guided genetic search's configurations vs uniform precision.

Per seed, on ``quant:mobilenet@largest`` (the bits of the tiny MBConv space's largest child: 30 conv / linear
layers, 28 free units with weight and activation bits in 2..8, first / last 8 / 8), everything through nastk:

1. ``float``: full-precision pretraining (``nastk supernet train --step eqnet --precision float``: every quantizer
   at 32 bits) -- EQ-Net starts from a pretrained network;
2. ``elastic``: EQ-Net from (1): WDR, largest -> random -> smallest chain (GPG), random granularity / symmetry;
3. ``static`` at 8, 4 and 2 bits from (1): LSQ QAT of the one uniform configuration, as many epochs as (2), i.e. the
   same compute per configuration for the largest and the smallest (EQ-Net's step runs 3 configurations; equal
   *total* compute would give the static runs 3x the epochs, not run here);
4. every configuration scored by the supernet evaluator (``--evaluator supernet:RUN_DIR``): adaptive BN on
   ``--calibration`` training batches, then the held-out training images (selection) and the test split (report);
5. the CQAP-style predictor fitted by :func:`nastk.evaluators.accuracy_predictor.fit_from_supernet` on
   ``--predictor-train`` configurations drawn across the average-bit range, its Kendall tau (scipy) on
   ``--predictor-test`` other ones; the labelled configurations are scored once (``RUN/accuracy_predictor.json``)
   and both input kinds, one-hot and ordinal, are fitted on them (``refit``); ``--features`` is the searched one;
6. the genetic search as ``nastk search --strategy nsga2 --evaluator accuracy-predictor:PATH --constraint
   'avg_bits<=B'`` per budget ``B`` in ``--budgets`` (EQ-Net's constraint: mean of the parameter-weighted
   weight bits and the feature-map-weighted activation bits, first / last excluded), and with ``--constraint
   'bitops<=X'`` at the BitOps of the uniform configurations in ``--bitops-at`` (BitOps as the alternative); each
   winner scored as in (4) beside the uniform configuration of that many bits.

    NASTK_DATA=/work/shared/benchmarks nice -n 5 .venv/bin/python scripts/reproduce_eqnet.py --jobs 3

Resumable: finished runs, searches and seeds (``<work>/seed<S>.json``) are reused; ``--report-only`` rewrites the
report from ``--out``'s JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

SPACE = "quant:mobilenet@largest"
STATIC_BITS = (8, 4, 2)
#: the settings the report's command line shows
FLAGS = ("jobs", "train_size", "fp_epochs", "epochs", "calibration", "predictor_train", "predictor_test", "features",
         "search_queries", "population")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--train-size", type=int, default=5000, help="training images (the shared subset has 5,000)")
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--held-out", type=float, default=0.2)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--fp-epochs", type=int, default=8)
    parser.add_argument("--fp-lr", type=float, default=3e-3)
    parser.add_argument("--epochs", type=int, default=3, help="EQ-Net epochs = static QAT epochs per configuration")
    parser.add_argument("--lr", type=float, default=1e-3, help="EQ-Net's and static QAT's Adam lr (EQ-Net: 1e-3)")
    parser.add_argument("--calibration", type=int, default=3, help="adaptive-BN batches (of --batch-size training images)")
    parser.add_argument("--predictor-train", type=int, default=60)
    parser.add_argument("--predictor-test", type=int, default=30)
    parser.add_argument("--features", choices=["onehot", "ordinal"], default="onehot",
                        help="the searched predictor's inputs (both are fitted and their Kendall tau reported)")
    parser.add_argument("--budgets", type=float, nargs="+", default=[3.0, 4.0, 5.0], help="average-bit budgets")
    parser.add_argument("--bitops-at", type=int, nargs="*", default=[4],
                        help="also search under the BitOps of these uniform bit-widths")
    parser.add_argument("--search-queries", type=int, default=500)
    parser.add_argument("--population", type=int, default=25, help="NSGA-II population")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--work", default="runs/eqnet")
    parser.add_argument("--out", default="docs/results/eqnet_mbconv")
    parser.add_argument("--earlier", default="docs/results/eqnet_mbconv_1k.json",
                        help="an earlier run's JSON reported as a labelled row (skipped when missing)")
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from --out's JSON")
    return parser.parse_args()


def config(args, seed: int, epochs: int, lr: float, **step_options):
    from nastk.oneshot.trainer import OneShotConfig

    return OneShotConfig.for_step("eqnet", space=SPACE, train_size=args.train_size, image_size=args.image_size,
                                  held_out_fraction=args.held_out, batch_size=args.batch_size, valid_size=0,
                                  epochs=epochs, lr=lr, seed=seed, step_options=step_options)


def trained(args, folder: Path, cfg) -> Path:
    from nastk.oneshot.trainer import train

    if not (folder / "summary.json").is_file():
        train(cfg, folder, resume=(folder / "config.json").is_file(), device=args.device, progress=False)
    return folder


def scorer(args, run_dir: Path, float_network: bool = False):
    """The supernet evaluator of a run: held-out training images, adaptive BN on ``--calibration`` batches."""
    from nastk.evaluators.supernet import SupernetEvaluator
    from nastk.registry import get_space

    evaluator = SupernetEvaluator(get_space(SPACE), run_dir, eval_size=None, split="held_out",
                                  bn_calibration=args.calibration, device=args.device)
    if float_network:
        evaluator.supernet.precision_override = 32  # every quantizer off: the float network
    return evaluator


def scores(evaluator, arch) -> dict:
    return {"held_out": evaluator.evaluate(arch).value, "test": evaluator.final_metrics(arch)["test_accuracy"]}


def search(args, seed: int, predictor: Path, constraint: str, name: str):
    """``nastk search`` with NSGA-II on the predictor under ``constraint``; the best feasible architecture."""
    from nastk.cli import main as nastk_main
    from nastk.registry import get_space

    folder = Path(args.work) / "search" / f"seed{seed}-{name}"
    if not (folder / "summary.json").is_file():
        command = ["search", "--space", SPACE, "--strategy", "nsga2", "--population-size", str(args.population),
                   "--evaluator", f"accuracy-predictor:{predictor}", "--constraint", constraint,
                   "--budget", str(args.search_queries), "--seed", str(seed), "--run-dir", str(folder),
                   "--no-progress", "--format", "json"] + (["--resume"] if (folder / "config.json").is_file() else [])
        if nastk_main(command) != 0:
            raise RuntimeError(f"nastk {' '.join(command)} failed")
    summary = json.loads((folder / "summary.json").read_text())
    best = summary.get("best_arch")
    return (get_space(SPACE).from_str(best) if best else None), summary


def run_seed(args, seed: int) -> dict:
    import torch

    from nastk.evaluators.accuracy_predictor import FEATURES, FILE_NAME, AccuracyPredictor, fit_from_supernet, refit
    from nastk.registry import get_space

    torch.set_num_threads(1)
    work = Path(args.work)
    result_path = work / f"seed{seed}.json"
    if result_path.is_file():
        return json.loads(result_path.read_text())
    start = time.time()
    space = get_space(SPACE)
    base = space.fixed_base_arch()
    uniform = {b: space.uniform(base, b) for b in space.bits}
    fp_dir = trained(args, work / f"float-seed{seed}", config(args, seed, args.fp_epochs, args.fp_lr, precision="float"))
    result = {"seed": seed, "float": scores(scorer(args, fp_dir, float_network=True), uniform[max(space.bits)])}
    print(f"seed {seed}: float {result['float']}", flush=True)
    eq_dir = trained(args, work / f"eqnet-seed{seed}", config(args, seed, args.epochs, args.lr, pretrained=str(fp_dir)))
    eq = scorer(args, eq_dir)
    result["eqnet"] = {str(b): scores(eq, uniform[b]) for b in space.bits}
    result["static"] = {}
    for bits in STATIC_BITS:
        st_dir = trained(args, work / f"static{bits}-seed{seed}",
                         config(args, seed, args.epochs, args.lr, pretrained=str(fp_dir), precision="static",
                                static_bits=bits))
        result["static"][str(bits)] = scores(scorer(args, st_dir), uniform[bits])
    print(f"seed {seed}: eqnet {result['eqnet']}, static {result['static']}", flush=True)
    predictor_path = eq_dir / FILE_NAME
    if not predictor_path.is_file():  # scores the labelled configurations once, whatever --features says
        fit_from_supernet(eq_dir, train_size=args.predictor_train, test_size=args.predictor_test, seed=1000 + seed,
                          device=args.device, bn_calibration=args.calibration, features=args.features)
    labelled = AccuracyPredictor.load(predictor_path)
    if labelled.features != args.features:  # the same labelled configurations, the other inputs
        predictor_path = eq_dir / f"accuracy_predictor_{args.features}.json"
        refit(labelled, features=args.features).save(predictor_path)
    predictor = AccuracyPredictor.load(predictor_path)
    held = [acc for _, acc in predictor.fit["train"]] + [acc for _, acc, _ in predictor.fit["test"]]
    result["predictor"] = {"kendall_tau": predictor.fit["kendall_tau"], "features": predictor.features,
                           "kendall_tau_by_features": {kind: refit(labelled, features=kind).fit["kendall_tau"]
                                                       for kind in FEATURES},
                           "train": args.predictor_train, "test": args.predictor_test,
                           "held_out_range": [min(held), max(held)], "scoring_s": predictor.fit["scoring_s"]}
    print(f"seed {seed}: predictor {result['predictor']}", flush=True)
    searches = [(f"avg_bits{b:g}", f"avg_bits<={b!r}", {"avg_bits": b}) for b in args.budgets]
    searches += [(f"bitops_u{b}", f"bitops<={space.cost(uniform[b])['bitops_m']!r}", {"bitops_of_uniform": b})
                 for b in args.bitops_at]
    result["search"] = []
    for name, constraint, budget in searches:
        found, summary = search(args, seed, predictor_path, constraint, f"{predictor.features}-{name}")
        row = {"name": name, "constraint": constraint, **budget,
               "feasible": summary.get("constraints", {}).get("feasible")}
        nearest = int(round(budget.get("avg_bits", budget.get("bitops_of_uniform"))))
        for label, arch in (("searched", found), ("uniform", uniform.get(nearest))):
            if arch is None:
                continue
            cost = space.cost(arch)
            row[label] = {"arch": space.to_str(arch), "avg_bits": cost["avg_bits"], "bitops_m": cost["bitops_m"],
                          "model_size_kb": cost["model_size_kb"], "predicted": float(predictor.predict([arch])[0]),
                          **scores(eq, arch)}
        result["search"].append(row)
    result["wall_s"] = round(time.time() - start, 1)
    result_path.parent.mkdir(parents=True, exist_ok=True)
    result_path.write_text(json.dumps(result, indent=1))
    return result


def paired(a, b):
    from scipy.stats import ttest_rel

    a, b = np.array(a, dtype=float), np.array(b, dtype=float)
    p = float(ttest_rel(a, b).pvalue) if len(a) > 1 and np.any(a != b) else float("nan")
    return float((a - b).mean()), [float(v) for v in a - b], p


def mean_std(values) -> str:
    values = [v for v in values if v is not None]
    return f"{np.mean(values):.2f} ± {np.std(values, ddof=1) if len(values) > 1 else 0:.2f}"


def plot(args, results) -> str:
    """Test accuracy against average bits and BitOps: EQ-Net's uniform children, the searched ones, static QAT."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nastk.paths import save_figure
    from nastk.registry import get_space

    space = get_space(SPACE)
    base = space.fixed_base_arch()
    costs = {b: space.cost(space.uniform(base, b)) for b in space.bits}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, key, label in ((axes[0], "avg_bits", "average bits (EQ-Net's constraint)"),
                             (axes[1], "bitops_m", "BitOps (M, at 32x32 input)")):
        for i, r in enumerate(results):
            tag = (lambda text: text) if i == 0 else (lambda text: None)
            axis.plot([costs[b][key] for b in space.bits], [r["eqnet"][str(b)]["test"] for b in space.bits], "o-",
                      c="C0", alpha=0.6, ms=4, label=tag("EQ-Net child, uniform bits"))
            rows = [row["searched"] for row in r["search"] if "searched" in row]
            axis.scatter([row[key] for row in rows], [row["test"] for row in rows], c="C3", s=22, zorder=3,
                         label=tag("searched (NSGA-II on the predictor)"))
            axis.scatter([costs[b][key] for b in STATIC_BITS], [r["static"][str(b)]["test"] for b in STATIC_BITS],
                         marker="s", c="C2", s=22, label=tag("static LSQ QAT"))
            axis.axhline(r["float"]["test"], c="0.5", lw=0.8, ls="--", label=tag("float network"))
        axis.set_xlabel(label)
        axis.set_ylabel("test accuracy (%)")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"EQ-Net on {SPACE}, CIFAR-10 subset {args.image_size}x{args.image_size}, seeds {args.seeds}", fontsize=10)
    fig.tight_layout()
    path = Path(args.out + ".png")
    try:
        save_figure(fig, path, dpi=120)
    finally:
        plt.close(fig)
    return str(path)


def earlier_rows(path: Path):
    """The earlier reduced run's float / EQ-Net / static / tau summary, as table lines (none when missing)."""
    if not path.is_file():
        return []
    stored = json.loads(path.read_text())
    a, results = stored["args"], stored["results"]
    taus = [r["predictor"]["kendall_tau"] for r in results]
    return ["", f"Earlier reduced run (`{path}`, issue 26a): {a['train_size']:,} training images at "
                f"{a['image_size']}x{a['image_size']}, float {a['fp_epochs']} epochs, EQ-Net / static {a['epochs']} "
                f"epochs, space `quant:mobilenet`, predictor on {a['predictor_train']} configurations:", "",
            "| earlier run | float | 8 / 8 | 4 / 4 | 2 / 2 | predictor tau |", "|---|---|---|---|---|---|",
            f"| float network | {mean_std([r['float']['test'] for r in results])} | | | | |",
            "| EQ-Net child | | " + " | ".join(mean_std([r["eqnet"][str(b)]["test"] for r in results]) for b in STATIC_BITS)
            + f" | {mean_std(taus)} |",
            "| static LSQ QAT | | " + " | ".join(mean_std([r["static"][str(b)]["test"] for r in results]) for b in STATIC_BITS)
            + " | |"]


def write_report(args, results, wall: float) -> None:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    held = args.held_out
    lines = ["# EQ-Net: elastic quantization supernet vs static LSQ QAT (tiny MBConv, CIFAR-10 subset)", "",
             "Command: `NASTK_DATA=/work/shared/benchmarks nice -n 5 .venv/bin/python scripts/reproduce_eqnet.py "
             + " ".join(f"--{key.replace('_', '-')} {value}" for key, value in vars(args).items() if key in FLAGS)
             + f"`; machine: {platform.machine()}, {os.cpu_count()} cores shared with other jobs, one torch thread "
             f"per seed, CPU; wall {wall / 60:.1f} min (this invocation; runs it found finished in `--work` are reused); seeds {args.seeds}.", "",
             f"Setting: space `{SPACE}` (the bits of the tiny MBConv space's largest child: 30 conv / linear layers, 28 "
             f"free units with weight and activation bits in 2..8, first / last 8 / 8), {args.train_size:,} training "
             f"images average-pooled to {args.image_size}x{args.image_size} ({held:.0%} held out for selection, "
             f"{args.train_size * (1 - held):,.0f} trained on), 1,000 test images; float pretraining {args.fp_epochs} "
             f"epochs (Adam {args.fp_lr}, cosine, crop + flip), then EQ-Net and each static QAT run {args.epochs} epochs "
             f"from it (Adam {args.lr}, cosine, batch {args.batch_size}); every configuration scored by the supernet "
             f"evaluator after adaptive BN ({args.calibration} x {args.batch_size} training images). Accuracies in %, "
             "test split unless named.", "",
             "| | float | 8 / 8 | 4 / 4 | 2 / 2 |", "|---|---|---|---|---|"]
    fp = [r["float"]["test"] for r in results]
    lines.append(f"| float network | {mean_std(fp)} | | | |")
    lines.append("| EQ-Net child (one supernet) | | " + " | ".join(mean_std([r["eqnet"][str(b)]["test"] for r in results])
                                                          for b in STATIC_BITS) + " |")
    lines.append("| static LSQ QAT (one run each) | | " + " | ".join(mean_std([r["static"][str(b)]["test"] for r in results])
                                                            for b in STATIC_BITS) + " |")
    lines += ["", "Mean ± sample std over seeds. Paired differences (same seed), two-sided paired t-test:", ""]
    for b in STATIC_BITS:
        mean, per, p = paired([r["eqnet"][str(b)]["test"] for r in results], [r["static"][str(b)]["test"] for r in results])
        lines.append(f"- EQ-Net - static at {b} bits: {mean:+.2f} (per seed {', '.join(f'{v:+.1f}' for v in per)}; p = {p:.3f})")
    for b in STATIC_BITS[:2]:
        mean, per, p = paired([r["static"][str(b)]["test"] for r in results], fp)
        lines.append(f"- static {b}-bit QAT - float: {mean:+.2f} (per seed {', '.join(f'{v:+.1f}' for v in per)}; p = {p:.3f})")
    mean, per, p = paired([r["eqnet"]["8"]["test"] for r in results], fp)
    lines.append(f"- EQ-Net 8-bit child - float: {mean:+.2f} (per seed {', '.join(f'{v:+.1f}' for v in per)}; p = {p:.3f})")
    lines += ["", "EQ-Net's uniform children at every bit-width (test): " + ", ".join(
        f"{b} bits {mean_std([r['eqnet'][str(b)]['test'] for r in results])}" for b in sorted(map(int, results[0]["eqnet"])))]
    taus = [r["predictor"]["kendall_tau"] for r in results]
    by = {kind: [r["predictor"]["kendall_tau_by_features"][kind] for r in results]
          for kind in results[0]["predictor"]["kendall_tau_by_features"]}
    ranges = [r["predictor"]["held_out_range"] for r in results]
    lines += ["", f"Predictor (`fit_from_supernet`: MLP 200-200 on {results[0]['predictor']['features']} per-unit bits, "
              f"fitted on {args.predictor_train} configurations drawn across the average-bit range, labels = their "
              f"held-out accuracy, {min(r[0] for r in ranges):.1f}..{max(r[1] for r in ranges):.1f} %): Kendall tau on "
              f"{args.predictor_test} other configurations {mean_std(taus)} (per seed {', '.join(f'{t:.3f}' for t in taus)}); "
              "the same configurations with each input: " + "; ".join(
                  f"{kind} {mean_std(v)} ({', '.join(f'{t:.3f}' for t in v)})" for kind, v in by.items()) + ".", "",
              f"Genetic search: `nastk search --space {SPACE} --strategy nsga2 --population-size {args.population} "
              f"--evaluator accuracy-predictor:PREDICTOR --constraint C --budget {args.search_queries}` per constraint, "
              "seeded by the seed, PREDICTOR the seed's fitted predictor (the inputs above); the best feasible configuration (by prediction) scored by the "
              "supernet evaluator beside the uniform configuration of that many bits (BitOps in millions at a 32x32 "
              "input, the space's cost):", "",
              "| constraint | searched avg bits | searched BitOps | searched acc | uniform | uniform BitOps | uniform acc | searched - uniform |",
              "|---|---|---|---|---|---|---|---|"]
    for i, first in enumerate(results[0]["search"]):
        rows = [r["search"][i] for r in results]
        if not all("searched" in row and "uniform" in row for row in rows):
            lines.append(f"| {first['constraint']} | no feasible configuration in some seed | | | | | | |")
            continue
        s = [row["searched"]["test"] for row in rows]
        u = [row["uniform"]["test"] for row in rows]
        mean, per, p = paired(s, u)
        bits = int(round(first.get("avg_bits", first.get("bitops_of_uniform"))))
        shown = first["constraint"] if "avg_bits" in first else f"bitops <= uniform {bits}-bit's"
        lines.append(f"| {shown} | {np.mean([row['searched']['avg_bits'] for row in rows]):.2f} | "
                     f"{np.mean([row['searched']['bitops_m'] for row in rows]):.1f} | {mean_std(s)} | {bits} / {bits} | "
                     f"{np.mean([row['uniform']['bitops_m'] for row in rows]):.1f} | {mean_std(u)} | "
                     f"{mean:+.2f} ({', '.join(f'{v:+.1f}' for v in per)}; p = {p:.3f}) |")
    lines += ["", "The same configurations on the selection side: the predictor's value and the supernet's held-out accuracy "
              "(what the predictor was fitted to predict):", "",
              "| constraint | searched: predicted | searched: held-out | uniform: predicted | uniform: held-out | "
              "held-out searched - uniform |", "|---|---|---|---|---|---|"]
    for i, first in enumerate(results[0]["search"]):
        rows = [r["search"][i] for r in results]
        if not all("searched" in row and "uniform" in row for row in rows):
            continue
        side = {(label, key): [row[label][key] for row in rows] for label in ("searched", "uniform")
                for key in ("predicted", "held_out")}
        mean, per, p = paired(side["searched", "held_out"], side["uniform", "held_out"])
        lines.append(f"| {first['constraint'] if 'avg_bits' in first else 'bitops <= uniform 4-bit' + chr(39) + 's'} | "
                     + " | ".join(mean_std(side[key]) for key in side) + f" | {mean:+.2f} "
                     f"({', '.join(f'{v:+.1f}' for v in per)}; p = {p:.3f}) |")
    lines += ["", f"Figure: `{plot(args, results)}` (test accuracy against average bits and BitOps, every seed)."]
    lines += earlier_rows(Path(args.earlier))
    lines += ["", "## What this reduced setting can and cannot show", "",
              "It runs the whole method (float pretraining, calibration, WDR, the GPG chain with random forms, "
              "adaptive BN, a CQAP-style predictor and a predictor-guided constrained genetic search) through nastk's "
              "own trainer, evaluators and search engine, on a network and data small enough for a shared 2-core CPU, "
              f"with paired seeds. {args.train_size:,} images at {args.image_size}x{args.image_size} and "
              f"{args.fp_epochs} + {args.epochs} epochs are far from EQ-Net's ImageNet / 120-epoch setting: the numbers "
              "compare methods at equal (small) compute and cannot show ImageNet accuracies or whether the gaps persist "
              "at convergence. Static runs get the same epochs as the supernet (equal compute per configuration); at "
              "equal total compute they would train 3x longer. The predictor's labels are held-out accuracies of "
              f"{args.train_size * held:,.0f} images (one image = {100 / (args.train_size * held):.2f} points), so "
              "configurations closer than that noise cannot be ordered; the search selects by the predictor (fitted on "
              "held-out training images) and is reported on the test split."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps({"args": vars(args), "results": results, "wall_s": wall}, indent=1))


def main() -> None:
    args = parse_args()
    if args.report_only:  # rewrite the report from a finished run's JSON
        stored = json.loads(Path(args.out).with_suffix(".json").read_text())
        write_report(argparse.Namespace(**{**stored["args"], "out": args.out}), stored["results"], stored["wall_s"])
        return
    start = time.time()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(run_seed, [args] * len(args.seeds), args.seeds))
    write_report(args, results, time.time() - start)
    print(Path(args.out).with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
