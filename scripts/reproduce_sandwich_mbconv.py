"""Uniform single path vs the sandwich rule vs sandwich + in-place distillation on the tiny elastic MBConv
space (methods.md 12.3), at equal compute counted in child forward-backward passes.

Reduced setting (default, CPU): the tiny MBConv space (`--space mobilenet`), the shared CIFAR-10 subset
(5,000 training images, of which the last 1,000 in nastk's class-mixed order are held out from weight
training, and the 1,000 test images), BigNAS' recipe (SGD-Nesterov 0.9, lr 0.1 cosine, wd 5e-5 without
BN/bias, label smoothing 0.1, gradient clipping by value 1.0, batch 128, crop + flip) and BatchNorm
momentum 0 while training (BigNAS rule 6). Methods, all through the one ``sandwich`` step:

* ``uniform``: one random child per batch, labels (SPOS-style uniform single path), 4x the epochs;
* ``uniform_equal_steps``: the same at the sandwich's epochs (equal optimizer steps, a quarter of the compute);
* ``sandwich``: largest, 2 random, smallest per batch, all on labels;
* ``sandwich_kd``: the same children, the smaller three on the largest's soft output (in-place KD).

Every child is evaluated after per-child BN recalibration (cumulative statistics over 10 x 200
training images): largest, smallest and 20 fixed random children on the test split (reported), and on
the held-out training images (the supernet's score, what a search would select on). Kendall tau of
those held-out scores against 10 of the same children trained stand alone (the same recipe and loop,
a fresh supernet restricted to the child), tested on the test split. The negative control evaluates
the largest child and the 20 children without recalibration (BN momentum 0: chance expected).

    NASTK_DATA=../shared/benchmarks nice -n 10 .venv/bin/python scripts/reproduce_sandwich_mbconv.py --jobs 2 > sandwich.log 2>&1
    ... --epochs 30 --standalone-epochs 60 --device cuda      # a longer run; --dataset PATH.npz for full CIFAR-10

Resumable: a finished run (``<work>/<method>-seed<S>/result.json``) is skipped, an unfinished one
continues from its last checkpoint; the report is rewritten at the end.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

METHODS = {
    "uniform": {"random_children": 1, "include_extremes": False, "inplace_distillation": False},
    "uniform_equal_steps": {"random_children": 1, "include_extremes": False, "inplace_distillation": False},
    "sandwich": {"random_children": 2, "include_extremes": True, "inplace_distillation": False},
    "sandwich_kd": {"random_children": 2, "include_extremes": True, "inplace_distillation": True},
}
CHILDREN_PER_STEP = {name: o["random_children"] + (2 if o["include_extremes"] else 0) for name, o in METHODS.items()}
#: uniform_equal_steps: uniform single path at the sandwich's number of optimizer steps (a quarter of its compute),
#: the comparison methods.md 12.3's acceptance (ii) names; every other method gets equal child passes
EQUAL_STEPS = {"uniform_equal_steps"}
CHILD_SEED = 1234  # the fixed list of random children (the same for every method and seed)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--epochs", type=int, default=8, help="epochs of the 4-child methods; uniform trains 4x as many")
    parser.add_argument("--train-size", type=int, default=5000)
    parser.add_argument("--held-out", type=float, default=0.2, help="share of the training images held out (default 0.2)")
    parser.add_argument("--children", type=int, default=20, help="fixed random children evaluated (default 20)")
    parser.add_argument("--standalone", type=int, default=10, help="of those, children trained stand alone (default 10)")
    parser.add_argument("--standalone-epochs", type=int, default=15)
    parser.add_argument("--calibration", type=int, nargs=2, default=[10, 200], metavar=("BATCHES", "SIZE"))
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel processes, one thread each")
    parser.add_argument("--work", default="runs/sandwich_mbconv")
    parser.add_argument("--out", default="docs/results/sandwich_mbconv")
    return parser.parse_args()


def base_options(args, seed: int) -> dict:
    return {"space": "mobilenet", "dataset": args.dataset, "train_size": args.train_size,
            "held_out_fraction": args.held_out, "supernet": {"bn_momentum": 0.0}, "valid_size": 0, "seed": seed}


def config_for(args, method: str, seed: int):
    from nastk.oneshot.trainer import OneShotConfig

    epochs = args.epochs if method in EQUAL_STEPS else args.epochs * CHILDREN_PER_STEP["sandwich"] // CHILDREN_PER_STEP[method]
    return OneShotConfig.for_step("sandwich", step_options=METHODS[method], epochs=epochs, **base_options(args, seed))


def fixed_children(space, count: int):
    from nastk.oneshot.ranking import sample_architectures

    return sample_architectures(space, count, CHILD_SEED)


def evaluate(supernet, archs, data, calibration, device) -> dict:
    """Test accuracy of each child without recalibration (first: the running statistics as trained), then
    test and held-out accuracy after per-child recalibration."""
    no_recalibration = negative_control(supernet, archs, data, device)
    from nastk.oneshot.ranking import inherited_accuracies

    (x_test, y_test), (x_held, y_held) = data
    common = dict(device=device, batch_size=500)
    return {"test": inherited_accuracies(supernet, archs, x_test, y_test, calibration=calibration, **common).tolist(),
            "held_out": inherited_accuracies(supernet, archs, x_held, y_held, calibration=calibration, **common).tolist(),
            **no_recalibration}


def negative_control(supernet, archs, data, device) -> dict:
    """Test accuracy with the running statistics as trained (BN momentum 0: never updated). Must run on a
    freshly loaded supernet: a recalibration leaves its child's statistics behind."""
    from nastk.oneshot.ranking import inherited_accuracies

    (x_test, y_test), _ = data
    return {"test_no_recalibration": inherited_accuracies(supernet, archs, x_test, y_test, device=device,
                                                          batch_size=500).tolist(), "negative_control_fresh": True}


