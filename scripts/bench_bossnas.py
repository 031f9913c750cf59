"""Speed of one BossNAS training step (the kit's ``bossnas`` step through StepContext) against the same work
written as a plain torch loop: the same K fair paths, two views, ensemble target, K online forward-backward
passes, one optimizer step and the EMA update, on the same modules and batch.

    .venv/bin/python scripts/bench_bossnas.py              # writes docs/results/bossnas_speed.{md,json}

Rounds alternate between the two (same paths per round), so machine load hits both alike; the report gives
the median per-iteration time of each and their ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.nn import functional as F


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--iterations", type=int, default=3, help="steps per round and variant")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--block", type=int, default=1)
    parser.add_argument("--out", default="docs/results/bossnas_speed")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    from nastk.oneshot.bossnas import byol_loss
    from nastk.oneshot.steps import Batch
    from nastk.oneshot.trainer import OneShotConfig, OneShotTrainer

    config = OneShotConfig.for_step("bossnas", space="nats-sss", dataset="cifar10", train_size=args.batch_size * 4,
                                    image_size=args.image_size, batch_size=args.batch_size, epochs=1,
                                    step_options={"block": args.block, "paths": 8, "update_interval": 1,
                                                  "optimizer": "sgd"})
    trainer = OneShotTrainer(config, None, progress=False)
    step = trainer.step
    step.start_epoch(0)
    indices = torch.arange(args.batch_size)
    augment = trainer.data_module.augment_params(args.batch_size, torch.Generator().manual_seed(0))

    def plain(paths):
        """The same work, by hand: no StepContext, no DDP wrapper."""
        (v1, v2), _ = trainer.examples(indices, augment)
        supernet, head, predictor = trainer.supernet, step._head, step._predictor

        def project(net, h, x, path):
            net.set_active(path)
            return h(net(x, block=args.block))

        with torch.no_grad():
            t1, t2 = (torch.stack([F.normalize(project(step.target, step.target_head, v, p), dim=-1) for p in paths]).mean(0)
                      for v in (v1, v2))
        for module in (supernet, head, predictor):
            module.zero_grad(set_to_none=True)
        for path in paths:
            loss = byol_loss(predictor(project(supernet, head, v1, path)), t2) + \
                byol_loss(predictor(project(supernet, head, v2, path)), t1)
            loss.backward()
        step.optimizer.step()
        m = step.momentum_now()
        with torch.no_grad():
            for target, online in ((step.target, supernet), (step.target_head, head)):
                for t, o in zip(target.parameters(), online.parameters()):
                    t.mul_(m).add_(o.detach(), alpha=1 - m)

    kit_times, plain_times = [], []
    for round_ in range(args.rounds + 1):
        paths = step.sample_paths()
        for variant, times in (("kit", kit_times), ("plain", plain_times)):
            started = time.perf_counter()
            for _ in range(args.iterations):
                if variant == "kit":
                    step.step(Batch(indices, augment))
                else:
                    plain(paths)
            if round_:  # the first round warms up both
                times.append((time.perf_counter() - started) / args.iterations)
    kit, hand = statistics.median(kit_times), statistics.median(plain_times)
    result = {"kit_s_per_step": kit, "plain_s_per_step": hand, "ratio": kit / hand, "rounds": args.rounds,
              "iterations": args.iterations, "batch_size": args.batch_size, "image_size": args.image_size,
              "block": args.block, "paths": 8, "machine": f"{os.cpu_count()} cores, {platform.machine()}, CPU, 1 thread",
              "torch": torch.__version__}
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    lines = ["# BossNAS step vs a plain torch loop", "",
             f"Command: `NASTK_DATA=../shared/benchmarks .venv/bin/python scripts/bench_bossnas.py {' '.join(sys.argv[1:])}`",
             f"Machine: {result['machine']} (shared with "
             f"other jobs; rounds alternate the two variants), torch {torch.__version__}.", "",
             f"One iteration = 8 fair paths of NATS block {args.block} on {args.batch_size} CIFAR-10 images at "
             f"{args.image_size}x{args.image_size}, two views: the ensemble target (16 target passes), 16 online "
             "forward-backward passes, one SGD step, the EMA update. Median over "
             f"{args.rounds} rounds of {args.iterations} iterations each.", "",
             "| variant | s / iteration |", "|---|---|",
             f"| kit `bossnas` step (StepContext, DDP-safe primitives) | {kit:.3f} |",
             f"| plain torch loop (same modules, paths, batch) | {hand:.3f} |", "",
             f"Ratio kit / plain: **{kit / hand:.3f}** (target <= 1.1). The kit step also draws its paths (fair "
             "sampling) and logs its metrics; the plain loop gets the paths for free."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
