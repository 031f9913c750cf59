"""Speed of a QuantNAS mixture step against the all-candidates floor (docs/results/quantnas_speed.md).

The step: one forward + backward of the ``sr`` supernet in mixture mode (every (op, bits) option of every searched
layer weighted by softmax(alpha), gradients to weights and alpha), with noise or shared-weights quantization. The
floor: the same convolutions (every candidate op's and every fixed layer's, at the shapes the mixture feeds them)
run forward and backward in a plain torch loop, with no quantization, mixing or bookkeeping: the work any mixture
over these candidates has to do. The ratio is median step time / median floor time (interleaved repeats).

    .venv/bin/python scripts/bench_quantnas.py                    # CPU, one thread
    .venv/bin/python scripts/bench_quantnas.py --device cuda
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


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--C", type=int, default=16)
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=24, help="LR patch size")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="docs/results/quantnas_speed")
    return parser.parse_args()


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    torch.set_num_threads(1)
    from nastk.quantization.quantnas import QuantConv, hwgq
    from nastk.space import get_space

    device = torch.device(args.device)
    torch.manual_seed(0)
    supernet = get_space("sr").supernet(upscale=args.scale, C=args.C).to(device)
    supernet.init_arch_parameters(1e-3, torch.Generator().manual_seed(0))
    supernet.arch_logits.data = supernet.arch_logits.data.to(device)
    supernet.quantization.noise.seed(0, device)
    x = torch.rand(args.batch, 3, args.size, args.size, device=device)

    shapes = []  # (quantized conv, input shape) of every conv the mixture runs
    hooks = [m.register_forward_hook(lambda m, i, o: shapes.append((m, tuple(i[0].shape))))
             for m in supernet.modules() if isinstance(m, QuantConv)]
    supernet.set_mixture(supernet.mixture_weights())
    supernet(x)
    for h in hooks:
        h.remove()
    modules = [m for m, _ in shapes]
    inputs = [(m.conv, torch.rand(shape, device=device, requires_grad=True)) for m, shape in shapes]

    def mixture_step(mode):
        def run():
            supernet.quantization.mode = mode
            supernet.zero_grad(set_to_none=True)
            supernet.set_mixture(supernet.mixture_weights())
            supernet(x).abs().mean().backward()
        return run

    def plain(inp, weight, conv):
        return F.conv2d(inp, weight, None, conv.stride, conv.padding, conv.dilation, conv.groups).sum()

    def floor():
        """Every convolution once, bare (no quantization): a lower bound of any mixture over these candidates."""
        total = 0
        for (conv, inp), _ in zip(inputs, modules):
            total = total + plain(inp, conv.weight, conv)
        total.backward()

    def candidates(mode):
        """Every (op, bits) candidate on its own, as the mode quantizes it: noise -- input and weight plus their
        b-bit noise; shared -- HWGQ_b input, LSQ_b weight; each a plain forward, all summed, one backward."""
        def run():
            total = 0
            for (conv, inp), module in zip(inputs, modules):
                x = F.relu(inp)
                for b in module.bits:
                    if mode == "noise":
                        xb = x + noise(x, b)
                        wb = conv.weight + noise(conv.weight, b)
                    else:
                        xb, wb = hwgq(x, b), module.quantized_weight(b)
                    total = total + plain(xb, wb, conv)
            total.backward()
        return run

    noise = supernet.quantization.noise
    runs = {"noise": mixture_step("noise"), "shared": mixture_step("shared"), "floor": floor,
            "candidates_noise": candidates("noise"), "candidates_shared": candidates("shared")}
    times = {name: [] for name in runs}
    for _ in range(2):  # warm-up
        for run in runs.values():
            run()
    for _ in range(args.repeats):
        for name, run in runs.items():
            sync(device)
            start = time.perf_counter()
            run()
            sync(device)
            times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(values) for name, values in times.items()}
    ratios = {name: median[name] / median[f"candidates_{name}"] for name in ("noise", "shared")}
    bare = {name: median[name] / median["floor"] for name in ("noise", "shared")}
    machine = f"{platform.machine()}, {os.cpu_count()} cores (shared with other jobs), {device}, one thread"
    command = "`.venv/bin/python scripts/bench_quantnas.py" + ("" if args.device == "cpu" else f" --device {args.device}") + "`"
    lines = ["# QuantNAS mixture step vs the all-candidates floor", "",
             f"Command: {command}; machine: {machine}; torch {torch.__version__}; wall "
             f"{time.perf_counter() - started:.0f} s.", "",
             f"Setting: `sr` supernet (1 cell, C = {args.C}, x{args.scale}; 9 searched layers x 5 ops (tail 3) x bits "
             f"{{4, 8}}), batch {args.batch} of {args.size} x {args.size} LR patches; {len(inputs)} convolutions per "
             f"mixture forward. Median of {args.repeats} interleaved repeats of forward + backward.", "",
             "| run | median ms | mixture / all-candidates floor | mixture / bare convolutions |", "|---|---|---|---|"]
    for name in ("noise", "shared"):
        lines.append(f"| mixture step, {name} | {median[name] * 1e3:.1f} | {ratios[name]:.2f}x | {bare[name]:.2f}x |")
    for name in ("candidates_noise", "candidates_shared", "floor"):
        lines.append(f"| {name if name != 'floor' else 'bare convolutions'} | {median[name] * 1e3:.1f} | | |")
    lines += ["", "All-candidates floor (`candidates_<mode>`): every (op, bits) candidate run on its own in a plain torch "
              "loop, quantized as the mode quantizes it (noise: input and weight plus that bit-width's noise; shared: "
              "HWGQ input, LSQ weight), all summed, one backward: the same candidate passes without alpha or mixing. "
              "Target: mixture step <= 1.3x that floor: "
              + ("met" if max(ratios.values()) <= 1.3 else "NOT met") + f" ({', '.join(f'{k} {v:.2f}x' for k, v in ratios.items())}). "
              "The mixture runs each op's convolution once on the bit-mixed input and weight, which is why it can be "
              "below the floor that convolves once per (op, bits). Bare convolutions (no quantization at all) are a "
              "lower bound no quantization-aware mixture reaches: with C = 16 and small patches a convolution is cheap "
              "next to the elementwise quantization work on the same tensors (ReLU, ranges, noise draws / rounding).", ""]
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    Path(args.out + ".json").write_text(json.dumps({"median_s": median, "ratios": ratios, "times_s": times,
                                                    "args": vars(args), "machine": machine}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