def eval_data(config):
    from nastk.oneshot.splits import split_images
    from nastk.datasets import downsample, load_dataset, mixed

    data = downsample(load_dataset(config.dataset), config.image_size)
    (x_train, _), held = split_images(config, data)
    return data, x_train, (mixed(data.x_test, data.y_test), held)


def run_supernet(args, method: str, seed: int) -> dict:
    import torch

    from nastk.oneshot.trainer import load_trained, train

    torch.set_num_threads(1)
    folder = Path(args.work) / f"{method}-seed{seed}"
    result_path = folder / "result.json"
    if result_path.is_file():
        result = json.loads(result_path.read_text())
        if not result.get("negative_control_fresh"):  # an earlier version measured it after recalibrating
            supernet, config, _ = load_trained(folder, args.device)
            archs = [supernet.space.from_str(a) for a in result["archs"]]
            result.update(negative_control(supernet, archs, eval_data(config)[2], args.device))
            result_path.write_text(json.dumps(result, indent=1))
        return result
    config = config_for(args, method, seed)
    summary = train(config, folder, resume=(folder / "config.json").is_file(), device=args.device, progress=False)
    supernet, config, _ = load_trained(folder, args.device)
    space = supernet.space
    _, x_train, data = eval_data(config)
    batches, size = args.calibration
    calibration = list(x_train[:batches * size].split(size))
    archs = [space.largest(), space.smallest()] + fixed_children(space, args.children)
    scores = evaluate(supernet, archs, data, calibration, args.device)
    steps = summary and json.loads((folder / "metrics.jsonl").read_text().splitlines()[-1])
    history = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    result = {"method": method, "seed": seed, "epochs": config.epochs, "config": config.to_dict(),
              "child_passes": CHILDREN_PER_STEP[method] * sum(record["steps"] for record in history),
              "train_s": round(sum(record["epoch_s"] for record in history), 1), "final_train_loss": steps["train_loss"],
              "archs": [a.to_str() for a in archs], **scores}
    result_path.write_text(json.dumps(result, indent=1))
    return result


