"""Training cost of the elastic MBConv supernet (the tiny ``mobilenet`` space, methods.md 12.3).

Four measurements, batch 128 of random 32x32 images (speed does not depend on the pixels), one thread
by default, repetitions alternating between the compared sides (the order rotates every repetition),
so load from other processes hits every side alike; medians with spread are reported. Every timing
reads wall time and the process's CPU time (user + sys); on CPU the report leads with CPU time, which
other processes' load disturbs far less (``--clock`` to choose):

1. **sandwich step**: ``OneShotTrainer(...).step.step(batch)`` of the ``sandwich`` step (BigNAS recipe:
   largest child on the labels with label smoothing 0.1, 2 random children and the smallest on the
   largest's soft output, a backward each, ``clip_grad_value_`` 1.0, SGD-Nesterov) vs the same computation
   as a plain torch loop (``supernet.set_active(path)``, ``supernet(x)``), with the same children from
   the same seeded stream (checked every step) and the same initial weights, so both sides also train
   the same weights (their losses are compared); every conv shape of the space runs once before timing.
   Goal: trainer <= 1.05x plain. A third side is the
   trainer with its training images stored channels-last (the fix proposed for item 3).
2. **elastic child vs extracted child**: forward + cross-entropy + backward of a child run by the
   supernet vs ``supernet.extract(child)`` (a plain ``nn.Sequential`` with the child's weights), for the
   largest, the smallest and random children. Goal: elastic <= 1.3x extracted.
3. **new convolution shapes**: (a) in a fresh process per variant (cold oneDNN primitive cache), every
   child of a seeded list runs twice in a row, first time vs repeat, counting the conv shapes not seen
   before in the process; variants: default, pre-warmed (every block shape run once first), no primitive
   cache (``ONEDNN_PRIMITIVE_CACHE_CAPACITY=0``: what creation costs if the cache never hits),
   channels-last input. (b) in this (warm) process, the same children under other settings: channels-last
   input, ``torch.backends.mkldnn`` disabled, channels-last with bf16 conv math.
   (CUDA: default, ``cudnn.benchmark``, channels-last.)
4. **BN recalibration** per child (``recalibrate_bn``, recipes ``cumulative`` and ``exact``, 10 x 200
   images), as the library does it and with a lighter statistics hook patched in for the measurement
   only (count-only for ``cumulative``; ``torch.batch_norm_update_stats`` for ``exact``), the running
   statistics of both compared.

    .venv/bin/python scripts/bench_elastic.py                      # default run (~3 min, 2 cores under load)
    .venv/bin/python scripts/bench_elastic.py --quick --out /tmp/elastic_quick     # ~20 s smoke run
    .venv/bin/python scripts/bench_elastic.py --device cuda --out docs/results/elastic_speed_cuda
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_supernet import median_seconds, sync  # noqa: E402  (the alternating-timing helper)

SPACE = "mobilenet"
CLASSES = 10
#: seeds: data, supernet weights, the random children of items 2-4
DATA_SEED, WEIGHT_SEED, CHILD_SEED = 0, 0, 1234
#: the two clocks every timing reads: wall (perf_counter) and process CPU time (user + sys; on CPU, the one
#: load from other processes disturbs least); the report leads with ``--clock``
CLOCKS = ("cpu", "wall")


# --- timing ------------------------------------------------------------------------------------------------
def alternating(steps: Dict[str, Callable[[], None]], device, reps: int, warmup: int) -> Dict[str, Dict[str, List[float]]]:
    """``{"wall": {step: seconds per repetition}, "cpu": {...}}``. One repetition runs each step once through
    ``bench_supernet.median_seconds`` (the median of one repetition is its wall time), the order rotating every
    repetition so no side always runs first; each step's process CPU time (user + sys) is taken around it too."""
    names = list(steps)
    cpu_now: Dict[str, float] = {}

    def with_cpu_time(name):
        def run():
            started = time.process_time()
            steps[name]()
            cpu_now[name] = time.process_time() - started
        return run

    times = {"wall": {name: [] for name in names}, "cpu": {name: [] for name in names}}
    for rep in range(warmup + reps):
        shift = rep % len(names)
        order = names[shift:] + names[:shift]
        wall = median_seconds({name: with_cpu_time(name) for name in order}, device, 1, 0)
        if rep >= warmup:
            for name in names:
                times["wall"][name].append(wall[name])
                times["cpu"][name].append(cpu_now[name])
    return times


def spread(values: Sequence[float], scale: float = 1.0, digits: int = 1) -> Dict[str, float]:
    """Median, quartiles, min, max (times ``scale``) of ``values``."""
    v = sorted(x * scale for x in values)
    q1, q3 = (statistics.quantiles(v, n=4, method="inclusive")[::2] if len(v) > 1 else (v[0], v[0]))
    return {k: round(x, digits) for k, x in
            {"median": statistics.median(v), "q1": q1, "q3": q3, "min": v[0], "max": v[-1], "n": len(v)}.items()}


