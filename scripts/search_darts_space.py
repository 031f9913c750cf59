"""DARTS in the DARTS cell space at toy scale (methods.md 13.4): a genotype, briefly trained beside references.

1. Search: a bilevel DARTS supernet (first order by default) on the shared CIFAR-10 subset, average-
   pooled to 16x16: C=8, 5 cells, the first 2000 images of the fixed class-mixed order split 50/50
   into weights / alpha halves, 10 epochs, batch 64, SGD lr 0.025 cosine to 0.001, momentum 0.9,
   wd 3e-4, clip 5; alpha Adam 3e-4 (0.5, 0.999), wd 1e-3. ``--weighting max_w`` mixes with
   sharpDARTS' Max-W weights instead of the softmax. Then DARTS' argmax rule gives the genotype.
2. Brief training: the found genotype, DARTS-V2 (the published second-order genotype), the best and
   the worst of the 214 benchmark genotypes (by their 600-epoch test accuracy) and one uniformly
   random genotype are each trained from scratch, identically (same seed, same images: the search's
   2000 training images, 16x16), as C=16, 5-cell networks for 10 epochs (nastk.standalone_training: SGD
   Nesterov lr 0.1 cosine, wd 5e-4, batch 64, no augmentation), then tested on the subset's 1,000
   test images (pooled the same way).
3. The 214 benchmark genotypes through the DARTS benchmark evaluator: accuracy summary, Spearman
   between accuracy and params (DARTS' C=36, 20-cell network), whether the found genotype is listed.

    NASTK_DATA=/work/shared/benchmarks nohup nice -n 5 .venv/bin/python scripts/search_darts_space.py > darts_space.log 2>&1 &
    ... --weighting max_w                      # the sharpDARTS Max-W variant
    ... --full [--dataset /path/cifar10_full.npz] [--device cuda]   # C=16, 8 cells, 32x32, all images, 50 epochs
    ... --epochs 1 --train-size 128 --train-epochs 1 --out /tmp/x --work /tmp/xw   # a smoke test

Resumable: a finished search, trained network or benchmark pass is skipped, an unfinished search
continues from its last epoch's checkpoint; the report is rewritten after every piece. Pieces go to
runs/darts_space (``--work``), named by their settings, so variants share what they have in common.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from nastk.benchmarks.registry import benchmark_for
from nastk.evaluators.benchmark import BenchmarkEvaluator
from nastk.errors import NastkError
from nastk.metrics import spearman_rho
from nastk.datasets import downsample, load_dataset, mixed
from nastk.oneshot.selection import select
from nastk.oneshot.trainer import OneShotConfig, load_trained, train
from nastk.paths import atomic_write
from nastk.space import get_space
from nastk.standalone_training import TrainingConfig, accuracy, train_model
from search_spaces.darts import PUBLISHED as PUBLISHED_GENOTYPES

#: the search (supernet) setting; ``image_size`` / ``train_size`` None: as stored / every image
REDUCED = {"C": 8, "layers": 5, "image_size": 16, "train_size": 2000, "epochs": 10, "batch_size": 64}
FULL = {"C": 16, "layers": 8, "image_size": None, "train_size": None, "epochs": 50, "batch_size": 64}
RECIPE = {"lr": 0.025, "lr_min": 0.001, "momentum": 0.9, "weight_decay": 3e-4, "grad_clip": 5.0}
#: the brief stand-alone training of every genotype (its images: the search's training images)
TRAIN_REDUCED = {"C": 16, "layers": 5, "epochs": 10, "batch_size": 64}
TRAIN_FULL = {"C": 16, "layers": 8, "epochs": 50, "batch_size": 64}
#: nastk.standalone_training's recipe (SGD with Nesterov momentum, cosine per step), lr and wd at its defaults
TRAIN_RECIPE = {"lr": TrainingConfig.lr, "momentum": TrainingConfig.momentum, "weight_decay": TrainingConfig.weight_decay}
#: DARTS' CIFAR-10 evaluation network, the one the benchmark's genotypes were trained as (params, FLOPs)
EVAL_NETWORK = {"num_classes": 10, "input_size": 32, "C": 36, "layers": 20}
DARTS_V2 = PUBLISHED_GENOTYPES["DARTS_V2"]
PARAMETER_FREE = ("max_pool_3x3", "avg_pool_3x3", "skip_connect")
#: Liu et al. 2019, Table 1: CIFAR-10 test error after 600 epochs (C=36, 20 cells, cutout, auxiliary head), params
PUBLISHED = {"DARTS (2nd order, DARTS-V2)": "2.76 ± 0.09 % error, 3.3 M params", "DARTS (1st order)": "3.00 ± 0.14 % error, 3.3 M params"}
#: why the defaults are what they are (measured on the 2-core development machine, another experiment on the other core)
DEFAULTS_NOTE = (
    "Defaults were sized to finish in about half an hour on one core: one supernet step (alpha + weights, batch 64) "
    "took about 5.5 s when measured beforehand, so 10 epochs of 16 steps are about 15 min; one training step of a stand-alone C=16 network at "
    "16x16 took 0.5-1.5 s with 8 cells and 0.5-0.8 s with 5 cells, depending on the genotype, so 8 cells would have "
    "allowed only about 5 epochs on 2000 images in ~5 min; 5 cells (3 normal, 2 reduction) and 10 epochs on the "
    "search's 2000 images take 2.5-5 min each. methods.md 13.4 plans 5k images for the search and a 3-cell retrain; "
    "2000 images keep the search at a third of that cost, and 3 cells would hold a single normal cell.")


def _size(text: str) -> Optional[int]:
    """An image / subset size; 0 or 'all' means as stored / every image."""
    if text.lower() in ("0", "all", "none"):
        return None
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (or 0 / all), got {text}")
    return value


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="C=16, 8 cells, 32x32, every training image, 50 epochs")
    parser.add_argument("--order", type=int, choices=[1, 2], default=1)
    parser.add_argument("--weighting", choices=["softmax", "max_w"], default="softmax",
                        help="mixture weights of the search: DARTS' softmax or sharpDARTS' Max-W")
    for name in ("C", "layers", "epochs", "batch_size"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, help="search supernet / schedule")
    parser.add_argument("--image-size", type=_size, default=argparse.SUPPRESS, help="average-pool to N x N (0: as stored)")
    parser.add_argument("--train-size", type=_size, default=argparse.SUPPRESS,
                        help="search images, split 50/50 weights / alpha (0: all); the brief training uses the same images")
    parser.add_argument("--train-C", type=int, help="brief training network width")
    parser.add_argument("--train-layers", type=int, help="brief training network cells")
    parser.add_argument("--train-epochs", type=int)
    parser.add_argument("--train-batch-size", type=int)
    parser.add_argument("--seed", type=int, default=0, help="search, training and the random genotype")
    parser.add_argument("--dataset", default="cifar10", help="cifar10 (the shared subset) or an .npz in its layout")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", help="run folders (default runs/darts_space)")
    parser.add_argument("--out", help="report prefix (default docs/results/darts_space_search[_max_w][_full])")
    args = parser.parse_args()
    setting, training = dict(FULL if args.full else REDUCED), dict(TRAIN_FULL if args.full else TRAIN_REDUCED)
    for name in setting:
        if name in ("image_size", "train_size"):
            if hasattr(args, name):
                setting[name] = getattr(args, name)
        elif getattr(args, name) is not None:
            setting[name] = getattr(args, name)
    for name in training:
        if getattr(args, f"train_{name}") is not None:
            training[name] = getattr(args, f"train_{name}")
    for name in ("C", "epochs", "batch_size"):
        if setting[name] < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
        if training[name] < 1:
            parser.error(f"--train-{name.replace('_', '-')} must be at least 1")
    if setting["layers"] < 3 or training["layers"] < 3:
        parser.error("a DARTS network needs at least 3 cells (--layers, --train-layers)")
    if setting["train_size"] is not None and setting["train_size"] < 2:
        parser.error("--train-size must be at least 2 (half of it trains the weights, half alpha)")
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    return args, setting, training


# --- 1. the search ---------------------------------------------------------------------------------------
def search_config(setting, args) -> OneShotConfig:
    return OneShotConfig(space="darts", dataset=args.dataset, step="darts",
                         step_options={"order": args.order, "weighting": args.weighting},
                         supernet={"C": setting["C"], "layers": setting["layers"]}, image_size=setting["image_size"],
                         epochs=setting["epochs"], batch_size=setting["batch_size"], train_size=setting["train_size"],
                         seed=args.seed, **RECIPE)


def search_folder(work: Path, setting, args) -> Path:
    return work / (f"search_{args.weighting}_o{args.order}_C{setting['C']}_L{setting['layers']}"
                   f"_px{setting['image_size'] or 'all'}_n{setting['train_size'] or 'all'}_e{setting['epochs']}"
                   f"_b{setting['batch_size']}_{_dataset_tag(args.dataset)}_seed{args.seed}")


def run_search(setting, args, folder: Path) -> Dict[str, Any]:
    result_path = folder / "result.json"
    if result_path.is_file():
        print(f"search: done before ({folder})", flush=True)
        return json.loads(result_path.read_text())
    started = time.perf_counter()
    epochs = setting["epochs"]

    def progress(trainer, record):
        done = record["epoch"] + 1
        left = (epochs - done) * record["epoch_s"]
        print(f"search epoch {done}/{epochs}  loss {record['train_loss']:.4f}  train acc {record['train_acc']:.1f}  "
              f"supernet valid acc {_or_nan(record.get('test_acc')):.1f}  alpha entropy {record['alpha_entropy']:.4f}  "
              f"{record['epoch_s']:.0f} s (about {left / 60:.0f} min left)", flush=True)

    resume = (folder / "config.json").is_file()  # a folder killed in its first epoch has a config, no checkpoint
    print(f"search: {'resuming' if resume else 'starting'} {folder}", flush=True)
    summary = train(search_config(setting, args), folder, resume=resume, device=args.device, progress=False,
                    callbacks=[progress])
    supernet, _, _ = load_trained(folder, args.device)
    selection = select(supernet, "argmax")
    space = get_space("darts")
    history = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    result = {"arch": selection.arch.to_str(), "genotype": space.genotype_str(selection.arch),
              "parameter_free_share": selection.parameter_free_share, "weights": selection.weights,
              "alpha_entropy": history[-1]["alpha_entropy"], "arch_by_epoch": [r["arch"] for r in history],
              "final_train_acc": summary["final_train_acc"], "final_test_acc": summary["final_test_acc"],
              "weight_images": summary["train_size"], "train_wall_s": summary["train_wall_s"],
              "epoch_s": [r["epoch_s"] for r in history], "wall_s": round(time.perf_counter() - started, 1)}
    with atomic_write(result_path, "w") as handle:
        json.dump(result, handle, indent=1)
    return result


# --- 2. brief stand-alone training ----------------------------------------------------------------------
class TrainingData:
    """The search's training images and the subset's test images, pooled to the search's size (loaded once)."""

    def __init__(self, setting, args):
        data = downsample(load_dataset(args.dataset), setting["image_size"])
        self.x, self.y = mixed(data.x_train, data.y_train, setting["train_size"])
        self.x_test, self.y_test = data.x_test, data.y_test
        self.num_classes, self.input_size = data.num_classes, data.input_size


