"""Speed of the GAN pieces -> docs/results/gan_speed.md / .json.

1. The kit's ``adversarial`` step (OneShotTrainer.train_epoch: StepContext forward / backward, seeded
   streams, window draws, metrics) vs the same updates in a plain torch loop (the same modules, Adam
   optimizers, hinge losses, batches, n_critic and latents, no kit): wall time per epoch, the two
   interleaved, median over repeats. Target: <= 1.05x.
2. FID on 10,000 feature vectors (64-d, the digits feature net's width; and 2048-d, Inception's, for
   reference): statistics + ``scipy.linalg.sqrtm``. Target: under a second for 64-d.

    .venv/bin/python scripts/bench_gan.py [--repeats 5] [--width 16] [--parts step fid]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from nastk.generative.adversarial import hinge_d_loss, hinge_g_loss
from nastk.generative.features import gan_images
from nastk.generative.metrics import frechet_distance, statistics as feature_statistics
from nastk.oneshot.context import seed_of
from nastk.oneshot.trainer import OneShotConfig, OneShotTrainer
from nastk.paths import atomic_write
from nastk.registry import get_space

G_ARCH = "2,1,3,1,2,0,0/0,0,5,4,6,3,4"
D_ARCH = "6,4,3,1,2,-1,-1/1,0,1,5,4,5,3"


def kit_trainer(width: int, batch: int, n_critic: int, train_size: int):
    data = gan_images("digits").as_dataset()
    config = OneShotConfig(space="gan-g-digits", dataset="digits", step="adversarial", supernet={"width": width},
                           step_options={"search": "generator", "discriminator": D_ARCH, "n_critic": n_critic,
                                         "other_width": width, "lr_g": 4e-4, "lr_d": 8e-4},
                           epochs=1000, batch_size=batch, train_size=train_size, valid_size=0, augment=False, seed=0)
    trainer = OneShotTrainer(config, None, data=data, progress=False, metrics={})
    trainer.step.set_population([trainer.supernet.path_of_arch(get_space("gan-g-digits").from_str(G_ARCH))])
    return trainer


def plain_epoch(trainer, epoch: int, g, d, g_opt, d_opt, n_critic: int, batch: int, factor: int, counter: list) -> None:
    """The same updates without the kit: batches, latents and order as the trainer draws them."""
    order = torch.randperm(len(trainer.x), generator=torch.Generator().manual_seed(seed_of(trainer.config.seed, epoch, 3)))
    noise = torch.Generator().manual_seed(seed_of(trainer.config.seed, epoch, 10))
    latent = g.latent_dim
    for index in order.split(batch):
        real = trainer.x[index]
        with torch.no_grad():
            fake = g(torch.randn(len(real), latent, generator=noise))
        d_loss = hinge_d_loss(d(real), d(fake))
        d_opt.zero_grad(set_to_none=True)
        g_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        d_opt.step()
        counter[0] += 1
        if counter[0] % n_critic == 0:
            fake = g(torch.randn(len(real) * factor, latent, generator=noise))
            g_loss = hinge_g_loss(d(fake))
            d_opt.zero_grad(set_to_none=True)
            g_opt.zero_grad(set_to_none=True)
            g_loss.backward()
            g_opt.step()


def bench_step(repeats: int, width: int, batch: int, n_critic: int, train_size: int) -> dict:
    torch.manual_seed(0)
    trainer = kit_trainer(width, batch, n_critic, train_size)
    # the plain loop trains its own copies of the same modules (the stand-alone G of the pinned path)
    g = trainer.supernet.extract(get_space("gan-g-digits").from_str(G_ARCH))
    d = get_space("gan-d-digits").build(get_space("gan-d-digits").from_str(D_ARCH), width=width)
    g_opt = torch.optim.Adam(g.parameters(), lr=4e-4, betas=(0.0, 0.9))
    d_opt = torch.optim.Adam(d.parameters(), lr=4e-4, betas=(0.0, 0.9))
    counter = [0]
    kit, plain = [], []
    trainer.train_epoch(0)
    plain_epoch(trainer, 0, g, d, g_opt, d_opt, n_critic, batch, 2, counter)  # warm-up both
    for r in range(1, repeats + 1):
        started = time.perf_counter()
        trainer.train_epoch(r)
        kit.append(time.perf_counter() - started)
        started = time.perf_counter()
        plain_epoch(trainer, r, g, d, g_opt, d_opt, n_critic, batch, 2, counter)
        plain.append(time.perf_counter() - started)
    ratios = [k / p for k, p in zip(kit, plain)]
    steps = -(-train_size // batch)
    return {"width": width, "batch": batch, "n_critic": n_critic, "d_steps_per_epoch": steps,
            "kit_epoch_s": statistics.median(kit), "plain_epoch_s": statistics.median(plain),
            "ratio_median": statistics.median(ratios), "ratio_of_medians": statistics.median(kit) / statistics.median(plain),
            "ratios": ratios}


def bench_fid(repeats: int) -> list:
    out = []
    for dim, methods in ((64, ("auto",)), (2048, ("eigen", "sqrtm"))):
        rng = np.random.default_rng(0)
        a, b = rng.normal(size=(10_000, dim)), rng.normal(size=(10_000, dim)) + 0.1
        for method in methods:
            times = []
            for _ in range(repeats if dim <= 64 else 1):  # 2048-d: one timing (seconds to minutes each)
                started = time.perf_counter()
                frechet_distance(*feature_statistics(a), *feature_statistics(b), method=method)
                times.append(time.perf_counter() - started)
            out.append({"vectors": 10_000, "dim": dim, "method": "sqrtm" if method == "auto" else method,
                        "median_s": statistics.median(times), "min_s": min(times)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--train-size", type=int, default=1348, help="images per epoch (digits' whole training split)")
    parser.add_argument("--out", type=Path, default=Path("docs/results"))
    parser.add_argument("--parts", nargs="+", choices=["step", "fid"], default=["step", "fid"],
                        help="what to measure; a part not measured is taken from the existing gan_speed.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    load = os.getloadavg()
    started = time.perf_counter()
    step = [bench_step(args.repeats, args.width, args.batch, n, args.train_size) for n in (1, 5)] if "step" in args.parts else None
    fid = bench_fid(args.repeats) if "fid" in args.parts else None
    # read at the end: a concurrent call measuring the other part has written its results by then
    previous = json.loads((args.out / "gan_speed.json").read_text()) if (args.out / "gan_speed.json").is_file() else {}
    step, fid = step or previous["step"], fid or previous["fid"]
    result = {"step": step, "fid": fid, "load_average_before": load, "load_average_after": os.getloadavg(),
              "wall_s": round(time.perf_counter() - started, 1),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, CPU, torch threads 1, torch {torch.__version__}"}
    with atomic_write(args.out / "gan_speed.json", "w") as handle:
        json.dump(result, handle, indent=1)
    lines = ["# GAN speed", "", f"Command: `.venv/bin/python scripts/bench_gan.py --repeats {args.repeats} --width {args.width} "
             f"--train-size {args.train_size} --parts {' '.join(args.parts)}` (only the parts named were measured in "
             "this call; the others are read back from gan_speed.json)",
             f"Machine: {result['machine']}; load average {load[0]:.1f} before, {result['load_average_after'][0]:.1f} after "
             f"(the 2 cores are shared with other jobs); wall time {result['wall_s']} s.", "",
             "## Adversarial step vs a plain torch loop (same updates)", "",
             f"digits, G `{G_ARCH}` (G supernet on that path) vs D `{D_ARCH}`, width {args.width}, batch {args.batch}, "
             f"{args.train_size} images per epoch; epochs interleaved, medians over {args.repeats}.", "",
             "| n_critic | D steps / epoch | kit epoch (s) | plain epoch (s) | kit / plain (median of ratios) | ratio of medians |",
             "|---|---|---|---|---|---|"]
    for r in step:
        lines.append(f"| {r['n_critic']} | {r['d_steps_per_epoch']} | {r['kit_epoch_s']:.3f} | {r['plain_epoch_s']:.3f} | "
                     f"{r['ratio_median']:.3f} | {r['ratio_of_medians']:.3f} |")
    lines += ["", "## FID on 10,000 feature vectors (statistics of both sets + the matrix square root)", "",
              "| dim | method | median (s) | min (s) |", "|---|---|---|---|"]
    for r in fid:
        lines.append(f"| {r['dim']} | {r.get('method', 'sqrtm')} | {r['median_s']:.3f} | {r['min_s']:.3f} |")
    lines += ["", "The plain loop runs the stand-alone G extracted from the supernet path (the same function and "
              "weights at the start) and the same D genotype; the kit additionally runs the supernet's single-path "
              "dispatch, the window draw, the per-step metrics and the trainer's epoch bookkeeping. On a loaded shared "
              "machine single ratios scatter by several percent; the medians are what the target refers to."]
    (args.out / "gan_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