def summarize(times: Dict[str, Dict[str, List[float]]], ratios: Dict[str, Tuple[str, str]]) -> Dict:
    """Per clock: ms of every side, paired per-repetition ratios ``num / den``, and the raw seconds."""
    return {clock: {"ms": {n: spread(t, 1e3) for n, t in sides.items()},
                    "ratio": {key: spread([a / b for a, b in zip(sides[num], sides[den])], digits=3)
                              for key, (num, den) in ratios.items()},
                    "ratio_of_totals": {key: round(sum(sides[num]) / sum(sides[den]), 3)
                                        for key, (num, den) in ratios.items()},
                    "raw_s": {n: [round(v, 4) for v in t] for n, t in sides.items()}}
            for clock, sides in times.items()}


def fmt(s: Dict[str, float], unit: str = "") -> str:
    if s["n"] == 1:
        return f"{s['median']}{unit} (1 rep)"
    return f"{s['median']}{unit} [{s['q1']}-{s['q3']}] ({s['min']}-{s['max']})"


# --- models and data -----------------------------------------------------------------------------------------
def tiny_space():
    from nastk.space import get_space

    return get_space(SPACE)


def make_supernet(device):
    torch.manual_seed(WEIGHT_SEED)
    return tiny_space().supernet(CLASSES, bn_momentum=0.0).to(device)  # BigNAS rule 6, as reproduce_sandwich_mbconv


def make_batch(batch: int, device, seed: int = DATA_SEED):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, 32, 32, generator=generator)
    y = torch.randint(0, CLASSES, (batch,), generator=generator)
    return x.to(device), y.to(device)


def random_children(supernet, count: int, seed: int = CHILD_SEED) -> List[tuple]:
    from nastk.oneshot.samplers import draw_paths

    probabilities = supernet.allowed / supernet.allowed.sum(axis=1, keepdims=True)
    return draw_paths(probabilities, np.random.default_rng(seed), count)


def named_children(supernet, randoms: int, extremes: bool = True) -> Dict[str, tuple]:
    named = {"largest": tuple(supernet.largest_path()), "smallest": tuple(supernet.smallest_path())} if extremes else {}
    named.update({f"random {i + 1}": p for i, p in enumerate(random_children(supernet, randoms))})
    return named


def mflops(supernet, path) -> float:
    return round(tiny_space().cost(supernet.arch_of_path(path))["flops_m"], 2)


def forward_backward(model, x, y, before: Callable[[], None] = None):
    def run():
        if before:
            before()
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
    return run


def channels_last(x):
    return x.contiguous(memory_format=torch.channels_last)


# --- 1. the trainer's sandwich step vs a plain loop ------------------------------------------------------------
def bench_sandwich(args, device) -> Dict:
    from nastk.datasets import ImageDataset
    from nastk.oneshot.context import seed_of
    from nastk.oneshot.samplers import make_samplers
    from nastk.oneshot.sandwich import CHILD_STREAM
    from nastk.oneshot.steps import Batch
    from nastk.oneshot.trainer import OneShotConfig, OneShotTrainer

    x, y = make_batch(args.batch, "cpu")
    data = ImageDataset("bench", x, y, x[:2], y[:2], CLASSES)
    config = OneShotConfig.for_step("sandwich", space=SPACE, supernet={"bn_momentum": 0.0}, batch_size=args.batch,
                                    augment=False, valid_size=0, epochs=1, seed=WEIGHT_SEED)
    options = config.step_options
    smoothing = options.get("label_smoothing", 0.1)
    clip_value = options.get("grad_clip_value", 1.0)
    trainers = {}
    for name in ("trainer", "trainer_cl"):
        trainer = OneShotTrainer(config, device=device, data=data, progress=False)
        trainer.context.epoch = 0
        trainer.step.start_epoch(0)
        if name == "trainer_cl":  # the proposed fix: training images kept channels-last (x[indices] keeps it)
            trainer.x = channels_last(trainer.x)
        trainers[name] = trainer
    step = trainers["trainer"].step
    assert (step.random_children, step.include_extremes, step.inplace_distillation) == (2, True, True), options

    # the plain loop: same initial weights (the trainer seeds torch with config.seed before building), same recipe
    torch.manual_seed(config.seed)
    supernet = tiny_space().supernet(CLASSES, bn_momentum=0.0).to(device)
    weights = list(supernet.parameters())
    optimizer = torch.optim.SGD([{"params": [p for p in weights if p.dim() > 1]},
                                 {"params": [p for p in weights if p.dim() <= 1], "weight_decay": 0.0}],
                                lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                                nesterov=config.nesterov)
    sampler = make_samplers(config.sampler, supernet, len(x), config.seed)[0]
    rng = np.random.default_rng(seed_of(config.seed, 0, CHILD_STREAM))  # the step's child stream, epoch 0
    largest, smallest = tuple(supernet.largest_path()), tuple(supernet.smallest_path())
    xd, yd = x.to(device), y.to(device)
    record = {"plain": [], "trainer": [], "trainer_cl": []}  # (children, first loss) per step

    def plain_step():
        children = [largest] + [tuple(sampler.uniform_path(rng)) for _ in range(2)] + [smallest]
        optimizer.zero_grad(set_to_none=True)
        soft, first = None, None
        for i, child in enumerate(children):
            supernet.set_active(child)
            out = supernet(xd)
            if i == 0:
                loss = F.cross_entropy(out, yd, label_smoothing=smoothing)
                soft, first = F.softmax(out.detach(), dim=1), float(loss.detach())
            else:
                loss = -(soft * F.log_softmax(out, dim=1)).sum(dim=1).mean()
            loss.backward()
        torch.nn.utils.clip_grad_value_(weights, clip_value)
        optimizer.step()
        record["plain"].append((children, first))

    indices = torch.arange(args.batch)

    def trainer_step(name):
        def run():
            out = trainers[name].step.step(Batch(indices))
            record[name].append(([tuple(p) for p in out.paths], float(out.loss)))
        return run

    # every conv shape of the space once, in both memory formats, so that no side pays first-time costs (section 3)
    warm_shapes(tiny_space().supernet(CLASSES, bn_momentum=0.0).to(device), xd, yd)
    steps = {"plain": plain_step, "trainer": trainer_step("trainer"), "trainer_cl": trainer_step("trainer_cl")}
    times = alternating(steps, device, args.reps_sandwich, args.warmup)
    for name in ("trainer", "trainer_cl"):
        if [c for c, _ in record[name]] != [c for c, _ in record["plain"]]:
            raise RuntimeError(f"{name} and the plain loop trained different children")
    loss_diff = max(abs(a - b) for (_, a), (_, b) in zip(record["trainer"], record["plain"]))
    loss_diff_cl = max(abs(a - b) for (_, a), (_, b) in zip(record["trainer_cl"], record["plain"]))
    result = {"steps_timed": args.reps_sandwich, "warmup_steps": args.warmup,
              "children_per_step": 4, "step_options": options,
              **summarize(times, {"trainer_over_plain": ("trainer", "plain"),
                                  "trainer_cl_over_trainer": ("trainer_cl", "trainer")}),
              "max_abs_first_loss_diff_trainer_vs_plain": loss_diff,
              "max_abs_first_loss_diff_trainer_cl_vs_plain": loss_diff_cl,
              "step_mflops": [round(sum(mflops(supernet, c) for c in children), 2) for children, _ in
                              record["plain"][args.warmup:]]}
    print("1.", json.dumps({clock: {k: result[clock][k] for k in ("ms", "ratio")} for clock in CLOCKS}), flush=True)
    return result