def train_folder(work: Path, setting, training, args) -> Path:
    return work / (f"train_C{training['C']}_L{training['layers']}_e{training['epochs']}_b{training['batch_size']}"
                   f"_px{setting['image_size'] or 'all'}_n{setting['train_size'] or 'all'}_{_dataset_tag(args.dataset)}"
                   f"_seed{args.seed}")


def train_result_path(folder: Path, arch_str: str) -> Path:
    return folder / f"{hashlib.sha1(arch_str.encode()).hexdigest()[:16]}.json"


def train_genotype(label: str, arch_str: str, folder: Path, setting, training, args, data_cache: List) -> Dict[str, Any]:
    """Train ``arch_str`` from scratch (seed ``args.seed``) and test it; the result is kept per genotype.
    ``data_cache`` holds the :class:`TrainingData` once loaded (only when something is trained)."""
    path = train_result_path(folder, arch_str)
    if path.is_file():
        result = json.loads(path.read_text())
        if result["arch"] == arch_str:
            return {**result, "label": label}
    if not data_cache:
        data_cache.append(TrainingData(setting, args))
    data = data_cache[0]
    space = get_space("darts")
    arch = space.from_str(arch_str)
    config = TrainingConfig(epochs=training["epochs"], batch_size=training["batch_size"], **TRAIN_RECIPE)
    started = time.perf_counter()
    torch.manual_seed(args.seed)  # the same initialisation stream and (train_model's seed) batch order for all
    model = space.build(arch, data.num_classes, C=training["C"], layers=training["layers"])
    loss = train_model(model, data.x, data.y, config, device=args.device, seed=args.seed)
    test_acc = accuracy(model, data.x_test, data.y_test, args.device)
    train_acc = accuracy(model, data.x, data.y, args.device)
    result = {"arch": arch_str, "test_acc": test_acc, "train_acc": train_acc, "final_train_loss": loss,
              "test_images": len(data.x_test), "train_images": len(data.x),
              "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
              "wall_s": round(time.perf_counter() - started, 1)}
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "w") as handle:
        json.dump(result, handle, indent=1)
    return {**result, "label": label}