def run_standalone(args, arch_str: str) -> dict:
    """One child trained alone: a fresh supernet restricted to the child, the same step, recipe and data."""
    import torch

    from nastk.oneshot.trainer import OneShotConfig, OneShotTrainer
    from nastk.space import get_space
    from nastk.standalone_training import accuracy

    torch.set_num_threads(1)
    folder = Path(args.work) / "standalone" / hashlib.sha1(arch_str.encode()).hexdigest()[:12]
    result_path = folder / "result.json"
    if result_path.is_file():
        return json.loads(result_path.read_text())
    space = get_space("mobilenet")
    arch = space.from_str(arch_str)
    options = {**base_options(args, 0), "supernet": {}}  # BN momentum 0.1: the child's own running statistics
    config = OneShotConfig.for_step("sandwich", step_options=METHODS["uniform"], epochs=args.standalone_epochs, **options)
    torch.manual_seed(0)
    supernet = space.supernet(10)
    choices = supernet.path_of_arch(arch)
    supernet.allowed[:] = False
    for decision, option in enumerate(choices):
        supernet.allowed[decision, option] = True
    folder.mkdir(parents=True, exist_ok=True)
    trainer = OneShotTrainer(config, folder, device=args.device, progress=False, supernet=supernet)
    trainer.load_checkpoint()
    trainer.fit()
    _, _, ((x_test, y_test), _) = eval_data(config)
    child = trainer.supernet.extract(arch)
    result = {"arch": arch_str, "test": accuracy(child, x_test, y_test, device=args.device),
              "epochs": config.epochs, "cost": space.cost(arch)}
    result_path.write_text(json.dumps(result, indent=1))
    return result


def main() -> None:
    args = parse_args()
    from nastk.space import get_space

    space = get_space("mobilenet")
    children = [a.to_str() for a in fixed_children(space, args.children)][:args.standalone]
    jobs = [("supernet", m, s) for s in args.seeds for m in args.methods] + [("standalone", a, None) for a in children]
    started = time.perf_counter()
    results, standalone = [], []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [(kind, pool.submit(run_supernet, args, a, b) if kind == "supernet" else pool.submit(run_standalone, args, a))
                   for kind, a, b in jobs]
        for kind, future in futures:
            out = future.result()
            (results if kind == "supernet" else standalone).append(out)
            print(f"done {kind} {out.get('method', out.get('arch'))} {out.get('seed', '')} "
                  f"at {time.perf_counter() - started:.0f} s", flush=True)
    write_report(args, results, standalone, time.perf_counter() - started)


