"""nastk's zero-cost proxies side by side with reference implementations, on identical inputs.

The references run unmodified, beside nastk, from a throw-away virtual environment that this script
makes (nothing of theirs is copied into nastk):

* ``alethiometer==1.1.2`` from PyPI, a maintained derivative of the zero-cost-nas library
  ("foresight"): grad_norm, snip, grasp, synflow, the original ReLU-code NASWOT and zen.
* ``--foresight DIR``: a checkout of the zero-cost-nas library itself (SamsungLabs/zero-cost-nas;
  adds fisher, jacob_cov and plain), installed into the same venv with ``pip install --no-deps DIR``.
  It is not on a package registry; pass it where you have a copy.

Both libraries expose one function per proxy that takes (network, device, inputs, targets, loss_fn,
split_data), so every proxy is called on the very batch nastk scores. For each of ``--archs`` NB201
networks (C=16, N=5, weights from ``torch.manual_seed(seed)`` before the build, the CIFAR-10 batch
``load_dataset('cifar10').batch(64, seed)``), every proxy is computed by nastk alone and by the
reference, in alternating order, each call timed; one plain forward+backward (the floor) is timed
with them. Reported per proxy: Spearman between the two over the networks, the largest relative
difference, and both times as multiples of the floor.

    nice -n 10 .venv/bin/python scripts/compare_reference_proxies.py --archs 30 --threads 1
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import sysconfig
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ALETHIOMETER = "alethiometer==1.1.2"

#: nastk proxy -> (library, the library's name for it). Libraries: alethiometer, foresight.
REFERENCES = {
    "alethiometer": {"grad_norm": "grad_norm", "snip": "snip", "grasp": "grasp", "synflow": "synflow",
                     "nwot": "nwot_relu", "zen": "zen"},
    "foresight": {"grad_norm": "grad_norm", "snip": "snip", "grasp": "grasp", "fisher": "fisher",
                  "jacob_cov": "jacob_cov", "plain": "plain", "synflow": "synflow"},
}

#: Diagnostic rows: nastk's computation changed in one named respect, to show that this respect is the
#: whole difference from the reference. label -> (nastk proxy, library, reference name).
DIAGNOSTICS = {"nwot, nastk in eval mode": ("nwot", "alethiometer", "nwot_relu")}

NOTES = {
    "nwot": "alethiometer runs NASWOT in eval mode (BatchNorm uses its fresh running statistics), nastk and the "
            "NASWOT paper's code in train mode (batch statistics), so the ReLU codes differ; compare the ranking only",
    "nwot, nastk in eval mode": "nastk's own NASWOT kernel on an eval-mode forward: if this row is identical, "
                                "the train/eval mode is the whole difference",
    "zen": "both draw their own Gaussian weights and inputs (alethiometer from torch's global generator, nastk from a "
           "seeded CPU generator), so values differ by construction; compare the ranking only",
}


# --- the throw-away environment -------------------------------------------------------------------

def ensure_venv(venv: Path, foresight) -> Path:
    """A venv that sees this interpreter's packages (torch, nastk) through a .pth file and adds the references."""
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              check=True, capture_output=True, text=True).stdout.strip()
        parent = sysconfig.get_paths()["purelib"]
        Path(site, "_nastk_parent.pth").write_text(f"{parent}\n{ROOT}\n")
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run(pip + [ALETHIOMETER], check=True)
    if foresight:
        subprocess.run(pip + ["--no-deps", str(Path(foresight).resolve())], check=True)
    return python


# --- inside the environment ------------------------------------------------------------------------

def load_references(names):
    """``{library: (calc(name, net, device, x, y), copynet, version)}`` for the libraries importable here."""
    from importlib.metadata import version

    out = {}
    try:
        _import_without_package_init("alethiometer")
        from alethiometer import zc_proxy
        from alethiometer.zero_cost_metrics import calc_metric
        out["alethiometer"] = (calc_metric, zc_proxy.copynet, version("alethiometer"))
    except ImportError:
        pass
    try:
        _import_without_package_init("foresight")
        from foresight.pruners import measures, predictive
        try:
            ref_version = version("foresight")
        except Exception:  # an uninstalled checkout on the path
            ref_version = "checkout"
        out["foresight"] = (measures.calc_measure, predictive.copynet, ref_version)
    except ImportError:
        pass
    return out


