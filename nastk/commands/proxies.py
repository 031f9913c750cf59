"""``nastk proxies list`` and ``nastk proxies correlate``: zero-cost proxies and their rank correlation
with NAS-Bench-201's 200-epoch test accuracy; ``nastk proxies fit parzc`` lives in
:mod:`nastk.commands.parzc`."""
from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np

from nastk.commands import print_json
from nastk.errors import ConfigError
from nastk.proxies.registry import get_proxy, proxy_names
from nastk.options import Int

#: Datasets for which NB201 has 200-epoch test accuracies (the ground truth of ``correlate``).
GROUND_TRUTH_DATASETS = ("cifar10", "cifar100", "ImageNet16-120")


def register(subparsers) -> None:
    from nastk.commands.parzc import register_fit

    parser = subparsers.add_parser("proxies", help="zero-cost proxies: list, correlate with NB201, fit ParZC")
    commands = parser.add_subparsers(dest="proxies_command", metavar="SUBCOMMAND")
    lister = commands.add_parser("list", help="proxies and their metadata")
    lister.add_argument("--format", choices=["text", "json"], default="text")
    lister.set_defaults(func=run_list)

    correlate = commands.add_parser("correlate", help="Spearman/Kendall of proxies vs NB201 200-epoch test accuracy")
    correlate.add_argument("--space", default="nb201")
    correlate.add_argument("--dataset", default="cifar10", help="images that score the networks (cifar10, digits)")
    correlate.add_argument("--truth", default=None, help="NB201 accuracy dataset (default: --dataset)")
    correlate.add_argument("--sample", type=Int(minimum=1), default=100, help="number of random architectures")
    correlate.add_argument("--proxies", default="all", help="comma-separated proxy names (a user's proxy as "
                                                            "package.module:function), or all")
    correlate.add_argument("--seed", type=Int(minimum=0), default=0, help="seeds the architecture sample, the batch and the init")
    correlate.add_argument("--device", default="cpu")
    correlate.add_argument("--batch-size", type=Int(minimum=1), default=64)
    correlate.add_argument("--cache", default=None, help="JSON-lines score cache to reuse and extend")
    correlate.add_argument("--C", type=Int(minimum=1), default=16, help="network width (NB201: 16)")
    correlate.add_argument("--N", type=Int(minimum=1), default=5, help="cells per stage (NB201: 5)")
    correlate.add_argument("--format", choices=["json"], default="json")
    correlate.add_argument("--no-progress", action="store_true", help="no progress bar or per-architecture lines")
    correlate.set_defaults(func=run_correlate)
    register_fit(commands)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def run_list(args) -> int:
    rows = {name: get_proxy(name).to_dict() for name in proxy_names()}
    if args.format == "json":
        print_json(rows)
    else:
        for name, row in rows.items():
            flags = [flag for flag in ("needs_gradients", "needs_labels", "removes_bn", "layerwise") if row[flag]]
            print(f"{name:15s} {row['description']}  [{', '.join(flags) or '-'}]")
    return 0


def parse_proxies(text: str) -> List[str]:
    names = proxy_names() if text == "all" else [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ConfigError("--proxies needs at least one proxy name, or 'all'")
    from nastk.proxies.compute import plan_proxies

    plan_proxies(names)  # every name, function, pass and need checked before any work
    return names


def sample_architectures(space, n: int, seed: int) -> list:
    """``n`` distinct uniformly random architectures, the same for the same seed."""
    rng = np.random.default_rng(seed)
    archs, seen = [], set()
    limit = len(space) if "enumerate" in space.capabilities else None
    if limit is not None and n > limit:
        raise ConfigError(f"--sample {n} exceeds the {limit} architectures of space {space.name!r}")
    while len(archs) < n:
        arch = space.sample(rng)
        if arch not in seen:
            seen.add(arch)
            archs.append(arch)
    return archs


def _ground_truth(arch_strs: Sequence[str], dataset: str) -> np.ndarray:
    """NB201 200-epoch test accuracy (seed-averaged NB201-API family) of each architecture string."""
    from nastk.benchmarks.nb201 import default_table
    from nastk.protocol import Protocol
    from nastk.space import get_space

    if dataset not in GROUND_TRUTH_DATASETS:
        raise ConfigError(f"no NB201 test accuracy for {dataset!r}; "
                          f"choose --truth from {', '.join(GROUND_TRUTH_DATASETS)}")
    space = get_space("nb201")
    archs = [space.from_str(text) for text in arch_strs]
    return default_table().accuracies(archs, Protocol(dataset, "test", 200, "nb201api"))


def correlations(scores: Dict[str, np.ndarray], truth: np.ndarray) -> Dict[str, Dict[str, float]]:
    """Spearman and Kendall of each proxy vs ``truth``; failed (NaN) scores rank last."""
    from nastk.metrics import kendall_tau, spearman_rho

    from nastk.proxies import nan_last

    out = {}
    for name, values in scores.items():
        ranked = nan_last(values, get_proxy(name).higher_is_better)
        out[name] = {"spearman": spearman_rho(ranked, truth), "kendall": kendall_tau(ranked, truth),
                     "n": int(len(values)), "nan": int(np.isnan(values).sum())}
    return out


def run_correlate(args) -> int:
    from nastk.evaluators.proxy import score_architectures
    from nastk.space import get_space

    if args.space != "nb201":
        raise ConfigError(f"correlate needs benchmark ground truth, which nastk has for nb201 only, not {args.space!r}")
    if args.sample < 2:
        raise ConfigError("--sample must be at least 2 to correlate")
    names = parse_proxies(args.proxies)
    space = get_space(args.space)
    archs = sample_architectures(space, args.sample, args.seed)
    truth = _ground_truth([space.to_str(a) for a in archs], args.truth or args.dataset)
    scored = score_architectures(space, archs, names, dataset=args.dataset, batch_size=args.batch_size,
                                 seed=args.seed, device=args.device, cache_path=args.cache,
                                 build_options={"C": args.C, "N": args.N},
                                 progress=not args.no_progress)
    result = correlations(scored.scores, truth)
    for name in names:
        result[name]["seconds_per_arch"] = float(np.nanmean(scored.seconds[name]))
    print_json(result)
    return 0
