"""EQ-Net (methods.md 11B) in a reduced CPU setting: an elastic quantization supernet vs the same configurations
trained separately with LSQ QAT, the conditional accuracy predictor's Kendall tau, and the genetic search's
configurations vs uniform precision.

Per seed, all through ``nastk supernet train``'s trainer and the ``eqnet`` step on ``quant:mobilenet`` (the tiny
MBConv space's largest child, every conv / linear layer a quantization unit, first and last 8 / 8):

1. ``float``: full-precision pretraining (every quantizer at 32 bits) -- EQ-Net starts from a pretrained network;
2. ``elastic``: EQ-Net from (1): WDR, largest -> random -> smallest chain (GPG), random granularity / symmetry;
3. ``static`` at 8, 4 and 2 bits from (1): LSQ QAT of the one uniform configuration, as many epochs as (2), i.e. the
   same compute per configuration for the largest and the smallest (EQ-Net's step runs 3 configurations; equal
   *total* compute would give the static runs 3x the epochs, not run here);
4. every configuration scored after adaptive BN (the kit's recalibration, cumulative statistics over
   ``--calibration`` training batches) on the test split (reported) and on held-out training images (selection);
5. CQAP-style predictor (one-hot per-unit bits -> MLP, scikit-learn) fitted on ``--predictor-train`` random
   configurations' held-out accuracies, Kendall tau (scipy) on ``--predictor-test`` other ones;
6. genetic search (the space's own mutate / crossover; population 24, 15 generations) maximising the predictor under
   an average-bit budget (EQ-Net's constraint: mean of the parameter-weighted weight bits and the feature-map-weighted
   activation bits, first / last excluded), per budget in ``--budgets``, against the uniform configuration of that
   many bits; BitOps beside.

    NASTK_DATA=../shared/benchmarks .venv/bin/python scripts/reproduce_eqnet.py --jobs 2
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

SPACE = "quant:mobilenet"
STATIC_BITS = (8, 4, 2)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--train-size", type=int, default=2000)
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--held-out", type=float, default=0.2)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--fp-epochs", type=int, default=10)
    parser.add_argument("--fp-lr", type=float, default=3e-3)
    parser.add_argument("--epochs", type=int, default=5, help="EQ-Net epochs = static QAT epochs per configuration")
    parser.add_argument("--calibration", type=int, nargs=2, default=[5, 100], metavar=("BATCHES", "SIZE"))
    parser.add_argument("--predictor-train", type=int, default=40)
    parser.add_argument("--predictor-test", type=int, default=20)
    parser.add_argument("--budgets", type=float, nargs="+", default=[3.0, 4.0, 5.0, 6.0])
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--work", default="runs/eqnet")
    parser.add_argument("--out", default="docs/results/eqnet_mbconv")
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from --out's JSON")
    return parser.parse_args()


def config(args, seed: int, epochs: int, lr: float, **step_options):
    from nastk.oneshot.trainer import OneShotConfig

    return OneShotConfig.for_step("eqnet", space=SPACE, train_size=args.train_size, image_size=args.image_size,
                                  held_out_fraction=args.held_out, batch_size=args.batch_size, valid_size=0,
                                  epochs=epochs, lr=lr, seed=seed, step_options=step_options)


def trained(args, folder: Path, cfg):
    from nastk.oneshot.trainer import load_trained, train

    if not (folder / "summary.json").is_file():
        train(cfg, folder, resume=(folder / "config.json").is_file(), device=args.device, progress=False)
    return load_trained(folder, args.device)[0]


def eval_data(cfg, calibration):
    from nastk.oneshot.splits import split_images
    from nastk.datasets import downsample, load_dataset, mixed

    data = downsample(load_dataset(cfg.dataset), cfg.image_size)
    (x_train, _), (x_held, y_held) = split_images(cfg, data)
    batches, size = calibration
    return {"calibration": list(x_train[:batches * size].split(size)), "test": mixed(data.x_test, data.y_test),
            "held_out": (x_held, y_held)}


def scores(supernet, path, data) -> dict:
    from nastk.oneshot.eqnet import evaluate_configuration

    return {split: 100 * evaluate_configuration(supernet, path, data["calibration"], *data[split])
            for split in ("test", "held_out")}


def features(space, arch) -> np.ndarray:
    """CQAP's input: one-hot bits of every free unit's weight and activation."""
    values = space.choices_of(arch)
    out = []
    for name in space.get_choice_model().names[len(space.base.get_choice_model().choices):]:
        out += [float(values[name] == b) for b in space.bits]
    return np.array(out)


def random_configuration(space, base_arch, rng, cap=None):
    """Per unit bits uniform in [min, c], ``c`` drawn per configuration (or ``cap``): average bits spread over
    the whole range, as EQ-Net samples its predictor's configurations across average-bit ranges."""
    model = space.get_choice_model()
    c = cap if cap is not None else int(rng.choice(space.bits[1:]))
    options = [b for b in space.bits if b <= c]
    quant = [int(rng.choice(options)) for _ in model.choices[len(base_arch.choices):]]
    return space._arch(model.validate(tuple(base_arch.choices) + tuple(quant)))