def _import_without_package_init(package: str) -> None:
    """Register ``package`` without running its ``__init__`` (alethiometer's and foresight's import
    their data loaders, which need torchvision, and PyPI's torchvision does not import beside torch
    2.13); the proxy modules themselves then import and run unchanged."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None:
        raise ImportError(package)
    module = types.ModuleType(package)
    module.__path__ = list(spec.submodule_search_locations)
    sys.modules.setdefault(package, module)


def reference_value(calc, copynet, ref_name, model, x, y):
    """The reference's value of one proxy, summed over layers in float64 (the libraries sum in float32)."""
    import torch
    import torch.nn.functional as F

    if not hasattr(model, "get_prunable_copy"):
        model.get_prunable_copy = types.MethodType(copynet, model)
    if not hasattr(model, "forward_before_global_avg_pool"):  # zen's hook: features before the GAP
        model.forward_before_global_avg_pool = lambda inp: model.head[:-1](model.cells(model.stem(inp)))
    value = calc(ref_name, model, x.device, x, y, loss_fn=F.cross_entropy, split_data=1)
    if isinstance(value, (list, tuple)):
        return float(sum(torch.as_tensor(v).double().sum() for v in value))
    return float(value)


def nwot_eval_mode(model, x) -> float:
    """nastk's NASWOT kernel with BatchNorm in eval mode (the reference library's choice)."""
    import torch

    from nastk.proxies.nwot import CodeKernel

    model.eval()
    kernel = CodeKernel(len(x), x.device)
    handles = kernel.hooks(model)
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return kernel.score()


def timed(function):
    started = time.perf_counter()
    value = function()
    return value, time.perf_counter() - started


def compare(args) -> dict:
    import copy

    import numpy as np
    import torch

    from nastk.commands.proxies import sample_architectures
    from nastk.datasets import load_dataset
    from nastk.metrics import spearman_rho
    from nastk.proxies import compute_proxies

    torch.set_num_threads(args.threads)
    space = __import__("nastk.space", fromlist=["get_space"]).get_space("nb201")
    archs = sample_architectures(space, args.archs, args.seed)
    x, y = load_dataset("cifar10").batch(args.batch_size, args.seed)
    libraries = load_references(args.proxies)
    pairs = [(name, lib, ref) for lib, table in REFERENCES.items() if lib in libraries
             for name, ref in table.items() if name in args.proxies]
    pairs += [(label, lib, ref) for label, (name, lib, ref) in DIAGNOSTICS.items()
              if lib in libraries and name in args.proxies]
    ours_by_label = {"nwot, nastk in eval mode": lambda model: nwot_eval_mode(model, x)}
    values = {(n, lib): ([], []) for n, lib, _ in pairs}
    seconds = {(n, lib): ([], []) for n, lib, _ in pairs}
    floors = []
    started = time.perf_counter()
    for i, arch in enumerate(archs):
        torch.manual_seed(args.seed)
        model = space.build(arch, 10)
        floors.append(min(floor_time(model, x, y) for _ in range(args.repeats)))
        for name, lib, ref in pairs:
            calc, copynet, _ = libraries[lib]
            ours = ours_by_label.get(name, lambda m: compute_proxies(m, (x, y), [name], seed=args.seed).scores[name])
            runs = {"nastk": lambda: ours(copy.deepcopy(model)),
                    "reference": lambda: reference_value(calc, copynet, ref, copy.deepcopy(model), x, y)}
            order = ["nastk", "reference"] if i % 2 == 0 else ["reference", "nastk"]
            result = {}
            for who in order:  # interleaved: neither side always runs on a warm cache
                result[who] = min((timed(runs[who]) for _ in range(args.repeats)), key=lambda r: r[1])
            for slot, who in enumerate(["nastk", "reference"]):
                values[(name, lib)][slot].append(result[who][0])
                seconds[(name, lib)][slot].append(result[who][1])
        elapsed = time.perf_counter() - started
        print(f"{i + 1}/{len(archs)} networks, {elapsed / 60:.1f} min, "
              f"about {elapsed / (i + 1) * (len(archs) - i - 1) / 60:.1f} min left", flush=True)
    floor = float(np.mean(floors))
    rows = []
    for name, lib, ref in pairs:
        ours, theirs = (np.asarray(v, dtype=float) for v in values[(name, lib)])
        t_ours, t_theirs = (np.asarray(s) for s in seconds[(name, lib)])
        scale = np.maximum(np.abs(theirs), 1e-30)
        finite = np.isfinite(ours) & np.isfinite(theirs)
        rows.append({"proxy": name, "reference": f"{lib} {libraries[lib][2]} ({ref})",
                     "spearman": spearman_rho(ours[finite], theirs[finite]) if finite.sum() > 2 else float("nan"),
                     "max_rel_diff": float(np.max(np.abs(ours - theirs)[finite] / scale[finite])),
                     "nastk_x_floor": float(t_ours.mean() / floor), "reference_x_floor": float(t_theirs.mean() / floor),
                     "time_ratio": float(t_ours.sum() / t_theirs.sum()), "n": int(finite.sum()),
                     "note": NOTES.get(name, ""), "nastk": ours.tolist(), "reference_values": theirs.tolist()})
    missing = sorted(set(args.proxies) - {n for n, _, _ in pairs})
    return {"rows": rows, "floor_s": floor, "archs": [space.to_str(a) for a in archs], "missing": missing,
            "libraries": {lib: v[2] for lib, v in libraries.items()}, "torch": torch.__version__,
            "threads": args.threads, "batch_size": args.batch_size, "seed": args.seed}


