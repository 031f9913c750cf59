"""Training throughput of a single-path NB201 supernet step vs the same stand-alone network, and
(``--darts``) of the DARTS steps vs a network that runs every candidate op.

Both run the same step (zero grad, forward, mean CE, backward, grad-clip 5, SGD); the supernet step
also selects its path, and the "trainer" row is the one-shot trainer's own step with PA&DA's
bookkeeping (per-op gradient norms, per-example logit-gradient norms). Repetitions alternate
between the models and the median is reported, so load from other processes hits both alike.

    .venv/bin/python scripts/bench_supernet.py [--device cuda] [--threads 1] [--out docs/results/supernet_speed]
    .venv/bin/python scripts/bench_supernet.py --darts [--out docs/results/darts_speed]

DARTS rows (NB201 supernet, mixture mode): the *floor* is one plain training step (forward, CE,
backward, clip, SGD) of the supernet used as a fixed network that runs all 5 ops on every edge
with constant weights (no architecture parameters); *weight update* is the DARTS step's weight
half alone (alpha frozen); *first order* and *second order* are whole DARTS steps (alpha update on
a held-out batch, then the weight update), so a first-order step does two passes of the floor's work.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from nastk.datasets import ImageDataset
from nastk.oneshot.steps import Batch
from nastk.oneshot.trainer import OneShotConfig, OneShotTrainer
from nastk.space import get_space
from search_spaces.nb201.network import NB201Network

ARCHS = {
    "best (3x conv3x3, conv1x1, skip)": "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|",
    "all conv3x3": "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "mixed (pool, none, skip, conv1x1)": "|avg_pool_3x3~0|+|none~0|skip_connect~1|+|nor_conv_1x1~0|none~1|avg_pool_3x3~2|",
}


def plain_step(model, optimizer, x, y, before=None):
    if before:
        before()
    optimizer.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
    optimizer.step()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def median_seconds(steps, device, reps, warmup):
    """Median seconds of each step, repetitions alternating between them (load hits all alike)."""
    times = {name: [] for name in steps}
    for rep in range(warmup + reps):
        for name, step in steps.items():
            sync(device)
            started = time.perf_counter()
            step()
            sync(device)
            if rep >= warmup:
                times[name].append(time.perf_counter() - started)
    return {name: statistics.median(t) for name, t in times.items()}


def bench(C, N, batch, arch_str, device, reps, warmup):
    space = get_space("nb201")
    arch = space.from_str(arch_str)
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    torch.manual_seed(0)
    net = NB201Network(arch.choices, 10, C=C, N=N, affine=False, track_running_stats=False).to(device)
    supernet = space.supernet(10, C=C, N=N).to(device)
    sgd = lambda params: torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=2.5e-4)  # noqa: E731
    net_opt, super_opt = sgd(net.parameters()), sgd(supernet.parameters())
    data = ImageDataset("bench", x.cpu(), y.cpu(), x.cpu()[:2], y.cpu()[:2], 10)
    trainer = OneShotTrainer(OneShotConfig(supernet={"C": C, "N": N}, batch_size=batch, augment=False, valid_size=0,
                                           sampler="pada"), device=device, data=data, progress=False)
    choices = space.op_indices(arch)
    indices = torch.arange(batch)

    trainer.path_sampler.sample = lambda: choices  # the timed path is fixed; everything else is the real step

    def trainer_step():
        out = trainer.step.step(Batch(indices))
        trainer.data_sampler.observe_batch(indices.numpy(), out.logits, out.targets)

    steps = {"standalone": lambda: plain_step(net, net_opt, x, y),
             "supernet": lambda: plain_step(supernet, super_opt, x, y, lambda: supernet.set_active(arch)),
             "trainer": trainer_step}
    median = median_seconds(steps, device, reps, warmup)
    return {name: batch / median[name] for name in steps}


def bench_darts(C, N, batch, device, reps, warmup):
    space = get_space("nb201")
    torch.manual_seed(0)
    x = torch.randn(2 * batch, 3, 32, 32)
    y = torch.randint(0, 10, (2 * batch,))
    data = ImageDataset("bench", x, y, x[:2], y[:2], 10)
    floor_net = space.supernet(10, C=C, N=N).to(device)
    uniform = torch.full((6, 5), 0.2, device=device)
    floor_opt = torch.optim.SGD(floor_net.parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    xb, yb = x[:batch].to(device), y[:batch].to(device)
    trainers = {}
    for name, options in {"weight update": {"fix_alpha": True}, "first order": {"order": 1},
                          "second order": {"order": 2}}.items():
        config = OneShotConfig(supernet={"C": C, "N": N}, batch_size=batch, augment=False, valid_size=0, step="darts",
                               step_options=options, lr=0.025, lr_min=0.001, weight_decay=3e-4)
        trainers[name] = OneShotTrainer(config, device=device, data=data, progress=False)
    indices, held = torch.arange(batch), torch.arange(batch)
    steps = {"floor": lambda: plain_step(floor_net, floor_opt, xb, yb, lambda: floor_net.set_mixture(uniform))}
    for name, trainer in trainers.items():
        steps[name] = (lambda t: lambda: t.step.step(Batch(indices, held_out=held)))(trainer)
    return median_seconds(steps, device, reps, warmup)


def main_darts(args, device):
    settings = [(8, 1, 64), (16, 2, 64)] if device.type == "cpu" else [(16, 5, 64)]
    rows = []
    for C, N, batch in settings:
        seconds = bench_darts(C, N, batch, device, args.reps, args.warmup)
        floor = seconds["floor"]
        row = {"C": C, "N": N, "batch": batch, **{f"{k}_s": round(v, 4) for k, v in seconds.items()},
               "weight_update_x_floor": round(seconds["weight update"] / floor, 3),
               "first_order_x_floor": round(seconds["first order"] / floor, 3),
               "first_order_per_pass_x_floor": round(seconds["first order"] / (2 * floor), 3),
               "second_x_first": round(seconds["second order"] / seconds["first order"], 3)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {args.threads} thread(s), device {device}"
    Path(args.out + ".json").write_text(json.dumps({"machine": machine, "reps": args.reps, "rows": rows}, indent=1))
    lines = ["# DARTS training steps vs a network that runs every candidate op", "",
             f"Command: `.venv/bin/python scripts/bench_supernet.py --darts --threads {args.threads}"
             f"{' --device ' + args.device if args.device != 'cpu' else ''} --out {args.out}`  ",
             f"Machine: {machine}. Median of {args.reps} alternating repetitions; NB201 supernet, 32x32 inputs.", "",
             "Seconds per step. Floor = one plain training step of the supernet as a fixed all-ops network (constant "
             "uniform weights, no alpha). Goals: weight update <= 1.2x floor (a first-order step does two such passes, "
             "so its per-pass ratio is the comparable one); second order <= 3x first order.", "",
             "| C | N | batch | floor s | weight update s (x floor) | first order s (x floor, per pass) | second order s | second / first |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['C']} | {r['N']} | {r['batch']} | {r['floor_s']:.3f} | {r['weight update_s']:.3f} "
                     f"({r['weight_update_x_floor']:.2f}x) | {r['first order_s']:.3f} ({r['first_order_x_floor']:.2f}x, "
                     f"{r['first_order_per_pass_x_floor']:.2f}x) | {r['second order_s']:.3f} | {r['second_x_first']:.2f}x |")
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", help="report prefix (default docs/results/supernet_speed, with --darts darts_speed)")
    parser.add_argument("--darts", action="store_true", help="benchmark the DARTS steps instead of the single-path step")
    args = parser.parse_args()
    if args.reps < 1 or args.warmup < 0 or args.threads < 1:
        parser.error("--reps and --threads must be at least 1, --warmup at least 0")
    args.out = args.out or ("docs/results/darts_speed" if args.darts else "docs/results/supernet_speed")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    if args.darts:
        return main_darts(args, device)
    settings = [(8, 1, 64), (16, 5, 64)] if device.type == "cpu" else [(16, 5, 256)]
    rows = []
    for C, N, batch in settings:
        for name, arch in ARCHS.items():
            speed = bench(C, N, batch, arch, device, args.reps, args.warmup)
            row = {"C": C, "N": N, "batch": batch, "arch": name, "arch_str": arch, **{k: round(v, 1) for k, v in speed.items()},
                   "overhead_supernet": round(speed["standalone"] / speed["supernet"], 3),
                   "overhead_trainer": round(speed["standalone"] / speed["trainer"], 3)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {args.threads} thread(s), device {device}"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out + ".json").write_text(json.dumps({"machine": machine, "reps": args.reps, "rows": rows}, indent=1))
    lines = ["# Single-path supernet training step vs the stand-alone network", "",
             f"Command: `.venv/bin/python scripts/bench_supernet.py --threads {args.threads}"
             f"{' --device ' + args.device if args.device != 'cpu' else ''}`  ",
             f"Machine: {machine}. Median of {args.reps} alternating repetitions (the machine is shared, so "
             "absolute numbers move with its load; the ratios are what matters).", "",
             "Images/s of one training step (forward, mean CE, backward, grad-clip 5, SGD with momentum and weight "
             "decay) on 32x32 inputs. *standalone* = `NB201Network` of the architecture (BN affine=False, batch statistics, "
             "like the supernet); *supernet* = the NB201 supernet running that architecture as its single path; "
             "*trainer* = the one-shot trainer's step with PA&DA's per-op and per-example gradient-norm bookkeeping. "
             "Overhead = standalone images/s divided by the other's (goal <= 1.2x).", "",
             "| C | N | batch | architecture | standalone img/s | supernet img/s | trainer (PA&DA) img/s | overhead supernet | overhead trainer |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['C']} | {r['N']} | {r['batch']} | {r['arch']} | {r['standalone']:.0f} | {r['supernet']:.0f} | "
                     f"{r['trainer']:.0f} | {r['overhead_supernet']:.3f}x | {r['overhead_trainer']:.3f}x |")
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
