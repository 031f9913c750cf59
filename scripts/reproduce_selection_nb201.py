"""DARTS-PT and GM-NAS against their one-shot and few-shot counterparts on NB201 (methods.md 0.5, 3.5, 4.5).

One seed's runs, each in its own folder under ``--work`` (default runs/selection_nb201/seed<S>):

* ``darts``       bilevel DARTS (1st order) -> argmax                       (issue 7's baseline)
* ``darts/pt``    DARTS-PT on that supernet (tuning ``--pt-interval`` epochs per decision)
* ``blank``       DARTS with alpha fixed (uniform mixture) -> DARTS-PT fix-alpha
* ``rsps``        random single path (SPOS), best of 200 random architectures on the held-out half
* ``fs-rsps`` / ``fs-darts``  exhaustive few-shot: one 5-way split of edge 1<-0 at the split epoch,
  children inherit and continue (Few-shot NAS)
* ``gm-rsps`` / ``gm-darts``  GM-NAS: two gradient-matching splits (4 sub-supernets), restart after the last

Reduced setting (default): supernet C=8, N=1, images average-pooled to 16x16, the shared 5k CIFAR-10
training images split 50/50 (weights / held-out), batch 64, SGD lr 0.025 cosine to 0.001, momentum
0.9, wd 3e-4, clip 5, alpha Adam 3e-4; 20 epochs per lineage for every method (one-shot: 20; few-shot:
10 + 10 after the split; GM: splits after 5 and 10, 10 from scratch after the last), R=10 matching
batches. ``--full`` is the papers' setting (C=16, N=5, 32x32, all images of --dataset, DARTS 50 / PT
tuning 5 per decision / GM splits 15,30 + 30, R=100).

Every run is resumable (rerun the same command); results go to <work>/result.json. The fixed 100-
architecture sample (seed 0) is ranked by every (sub-)supernet: Kendall tau with NB201's 200-epoch
CIFAR-10 test accuracy. ``scripts/report_selection_nb201.py`` writes the table.

    NASTK_DATA=../shared/benchmarks nice -n 5 .venv/bin/python scripts/reproduce_selection_nb201.py --seed 0
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from nastk.benchmarks.registry import benchmark_for
from nastk.metrics import kendall_tau
from nastk.datasets import load_dataset
from nastk.oneshot.split_tree import SplitTree, node_dir
from nastk.oneshot.perturbation import select_pt
from nastk.oneshot.selection import parameter_free_share, select
from nastk.oneshot.fewshot import FewShotRun, SplitSchedule, best_of_leaf
from nastk.oneshot.trainer import CHECKPOINT, OneShotConfig, OneShotTrainer, load_trained, train
from nastk.oneshot.ranking import sample_architectures
from nastk.paths import atomic_write
from nastk.space import get_space

REDUCED = {"C": 8, "N": 1, "image_size": 16, "train_size": 5000, "epochs": 20, "pt_interval": 1,
           "fs_split": [10], "gm_splits": [5, 10], "after": 10, "batches": 10}
FULL = {"C": 16, "N": 5, "image_size": None, "train_size": None, "epochs": 50, "pt_interval": 5,
        "fs_split": [25], "gm_splits": [15, 30], "after": 30, "batches": 100}
#: a minutes-long check of the whole pipeline (not a result)
SMOKE = {"C": 4, "N": 1, "image_size": 8, "train_size": 600, "epochs": 2, "pt_interval": 1,
         "fs_split": [1], "gm_splits": [1, 2], "after": 1, "batches": 2}
METHODS = ("darts", "darts-pt", "blank-pt", "rsps", "fs-rsps", "fs-darts", "gm-rsps", "gm-darts")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="a tiny setting that checks the pipeline in minutes")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", help="run folders (default runs/selection_nb201[_full]/seed<S>)")
    return parser.parse_args()


def base_config(setting, args, step: str, **changes) -> OneShotConfig:
    return OneShotConfig(space="nb201", dataset=args.dataset, step=step, supernet={"C": setting["C"], "N": setting["N"]},
                         image_size=setting["image_size"], train_size=setting["train_size"], held_out_fraction=0.5,
                         epochs=setting["epochs"], batch_size=64, lr=0.025, lr_min=0.001, momentum=0.9,
                         weight_decay=3e-4, grad_clip=5.0, valid_size=0, seed=args.seed, **changes)


def trained(config: OneShotConfig, folder: Path, args, data):
    """A finished one-shot run's trainer (trained here, or resumed)."""
    if not (folder / "summary.json").is_file():
        train(config, folder, resume=(folder / "config.json").is_file(), device=args.device, progress=False, data=data)
    trainer = OneShotTrainer(config, folder, args.device, data=data, progress=False)
    trainer.load_checkpoint()
    return trainer


