"""Speed of an 8-bit fake-quantized training step vs the float step (docs/results/quantization_speed.md).

The same ``quant:SPACE`` supernet, the base space's largest child, one forward-backward-SGD step on a batch of
random images: at 32 bits (every quantizer the identity: the float network) and at 8 / 8 bits (LSQ fake
quantization of every weight and input, EQ-Net's search form: per-tensor symmetric weights, per-tensor
asymmetric activations with a learned offset). The arms are interleaved (float, 8-bit, float, 8-bit, ...) so that
a change of the machine's load hits both; the medians of the wall time, of the process's CPU time (and the system
part of it) and of the minor page faults per step are reported, with the load average before and after. Issue 26's
target: ratio <= 1.5 (wall, idle machine).

    NASTK_DATA=/abs/path/benchmarks .venv/bin/python scripts/bench_quantization.py --repeats 9

``--baseline-module FILE`` adds a third arm: the 8-bit step with ``LSQQuantizer.quantize`` taken from another
copy of ``nastk/quantization/quantizers.py`` (e.g. ``git show REV:nastk/quantization/quantizers.py > FILE``),
to compare two implementations within one run. ``--compiled`` fuses the LSQ kernels with ``torch.compile``
(opt-in); the warm-up time, which includes the compilation, is reported.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import statistics
import time
from pathlib import Path

import torch


def load_quantize(path: str):
    """``LSQQuantizer.quantize`` of another copy of quantizers.py (its own kernels come with it)."""
    spec = importlib.util.spec_from_file_location("baseline_quantizers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.LSQQuantizer.quantize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default="quant:mobilenet")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=15, help="timed steps per arm (median reported); >= 7")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compiled", action="store_true", help="fuse the LSQ kernels with torch.compile")
    parser.add_argument("--baseline-module", help="a copy of quantizers.py whose quantize runs a third arm")
    parser.add_argument("--out", default="docs/results/quantization_speed", help="writes OUT.json")
    args = parser.parse_args()
    if args.repeats < 1 or args.batch_size < 1 or args.threads < 1 or args.image_size < 8:
        parser.error("--repeats, --batch-size and --threads must be positive, --image-size >= 8")
    if args.baseline_module and not Path(args.baseline_module).is_file():
        parser.error(f"--baseline-module: no file {args.baseline_module}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from nastk.quantization import quantizers
    from nastk.registry import get_space

    quantizers.use_compiled_kernels(args.compiled)
    current = quantizers.LSQQuantizer.quantize
    arms = {"float": (32, current), "int8": (8, current)}
    if args.baseline_module:
        arms["int8_baseline"] = (8, load_quantize(args.baseline_module))

    space = get_space(args.space)
    net = space.supernet(num_classes=10, device=args.device)
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=args.device)
    y = torch.randint(0, 10, (args.batch_size,), device=args.device)
    net.set_active(space.largest())
    net.calibrate(x)
    net.train()
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-3)
    sync = torch.cuda.synchronize if torch.device(args.device).type == "cuda" else (lambda: None)

    def step(arm: str):
        bits, quantize = arms[arm]
        net.set_uniform(bits)
        quantizers.LSQQuantizer.quantize = quantize
        sync()
        wall, cpu, faults = time.perf_counter(), time.process_time(), resource.getrusage(resource.RUSAGE_SELF)
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(x), y).backward()
        optimizer.step()
        sync()
        after = resource.getrusage(resource.RUSAGE_SELF)
        return (time.perf_counter() - wall, time.process_time() - cpu, after.ru_minflt - faults.ru_minflt,
                after.ru_stime - faults.ru_stime)

    load_before = os.getloadavg()
    warmup = {arm: [round(step(arm)[0], 3) for _ in range(2)] for arm in arms}  # the first compiles
    times = {arm: [] for arm in arms}
    start = time.perf_counter()
    for _ in range(args.repeats):
        for arm in arms:
            times[arm].append(step(arm))
    wall = time.perf_counter() - start
    quantizers.LSQQuantizer.quantize = current
    kinds = ("wall", "cpu", "faults", "sys")
    median = {arm: {kind: statistics.median(t[i] for t in ts) * (1 if kind == "faults" else 1e3)
                    for i, kind in enumerate(kinds)} for arm, ts in times.items()}
    result = {
        "space": args.space, "quantized_layers": len(net.layers()), "batch_size": args.batch_size,
        "image_size": args.image_size, "repeats": args.repeats,
        "threads": args.threads, "device": args.device, "compiled_kernels": args.compiled,
        "float_step_ms": median["float"]["wall"], "int8_fake_quant_step_ms": median["int8"]["wall"],
        "ratio": median["int8"]["wall"] / median["float"]["wall"],
        "float_step_cpu_ms": median["float"]["cpu"], "int8_fake_quant_step_cpu_ms": median["int8"]["cpu"],
        "cpu_ratio": median["int8"]["cpu"] / median["float"]["cpu"],
        "page_faults_per_step": {arm: m["faults"] for arm, m in median.items()},
        "system_ms_per_step": {arm: m["sys"] for arm, m in median.items()},
        "warmup_step_s": warmup,
        "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch thread(s)",
        "torch": torch.__version__, "wall_s": wall}
    if args.baseline_module:
        result.update({"baseline_module": args.baseline_module,
                       "int8_baseline_step_ms": median["int8_baseline"]["wall"],
                       "baseline_ratio": median["int8_baseline"]["wall"] / median["float"]["wall"],
                       "baseline_cpu_ratio": median["int8_baseline"]["cpu"] / median["float"]["cpu"]})
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"{args.space}, batch {args.batch_size} of 3x{args.image_size}x{args.image_size}, {args.device}, "
          f"{result['machine']}, torch {torch.__version__}; load average {load_before[0]:.2f} before, "
          f"{result['load_average_after'][0]:.2f} after")
    print(f"median of {args.repeats} interleaved steps  wall ms   cpu ms  (of it system)  page faults   "
          f"ratio to float (wall / cpu)")
    for arm in arms:
        m = median[arm]
        print(f"  {arm:<32s}{m['wall']:8.1f}{m['cpu']:9.1f}{m['sys']:11.1f}{m['faults']:16.0f}      "
              f"{m['wall'] / median['float']['wall']:.3f} / {m['cpu'] / median['float']['cpu']:.3f}")
    print(f"warm-up steps (s, the first includes any compilation): {warmup}")
    issue_setting = (args.space, args.batch_size, args.image_size) == ("quant:mobilenet", 128, 32)
    verdict = ("met" if result["ratio"] <= 1.5 else "NOT met") if issue_setting else "not issue 26's setting"
    print(f"int8 / float (wall) {result['ratio']:.3f}; issue 26's target, <= 1.5 for quant:mobilenet at batch 128 "
          f"of 32x32 on an idle machine: {verdict}; wrote {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