# --- 3. the 214 benchmark genotypes ----------------------------------------------------------------------
def benchmark_path(work: Path) -> Path:
    return work / "benchmark214.json"


def benchmark_pass(work: Path) -> Dict[str, Any]:
    """Every genotype of the DARTS table through the benchmark's evaluator, with its params and FLOPs."""
    path = benchmark_path(work)
    if path.is_file():
        return json.loads(path.read_text())
    started = time.perf_counter()
    benchmark = benchmark_for("darts")
    evaluator = BenchmarkEvaluator(benchmark, "cifar10", "test600")
    space = get_space("darts")
    rows = []
    for index, arch in enumerate(benchmark.table.archs()):
        result = evaluator.evaluate(arch)
        cost = space.cost(arch, **EVAL_NETWORK)
        rows.append({"index": index, "arch": arch.to_str(), "test_acc": result.metrics["test_accuracy"],
                     "accuracy": result.metrics["accuracy"], "params_m": cost["params_m"], "flops_m": cost["flops_m"],
                     "parameter_free_share": _parameter_free(space, arch)})
    out = {"evaluator": evaluator.describe(), "rows": rows, "wall_s": round(time.perf_counter() - started, 1)}
    work.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "w") as handle:
        json.dump(out, handle, indent=1)
    return out


