"""QuantNAS on tiny super-resolution (methods.md 11A CPU plan): noise + ADQ vs shared weights + ADQ vs shared
weights vs random architectures at matched BitOps, 3 paired seeds.

Per seed, each search method trains the ``sr`` supernet with the ``quantnas`` step on ``skimage-sr`` patches
(half of them for the weights, the other half for alpha), the argmax (op, bits) architecture of the last epoch is
retrained from scratch with real LSQ + HWGQ quantization (the kit's loop: a fresh supernet restricted to the
child, ``single_path`` step, equal steps for every architecture), and scored by Y-channel PSNR (4-pixel border) on
whole images: the held-out ``select`` images (the comparison) and the ``test`` images (reported only). The random
baseline of a seed is the random architecture (of 200 drawn) whose BitOps is nearest to that seed's noise + ADQ
architecture, retrained with ADQ like it.

    nice -n 10 .venv/bin/python scripts/reproduce_quantnas.py --jobs 2 > quantnas.log 2>&1
    ... --scale 4 --out docs/results/quantnas_sr_x4                 # x4 (32 px HR patches, 8 px LR)

Resumable: a finished job (``<work>/<job>/result.json``) is skipped, an unfinished one continues from its checkpoint.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

#: search methods: step options and supernet options
METHODS = {
    "noise_adq": ({"quantization": "noise"}, {"adq": True}),
    "shared_adq": ({"quantization": "shared"}, {"adq": True}),
    "shared": ({"quantization": "shared"}, {"adq": False}),
    "noise": ({"quantization": "noise"}, {"adq": False}),
    "shared_adq_code": ({"quantization": "shared"}, {"adq": True, "shared_lsq": "code_unregistered"}),
}
DEFAULT_METHODS = ("noise_adq", "shared_adq", "shared")
RANDOM_DRAWS = 200


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), choices=list(METHODS))
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--C", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=10, help="search epochs (also the retraining epochs)")
    parser.add_argument("--train-size", type=int, default=320, help="patches (half for alpha during the search)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--arch-warmup", type=int, default=4)
    parser.add_argument("--arch-lr", type=float, default=3e-3)
    parser.add_argument("--bitops-penalty", type=float, default=1e-3)
    parser.add_argument("--retrain-lr", type=float, default=0.05)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--work", default="runs/quantnas_sr")
    parser.add_argument("--out", default="docs/results/quantnas_sr")
    parser.add_argument("--report-only", action="store_true",
                        help="write the report from the jobs finished so far (nothing is trained)")
    return parser.parse_args()


def data_options(args) -> dict:
    return {"scale": args.scale, "downscale": "bicubic", "psnr": "y", "border": 4}


def search(args, method: str, seed: int) -> dict:
    import torch

    from nastk.oneshot.trainer import OneShotConfig

    torch.set_num_threads(1)
    folder = Path(args.work, args.tag, f"search-{method}-seed{seed}")
    if (folder / "result.json").is_file():
        return json.loads((folder / "result.json").read_text())
    step_options, supernet_options = METHODS[method]
    config = OneShotConfig.for_step(
        "quantnas", space="sr", dataset="skimage-sr", data="image_pairs", data_options=data_options(args),
        supernet={"C": args.C, "upscale": args.scale, **supernet_options}, seed=seed, epochs=args.epochs,
        train_size=args.train_size, batch_size=args.batch_size, valid_size=64, eval_batch_size=64, augment=False,
        step_options={**step_options, "arch_warmup_epochs": args.arch_warmup, "arch_lr": args.arch_lr,
                      "bitops_penalty": args.bitops_penalty})
    return run_search(config, folder, args.device, method=method, seed=seed, adq=supernet_options["adq"])


def run_search(config, folder: Path, device, **labels) -> dict:
    """Train a QuantNAS supernet (resuming from ``folder``) and record its argmax architecture in result.json,
    with ``labels`` (method, seed, ...) first."""
    from nastk.oneshot.trainer import OneShotTrainer

    trainer = OneShotTrainer(config, folder, device=device, progress=False)
    trainer.load_checkpoint()
    history = trainer.fit()
    arch = trainer.supernet.export()
    result = {**labels, "arch": arch.to_str(), "search_s": round(sum(r["epoch_s"] for r in history), 1),
              "final_entropy": history[-1]["arch_entropy_sum"], "expected_bitops_ratio": history[-1].get("train_bitops_ratio"),
              "final_train_acc": history[-1].get("train_acc")}
    (folder / "result.json").write_text(json.dumps(result, indent=1))
    return result


def retrain(args, name: str, arch_str: str, adq: bool, seed: int) -> dict:
    """The architecture trained from scratch with real LSQ + HWGQ, scored on whole images."""
    import torch

    from nastk.oneshot.trainer import OneShotConfig, OneShotTrainer, build_supernet
    from nastk.quantization.sr_data import score_whole_images, whole_images
    from nastk.space import get_space

    torch.set_num_threads(1)
    folder = Path(args.work, args.tag, f"retrain-{name}-seed{seed}")
    if (folder / "result.json").is_file():
        return json.loads((folder / "result.json").read_text())
    space = get_space("sr")
    arch = space.from_str(arch_str)
    config = OneShotConfig(space="sr", dataset="skimage-sr", data="image_pairs", data_options=data_options(args),
                           step="single_path", supernet={"C": args.C, "upscale": args.scale, "adq": adq}, seed=seed,
                           epochs=args.epochs, train_size=args.train_size, batch_size=args.batch_size, held_out_fraction=0,
                           valid_size=64, eval_batch_size=64, augment=False, lr=args.retrain_lr, weight_decay=0.0)
    torch.manual_seed(seed)
    supernet = build_supernet(config, 5)
    path = supernet.path_of_arch(arch)
    supernet.allowed[:] = False
    for decision, option in enumerate(path):
        supernet.allowed[decision, option] = True
    trainer = OneShotTrainer(config, folder, device=args.device, progress=False, supernet=supernet)
    trainer.load_checkpoint(keep_mask=True)
    history = trainer.fit()
    trainer.supernet.set_active(path)
    module = trainer.data_module
    result = {"name": name, "seed": seed, "arch": arch_str, "adq": adq,
              "bitops": space.cost(arch, scale=args.scale, C=args.C)["bitops"],
              "select": score_whole_images(trainer.supernet, whole_images("select", args.scale), module, args.device),
              "test": score_whole_images(trainer.supernet, whole_images("test", args.scale), module, args.device),
              "train_psnr": history[-1]["train_psnr"], "retrain_s": round(sum(r["epoch_s"] for r in history), 1)}
    (folder / "result.json").write_text(json.dumps(result, indent=1))
    return result


def matched_random(args, target_bitops: float, seed: int) -> str:
    """Of ``RANDOM_DRAWS`` random architectures (seeded), the one nearest ``target_bitops`` in log BitOps."""
    import torch

    from nastk.space import get_space

    torch.set_num_threads(1)
    space = get_space("sr")
    rng = np.random.default_rng([seed, 26])
    archs = [space.sample(rng) for _ in range(RANDOM_DRAWS)]
    gaps = [abs(np.log(space.cost(a, scale=args.scale, C=args.C)["bitops"] / target_bitops)) for a in archs]
    return archs[int(np.argmin(gaps))].to_str()


def bicubic_baseline(args) -> dict:
    import torch
    from torch.nn import functional as F

    from nastk.oneshot.datamodules import make_data_module
    from nastk.quantization.sr_data import score_whole_images, whole_images

    class Bicubic(torch.nn.Module):
        def forward(self, x):
            return F.interpolate(x, scale_factor=args.scale, mode="bicubic", align_corners=False)

    module = make_data_module("image_pairs", data_options(args))
    return {split: score_whole_images(Bicubic(), whole_images(split, args.scale), module) for split in ("select", "test")}


def main() -> None:
    args = parse_args()
    args.tag = f"x{args.scale}"
    started = time.perf_counter()
    if args.report_only:
        folder = Path(args.work, args.tag)
        read = lambda pattern: [json.loads(p.read_text()) for p in sorted(folder.glob(pattern))]  # noqa: E731
        searches, retrained = read("search-*/result.json"), read("retrain-*/result.json")
        wall = sum(r["search_s"] for r in searches) + sum(r["retrain_s"] for r in retrained)
        write_report(args, searches, retrained, bicubic_baseline(args), wall, partial=True)
        return
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        searches = [pool.submit(search, args, m, s) for s in args.seeds for m in args.methods]
        found = [f.result() for f in searches]
        print(f"searches done at {time.perf_counter() - started:.0f} s", flush=True)
        jobs = [(r["method"], r["arch"], r["adq"], r["seed"]) for r in found]
        if "noise_adq" in args.methods:
            for r in found:
                if r["method"] == "noise_adq":
                    target = _bitops(args, r["arch"])
                    jobs.append(("random", matched_random(args, target, r["seed"]), True, r["seed"]))
        retrained = [f.result() for f in [pool.submit(retrain, args, *job) for job in jobs]]
    write_report(args, found, retrained, bicubic_baseline(args), time.perf_counter() - started)


def _bitops(args, arch_str: str) -> float:
    from nastk.space import get_space

    space = get_space("sr")
    return space.cost(space.from_str(arch_str), scale=args.scale, C=args.C)["bitops"]


def pareto(points):
    """Indices of the points not dominated in (higher PSNR, lower BitOps)."""
    return [i for i, (b, p) in enumerate(points)
            if not any((b2 <= b and p2 >= p) and (b2 < b or p2 > p) for b2, p2 in points)]


def write_report(args, searches, retrained, bicubic, wall_s: float, partial: bool = False) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import stats

    from nastk.paths import save_figure

    names = [m for m in list(args.methods) + ["random"] if any(r["name"] == m for r in retrained)]
    by = {(r["name"], r["seed"]): r for r in retrained}
    search_by = {(r["method"], r["seed"]): r for r in searches}
    mean = lambda d: float(np.mean(list(d.values())))  # noqa: E731
    lines = [f"# QuantNAS on tiny super-resolution (x{args.scale}), {len(args.seeds)} paired seeds", "",
             f"Command: `nice -n 10 .venv/bin/python scripts/reproduce_quantnas.py --jobs {args.jobs}"
             + ("" if args.scale == 2 else f" --scale {args.scale} --out {args.out}")
             + ("" if tuple(args.methods) == DEFAULT_METHODS else f" --methods {' '.join(args.methods)}") + "`; "
             f"machine: {platform.machine()}, {os.cpu_count()} cores shared with other jobs, CPU, one thread per job, "
             + (f"wall {wall_s / 60:.1f} min." if not partial else
                f"written by `--report-only` from the {len(searches)} searches and {len(retrained)} retrainings "
                f"finished (their summed training time {wall_s / 60:.1f} min; jobs ran 2 at a time; which seed has "
                f"which method: the per-run table)."), "",
             f"Setting (reduced, methods.md 11A CPU plan): space `sr` (1 cell, C = {args.C}, 5 body ops / 3 tail ops x bits "
             f"{{4, 8}}, 9 searched layers), x{args.scale}, `skimage-sr` 32 px HR patches (LR by antialiased bicubic), "
             f"first {args.train_size} patches: half weights, half alpha; {args.epochs} search epochs of batch "
             f"{args.batch_size} (alpha from epoch {args.arch_warmup}, Adam {args.arch_lr:g}; weights Adam 1e-3 cosine), "
             f"eta = {args.bitops_penalty:g}, entropy c = 1e-3 with QuantNAS' w1 w2 schedule. Every architecture "
             f"(the last epoch's argmax) retrained from scratch for the same {args.epochs} epochs with real LSQ + HWGQ "
             f"(SGD {args.retrain_lr:g}, momentum 0.9, cosine) on all {args.train_size} patches. PSNR: Y channel (BT.601), "
             f"4-pixel border, 8-bit output, whole images; `select` = held-out images {', '.join(_names('select'))} "
             f"(the comparison), `test` = {', '.join(_names('test'))} (reported only). BitOps = MACs x b_w x b_a of every "
             f"quantized conv on a 64 x 64 LR input. Bicubic upscaling: select {mean(bicubic['select']):.2f} dB, "
             f"test {mean(bicubic['test']):.2f} dB.", "",
             "| method | BitOps (G) | select PSNR | test PSNR | search s | retrain s |", "|---|---|---|---|---|---|"]
    for name in names:
        rows = [by[(name, s)] for s in args.seeds if (name, s) in by]
        sel, tst = [mean(r["select"]) for r in rows], [mean(r["test"]) for r in rows]
        bit = [r["bitops"] / 1e9 for r in rows]
        searched = [search_by[(name, s)]["search_s"] for s in args.seeds if (name, s) in search_by]
        lines.append(f"| {name} | {np.mean(bit):.2f} ({', '.join(f'{b:.2f}' for b in bit)}) | "
                     f"{np.mean(sel):.3f} ± {np.std(sel, ddof=1) if len(sel) > 1 else 0:.3f} | "
                     f"{np.mean(tst):.3f} ± {np.std(tst, ddof=1) if len(tst) > 1 else 0:.3f} | "
                     f"{np.mean(searched) if searched else 0:.0f} | {np.mean([r['retrain_s'] for r in rows]):.0f} |")
    lines += ["", "Mean ± sample std over seeds (per seed: the mean over the split's images). Paired differences, "
              "noise_adq minus each other method, per (seed, image) pair; two-sided paired t-test and Wilcoxon "
              "signed-rank (scipy.stats):", ""]
    tests = {}
    for other in names:
        if other == "noise_adq" or "noise_adq" not in names:
            continue
        for split in ("select", "test"):
            a, b = [], []
            for s in args.seeds:
                if ("noise_adq", s) in by and (other, s) in by:
                    for image in by[("noise_adq", s)][split]:
                        a.append(by[("noise_adq", s)][split][image])
                        b.append(by[(other, s)][split][image])
            if len(a) < 2:
                continue
            diff = np.array(a) - np.array(b)
            t = stats.ttest_rel(a, b).pvalue
            w = stats.wilcoxon(a, b).pvalue if np.any(diff) else 1.0
            tests[f"noise_adq-{other}/{split}"] = {"mean_diff_db": float(diff.mean()), "n": len(diff), "t_p": float(t),
                                                   "wilcoxon_p": float(w), "diffs": diff.tolist()}
            lines.append(f"- noise_adq - {other}, {split}: {diff.mean():+.3f} dB over {len(diff)} pairs "
                         f"(t-test p = {t:.3f}, Wilcoxon p = {w:.3f})")
    lines += ["", "Architectures (argmax of the last search epoch; random: nearest BitOps of 200 draws to noise_adq's):", "",
              "| method | seed | BitOps (G) | select PSNR | test PSNR | architecture |", "|---|---|---|---|---|---|"]
    for name in names:
        for s in args.seeds:
            if (name, s) in by:
                r = by[(name, s)]
                lines.append(f"| {name} | {s} | {r['bitops'] / 1e9:.2f} | {mean(r['select']):.3f} | {mean(r['test']):.3f} | "
                             f"`{r['arch']}` |")
    points = [(r["bitops"], mean(r["select"])) for r in retrained]
    front = pareto(points)
    lines += ["", f"PSNR-vs-BitOps front (select images): {len(front)} of {len(points)} architectures are non-dominated: "
              + ", ".join(f"{retrained[i]['name']} seed {retrained[i]['seed']} ({points[i][0] / 1e9:.2f} G, "
                          f"{points[i][1]:.2f} dB)" for i in sorted(front, key=lambda i: points[i][0])) + ".",
              f"Plot: `{Path(args.out).name}.png`.", ""]
    lines += [WHAT_IT_SHOWS]
    fig, ax = plt.subplots(figsize=(6, 4))
    for name in names:
        xs = [by[(name, s)]["bitops"] / 1e9 for s in args.seeds if (name, s) in by]
        ys = [mean(by[(name, s)]["select"]) for s in args.seeds if (name, s) in by]
        ax.scatter(xs, ys, label=name)
    fx = sorted(front, key=lambda i: points[i][0])
    ax.plot([points[i][0] / 1e9 for i in fx], [points[i][1] for i in fx], "k--", lw=0.8, label="front")
    ax.axhline(mean(bicubic["select"]), color="grey", lw=0.8, ls=":", label="bicubic")
    ax.set_xlabel("BitOps (G, 64x64 LR input)")
    ax.set_ylabel("Y-PSNR on held-out images (dB)")
    ax.set_title(f"QuantNAS tiny SR x{args.scale}, {len(args.seeds)} seeds")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, args.out + ".png", dpi=120)
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    Path(args.out + ".json").write_text(json.dumps({"args": {k: v for k, v in vars(args).items()}, "searches": searches,
                                                    "retrained": retrained, "bicubic": bicubic, "tests": tests,
                                                    "wall_s": wall_s}, indent=1))
    print("\n".join(lines))


def _names(split):
    from nastk.quantization.sr_data import SPLITS

    return SPLITS[split]


WHAT_IT_SHOWS = """What this reduced setting can and cannot show. It runs the whole QuantNAS pipeline (noise or shared-weights
search over (op, bits) pairs, entropy schedule, BitOps penalty, ADQ, retraining with real LSQ + HWGQ, Y-PSNR with a
4-pixel border on whole held-out images) end to end, paired over seeds. It cannot reproduce the paper's numbers or
claims: one cell instead of four, C = 16 instead of 48, a few hundred optimizer steps on a few hundred 32 px patches
instead of 20 epochs on DIV2K, retraining for as many steps as the search instead of 30 epochs, and a single
BitOps penalty instead of a sweep, so the front has one point per method and seed. The paper's differences are tenths
of a dB; with 3 seeds and this little training, the architectures found (and the retraining noise) vary more than
that, so a non-significant difference here is not evidence of no difference, and a significant one at this scale need
not carry over. The retrained networks stay near or below bicubic upscaling after so few steps."""


if __name__ == "__main__":
    main()
