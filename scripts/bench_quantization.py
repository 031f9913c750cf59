"""Speed of an 8-bit fake-quantized training step vs the float step (docs/results/quantization_speed.md).

The same ``quant:SPACE`` supernet, the base space's largest child, one forward-backward-SGD step on a batch of
random images: at 32 bits (every quantizer the identity: the float network) and at 8 / 8 bits (LSQ fake
quantization of every weight and input, EQ-Net's search form). Interleaved repeats, median per step.

    NASTK_DATA=../shared/benchmarks .venv/bin/python scripts/bench_quantization.py
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch


def step_time(net, x, y, bits: int, optimizer) -> float:
    net.set_uniform(bits)
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(net(x), y).backward()
    optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default="quant:mobilenet")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compiled", action="store_true", help="fuse the LSQ kernels with torch.compile")
    parser.add_argument("--out", default="docs/results/quantization_speed")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from nastk.quantization.quantizers import use_compiled_kernels
    from nastk.registry import get_space

    use_compiled_kernels(args.compiled)

    space = get_space(args.space)
    net = space.supernet(num_classes=10, device=args.device)
    x = torch.randn(args.batch_size, 3, 32, 32, device=args.device)
    y = torch.randint(0, 10, (args.batch_size,), device=args.device)
    net.set_active(space.largest())
    net.calibrate(x)
    net.train()
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-3)
    times = {32: [], 8: []}
    for bits in (32, 8, 32, 8):  # warm-up
        step_time(net, x, y, bits, optimizer)
    wall = time.perf_counter()
    for _ in range(args.repeats):
        for bits in (32, 8):
            times[bits].append(step_time(net, x, y, bits, optimizer))
    wall = time.perf_counter() - wall
    float_ms, quant_ms = (statistics.median(times[b]) * 1e3 for b in (32, 8))
    result = {"space": args.space, "batch_size": args.batch_size, "repeats": args.repeats, "threads": args.threads,
              "device": args.device, "compiled_kernels": args.compiled, "float_step_ms": float_ms, "int8_fake_quant_step_ms": quant_ms,
              "ratio": quant_ms / float_ms, "machine": f"{platform.machine()}, {torch.get_num_threads()} thread(s)",
              "torch": torch.__version__, "wall_s": wall}
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