# --- 2. elastic child vs its extracted stand-alone network ------------------------------------------------------
def bench_extract(args, device) -> Dict:
    supernet = make_supernet(device).train()
    x, y = make_batch(args.batch, device)
    rows = []
    children = named_children(supernet, args.random_children, extremes=not args.quick)
    if args.quick:
        children = {"smallest": tuple(supernet.smallest_path()), **children}
    for name, path in children.items():
        child = supernet.extract(path).to(device).train()
        with torch.no_grad():
            supernet.set_active(path)
            diff = float((supernet(x) - child(x)).abs().max())
        steps = {"elastic": forward_backward(supernet, x, y, lambda p=path: supernet.set_active(p)),
                 "extracted": forward_backward(child, x, y)}
        times = alternating(steps, device, args.reps_extract, 1)
        row = {"child": name, "path": list(path), "mflops": mflops(supernet, path), "max_abs_output_diff": diff,
               **summarize(times, {"elastic_over_extracted": ("elastic", "extracted")})}
        rows.append(row)
        print("2.", json.dumps({"child": name, "mflops": row["mflops"],
                                **{clock: {k: row[clock][k] for k in ("ms", "ratio")} for clock in CLOCKS}}), flush=True)
    return {"reps": args.reps_extract, "rows": rows}


# --- 3. new convolution shapes ------------------------------------------------------------------------------------
COLD_VARIANTS = {"cpu": ["default", "prewarmed", "no primitive cache", "channels_last"],
                 "cuda": ["default", "cudnn.benchmark", "channels_last"]}


def prewarm_children(supernet) -> List[tuple]:
    """Children that together run every conv shape of the space once: every (kernel, expand) pair in every
    block at stage depth 2 (a stage's first block differs from the later ones in input shape; the later
    ones all have the second block's shapes)."""
    declared = tiny_space().choice_declarations()
    names = [d.name for d in supernet.decisions]
    out = []
    for k in range(len(declared["s1_b1_kernel"])):
        for e in range(len(declared["s1_b1_expand"])):
            path = list(supernet.largest_path())
            for i, name in enumerate(names):
                if name.endswith("_kernel"):
                    path[i] = k
                elif name.endswith("_expand"):
                    path[i] = e
                elif name.endswith("_depth"):
                    path[i] = declared[name].index(2)
            out.append(tuple(path))
    return out


def warm_shapes(supernet, x, y) -> None:
    """Run every conv shape of the space once (forward + backward), NCHW and channels-last input."""
    for inputs in (x, channels_last(x)):
        for path in prewarm_children(supernet):
            forward_backward(supernet, inputs, y, lambda p=path: supernet.set_active(p))()
    supernet.zero_grad(set_to_none=True)


