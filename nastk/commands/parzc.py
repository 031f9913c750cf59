"""``nastk proxies fit parzc``: train ParZC (or an ablation) on K labelled NB201 architectures and report
its rank correlation on the rest of the layer-wise pool.

The ``proxies`` command group belongs to :mod:`nastk.commands.proxies`; it hooks this in with
``register_fit(commands)`` on its sub-command parsers.
"""
from __future__ import annotations

import sys

from nastk.commands import print_json
from nastk.errors import ConfigError
from nastk.options import Int


def register_fit(commands) -> None:
    """Add ``fit`` to the ``nastk proxies`` sub-commands (the predictor modules load only when it runs)."""
    parser = commands.add_parser("fit", help="train a learned proxy (ParZC) on a few labelled architectures")
    add = parser.add_argument
    add("predictor", choices=["parzc"], help="the learned proxy to fit")
    add("--space", default="nb201", help="search space (nb201)")
    add("--dataset", default="cifar10", help="labels: cifar10, cifar100 or ImageNet16-120 (inputs are CIFAR-10 statistics)")
    add("--train-size", type=Int(minimum=1), required=True, help="labelled architectures K (e.g. 78, 156, 469, 781)")
    add("--seed", type=Int(minimum=0), default=0, help="split and training seed")
    add("--variant", default="parzc",
        help="parzc (DiffKendall, Bayesian), parzc-mse, parzc-det (no Bayesian layers), mlp (plain MLP on x_zc)")
    add("--loss", help="override the variant's loss: diffkendall, mse, pw, or sums like mse+dk")
    add("--config", default="small", help="model size: small (CPU, default) or full (published)")
    add("--token-mixing", action="store_true", help="mix across patches in the mixer (the paper's intent; the code does not)")
    add("--epochs", type=Int(minimum=1), default=300, help="training epochs (default 300, the ParZC runner's)")
    add("--batch-size", type=Int(minimum=1), default=10, help="training batch (default 10)")
    add("--max-steps", type=Int(minimum=1), help="cap on optimiser steps (fewer epochs for large K)")
    add("--pool-size", type=Int(minimum=1), help="use the first N architectures of the layer-wise cache, computing missing ones "
                                      "(about 1 s each); default: the whole cache")
    add("--mc-samples", type=Int(minimum=1), default=20, help="forward passes for the predictive mean and std")
    add("--format", choices=["text", "json"], default="text")
    parser.set_defaults(func=run_fit)


def run_fit(args) -> int:
    import torch

    from nastk.predictors.experiment import VARIANTS, fit_and_evaluate, nb201_data, proxy_baselines
    from nastk.predictors.parzc import CONFIGS
    from nastk.predictors.trainer import TrainConfig

    for flag, value, known in (("--variant", args.variant, VARIANTS), ("--config", args.config, CONFIGS)):
        if value not in known:
            raise ConfigError(f"unknown {flag} {value!r}; known: {', '.join(sorted(known))}")
    if args.space != "nb201":
        raise ConfigError(f"ParZC's layer-wise statistics are available for nb201 only, not {args.space!r}")
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 2)))
    data = nb201_data(args.dataset, args.pool_size, log=lambda line: print(line, file=sys.stderr))
    train_config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, max_steps=args.max_steps)
    result = fit_and_evaluate(data, args.train_size, args.seed, args.variant, args.config, train_config,
                              args.mc_samples, loss=args.loss, token_mixing=args.token_mixing)
    baselines = proxy_baselines(data, args.train_size, args.seed)
    best = max(baselines, key=lambda name: baselines[name]["kendall"])
    result.update(dataset=args.dataset, best_single_proxy={"name": best, **baselines[best]}, proxies=baselines)
    if args.format == "json":
        print_json(result)
    else:
        print(f"{args.variant} trained on {result['train_size']} archs, ranked {result['held_out']} held-out "
              f"({result['protocols']['eval']}): Kendall {result['kendall']:.4f}, Spearman {result['spearman']:.4f}, "
              f"Pearson {result['pearson']:.4f}; mean predictive std {result['mean_predictive_std']:.4f}")
        print(f"best single proxy on the same archs: {best} Kendall {baselines[best]['kendall']:.4f}; "
              f"wall {result['wall_s']:.1f} s")
    return 0