def with_base(space, arch, base_arch):
    count = len(base_arch.choices)
    return space._arch(space.get_choice_model().validate(tuple(base_arch.choices) + tuple(arch.choices[count:])))


def average_bits(space, arch) -> float:
    cost = space.cost(arch)
    return (cost["avg_wbits"] + cost["avg_abits"]) / 2


def genetic_search(space, base_arch, predict, budget: float, rng, population: int = 24, generations: int = 15):
    """Maximise the predictor under ``average_bits <= budget`` with the space's own mutate / crossover."""
    def fitness(arch):
        return predict(arch) if average_bits(space, arch) <= budget else -np.inf

    pool = []
    while len(pool) < population:
        arch = random_configuration(space, base_arch, rng, cap=int(rng.integers(min(space.bits), int(budget) + 2)))
        pool.append((fitness(arch), arch))
    for _ in range(generations):
        pool.sort(key=lambda item: item[0], reverse=True)
        parents = [a for _, a in pool[:population // 4]]
        children = []
        while len(children) < population - len(parents):
            a, b = (parents[i] for i in rng.choice(len(parents), 2))
            child = with_base(space, space.mutate(space.crossover(a, b, rng), rng), base_arch)
            children.append((fitness(child), child))
        pool = pool[:len(parents)] + children
    return max(pool, key=lambda item: item[0])


def run_seed(args, seed: int) -> dict:
    import torch
    from scipy.stats import kendalltau
    from sklearn.neural_network import MLPRegressor

    from nastk.oneshot.eqnet import uniform_path
    from nastk.registry import get_space

    torch.set_num_threads(1)
    work = Path(args.work)
    result_path = work / f"seed{seed}.json"
    if result_path.is_file():
        return json.loads(result_path.read_text())
    start = time.time()
    space = get_space(SPACE)
    fp_cfg = config(args, seed, args.fp_epochs, args.fp_lr, precision="float")
    fp = trained(args, work / f"float-seed{seed}", fp_cfg)
    data = eval_data(fp_cfg, args.calibration)
    base_path = fp.largest_path()[:fp.base_count]
    base_arch = space.base.largest()
    fp.precision_override = 32
    result = {"seed": seed, "float": scores(fp, fp.largest_path(), data)}
    pretrained = str(work / f"float-seed{seed}")
    eq = trained(args, work / f"eqnet-seed{seed}", config(args, seed, args.epochs, 1e-3, pretrained=pretrained))
    result["eqnet"] = {str(b): scores(eq, uniform_path(eq, base_path, b), data) for b in STATIC_BITS}
    result["static"] = {}
    for bits in STATIC_BITS:
        st = trained(args, work / f"static{bits}-seed{seed}",
                     config(args, seed, args.epochs, 1e-3, pretrained=pretrained, precision="static", static_bits=bits))
        result["static"][str(bits)] = scores(st, uniform_path(st, base_path, bits), data)
    # predictor: held-out accuracy of random configurations (selection data), Kendall tau on unseen configurations
    rng = np.random.default_rng(1000 + seed)
    archs = [random_configuration(space, base_arch, rng) for _ in range(args.predictor_train + args.predictor_test)]
    held = np.array([scores(eq, eq.path_of_arch(a), data)["held_out"] for a in archs])
    x = np.stack([features(space, a) for a in archs])
    n = args.predictor_train
    predictor = MLPRegressor(hidden_layer_sizes=(64, 64), max_iter=3000, random_state=seed).fit(x[:n], held[:n])
    tau = kendalltau(predictor.predict(x[n:]), held[n:])
    result["predictor"] = {"kendall_tau": float(tau.statistic), "p": float(tau.pvalue), "train": n,
                           "test": args.predictor_test, "held_out_range": [float(held.min()), float(held.max())]}

    def predict(arch):
        return float(predictor.predict(features(space, arch)[None])[0])

    result["search"] = []
    for budget in args.budgets:
        _, found = genetic_search(space, base_arch, predict, budget, np.random.default_rng(seed))
        uniform = space.uniform(base_arch, int(budget))
        row = {"budget": budget}
        for name, arch in (("searched", found), ("uniform", uniform)):
            cost = space.cost(arch)
            row[name] = {"arch": space.to_str(arch), "avg_bits": (cost["avg_wbits"] + cost["avg_abits"]) / 2,
                         "bitops_m": cost["bitops_m"], "model_size_kb": cost["model_size_kb"],
                         **scores(eq, eq.path_of_arch(arch), data)}
        result["search"].append(row)
    result["wall_s"] = round(time.time() - start, 1)
    result_path.parent.mkdir(parents=True, exist_ok=True)
    result_path.write_text(json.dumps(result, indent=1))
    return result


def paired(a, b):
    from scipy.stats import ttest_rel

    a, b = np.array(a), np.array(b)
    p = float(ttest_rel(a, b).pvalue) if len(a) > 1 and np.any(a != b) else float("nan")
    return float((a - b).mean()), [float(v) for v in a - b], p


def write_report(args, results, wall: float) -> None:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ms = lambda v: f"{np.mean(v):.2f} ± {np.std(v, ddof=1) if len(v) > 1 else 0:.2f}"  # noqa: E731
    lines = ["# EQ-Net: elastic quantization supernet vs static LSQ QAT (tiny MBConv, CIFAR-10 subset)", "",
             f"Command: `NASTK_DATA=../shared/benchmarks .venv/bin/python scripts/reproduce_eqnet.py "
             f"...` (flags below); machine: {platform.machine()}, {os.cpu_count()} cores shared with other jobs, "
             f"one thread per run, CPU; wall {wall / 60:.1f} min; seeds {args.seeds}.", "",
             f"Setting: space `{SPACE}` on the tiny MBConv space's largest child (30 conv / linear layers, 28 free "
             f"units with weight and activation bits in 2..8, first / last 8 / 8), {args.train_size} training images "
             f"average-pooled to {args.image_size}x{args.image_size} ({args.held_out:.0%} held out for selection), "
             f"1,000 test images; float pretraining {args.fp_epochs} epochs (Adam {args.fp_lr}), then EQ-Net and "
             f"each static QAT run {args.epochs} epochs from it (Adam 1e-3, cosine, batch {args.batch_size}); every "
             f"configuration scored after adaptive BN ({args.calibration[0]} x {args.calibration[1]} training images). "
             "Accuracies in %, test split unless named. Command line of this run: "
             f"`--jobs {args.jobs} --train-size {args.train_size} --fp-epochs {args.fp_epochs} --epochs {args.epochs} "
             f"--predictor-train {args.predictor_train} --predictor-test {args.predictor_test} --budgets "
             f"{' '.join(f'{b:g}' for b in args.budgets)} --calibration {args.calibration[0]} {args.calibration[1]}`.", "",
             "| | float | 8 / 8 | 4 / 4 | 2 / 2 |", "|---|---|---|---|---|"]
    fp = [r["float"]["test"] for r in results]
    lines.append(f"| float network | {ms(fp)} | | | |")
    lines.append("| EQ-Net child (one supernet) | | " + " | ".join(ms([r["eqnet"][str(b)]["test"] for r in results])
                                                          for b in STATIC_BITS) + " |")
    lines.append("| static LSQ QAT (one run each) | | " + " | ".join(ms([r["static"][str(b)]["test"] for r in results])
                                                            for b in STATIC_BITS) + " |")
    lines += ["", "Mean ± sample std over seeds. Paired differences (same seed), two-sided paired t-test:", ""]
    for b in STATIC_BITS:
        mean, per, p = paired([r["eqnet"][str(b)]["test"] for r in results], [r["static"][str(b)]["test"] for r in results])
        lines.append(f"- EQ-Net - static at {b} bits: {mean:+.2f} (per seed {', '.join(f'{v:+.1f}' for v in per)}; p = {p:.3f})")
    mean, per, p = paired([r["static"]["8"]["test"] for r in results], fp)
    lines.append(f"- static 8-bit QAT - float: {mean:+.2f} (per seed {', '.join(f'{v:+.1f}' for v in per)}; p = {p:.3f})")
    taus = [r["predictor"]["kendall_tau"] for r in results]
    lines += ["", f"Predictor (one-hot bits -> MLP 64-64, fitted on {args.predictor_train} random configurations' "
              f"held-out accuracies): Kendall tau on {args.predictor_test} unseen configurations "
              f"{ms(taus)} (per seed {', '.join(f'{t:.3f}' for t in taus)}).", "",
              "Genetic search under an average-bit budget vs the uniform configuration of that many bits (test "
              "accuracy after adaptive BN; BitOps in millions):", "",
              "| budget | searched avg bits | searched acc | searched BitOps | uniform acc | uniform BitOps | searched - uniform |",
              "|---|---|---|---|---|---|---|"]
    for i, budget in enumerate(args.budgets):
        rows = [r["search"][i] for r in results]
        s = [row["searched"]["test"] for row in rows]
        u = [row["uniform"]["test"] for row in rows]
        mean, per, p = paired(s, u)
        lines.append(f"| {budget:g} | {np.mean([row['searched']['avg_bits'] for row in rows]):.2f} | {ms(s)} | "
                     f"{np.mean([row['searched']['bitops_m'] for row in rows]):.1f} | {ms(u)} | "
                     f"{np.mean([row['uniform']['bitops_m'] for row in rows]):.1f} | {mean:+.2f} (p = {p:.3f}) |")
    lines += ["", "## What this reduced setting can and cannot show", "",
              "It runs the whole method (float pretraining, calibration, WDR, the GPG chain with random forms, "
              "adaptive BN, a CQAP-style predictor and a constrained genetic search) on a network and data small "
              "enough for a shared 2-core CPU, with paired seeds. With a few epochs on "
              f"{args.train_size:,} low-resolution images "
              "the float network is far from converged, so the numbers compare methods at equal (small) compute; "
              "they cannot show ImageNet-scale accuracies, the behaviour after EQ-Net's 120 epochs, or whether the "
              "gaps persist at convergence. Static runs get the same epochs as the supernet (equal compute per "
              "configuration); at equal total compute they would train 3x longer. The predictor sees only "
              f"{args.predictor_train} configurations and the held-out split is small, so tau is noisy; the search "
              "uses the predictor fitted on held-out training images and is reported on the test split."]
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