def cold_run(args) -> Dict:
    """In this fresh process: every child twice in a row, first time vs repeat (the ``--_cold`` mode)."""
    from nastk.elastic import DynamicConv2d

    device = torch.device(args.device)
    variant = args._cold
    if variant == "cudnn.benchmark":
        torch.backends.cudnn.benchmark = True
    supernet = make_supernet(device).train()
    x, y = make_batch(args.batch, device)
    if variant == "channels_last":
        x = channels_last(x)
    seen, new = set(), [0]

    def hook(module, inputs, output):
        key = (tuple(inputs[0].shape), module.output_channels(inputs[0].shape[1]), module.kernel_size, module.stride,
               module.depthwise)
        if key not in seen:
            seen.add(key)
            new[0] += 1

    for module in supernet.modules():
        if isinstance(module, DynamicConv2d):
            module.register_forward_hook(hook)

    def timed(path) -> Tuple[float, float]:
        sync(device)
        wall, cpu = time.perf_counter(), time.process_time()
        forward_backward(supernet, x, y, lambda: supernet.set_active(path))()
        sync(device)
        return time.perf_counter() - wall, time.process_time() - cpu

    # one-off process start-up (lazy library initialisation, first autograd run) on a batch of 2: oneDNN primitives
    # are keyed by the full shape, batch included, so none of the batch-128 shapes below is created here
    small = forward_backward(supernet, x[:2], y[:2], lambda: supernet.set_active(supernet.largest_path()))
    small()
    seen.clear()
    setup = (0.0, 0.0)
    if variant == "prewarmed":
        setup = tuple(map(sum, zip(*(timed(path) for path in prewarm_children(supernet)))))
    setup_shapes = len(seen)
    rows = []
    for path in random_children(supernet, args.cold_children, seed=CHILD_SEED + 1):
        new[0] = 0
        first = timed(path)
        shapes = new[0]
        repeat = timed(path)
        rows.append({"first_wall_s": first[0], "first_cpu_s": first[1], "repeat_wall_s": repeat[0],
                     "repeat_cpu_s": repeat[1], "new_shapes": shapes, "mflops": mflops(supernet, path)})
    return {"variant": variant, "setup_wall_s": setup[0], "setup_cpu_s": setup[1], "setup_shapes": setup_shapes,
            "rows": rows}