def floor_time(model, x, y) -> float:
    """One plain train-mode forward and cross-entropy backward: the cost every gradient proxy pays once."""
    import torch.nn.functional as F

    model.train()
    started = time.perf_counter()
    F.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - started


def markdown(report, command) -> str:
    f = lambda v: "n/a" if v != v else f"{v:.4f}"  # noqa: E731
    lines = ["# nastk's proxies beside reference implementations", "",
             f"{len(report['archs'])} NB201 networks (C=16, N=5, `torch.manual_seed({report['seed']})` before each build), "
             f"one CIFAR-10 batch of {report['batch_size']} (`load_dataset('cifar10').batch({report['batch_size']}, "
             f"{report['seed']})`), identical weights and batch for both sides, calls interleaved. "
             f"Floor = one plain forward+backward: {report['floor_s'] * 1000:.0f} ms per network on average.", "",
             "| proxy | reference | Spearman(nastk, reference) | largest relative difference | nastk x floor "
             "| reference x floor | nastk time / reference time |", "|---|---|---|---|---|---|---|"]
    for row in report["rows"]:
        lines.append(f"| {row['proxy']} | {row['reference']} | {f(row['spearman'])} | {row['max_rel_diff']:.2e} "
                     f"| {row['nastk_x_floor']:.2f} | {row['reference_x_floor']:.2f} | {row['time_ratio']:.2f} |")
    notes = [f"* `{r['proxy']}`: {r['note']}." for r in report["rows"] if r["note"]]
    if report["missing"]:
        notes.append(f"* No reference implementation was available for: {', '.join(report['missing'])} "
                     "(see the script's docstring for how to add the zero-cost-nas checkout).")
    lines += [""] + notes + ["", "Command:", "", "```", command, "```", "",
                             f"Machine: {platform.machine()} CPU, {os.cpu_count()} cores (shared), torch {report['torch']}, "
                             f"{report['threads']} thread(s). Reference versions: "
                             + ", ".join(f"{k} {v}" for k, v in report["libraries"].items()) + ".", ""]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1, help="timed calls per side and network (the fastest counts)")
    parser.add_argument("--proxies", default="grad_norm,snip,grasp,fisher,jacob_cov,plain,synflow,nwot,zen")
    parser.add_argument("--foresight", default=None, help="a checkout of the zero-cost-nas library (optional)")
    parser.add_argument("--venv", default="/tmp/nastk-reference-proxies", help="the throw-away venv")
    parser.add_argument("--out", default=str(ROOT / "docs" / "results" / "proxies_reference"),
                        help="writes OUT.md and OUT.json")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for option, value, low in [("--archs", args.archs, 3), ("--batch-size", args.batch_size, 2),
                               ("--threads", args.threads, 1), ("--repeats", args.repeats, 1)]:
        if value < low:  # checked before the venv or any result file is made
            parser.error(f"{option} must be at least {low}, got {value}")
    args.proxies = [p for p in args.proxies.split(",") if p]
    known = {name for table in REFERENCES.values() for name in table}
    if not args.proxies or set(args.proxies) - known:
        parser.error(f"--proxies must name some of {', '.join(sorted(known))}; got {','.join(args.proxies) or 'none'}")
    if not args.inside:
        python = ensure_venv(Path(args.venv), args.foresight)
        raw = sys.argv[1:] if argv is None else list(argv)
        env = {**os.environ, "NASTK_REFERENCE_COMMAND": " ".join(shlex.quote(a) for a in raw)}
        sys.exit(subprocess.run([str(python), __file__, *raw, "--inside"], env=env).returncode)
    from nastk.paths import atomic_write

    report = compare(args)
    command = "nice -n 10 .venv/bin/python scripts/compare_reference_proxies.py " + os.environ.get(
        "NASTK_REFERENCE_COMMAND", "")
    out = Path(args.out)
    with atomic_write(out.with_suffix(".json"), "w") as handle:
        json.dump({**report, "command": command}, handle, indent=2)
    with atomic_write(out.with_suffix(".md"), "w") as handle:
        handle.write(markdown(report, command.strip()))
    print(markdown(report, command.strip()))


if __name__ == "__main__":
    main()