def benchmark_summary(bench: Dict[str, Any]) -> Dict[str, Any]:
    rows = bench["rows"]
    acc = np.array([r["test_acc"] for r in rows])
    params = np.array([r["params_m"] for r in rows])
    flops = np.array([r["flops_m"] for r in rows])
    free = np.array([r["parameter_free_share"] for r in rows])
    best, worst = rows[int(np.argmax(acc))], rows[int(np.argmin(acc))]
    return {"count": len(rows), "protocol": bench["evaluator"]["report"], "evaluator": bench["evaluator"],
            "mean": float(acc.mean()), "std": float(acc.std(ddof=1)), "min": float(acc.min()), "max": float(acc.max()),
            "spearman_acc_params": spearman_rho(params, acc), "spearman_acc_flops": spearman_rho(flops, acc),
            "spearman_acc_parameter_free": spearman_rho(free, acc),
            "params_m_range": [float(params.min()), float(params.max())],
            "best": best, "worst": worst, "wall_s": bench["wall_s"]}


# --- helpers ---------------------------------------------------------------------------------------------
def _parameter_free(space, arch) -> float:
    """Share of the genotype's 16 ops that own no parameters (pools, skip)."""
    genotype = space.genotype(arch)
    ops = [op for op, _ in genotype.normal + genotype.reduce]
    return sum(op in PARAMETER_FREE for op in ops) / len(ops)


