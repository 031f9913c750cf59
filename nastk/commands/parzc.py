"""``nastk proxies fit parzc``: train ParZC (or an ablation) on K labelled NB201 architectures and report
its rank correlation on the rest of the layer-wise pool (``--save PATH`` keeps the fitted predictor);
``nastk proxies predict PATH ARCH...``: score NB201 architectures with a saved predictor.

The ``proxies`` command group belongs to :mod:`nastk.commands.proxies`; it hooks both in with
``register_fit(commands)`` on its sub-command parsers.
"""
from __future__ import annotations

import argparse

from nastk.commands import print_json
from nastk.errors import ConfigError
from nastk.log import LOGGER
from nastk.options import Int


def register_fit(commands) -> None:
    """Add ``fit`` and ``predict`` to the ``nastk proxies`` sub-commands (the predictor modules load only
    when one runs)."""
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
    add("--statistics", default=None, metavar="PROXIES",
        help="comma-separated per-layer proxies of x_zc (default grad_norm,snip,synflow, ParZC's); any per-layer "
             "proxy, pkg.mod:func too, computed in a pool of their own (needs --pool-size the first time)")
    add("--model-size", default=None, help="predictor size: small (CPU, default) or full (published)")
    add("--config", dest="deprecated_config", help=argparse.SUPPRESS)  # the deprecated spelling of --model-size
    add("--token-mixing", action="store_true", help="mix across patches in the mixer (the paper's intent; the code does not)")
    add("--epochs", type=Int(minimum=1), default=300, help="training epochs (default 300, the ParZC runner's)")
    add("--batch-size", type=Int(minimum=1), default=10, help="training batch (default 10)")
    add("--max-steps", type=Int(minimum=1), help="cap on optimiser steps (fewer epochs for large K)")
    add("--pool-size", type=Int(minimum=1), help="use the first N architectures of the layer-wise cache, computing missing ones "
                                      "(about 1 s each); default: the whole cache")
    add("--mc-samples", type=Int(minimum=1), default=20, help="forward passes for the predictive mean and std")
    add("--save", metavar="PATH", help="write the fitted predictor to PATH (a .pt file) for the parzc evaluator "
                                       "and nastk proxies predict")
    add("--no-progress", action="store_true",
        help="no progress bar (or, when stderr is not a terminal, no line per training epoch, with the lowest "
             "epoch loss so far, nor per computed architecture)")
    add("--format", choices=["text", "json"], default="text")
    parser.set_defaults(func=run_fit)

    predict = commands.add_parser("predict", help="score NB201 architectures with a predictor saved by fit --save")
    predict.add_argument("path", metavar="PATH", help="the saved predictor (nastk proxies fit parzc ... --save PATH)")
    predict.add_argument("archs", metavar="ARCH", nargs="+", help="NB201 architecture strings")
    predict.add_argument("--mc-samples", type=Int(minimum=1), default=20, help="forward passes averaged per prediction")
    predict.add_argument("--seed", type=Int(minimum=0), default=0, help="seeds the Monte-Carlo passes")
    predict.add_argument("--device", default="cpu", help="device that runs the predictor (statistics run on the CPU)")
    predict.add_argument("--format", choices=["text", "json"], default="text")
    predict.add_argument("--no-progress", action="store_true",
                         help="no progress bar (or, when stderr is not a terminal, no line per architecture)")
    predict.set_defaults(func=run_predict)


def run_fit(args) -> int:
    import torch

    from nastk.predictors.experiment import (VARIANTS, cached_pool_size, check_train_size, fit_predictor, nb201_data,
                                             proxy_baselines)
    from nastk.predictors.losses import make_loss
    from nastk.predictors.parzc import CONFIGS
    from nastk.predictors.saved import check_destination, save_predictor
    from nastk.predictors.fitting import TrainConfig
    from nastk.progress import Progress

    # Everything a user can get wrong is refused here, before a cache is copied or grown or a file written.
    if args.deprecated_config is not None:
        if args.model_size is not None:
            raise ConfigError("give --model-size only (--config is its deprecated spelling)")
        LOGGER.warning("nastk: warning: 'proxies fit --config %s' is deprecated and will be removed in the next "
                       "release; use --model-size %s ('--config' means a configuration file everywhere else)",
                       args.deprecated_config, args.deprecated_config)
    model_size = args.model_size or args.deprecated_config or "small"
    for flag, value, known in (("--variant", args.variant, VARIANTS), ("--model-size", model_size, CONFIGS)):
        if value not in known:
            raise ConfigError(f"unknown {flag} {value!r}; known: {', '.join(sorted(known))}")
    if args.space != "nb201":
        raise ConfigError(f"ParZC's layer-wise statistics are available for nb201 only, not {args.space!r}")
    if args.loss:
        make_loss(args.loss)
    from nastk.predictors.layerwise_features import STATISTICS, layerwise_statistics

    statistics = layerwise_statistics([n.strip() for n in args.statistics.split(",")] if args.statistics else STATISTICS)
    save = check_destination(args.save) if args.save else None
    check_train_size(args.train_size, args.pool_size or cached_pool_size(statistics))
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 2)))
    data = nb201_data(args.dataset, args.pool_size, log=LOGGER.info,
                      progress=not args.no_progress, statistics=statistics)
    train_config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, max_steps=args.max_steps)
    with Progress(train_config.epochs_for(args.train_size), f"training {args.variant}", "epochs",
                  enabled=not args.no_progress) as bar:
        fitted = fit_predictor(data, args.train_size, args.seed, args.variant, model_size, train_config,
                               args.mc_samples, loss=args.loss, progress=bar, token_mixing=args.token_mixing)
    result = fitted.report
    if save:
        result["saved"] = str(save_predictor(save, fitted))
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
        if save:
            print(f"saved the fitted predictor to {result['saved']}")
    return 0


def run_predict(args) -> int:
    from nastk.evaluators.predictor import ParZCEvaluator
    from nastk.space import get_space

    space = get_space("nb201")
    archs = [space.from_str(text) for text in args.archs]  # a malformed string is refused before any work
    evaluator = ParZCEvaluator(space, args.path, seed=args.seed, device=args.device, mc_samples=args.mc_samples)
    rows = [{"arch": space.to_str(arch), "parzc": result.metrics["parzc"], "parzc_std": result.metrics["parzc_std"],
             "layerwise": result.protocol["layerwise"], "cost_s": result.cost_s}
            for arch, result in zip(archs, evaluator.evaluate_many(archs, progress=not args.no_progress))]
    if args.format == "json":
        print_json({"predictor": evaluator.describe(), "predictions": rows})
    else:
        print(f"{evaluator.predictor.summary()} ({args.path})")
        for row in rows:
            print(f"{row['parzc']:9.4f} ± {row['parzc_std']:.4f}  {row['arch']}")
    return 0