def write_report(args, results, standalone, wall_s: float) -> None:
    from scipy import stats

    from nastk.metrics import kendall_tau

    truth = {r["arch"]: r["test"] for r in standalone}
    rows = []
    for r in results:
        history = Path(args.work, f"{r['method']}-seed{r['seed']}", "metrics.jsonl").read_text().splitlines()
        r["train_s"] = round(sum(json.loads(line)["epoch_s"] for line in history), 1)  # all sessions of the run
        children_test = r["test"][2:]
        held = {a: s for a, s in zip(r["archs"][2:], r["held_out"][2:])}
        common = [a for a in truth if a in held]
        rows.append({"method": r["method"], "seed": r["seed"], "largest": r["test"][0], "smallest": r["test"][1],
                     "mean": float(np.mean(children_test)), "sd": float(np.std(children_test)),
                     "kendall": kendall_tau([held[a] for a in common], [truth[a] for a in common]) if len(common) > 1 else None,
                     "largest_no_recal": r["test_no_recalibration"][0],
                     "mean_no_recal": float(np.mean(r["test_no_recalibration"][2:])),
                     "child_passes": r["child_passes"], "train_s": r["train_s"], "epochs": r["epochs"]})
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]

    def agg(method, key):
        values = [r[key] for r in rows if r["method"] == method and r[key] is not None]
        return (float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0, len(values))

    lines = ["# Uniform single path vs sandwich vs sandwich + in-place distillation (tiny MBConv, CIFAR-10 subset)", "",
             f"Command: `NASTK_DATA=../shared/benchmarks .venv/bin/python scripts/reproduce_sandwich_mbconv.py --jobs {args.jobs}"
             f"{'' if args.epochs == 8 else f' --epochs {args.epochs}'}{'' if args.standalone_epochs == 15 else f' --standalone-epochs {args.standalone_epochs}'}`; machine: {platform.processor() or platform.machine()}, "
             f"{os.cpu_count()} cores, one thread per run, wall {wall_s / 60:.0f} min; seeds {args.seeds}.", "",
             f"Setting: space `mobilenet` (methods.md 12.3), {args.train_size} training images of which {args.held_out:.0%} "
             f"held out, 1,000 test images, BigNAS recipe, BN momentum 0 while training; {args.epochs} epochs for the "
             f"4-child methods and uniform_equal_steps, {args.epochs * 4} for uniform (child forward-backward passes: "
             + ", ".join(f"{m} {rows[[r['method'] for r in rows].index(m)]['child_passes']}" for m in methods) + "). "
             f"Every child recalibrated (cumulative BN statistics, {args.calibration[0]} x {args.calibration[1]} training "
             f"images) before it is scored. Test accuracy is reported only; Kendall tau uses the supernet's held-out "
             f"(training-image) scores of {len(truth)} fixed random children against the same children trained stand "
             f"alone for {args.standalone_epochs} epochs (test split).", "",
             "| method | largest | smallest | mean of 20 children | Kendall tau (10 stand-alone) | largest, no recalibration | mean, no recalibration |",
             "|---|---|---|---|---|---|---|"]
    for m in methods:
        cells = []
        for key in ("largest", "smallest", "mean", "kendall", "largest_no_recal", "mean_no_recal"):
            mean, sd, n = agg(m, key)
            cells.append(f"{mean:.3f} ± {sd:.3f}" if key == "kendall" else f"{mean:.2f} ± {sd:.2f}")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += ["", "Mean ± sample std over seeds. Paired differences (same seed), two-sided paired t-test:", ""]
    for a, b in (("sandwich", "uniform"), ("sandwich_kd", "uniform"), ("sandwich_kd", "sandwich"),
                 ("sandwich", "uniform_equal_steps")):
        if a in methods and b in methods:
            for key in ("largest", "smallest", "mean", "kendall"):
                pairs = [(x[key], y[key]) for x in rows for y in rows if x["method"] == a and y["method"] == b
                         and x["seed"] == y["seed"] and x[key] is not None and y[key] is not None]
                if len(pairs) >= 2:
                    diff = np.array([p[0] - p[1] for p in pairs])
                    p = stats.ttest_rel([p[0] for p in pairs], [p[1] for p in pairs]).pvalue
                    lines.append(f"- {a} - {b}, {key}: {diff.mean():+.3f} (per seed {', '.join(f'{d:+.2f}' for d in diff)}; p = {p:.3f})")
    standalone_acc = [r["test"] for r in standalone]
    if standalone_acc:
        lines += ["", f"Stand-alone children: test accuracy {min(standalone_acc):.2f}-{max(standalone_acc):.2f} "
                      f"(mean {np.mean(standalone_acc):.2f})."]
    lines += ["", "Per run:", "", "| method | seed | epochs | child passes | train s | largest | smallest | mean | Kendall |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (methods.index(r["method"]), r["seed"])):
        kendall = "n/a" if r["kendall"] is None else f"{r['kendall']:.3f}"
        lines.append(f"| {r['method']} | {r['seed']} | {r['epochs']} | {r['child_passes']} | {r['train_s']:.0f} | "
                     f"{r['largest']:.2f} | {r['smallest']:.2f} | {r['mean']:.2f} | {kendall} |")
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    Path(args.out + ".json").write_text(json.dumps({"rows": rows, "standalone": standalone, "args": vars(args)}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