def _dataset_tag(dataset: str) -> str:
    return Path(dataset).stem if dataset.endswith(".npz") else dataset


def _or_nan(value) -> float:
    return float("nan") if value is None else value


def _command() -> str:
    return ("NASTK_DATA=/work/shared/benchmarks nohup nice -n 5 .venv/bin/python scripts/search_darts_space.py"
            + "".join(" " + shlex.quote(a) for a in sys.argv[1:]))


def _machine(args) -> Dict[str, Any]:
    return {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "device": args.device, "torch": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform()}


def _alpha_steps(search: Optional[Dict[str, Any]], setting) -> int:
    """Alpha updates of the search (one per weight batch)."""
    images = search["weight_images"] if search else (setting["train_size"] or 5000) // 2
    return math.ceil(images / setting["batch_size"]) * setting["epochs"]


def _compute_s(state: Dict[str, Any]) -> float:
    """Seconds of all pieces of the report, whichever invocation computed them."""
    total = state["benchmark"]["wall_s"] if state.get("benchmark") else 0.0
    total += state["search"]["train_wall_s"] if state.get("search") else 0.0
    return total + sum(r["wall_s"] for r in state.get("trained", []))


def _se(acc: float, n: int) -> float:
    """Binomial standard error (points) of an accuracy measured on n images."""
    p = acc / 100.0
    return 100.0 * math.sqrt(max(p * (1 - p), 0.0) / max(n, 1))