def taus(trainers_for, sample, choices, truth):
    """Kendall tau of held-out single-path accuracies of the sample (each routed to its trainer)."""
    accs = np.array([trainers_for(c).held_out_quality(c)[0] for c in choices])
    return float(kendall_tau(accs, truth)), accs.tolist()


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    setting = FULL if args.full else SMOKE if args.smoke else REDUCED
    suffix = "_full" if args.full else "_smoke" if args.smoke else ""
    work = Path(args.work or f"runs/selection_nb201{suffix}/seed{args.seed}")
    data = load_dataset(args.dataset)
    bench = benchmark_for("nb201")
    space = get_space("nb201")
    sample = sample_architectures(space, 100, seed=0)
    truth, protocol = bench.truth(sample, "cifar10")
    result_path = work / "result.json"
    results = json.loads(result_path.read_text())["methods"] if result_path.is_file() else {}

    def record(method, arch, free, extra):
        acc, _ = bench.truth([space.from_str(arch)], "cifar10")
        results[method] = {"arch": arch, "test_acc": float(acc[0]), "parameter_free_share": free, **extra}
        with atomic_write(result_path, "w") as handle:
            json.dump({"seed": args.seed, "setting": setting, "truth": protocol, "methods": results}, handle, indent=1)
        print(f"seed {args.seed} {method}: {arch} test acc {float(acc[0]):.2f} parameter-free {100 * free:.0f}%  "
              f"({extra.get('wall_s', 0):.0f} s)", flush=True)

    for method in args.methods:
        if method in results:
            continue
        started = time.perf_counter()
        if method in ("darts", "darts-pt", "blank-pt"):
            blank = method == "blank-pt"
            folder = work / ("blank" if blank else "darts")
            config = base_config(setting, args, "darts", step_options={"fix_alpha": True} if blank else {})
            trainer = trained(config, folder, args, data)
            tau = taus(lambda c: trainer, sample, [trainer.supernet.path_of_arch(a) for a in sample], truth)
            if method == "darts":
                selection = select(trainer.supernet, "argmax")
                record(method, selection.arch.to_str(), selection.parameter_free_share,
                       {"tau": tau[0], "weights": selection.weights, "wall_s": time.perf_counter() - started})
                continue
            out = select_pt(folder, folder / "pt", resume=(folder / "pt" / "config.json").is_file(), device=args.device,
                            progress=False, data=data, interval=setting["pt_interval"])
            pass_s = _validation_pass_s(trainer)
            record(method, out["arch"], out["parameter_free_share"],
                   {"tau_supernet": tau[0], "decisions": out["decisions"], "decision_s": out["decision_s"],
                    "tuning_s": out["tuning_s"], "validation_passes": out["validation_passes"],
                    "validation_pass_s": pass_s, "wall_s": time.perf_counter() - started})
        elif method == "rsps":
            config = base_config(setting, args, "single_path")
            trainer = trained(config, work / "rsps", args, data)
            best = best_of_leaf(trainer, 200, seed=args.seed)
            tau = taus(lambda c: trainer, sample, [trainer.supernet.path_of_arch(a) for a in sample], truth)
            record(method, best["arch"], parameter_free_share(trainer.supernet, best["choices"]),
                   {"tau": tau[0], "held_out_acc": best["held_out_acc"], "wall_s": time.perf_counter() - started})
        else:
            kind, step = method.split("-")
            step = "darts" if step == "darts" else "single_path"
            config = base_config(setting, args, step)
            if kind == "fs":
                schedule = SplitSchedule("exhaustive", list(setting["fs_split"]), setting["epochs"] - setting["fs_split"][-1],
                                         restart=False, exhaustive_decisions=[0])
            else:
                schedule = SplitSchedule("gm", list(setting["gm_splits"]), setting["after"], restart=True,
                                         batches=setting["batches"])
            folder = work / method
            run = FewShotRun(config, schedule, folder, resume=(folder / "config.json").is_file(), device=args.device,
                             progress=False, data=data)
            out = run.run()
            leaves = {leaf.id: trainer for leaf, trainer in run.leaf_trainers()}
            tree = run.tree
            tau = taus(lambda c: leaves[tree.route(c).id], sample,
                       [next(iter(leaves.values())).supernet.path_of_arch(a) for a in sample], truth)
            splits = [{"node": n.id, **n.split.to_dict()} for n in tree.nodes() if not n.is_leaf]
            record(method, out["arch"], out["parameter_free_share"],
                   {"tau": tau[0], "leaf": out["leaf"], "leaves": out["leaves"], "splits": splits,
                    "wall_s": time.perf_counter() - started})


def _validation_pass_s(trainer) -> float:
    """Seconds of one held-out pass of the supernet's mixture (the unit of DARTS-PT's cost)."""
    weights = trainer.supernet.mixture_weights().detach()
    trainer.held_out_quality(weights, trainer.config.batch_size)
    started = time.perf_counter()
    for _ in range(3):
        trainer.held_out_quality(weights, trainer.config.batch_size)
    return (time.perf_counter() - started) / 3


if __name__ == "__main__":
    main()