def bench_cold(args, device) -> Dict:
    variants = COLD_VARIANTS["cuda" if device.type == "cuda" else "cpu"]
    if args.quick:
        variants = variants[:1]
    results = []
    for variant in variants:
        env = dict(os.environ)
        if variant == "no primitive cache":
            env["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = "0"
        command = [sys.executable, str(Path(__file__).resolve()), "--_cold", variant, "--device", args.device,
                   "--threads", str(args.threads), "--batch", str(args.batch), "--cold-children", str(args.cold_children)]
        started = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode:
            raise RuntimeError(f"cold run {variant} failed:\n{done.stderr[-3000:]}")
        out = json.loads(done.stdout.strip().splitlines()[-1])
        rows = out["rows"]
        summary = {"variant": variant, "children": len(rows), "process_wall_s": round(time.perf_counter() - started, 1),
                   "setup_shapes": out["setup_shapes"], "new_shapes_total": sum(r["new_shapes"] for r in rows),
                   "children_with_new_shapes": sum(1 for r in rows if r["new_shapes"])}
        for clock in CLOCKS:
            first = [r[f"first_{clock}_s"] for r in rows]
            repeat = [r[f"repeat_{clock}_s"] for r in rows]
            with_new = [r[f"first_{clock}_s"] - r[f"repeat_{clock}_s"] for r in rows if r["new_shapes"]]
            without = [r[f"first_{clock}_s"] - r[f"repeat_{clock}_s"] for r in rows if not r["new_shapes"]]
            summary[clock] = {
                "setup_ms": round(out[f"setup_{clock}_s"] * 1e3, 1),
                "first_ms_total": round(sum(first) * 1e3, 1), "repeat_ms_total": round(sum(repeat) * 1e3, 1),
                "first_over_repeat": round(sum(first) / sum(repeat), 3),
                "extra_ms_total": round((sum(first) - sum(repeat)) * 1e3, 1),
                "extra_ms_per_child_with_new_shapes": round(statistics.mean(with_new) * 1e3, 1) if with_new else None,
                "extra_ms_per_child_without": round(statistics.mean(without) * 1e3, 1) if without else None}
        summary["rows"] = [{k: (round(v * 1e3, 1) if k.endswith("_s") else v) for k, v in r.items()} for r in rows]
        results.append(summary)
        print("3a.", json.dumps({k: v for k, v in summary.items() if k != "rows"}), flush=True)
    return {"children_per_process": args.cold_children, "variants": results}


@contextlib.contextmanager
def bf16_conv_math():
    conv = getattr(torch.backends.mkldnn, "conv", None)
    previous = conv.fp32_precision
    conv.fp32_precision = "bf16"
    try:
        yield
    finally:
        conv.fp32_precision = previous


def bench_warm_variants(args, device) -> Dict:
    supernet = make_supernet(device).train()
    x, y = make_batch(args.batch, device)
    xcl = channels_last(x)
    children = {"smallest": tuple(supernet.smallest_path())}
    if not args.quick:
        children.update({f"random {i + 1}": p for i, p in enumerate(random_children(supernet, 2))})

    def variants_for(path):
        select = lambda: supernet.set_active(path)  # noqa: E731
        out = {"NCHW (default)": forward_backward(supernet, x, y, select),
               "channels_last input": forward_backward(supernet, xcl, y, select)}
        if device.type == "cpu":
            def no_mkldnn():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # flags() also (re)sets allow_tf32, which warns on CPU builds
                    with torch.backends.mkldnn.flags(enabled=False):
                        forward_backward(supernet, x, y, select)()
            out["mkldnn disabled"] = no_mkldnn
            if hasattr(getattr(torch.backends.mkldnn, "conv", None), "fp32_precision"):
                def bf16():
                    with bf16_conv_math():
                        forward_backward(supernet, xcl, y, select)()
                out["channels_last + bf16 conv math"] = bf16
        elif device.type == "cuda":
            def benchmark():
                with torch.backends.cudnn.flags(enabled=True, benchmark=True):
                    forward_backward(supernet, x, y, select)()
            out["cudnn.benchmark"] = benchmark
        return out

    rows = []
    for name, path in children.items():
        times = alternating(variants_for(path), device, args.reps_variants, 1)
        names = list(times["cpu"])
        rows.append({"child": name, "mflops": mflops(supernet, path),
                     **summarize(times, {n: ("NCHW (default)", n) for n in names})})  # speedup: default / variant
        print("3b.", json.dumps({"child": name, **{clock: {n: rows[-1][clock]["ms"][n]["median"] for n in names}
                                                   for clock in CLOCKS}}), flush=True)
    return {"reps": args.reps_variants, "rows": rows}


# --- 4. BN recalibration -------------------------------------------------------------------------------------------
def light_seen_classes():
    """Statistics hooks for the measurement of a possible fix (patched in, then restored)."""
    from nastk.oneshot import recalibration

    class CountOnly(recalibration._Seen):
        """``cumulative`` only needs which channels saw a batch and how many batches."""

        def record(self, module, inputs) -> None:
            x = inputs[0]
            self.images[:x.shape[1]] += x.shape[0]
            self.batches += 1

    class BatchNormStats(recalibration._Seen):
        """``exact``: the batch mean and biased variance from ATen's BN statistics kernel (float32, no
        float64 copy of the activation), accumulated in float64 as before."""

        def record(self, module, inputs) -> None:
            x = inputs[0].detach()
            channels, n = x.shape[1], x.shape[0]
            mean, var = torch.batch_norm_update_stats(x, None, None, 0.0)
            self.mean_sum[:channels] += n * mean.to(torch.float64)
            self.var_sum[:channels] += n * var.to(torch.float64)
            self.images[:channels] += n
            self.batches += 1

    return {"cumulative": CountOnly, "exact": BatchNormStats}


@contextlib.contextmanager
def patched_seen(cls):
    from nastk.oneshot import recalibration

    original = recalibration._Seen
    recalibration._Seen = cls
    try:
        yield
    finally:
        recalibration._Seen = original


def bn_stats(model) -> List[torch.Tensor]:
    from nastk.oneshot.recalibration import tracked_norms

    return [t.detach().clone() for m in tracked_norms(model) for t in (m.running_mean, m.running_var)]


def bench_recalibration(args, device) -> Dict:
    from nastk.oneshot.recalibration import recalibrate_bn

    supernet = make_supernet(device)
    batches_n, size = args.calibration
    images, _ = make_batch(batches_n * size, device, seed=DATA_SEED + 1)
    batches = [images[i * size:(i + 1) * size] for i in range(batches_n)]
    light = light_seen_classes()
    if args.quick:
        children = {"smallest": tuple(supernet.smallest_path())}
    else:
        children = named_children(supernet, args.recal_random)
    stats = {}

    def recal(path, recipe, fixed):
        def run():
            supernet.set_active(path)
            with patched_seen(light[recipe]) if fixed else contextlib.nullcontext():
                recalibrate_bn(supernet, batches, recipe=recipe)
            stats[(recipe, fixed)] = bn_stats(supernet)
        return run

    rows = []
    for name, path in children.items():
        steps = {f"{recipe} {'light hook' if fixed else 'library'}": recal(path, recipe, fixed)
                 for recipe in ("cumulative", "exact") for fixed in (False, True)}
        times = alternating(steps, device, args.reps_recal, 0)
        for recipe in ("cumulative", "exact"):
            lib, fix = stats[(recipe, False)], stats[(recipe, True)]
            rel = max(float(((a - b).abs() / b.abs().clamp_min(1e-6)).max()) for a, b in zip(fix, lib))
            row = {"child": name, "mflops": mflops(supernet, path), "recipe": recipe, "max_rel_stat_diff": rel}
            for clock in CLOCKS:
                lib_t, fix_t = times[clock][f"{recipe} library"], times[clock][f"{recipe} light hook"]
                row[clock] = {"library_s": spread(lib_t, digits=2), "light_hook_s": spread(fix_t, digits=2),
                              "speedup": round(statistics.median(lib_t) / statistics.median(fix_t), 2)}
            rows.append(row)
            print("4.", json.dumps(row), flush=True)
    return {"calibration": {"batches": batches_n, "batch_size": size}, "reps": args.reps_recal, "rows": rows}


# --- the report ------------------------------------------------------------------------------------------------
def machine_info(args, device) -> Dict:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), platform.processor())
    onednn = next((line.strip(" -") for line in torch.__config__.show().splitlines() if "MKL-DNN" in line), "")
    info = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "platform": platform.platform(),
            "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "cpu_model": cpu, "torch": torch.__version__, "onednn": onednn, "threads": args.threads,
            "device": str(device), "python": platform.python_version()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "n/a"


