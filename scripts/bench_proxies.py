"""Cost of each zero-cost proxy relative to the cost floor: one plain forward+backward of the same
network on the same batch (cross-entropy, ``loss.backward()``).

Measures, over a fixed random sample of full-size NB201 networks (C=16, N=5) and a CIFAR-10 batch:
  * seconds per architecture of each proxy computed alone, and that as a multiple of the floor;
  * the seven classic gradient proxies computed together (shared passes) vs one by one;
  * GradSign's per-example gradients four ways: the hook path (the default), torch.func vmap of
    grad, our per-example loop, and a reference-style loop written the way the original GradSign
    code does it; each as a multiple of the floor and as a speedup over both loops, with the number
    of weight coordinates whose sign sum differs from our loop's (float32 rounding) and an
    exact-equality check in float64.
Every timing is the minimum over ``--repeats`` runs (the machine is shared), and the floor is
re-measured for every architecture. Writes docs/results/proxies_speed.{md,json}; with
``--grad-sign-only`` only the floor and GradSign are measured, into grad_sign_speed.{md,json}.

    nice -n 10 python scripts/bench_proxies.py --archs 10 --threads 1
    nice -n 10 python scripts/bench_proxies.py --grad-sign-only --archs 5 --out-dir /tmp/gs
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nastk.commands.proxies import sample_architectures  # noqa: E402
from nastk.datasets import load_dataset  # noqa: E402
from nastk.paths import atomic_write  # noqa: E402
from nastk.proxies import compute_proxies, proxy_names  # noqa: E402
from nastk.proxies.gradsign import sign_sums  # noqa: E402
from nastk.proxies.layers import weight_layers  # noqa: E402
from nastk.space import get_space  # noqa: E402

CLASSIC = ["grad_norm", "snip", "fisher", "jacob_cov", "plain", "synflow", "grasp"]
GOALS = {"classic gradient proxy": "<= 1.2x floor", "grasp": "<= 3x floor", "seven together": "<= 4x floor",
         "grad_sign vectorised vs loop": ">= 3x faster"}

#: GradSign implementations timed, in report order: our three methods and the reference-style loop.
GRAD_SIGN = {"hooks": "hooks: one batched forward+backward, per-example weight gradients from hooks (default)",
             "vmap": "vmap: torch.func vmap of grad, chunks of 16",
             "loop": "our loop: per example forward + autograd.grad of the Conv/Linear weights",
             "reference": "reference-style loop: per example zero_grad, forward, backward, read .weight.grad"}


GRAD_SIGN_NOTES = """GradSign notes:

* hooks: one forward+backward per 64 examples in which every BatchNorm normalises each example by its
  own statistics (what a batch-of-one BatchNorm does), so examples stay independent; autograd carries
  activation gradients only, and hooks turn each Conv2d/Linear layer's input and output gradient into
  per-example weight gradients (a grouped-convolution weight gradient with one group per example, a
  batched matmul for 1x1 convs and Linears). That is the arithmetic of one batched forward+backward,
  so it costs about the floor, plus the signs.
* The loops cost only about 2-2.5x the floor on these networks (about 4x on an all-3x3 one): on one
  CPU thread a batch-of-one convolution is already nearly compute-bound, and per-call overhead (what
  would make a loop ~10x the floor, as on a GPU) is small. No exact method does much less work than
  the floor, so here the speedup over a loop is bounded by loop / floor; the ">= 3x" goal assumes a
  loop at ~10x the floor. Hooks gain most on networks dominated by 3x3 convolutions; on others
  avg_pool_3x3 (slow on CPU, the same cost in every method) dominates.
* The reference-style loop takes every parameter's gradient (BN's too) and updates BN running
  statistics; our loop asks autograd for the Conv/Linear weight gradients only.
* In float32, batched and single-example convolutions round differently, so the batched methods'
  sign sums differ from the loops' on coordinates whose per-example gradient is within rounding error
  of zero (hooks and vmap on the same coordinates); the scores then differ by the relative amount
  shown. In float64 all four are identical.
"""

NOTES = """Notes:

""" + GRAD_SIGN_NOTES.split("\n", 2)[2] + """\
* grasp = the gradient pass with `create_graph` plus a double backward for H g; the seven together
  share one forward, one input-Jacobian backward and that differentiable backward, plus synflow's
  own float64 pass on one all-ones input.