# --- the report ------------------------------------------------------------------------------------------
def write_report(out: Path, setting, training, args, state: Dict[str, Any]) -> None:
    search, trained, bench = state.get("search"), state.get("trained", []), state.get("benchmark")
    image = f"{setting['image_size']}x{setting['image_size']}" if setting["image_size"] else "32x32 (as stored)"
    n_images = setting["train_size"] or "all"
    order = "second" if args.order == 2 else "first"
    lines = [f"# DARTS ({order} order, {'Max-W' if args.weighting == 'max_w' else 'softmax'} mixture) in the DARTS "
             f"cell space, toy scale", "",
             f"**Search.** Supernet C={setting['C']}, {setting['layers']} cells (reductions at "
             f"{setting['layers'] // 3} and {2 * setting['layers'] // 3}), {args.dataset} images pooled to {image}, "
             f"the first {n_images} training images of the fixed class-mixed order split 50/50 (weights / alpha), "
             f"{setting['epochs']} epochs, batch {setting['batch_size']}, SGD lr 0.025 cosine to 0.001, momentum 0.9, "
             f"wd 3e-4, clip 5, crop+flip; alpha Adam 3e-4 (0.5, 0.999), wd 1e-3, "
             f"{'sharpDARTS Max-W' if args.weighting == 'max_w' else 'softmax'} mixture weights; "
             f"DARTS' argmax rule (top-2 inputs per node by strongest non-none op, from softmax(alpha)). Seed {args.seed}.",
             "",
             f"**Brief training.** Each genotype as a stand-alone network C={training['C']}, {training['layers']} cells "
             f"(no auxiliary head, no drop path), trained from scratch on the same {n_images} training images ({image}), "
             f"{training['epochs']} epochs, batch {training['batch_size']}, nastk.standalone_training's loop (SGD Nesterov "
             f"lr {TRAIN_RECIPE['lr']} cosine per step, momentum {TRAIN_RECIPE['momentum']}, wd {TRAIN_RECIPE['weight_decay']}, "
             f"no augmentation), identical seed {args.seed} (initialisation stream and batch order); test accuracy on the "
             f"subset's test images pooled the same way.",
             "",
             DEFAULTS_NOTE if not args.full else "",
             "",
             f"Command: `{_command()}`  ",
             f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
             f"{torch.get_num_threads()} torch thread(s), device {args.device}, torch {torch.__version__}. "
             f"Compute time of all pieces: {_compute_s(state) / 60:.1f} min. Invocations: "
             + "; ".join(f"{i['started']}, load average {i['load_at_start']:.1f} at its start, "
                         + (f"{i['wall_s'] / 60:.1f} min" if i.get("wall_s") is not None else "unfinished")
                         for i in state["invocations"]) + ".",
             ""]
    if search:
        changes = sum(a != b for a, b in zip(search["arch_by_epoch"], search["arch_by_epoch"][1:]))
        lines += ["## Found genotype", "",
                  f"Compact: `{search['arch']}`", "",
                  f"DARTS notation: `{search['genotype']}`", "",
                  f"Parameter-free ops (pools, skip): {100 * search['parameter_free_share']:.0f}% of 16; final alpha "
                  f"entropy {search['alpha_entropy']:.4f} (uniform over 8 ops: {math.log(8):.4f}), softmax(alpha) "
                  f"weights in [{np.min(search['weights']):.4f}, {np.max(search['weights']):.4f}] (uniform: "
                  f"{1 / np.shape(search['weights'])[1]:.4f}); the argmax genotype "
                  f"changed {changes} time(s) over {len(search['arch_by_epoch'])} epochs; supernet train acc "
                  f"{search['final_train_acc']:.1f}%, monitoring acc on 500 test images {_or_nan(search['final_test_acc']):.1f}%; "
                  f"search wall {search['train_wall_s'] / 60:.1f} min ({np.mean(search['epoch_s']):.0f} s/epoch).", ""]
        if bench:
            listed = any(r["arch"] == search["arch"] for r in bench["rows"])
            lines += [f"In the 214-genotype benchmark table: **{'yes' if listed else 'no'}**"
                      + ("" if listed else " (as expected: the table holds 214 uniformly sampled genotypes of ~1e18, "
                                           "so it has no ground truth for the found one)."), ""]
    if trained:
        n_test = trained[0]["test_images"]
        lines += [f"## Brief training ({training['epochs']} epochs, {trained[0]['train_images']} images, {n_test} test images)",
                  "",
                  "| genotype | test acc (%) | ± s.e. | train acc (%) | params (M), trained net | params (M), C=36/20 cells "
                  "| parameter-free | benchmark test600 | wall (s) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in trained:
            bench_acc = "-" if r.get("benchmark_test600") is None else f"{r['benchmark_test600']:.2f}"
            lines.append(f"| {r['label']} | {r['test_acc']:.1f} | {_se(r['test_acc'], n_test):.1f} | {r['train_acc']:.1f} | "
                         f"{r['params_m']:.3f} | {r['eval_params_m']:.2f} | {100 * r['parameter_free_share']:.0f}% | "
                         f"{bench_acc} | {r['wall_s']:.0f} |")
        unfit = [r for r in trained if r["train_acc"] < 90]
        if unfit:
            lines += ["", "Not fitted within the brief training (training-image accuracy below 90%, in eval mode): "
                      + ", ".join(f"{r['label']} ({r['train_acc']:.0f}%, final training loss {r['final_train_loss']:.2f})"
                                  for r in unfit)
                      + "; the others reach 100% (no augmentation), so the test accuracies compare networks that are "
                        "at different stages of training."]
        v2 = next((r for r in trained if r["arch"] == DARTS_V2), None)
        if v2:
            lines += ["", f"Check: DARTS-V2 as DARTS' C=36, 20-cell network has {v2['eval_params_m']:.2f} M parameters "
                          f"(published: 3.3 M)."]
        lines += ["", "Genotypes:", ""] + [f"* {r['label']}: `{r['arch']}`" for r in trained] + [""]
    if bench:
        s = benchmark_summary(bench)
        lines += ["## The 214 benchmark genotypes", "",
                  f"Evaluated through `BenchmarkEvaluator(benchmark_for(\"darts\"), \"cifar10\", \"test600\")` "
                  f"({s['evaluator']['table']}, protocol {s['protocol']}): {s['count']} genotypes, test accuracy mean "
                  f"{s['mean']:.2f} ± {s['std']:.2f} (std), min {s['min']:.2f}, max {s['max']:.2f}. Spearman of accuracy "
                  f"with params (DARTS' C=36, 20-cell network, {s['params_m_range'][0]:.2f}-{s['params_m_range'][1]:.2f} M): "
                  f"{s['spearman_acc_params']:.3f}; with FLOPs {s['spearman_acc_flops']:.3f}; with the share of "
                  f"parameter-free ops {s['spearman_acc_parameter_free']:.3f}. Best: row {s['best']['index']} "
                  f"({s['best']['test_acc']:.2f}), worst: row {s['worst']['index']} ({s['worst']['test_acc']:.2f}).", ""]
    lines += ["## What this toy scale can and cannot show", "",
              "* It can show that the pipeline runs end to end in the DARTS space (bilevel search, argmax derivation, "
              "stand-alone networks, benchmark look-ups), and which ops a small, short search drifts to (the share "
              "of parameter-free ops is DARTS' collapse symptom, methods.md 4.4).",
              "* It cannot give the found genotype's real accuracy: DARTS' numbers come from 600-epoch training of a "
              "C=36, 20-cell network on all 50k 32x32 images with cutout and an auxiliary head (published: "
              + "; ".join(f"{k} {v}" for k, v in PUBLISHED.items()) + "), and the benchmark table covers 214 random "
              "genotypes only.",
              f"* The brief-training accuracies rank genotypes after {training['epochs']} epochs of a small network on "
              f"{n_images} {image} images, one seed: the binomial standard error alone is 1-1.6 points on 1,000 test "
              "images, seeds add more, and short training rewards what fits fast, not what ends best. The "
              "benchmark's whole range (best to worst of the 214) is "
              + (f"{benchmark_summary(bench)['max'] - benchmark_summary(bench)['min']:.2f}" if bench else "about 1.4")
              + " points at 600 epochs, so whether the brief training orders best and worst as the benchmark does is "
              "close to chance and says little about the 600-epoch ordering.",
              f"* Alpha moves little at this length: {_alpha_steps(search, setting)} Adam steps of lr 3e-4 shift a "
              f"logit by at most about {_alpha_steps(search, setting) * 3e-4:.2f}, so the argmax genotype reflects the "
              "sign of alpha's early, consistent gradients, not a converged choice (DARTS searches 50 epochs on 25k "
              "images, about 19.5k alpha steps).",
              "* The search's supernet monitoring accuracy uses 500 test images (monitoring only, nothing is selected "
              "on it); the argmax genotype is derived from alpha alone.", ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    report = {"command": _command(), "machine": _machine(args), "setting": setting, "recipe": RECIPE,
              "order": args.order, "weighting": args.weighting, "seed": args.seed, "dataset": args.dataset,
              "training": {**training, **TRAIN_RECIPE, "augment": False, "loop": "nastk.standalone_training.train_model"},
              "eval_network_for_params": EVAL_NETWORK, "search": search, "trained": trained,
              "benchmark": benchmark_summary(bench) if bench else None, "published": PUBLISHED,
              "compute_s": round(_compute_s(state), 1), "invocations": state["invocations"]}
    out.with_suffix(".json").write_text(json.dumps(report, indent=1))


def earlier_invocations(out: Path, setting, training, args) -> List[Dict[str, Any]]:
    """The invocations an existing report of the same settings records (a resumed run keeps its history)."""
    try:
        report = json.loads(out.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return []
    same = (report.get("setting") == setting and report.get("order") == args.order and report.get("seed") == args.seed
            and report.get("weighting") == args.weighting and report.get("dataset") == args.dataset
            and all(report.get("training", {}).get(k) == v for k, v in training.items()))
    if not same:
        return []
    return list(report.get("invocations", []))


def main():
    args, setting, training = parse_args()
    torch.set_num_threads(args.threads)
    suffix = ("_max_w" if args.weighting == "max_w" else "") + ("_o2" if args.order == 2 else "") + ("_full" if args.full else "")
    work = Path(args.work or "runs/darts_space")
    out = Path(args.out or f"docs/results/darts_space_search{suffix}")
    started = time.perf_counter()
    invocation = {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "load_at_start": round(os.getloadavg()[0], 2),
                  "wall_s": None}
    earlier = earlier_invocations(out, setting, training, args)
    state: Dict[str, Any] = {"invocations": earlier + [invocation]}
    computed = []  # the pieces this invocation computes (an invocation that finds all done is not listed)
    space = get_space("darts")
    try:
        search_config(setting, args)  # bad settings fail here, before anything runs
        downsample(load_dataset(args.dataset), setting["image_size"])
        computed += [] if benchmark_path(work).is_file() else ["benchmark"]
        bench = benchmark_pass(work)
        state["benchmark"] = bench
        summary = benchmark_summary(bench)
        print(f"benchmark: {summary['count']} genotypes, test600 mean {summary['mean']:.2f}, min {summary['min']:.2f}, "
              f"max {summary['max']:.2f}, Spearman(acc, params) {summary['spearman_acc_params']:.3f}", flush=True)
        write_report(out, setting, training, args, state)

        search_dir = search_folder(work, setting, args)
        computed += [] if (search_dir / "result.json").is_file() else ["search"]
        search = run_search(setting, args, search_dir)
        state["search"] = search
        print(f"found: {search['arch']}\n       {search['genotype']}\n       parameter-free "
              f"{100 * search['parameter_free_share']:.0f}%  ({search['wall_s']:.0f} s)", flush=True)
        write_report(out, setting, training, args, state)

        by_arch = {r["arch"]: r for r in bench["rows"]}
        candidates = [(f"found ({args.weighting})", search["arch"]), ("DARTS-V2 (published)", space.from_str(DARTS_V2).to_str()),
                      (f"benchmark best (row {summary['best']['index']})", summary["best"]["arch"]),
                      (f"benchmark worst (row {summary['worst']['index']})", summary["worst"]["arch"]),
                      (f"random (seed {args.seed})", space.sample(np.random.default_rng(args.seed)).to_str())]
        folder, cache = train_folder(work, setting, training, args), []
        state["trained"] = []
        for label, arch_str in candidates:
            print(f"train: {label} ...", flush=True)
            computed += [] if train_result_path(folder, arch_str).is_file() else [label]
            result = train_genotype(label, arch_str, folder, setting, training, args, cache)
            arch = space.from_str(arch_str)
            listed = by_arch.get(arch_str)
            result.update({"in_benchmark": listed is not None,
                           "benchmark_test600": listed["test_acc"] if listed else None,
                           "eval_params_m": listed["params_m"] if listed else space.cost(arch, **EVAL_NETWORK)["params_m"],
                           "parameter_free_share": _parameter_free(space, arch)})
            state["trained"].append(result)
            print(f"train: {label}: test acc {result['test_acc']:.1f}%  train acc {result['train_acc']:.1f}%  "
                  f"params {result['params_m']:.3f} M  ({result['wall_s']:.0f} s)", flush=True)
            write_report(out, setting, training, args, state)
    except NastkError as error:
        print(f"search_darts_space: error: {error}", file=sys.stderr, flush=True)
        sys.exit(2)
    invocation["wall_s"] = round(time.perf_counter() - started, 1)
    invocation["computed"] = computed
    if not computed:
        state["invocations"] = earlier or [invocation]
    write_report(out, setting, training, args, state)
    print(f"done in {invocation['wall_s'] / 60:.1f} min (all pieces: {_compute_s(state) / 60:.1f} min); "
          f"report {out.with_suffix('.md')}", flush=True)


if __name__ == "__main__":
    main()