def command_line(args) -> str:
    words = [a if " " not in a else repr(a) for a in sys.argv[1:]]
    return "`" + " ".join([".venv/bin/python scripts/bench_elastic.py"] + words) + "`"


def dash(value) -> str:
    return "-" if value is None else str(value)


def verdict(value: float, goal: float) -> str:
    return f"**met** ({value}x <= {goal}x)" if value <= goal else f"**not met** ({value}x > {goal}x)"


def write_markdown(path: Path, report: Dict, args) -> None:
    m, clock = report["machine"], args.clock
    other = "wall" if clock == "cpu" else "cpu"
    unit = "CPU ms" if clock == "cpu" else "wall ms"

    def ms(part: Dict, side: str) -> str:
        """Primary clock's spread, and the other clock's median in parentheses."""
        return f"{fmt(part[clock]['ms'][side])} ({other} {part[other]['ms'][side]['median']})"

    lines = ["# Elastic MBConv supernet: training-step cost (tiny `mobilenet` space)", "",
             f"Command: {command_line(args)}  ",
             f"Machine: {m['cpu_model']}, nproc {m['nproc']}, {m['platform']}, Python {m['python']}, torch {m['torch']} "
             f"({m['onednn']}), {m['threads']} thread(s), device {m['device']}{', ' + m['gpu'] if 'gpu' in m else ''}.  ",
             f"Date {m['date']}; load average (1, 5, 15 min) before {report['loadavg_before']}, after "
             f"{report['loadavg_after']}; wall time {report['wall_s']} s, CPU time {report['cpu_s']} s.  ",
             f"Load: {args.load_note}", "",
             "Batch 128 of random 32x32 images and labels; the tiny space's supernet (BN momentum 0, zero-gamma, fresh "
             "weights). The sides of a comparison alternate every repetition (rotating order), so load hits them alike. "
             f"Every timing reads two clocks; tables lead with **{clock} time** "
             + ("(process user + sys time of the one-thread benchmark: other processes' load changes it far less than "
                "wall time; wall medians in parentheses, everything in the JSON)" if clock == "cpu" else
                "(CPU time in parentheses)")
             + ". Cells: median [quartiles] (min-max); ratios are medians of per-repetition paired ratios.", ""]
    if "sandwich" in report:
        s = report["sandwich"]
        p = s[clock]
        lines += ["## 1. Sandwich step: `OneShotTrainer(...).step.step(batch)` vs a plain torch loop (goal <= 1.05x)", "",
                  f"{s['steps_timed']} timed steps per side after {s['warmup_steps']} warm-up step(s). Each step trains the "
                  "largest child (labels, label smoothing 0.1), 2 random children and the smallest (soft CE on the largest's "
                  "output), a backward each, `clip_grad_value_` 1.0, SGD-Nesterov (lr 0.1, wd 5e-5 without BN/bias). "
                  "Every side trains the same children (from the step's seeded stream; checked every step) from the same "
                  "weights, so they train the same weights up to float rounding: the largest child's loss differed by at most "
                  f"{s['max_abs_first_loss_diff_trainer_vs_plain']:.1e} between trainer and plain loop "
                  f"over the steps ({s['max_abs_first_loss_diff_trainer_cl_vs_plain']:.1e} for the channels-last trainer, whose "
                  "convolutions round differently). Every conv shape of the space ran once in both memory formats before "
                  "timing, so no side pays first-time costs (section 3). Children change "
                  "every step, so the time of a step follows its children's size (total MFLOPs of the timed steps: "
                  f"{', '.join(map(str, s['step_mflops']))}); the paired ratio is what matters.", "",
                  f"| side | {unit} / step | ratio ({clock}) | ratio ({other}) | ratio of totals ({clock} / {other}) |",
                  "|---|---|---|---|---|",
                  f"| plain loop (`set_active`, `supernet(x)`) | {ms(s, 'plain')} | 1 | 1 | |"]
        for side, key, what in (("trainer, `sandwich` step", "trainer_over_plain", "of plain"),
                                ("trainer, training images channels-last (the fix of section 3)", "trainer_cl_over_trainer",
                                 "of the trainer")):
            name = "trainer" if key == "trainer_over_plain" else "trainer_cl"
            bold = "**" if key == "trainer_over_plain" else ""
            lines.append(f"| {side} | {ms(s, name)} | {bold}{fmt(p['ratio'][key], 'x')}{bold} {what} | "
                         f"{fmt(s[other]['ratio'][key], 'x')} | {p['ratio_of_totals'][key]} / {s[other]['ratio_of_totals'][key]} |")
        lines += ["", f"Goal trainer <= 1.05x plain: {verdict(p['ratio']['trainer_over_plain']['median'], 1.05)}.", ""]
    if "extract" in report:
        e = report["extract"]
        lines += ["## 2. Elastic child vs its extracted stand-alone network (goal <= 1.3x)", "",
                  "Forward + cross-entropy + backward (`zero_grad` first; the elastic side also runs `set_active`), "
                  f"{e['reps']} alternating repetitions after 1 warm-up; `supernet.extract(child)` is a plain "
                  "`nn.Sequential` with copies of the child's weights (max |output difference| in train mode shown).", "",
                  f"| child | MFLOPs | elastic {unit} | extracted {unit} | elastic / extracted ({clock}) | ({other}) | max abs output diff |",
                  "|---|---|---|---|---|---|---|"]
        for r in e["rows"]:
            lines.append(f"| {r['child']} | {r['mflops']} | {ms(r, 'elastic')} | {ms(r, 'extracted')} | "
                         f"**{fmt(r[clock]['ratio']['elastic_over_extracted'], 'x')}** | "
                         f"{r[other]['ratio']['elastic_over_extracted']['median']}x | {r['max_abs_output_diff']:.1e} |")
        worst = max(r[clock]["ratio"]["elastic_over_extracted"]["median"] for r in e["rows"])
        lines += ["", f"Goal <= 1.3x for every child: {verdict(worst, 1.3)} (worst child median).", ""]
    if "cold" in report:
        c = report["cold"]
        lines += ["## 3. New convolution shapes per child", "",
                  f"(a) A fresh process per variant (cold caches): {c['children_per_process']} random children (the same "
                  "list in every process), each run twice in a row (forward + backward); *first* = a child's first run, "
                  "*repeat* = the run right after it; *extra* = first - repeat, the cost of running something new. "
                  "*New shapes* = conv (input shape, output channels, kernel, stride) not yet seen in that process "
                  "(hook on the elastic convs; the space has "
                  + (f"{max(v['setup_shapes'] for v in c['variants'])}" if any(v["setup_shapes"] for v in c["variants"])
                     else "a few dozen") + " in all). *prewarmed* first runs 6 children covering every (kernel, expand) "
                  "pair of every block shape (setup). *no primitive cache*: `ONEDNN_PRIMITIVE_CACHE_CAPACITY=0`, so every "
                  "run creates its oneDNN primitives again (what a new shape costs when the cache cannot help). "
                  "Processes ran one after another: compare across rows with care.", "",
                  f"| variant | first {unit} (sum) | repeat {unit} (sum) | first / repeat | extra {unit} total | "
                  "new conv shapes (children with any) | extra per child with new shapes | extra per child without | setup |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for v in c["variants"]:
            t = v[clock]
            setup = f"{t['setup_ms']} ({v['setup_shapes']} shapes)" if v["setup_shapes"] else "-"
            lines.append(f"| {v['variant']} | {t['first_ms_total']} | {t['repeat_ms_total']} | {t['first_over_repeat']}x | "
                         f"{t['extra_ms_total']} | {v['new_shapes_total']} ({v['children_with_new_shapes']}/{v['children']}) | "
                         f"{dash(t['extra_ms_per_child_with_new_shapes'])} | {dash(t['extra_ms_per_child_without'])} | {setup} |")
        lines += ["", "New shapes per child, in order (default variant): "
                  + ", ".join(str(r["new_shapes"]) for r in c["variants"][0]["rows"]) + ". A process warm-up (one "
                  "forward + backward at batch 2) runs first in every variant, so the first child does not also pay "
                  "one-off library start-up.", ""]
        default = c["variants"][0]
        if default["variant"] == "default" and default["new_shapes_total"]:
            per_shape = default[clock]["extra_ms_total"] / default["new_shapes_total"]
            counted = [v["setup_shapes"] for v in c["variants"] if v["setup_shapes"]]
            space_shapes = max(counted + [default["new_shapes_total"]])
            how = "counted by the prewarmed variant" if counted else "at least; the prewarmed variant counts them all"
            lines += [f"Reading: in the default variant, running new conv shapes cost {default[clock]['extra_ms_total']} "
                      f"{unit} extra for {default['new_shapes_total']} new shapes (~{per_shape:.1f} ms per shape, paid "
                      f"once per process); the space has {space_shapes} shapes ({how}), so a whole run pays roughly "
                      f"{per_shape * space_shapes / 1e3:.2f} s once. That bounds what warming up or restricting the "
                      "children to a fixed shape set can save.", ""]
    if "variants" in report:
        w = report["variants"]
        names = list(w["rows"][0][clock]["ms"])
        lines += [f"(b) This process, warm caches: forward + backward of a child under other settings, {w['reps']} "
                  "alternating repetitions after 1 warm-up. *channels_last input*: only the input batch is "
                  "`contiguous(memory_format=torch.channels_last)` (activations stay NHWC through the network, so oneDNN "
                  "skips the NCHW <-> blocked reorders around every conv). Cells: "
                  f"{unit} median (speedup = default / variant, paired median).", "",
                  "| child | MFLOPs | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
        for r in w["rows"]:
            cells = [f"{r[clock]['ms'][n]['median']} ({r[clock]['ratio'][n]['median']}x)" for n in names]
            lines.append(f"| {r['child']} | {r['mflops']} | " + " | ".join(cells) + " |")
        lines.append("")
    if "recalibration" in report:
        rc = report["recalibration"]
        cal = rc["calibration"]
        lines += [f"## 4. BN recalibration per child ({cal['batches']} x {cal['batch_size']} images)", "",
                  "`recalibrate_bn(supernet, batches, recipe)` of the active child, as the library runs it, and with a "
                  "lighter statistics hook patched in for this measurement only: `cumulative` counts channels and "
                  "batches only (the layers' own cumulative running average gives the statistics, as before); "
                  "`exact` takes the batch mean and biased variance from `torch.batch_norm_update_stats` (float32, "
                  "accumulated in float64) instead of a float64 copy of the activation + `mean` + `var`. "
                  f"{'Seconds' if clock == 'wall' else 'CPU seconds'}, {rc['reps']} repetition(s), the four runs "
                  "alternating; the last column compares the running statistics both produce (max relative difference).", "",
                  f"| child | MFLOPs | recipe | library s | light hook s | speedup ({clock}) | ({other}) | max rel stat diff |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in rc["rows"]:
            t = r[clock]
            lines.append(f"| {r['child']} | {r['mflops']} | {r['recipe']} | {fmt(t['library_s'])} | "
                         f"{fmt(t['light_hook_s'])} | **{t['speedup']}x** | {r[other]['speedup']}x | "
                         f"{r['max_rel_stat_diff']:.1e} |")
        lines.append("")
    path.write_text("\n".join(lines) + "\n")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--quick", action="store_true", help="~20 s smoke run (fewer children and repetitions)")
    parser.add_argument("--only", nargs="+", choices=["sandwich", "extract", "cold", "variants", "recalibration"],
                        help="run only these parts")
    parser.add_argument("--warmup", type=int, default=1, help="warm-up sandwich steps per side")
    parser.add_argument("--reps-sandwich", type=int, default=10)
    parser.add_argument("--reps-extract", type=int, default=5)
    parser.add_argument("--random-children", type=int, default=2, help="random children of item 2")
    parser.add_argument("--cold-children", type=int, default=8, help="children per cold process (item 3a)")
    parser.add_argument("--reps-variants", type=int, default=3)
    parser.add_argument("--reps-recal", type=int, default=1)
    parser.add_argument("--recal-random", type=int, default=1, help="random children of item 4")
    parser.add_argument("--calibration", type=int, nargs=2, default=[10, 200], metavar=("BATCHES", "SIZE"))
    parser.add_argument("--load-note", default="not stated", help="what else ran on the machine (goes into the report)")
    parser.add_argument("--clock", choices=CLOCKS, help="the clock the report leads with (default: cpu on CPU, wall on CUDA)")
    parser.add_argument("--out", default="docs/results/elastic_speed", help="report prefix (.md and .json)")
    parser.add_argument("--_cold", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if min(args.threads, args.batch, args.reps_sandwich, args.reps_extract, args.reps_variants, args.reps_recal,
           args.cold_children, *args.calibration) < 1 or args.warmup < 0 or args.random_children < 0:
        parser.error("counts must be positive (--warmup, --random-children at least 0)")
    if args.quick:
        args.warmup, args.reps_sandwich, args.reps_extract, args.random_children = 0, 1, 1, 1
        args.cold_children, args.reps_variants, args.reps_recal, args.calibration = 2, 1, 1, [2, 200]
    return args


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    if args._cold:
        print(json.dumps(cold_run(args)))
        return
    device = torch.device(args.device)
    args.clock = args.clock or ("cpu" if device.type == "cpu" else "wall")
    started, cpu_started = time.perf_counter(), time.process_time()
    report = {"machine": machine_info(args, device), "loadavg_before": loadavg(), "quick": args.quick,
              "args": {k: v for k, v in vars(args).items() if not k.startswith("_")}}
    parts = {"sandwich": bench_sandwich, "extract": bench_extract, "cold": bench_cold, "variants": bench_warm_variants,
             "recalibration": bench_recalibration}
    for name, bench in parts.items():
        if not args.only or name in args.only:
            part_started = time.perf_counter()
            report[name] = bench(args, device)
            report[name]["wall_s"] = round(time.perf_counter() - part_started, 1)
    report["loadavg_after"] = loadavg()
    report["wall_s"] = round(time.perf_counter() - started, 1)
    report["cpu_s"] = round(time.process_time() - cpu_started, 1)  # this process only (the cold runs are children)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(str(out) + ".json").write_text(json.dumps(report, indent=1) + "\n")
    write_markdown(Path(str(out) + ".md"), report, args)
    print(f"wrote {out}.md and {out}.json in {report['wall_s']} s", flush=True)


if __name__ == "__main__":
    main()