"""


def best_of(repeats, fn):
    """Minimum wall-clock and minimum process CPU seconds over ``repeats`` runs (CPU time is what the
    other jobs on a shared machine disturb least), and the last value."""
    wall, cpu, value = float("inf"), float("inf"), None
    for _ in range(repeats):
        started, started_cpu = time.perf_counter(), time.process_time()
        value = fn()
        wall, cpu = min(wall, time.perf_counter() - started), min(cpu, time.process_time() - started_cpu)
    return wall, cpu, value


def floor_pass(model, x, y):
    """The cost floor: one plain forward+backward of the cross-entropy on the batch."""
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out-dir", default=str(ROOT / "docs" / "results"))
    parser.add_argument("--grad-sign-only", action="store_true",
                        help="measure only the floor and GradSign; write grad_sign_speed.{md,json}")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    space = get_space("nb201")
    x, y = load_dataset("cifar10").batch(args.batch_size, args.seed)
    x, y = x.to(args.device), y.to(args.device)
    archs = [a for a in sample_architectures(space, 4 * args.archs, args.seed) if space.is_connected(a)][:args.archs]
    names = [] if args.grad_sign_only else proxy_names()
    rows = []
    for i, arch in enumerate(archs):
        torch.manual_seed(args.seed)
        model = space.build(arch, 10).to(args.device)

        floor_pass(model, x, y)  # warm-up
        row = {"arch": space.to_str(arch), "floor_s": best_of(args.repeats + 1, lambda: floor_pass(model, x, y))[0],
               "alone_s": {}}
        for name in names:
            row["alone_s"][name] = best_of(args.repeats, lambda: compute_proxies(model, (x, y), [name], args.device))[0]
        if not args.grad_sign_only:
            row["together_s"], _, together = best_of(args.repeats, lambda: compute_proxies(model, (x, y), CLASSIC, args.device))
            row["together_passes_s"] = together.seconds
        row.update(grad_sign_row(model, x, y, args.repeats))
        rows.append(row)
        print(f"{i + 1}/{len(archs)} {row['arch']} floor {row['floor_s']:.2f}s, GradSign "
              + ", ".join(f"{m} {row['grad_sign_s'][m]:.2f}s" for m in GRAD_SIGN), flush=True)
        write(rows, None, names, args, len(archs))
    write(rows, float64_identical(space, rows, x, y, args), names, args, len(archs))


def reference_style_sign_sums(model, x, y):
    """GradSign written the way the original code computes it, for timing: for every example,
    ``model.zero_grad()``, a forward on that example alone, ``loss.backward()`` (gradients of every
    parameter, BN's included), then the sign of each Conv/Linear ``.weight.grad``, accumulated.
    BN is in train mode with its running statistics kept, as there; a copy keeps the benchmark's
    network unchanged."""
    net = copy.deepcopy(model).train()
    layers = [module for _, module in weight_layers(net)]
    sums = [torch.zeros_like(module.weight, dtype=torch.int64) for module in layers]
    for i in range(len(x)):
        net.zero_grad()
        F.cross_entropy(net(x[i:i + 1]), y[i:i + 1]).backward()
        for total, module in zip(sums, layers):
            if module.weight.grad is not None:  # a layer without gradient contributes zeros
                total += torch.sign(module.weight.grad).nan_to_num_(nan=0.0).to(torch.int64)
    return sums


def grad_sign_sums(model, x, y, method):
    return reference_style_sign_sums(model, x, y) if method == "reference" else sign_sums(model, x, y, method)


def grad_sign_row(model, x, y, repeats) -> dict:
    """Seconds (wall and CPU) of every GradSign implementation and of the floor timed alongside them,
    and how far each one's sign sums are from our loop's."""
    wall, cpu, sums = {}, {}, {}
    wall["floor"], cpu["floor"], _ = best_of(repeats + 1, lambda: floor_pass(model, x, y))
    for method in GRAD_SIGN:
        wall[method], cpu[method], sums[method] = best_of(repeats, lambda: grad_sign_sums(model, x, y, method))
    model.zero_grad(set_to_none=True)
    return {"grad_sign_s": wall, "grad_sign_cpu_s": cpu,
            "grad_sign_weights": int(sum(s.numel() for s in sums["loop"])),
            "grad_sign_scores": {m: float(sum(int(s.abs().sum()) for s in sums[m])) for m in GRAD_SIGN},
            "grad_sign_differing_coordinates": {m: int(sum(int((a != b).sum()) for a, b in zip(sums[m], sums["loop"])))
                                                for m in GRAD_SIGN}}


def float64_identical(space, rows, x, y, args) -> dict:
    """Whether every GradSign implementation's sign sums equal our loop's exactly in float64, on the
    network where they differ most in float32 (float32 rounding flips the signs of gradients that
    are nearly zero)."""
    worst = max(rows, key=lambda r: sum(r["grad_sign_differing_coordinates"].values()))
    torch.manual_seed(args.seed)
    model64 = space.build(space.from_str(worst["arch"]), 10).to(args.device).double()
    x64 = x.double()
    sums = {m: grad_sign_sums(model64, x64, y, m) for m in GRAD_SIGN}
    same = {m: all(torch.equal(a, b) for a, b in zip(sums[m], sums["loop"])) for m in GRAD_SIGN if m != "loop"}
    return {"arch": worst["arch"], "float32_differing": worst["grad_sign_differing_coordinates"],
            "identical": all(same.values()), "identical_to_loop": same}


def write(rows, exact, names, args, planned):
    """Summarise the architectures measured so far and rewrite the report (atomically)."""
    ratio = lambda seconds: float(np.mean([s / r["floor_s"] for s, r in zip(seconds, rows)]))  # noqa: E731
    grad_sign = grad_sign_summary(rows, exact)
    command, machine = provenance(args)
    if args.grad_sign_only:
        summary = {"floor_s": float(np.mean([r["floor_s"] for r in rows])), "grad_sign": grad_sign}
        return write_files(args, "grad_sign_speed", summary, rows, command, machine,
                           grad_sign_report(summary, len(rows), planned, args, command, machine))
    summary = {
        "floor_s": float(np.mean([r["floor_s"] for r in rows])),
        "alone": {n: {"s_per_arch": float(np.mean([r["alone_s"][n] for r in rows])),
                      "x_floor": ratio([r["alone_s"][n] for r in rows])} for n in names},
        "classic_together": {"s_per_arch": float(np.mean([r["together_s"] for r in rows])),
                             "x_floor": ratio([r["together_s"] for r in rows])},
        "classic_separately": {"s_per_arch": float(np.mean([sum(r["alone_s"][n] for n in CLASSIC) for r in rows])),
                               "x_floor": ratio([sum(r["alone_s"][n] for n in CLASSIC) for r in rows])},
        "grad_sign": grad_sign,
    }
    write_files(args, "proxies_speed", summary, rows, command, machine,
                report(summary, len(rows), planned, args, command, machine))


def grad_sign_summary(rows, exact) -> dict:
    """Per clock (wall, CPU): mean seconds, floor multiple and speedups over both loops (ratios
    averaged per architecture); then the float32 differences from our loop and the float64 check."""
    summary = {}
    for clock, key in (("wall", "grad_sign_s"), ("cpu", "grad_sign_cpu_s")):
        mean = lambda f: float(np.mean([f(r[key]) for r in rows]))  # noqa: E731
        summary[clock] = {"floor_s": mean(lambda t: t["floor"]),
                          "s_per_arch": {m: mean(lambda t: t[m]) for m in GRAD_SIGN},
                          "x_floor": {m: mean(lambda t: t[m] / t["floor"]) for m in GRAD_SIGN},
                          "speedup_vs_loop": {m: mean(lambda t: t["loop"] / t[m]) for m in GRAD_SIGN},
                          "speedup_vs_reference": {m: mean(lambda t: t["reference"] / t[m]) for m in GRAD_SIGN}}
    score = lambda r, m: r["grad_sign_scores"][m]  # noqa: E731
    summary["max_relative_score_difference"] = {
        m: float(max(abs(score(r, m) - score(r, "loop")) / score(r, "loop") for r in rows)) for m in GRAD_SIGN}
    summary["differing_coordinates"] = {m: int(sum(r["grad_sign_differing_coordinates"][m] for r in rows))
                                        for m in GRAD_SIGN}
    summary["weights"] = int(sum(r["grad_sign_weights"] for r in rows))
    summary["float64_check"] = exact
    return summary


def provenance(args):
    command = "nice -n 10 .venv/bin/python " + " ".join(shlex.quote(a) for a in sys.argv)
    machine = (f"{platform.machine()} CPU, 2 cores shared with other jobs (load average "
               f"{np.round(os.getloadavg(), 1).tolist()} at the end), torch {torch.__version__}, {args.threads} thread(s), device {args.device}")
    return command, machine


def write_files(args, stem, summary, rows, command, machine, text):
    out = Path(args.out_dir)
    with atomic_write(out / f"{stem}.json", "w") as handle:
        json.dump({"command": command, "machine": machine, "batch_size": args.batch_size, "summary": summary,
                   "rows": rows}, handle, indent=2)
    with atomic_write(out / f"{stem}.md", "w") as handle:
        handle.write(text)


def grad_sign_report(s, n, planned, args, command, machine) -> str:
    """The GradSign section alone (``--grad-sign-only``)."""
    lines = ["# GradSign cost on NAS-Bench-201 (CPU)", "",
             f"{n} of {planned} random connected NB201 networks (C=16, N=5, seed {args.seed}), one CIFAR-10 batch of {args.batch_size}. "
             f"Floor = one plain forward+backward of the same network on the same batch: {s['floor_s']:.2f} s on average. "
             f"Each time is the minimum of {args.repeats} runs; ratios are averaged per architecture.", ""]
    lines += grad_sign_lines(s["grad_sign"])
    return "\n".join(lines + ["", GRAD_SIGN_NOTES.rstrip(), "", "Command:", "", "```", command, "```", "",
                              f"Machine: {machine}.", ""])


def grad_sign_lines(g) -> list:
    """The GradSign table (wall / CPU seconds, floor multiples, speedups, float32 differences) and the float64 check."""
    check = g["float64_check"]
    exact = "pending" if check is None else (
        f"{check['identical']} ({', '.join(f'{m}: {v}' for m, v in check['identical_to_loop'].items())}; {check['arch']})")
    w, c = g["wall"], g["cpu"]
    lines = [f"GradSign, each time as wall / CPU seconds; the floor timed alongside: {w['floor_s']:.2f} / {c['floor_s']:.2f} s "
             "per arch. Ratios and speedups are averaged per architecture.", "",
             "| GradSign | s / arch | x floor | speedup vs our loop | speedup vs reference-style loop "
             "| coordinates whose sign sum differs from our loop's (float32) | largest relative score difference (float32) |",
             "|---|---|---|---|---|---|---|"]
    pair = lambda key, m, f: f"{f.format(w[key][m])} / {f.format(c[key][m])}"  # noqa: E731
    for m, label in GRAD_SIGN.items():
        lines.append(f"| {label} | {pair('s_per_arch', m, '{:.2f}')} | {pair('x_floor', m, '{:.2f}')} "
                     f"| {pair('speedup_vs_loop', m, '{:.2f}x')} | {pair('speedup_vs_reference', m, '{:.2f}x')} "
                     f"| {g['differing_coordinates'][m]} of {g['weights']} | {g['max_relative_score_difference'][m]:.1e} |")
    return lines + ["", f"Sign sums identical to our loop's in float64 (network with most float32 differences): {exact}."]


def report(s, n, planned, args, command, machine):
    lines = ["# Zero-cost proxy cost on NAS-Bench-201 (CPU)", "",
             f"{n} of {planned} random connected NB201 networks (C=16, N=5, seed {args.seed}), one CIFAR-10 batch of {args.batch_size}. "
             f"Floor = one plain forward+backward of the same network on the same batch: {s['floor_s']:.2f} s on average. "
             f"Each time is the minimum of {args.repeats} runs; ratios are averaged per architecture.", "",
             "| proxy (computed alone) | s / arch | x floor |", "|---|---|---|"]
    for name, row in sorted(s["alone"].items(), key=lambda kv: kv[1]["x_floor"]):
        lines.append(f"| {name} | {row['s_per_arch']:.3f} | {row['x_floor']:.2f} |")
    g = s["grad_sign"]
    lines += ["", "| combination | s / arch | x floor |", "|---|---|---|",
              f"| 7 classic ({', '.join(CLASSIC)}) together, shared passes | {s['classic_together']['s_per_arch']:.2f} "
              f"| {s['classic_together']['x_floor']:.2f} |",
              f"| the same 7, one call each | {s['classic_separately']['s_per_arch']:.2f} | {s['classic_separately']['x_floor']:.2f} |",
              ""] + grad_sign_lines(g) + [
              "", "Goals: " + "; ".join(f"{k} {v}" for k, v in GOALS.items()) + ".", "", NOTES.rstrip(), "",
              "Command:", "", "```", command, "```", "", f"Machine: {machine}.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
