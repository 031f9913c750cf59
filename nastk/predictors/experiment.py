"""One ParZC experiment: split a labelled pool, train a predictor on K architectures, rank the rest.

Shared by ``nastk proxies fit parzc`` and ``scripts/reproduce_parzc.py`` so both report the same
numbers. Training labels are the dataset's 200-epoch *validation* accuracy where NB201 has it
(cifar10: cifar10-valid x-valid), else its 200-epoch test accuracy; held-out architectures are always
scored against the 200-epoch test accuracy (Kendall tau-b, Spearman, Pearson).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from nastk.errors import ConfigError
from nastk.metrics import kendall_tau, spearman_rho
from nastk.paths import write_cache, write_file
from nastk.predictors import layerwise_features
from nastk.predictors.parzc import ParZC, ZCMLP, config, op_indices
from nastk.predictors.fitting import FeatureScaler, TrainConfig, predict, train
from nastk.protocol import Protocol

#: The ablations of methods.md 8.6: loss, Bayesian layers, architecture.
VARIANTS: Dict[str, Dict[str, object]] = {
    "parzc": {"model": "parzc", "loss": "diffkendall", "bayesian": True},
    "parzc-mse": {"model": "parzc", "loss": "mse", "bayesian": True},
    "parzc-det": {"model": "parzc", "loss": "diffkendall", "bayesian": False},
    "mlp": {"model": "mlp", "loss": "diffkendall", "bayesian": False},
}
TRAIN_PROTOCOL = {"cifar10": "cifar10-valid/valid/200"}


@dataclass
class PredictorData:
    """A labelled pool: raw x_zc, op indices, training labels, evaluation labels, proxy baselines;
    ``features`` records how x_zc was computed (:meth:`LayerwisePool.protocol`), which a saved
    predictor needs to score new architectures."""

    archs: List
    x: np.ndarray
    ops: np.ndarray
    train_target: np.ndarray
    eval_target: np.ndarray
    baselines: Dict[str, np.ndarray]
    protocols: Dict[str, str]
    dataset: str = ""
    features: Dict[str, object] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.archs)


def nb201_data(dataset: str = "cifar10", pool_size: Optional[int] = None, log=None,
               progress: bool = False,
               statistics: Sequence[str] = layerwise_features.STATISTICS) -> PredictorData:
    """The first ``pool_size`` architectures of the cached layer-wise pool (computing missing ones
    first; None: the whole cache) with NB201 labels. The pool's order is a fixed random permutation,
    so any prefix is a uniform random subset and results do not depend on how far the cache has grown.

    The statistics are computed on CIFAR-10 images for every dataset (as in the ParZC code for
    ImageNet16-120); CIFAR-100 and ImageNet16-120 images are not available offline. ``progress``
    shows the computation of missing architectures (see :func:`layerwise_features.extend_pool`).
    ``statistics``: the per-layer proxies of x_zc (ParZC's grad_norm, snip, synflow by default; any
    per-layer proxy, a user's too, in a pool of its own).
    """
    from nastk.benchmarks.nb201 import default_table
    from nastk.space import get_space

    space, table = get_space("nb201"), default_table()
    # labels first: an unknown dataset is refused before the cache is copied or grown
    train_protocol = table.resolve(Protocol.parse(TRAIN_PROTOCOL.get(dataset, f"{dataset}/test/200")))
    eval_protocol = table.resolve(Protocol(dataset, "test", 200))
    pool = layerwise_pool(pool_size, log, progress, statistics)
    archs = [space.from_code(int(code)) for code in pool.codes]
    baselines = dict(pool.totals())
    if "cifar10/params_m" in table.columns:
        baselines["params"] = table.columns["cifar10/params_m"][table.positions(archs)]
    layout = "compact"  # the reference code's
    return PredictorData(archs, pool.features(layout), op_indices(space, archs),
                         table.accuracies(archs, train_protocol), table.accuracies(archs, eval_protocol), baselines,
                         {"train": train_protocol.key, "eval": eval_protocol.key}, dataset, pool.protocol(layout))


def layerwise_pool(pool_size: Optional[int] = None, log=None, progress: bool = False,
                   statistics: Sequence[str] = layerwise_features.STATISTICS) -> layerwise_features.LayerwisePool:
    """The first ``pool_size`` architectures of the cached layer-wise pool of ``statistics`` (None: all of it)."""
    statistics = layerwise_features.layerwise_statistics(statistics)
    path = source = layerwise_features.cache_path(statistics=statistics)
    committed = layerwise_features.committed_cache(path)
    if not path.is_file() and committed.is_file():
        # A fresh checkout: start from the statistics committed beside the results (checked on load).
        # The copy is a cache: when it cannot be written, the committed file is read where it is.
        if not write_cache(lambda: write_file(path, committed.read_bytes()), "the committed layer-wise statistics",
                           f"they are read from {committed}"):
            source = committed
        if log:
            log(f"using the committed layer-wise statistics {committed}")
    if pool_size:
        pool = layerwise_features.load_pool(source) if source.is_file() else None
        if pool is None or len(pool) < pool_size:
            pool = layerwise_features.extend_pool(pool_size, path, log=log, progress=progress, start=pool,
                                                  statistics=statistics)
        return pool.subset(np.arange(pool_size))
    if source.is_file():
        return layerwise_features.load_pool(source)
    raise _no_cache(path)


def cached_pool_size(statistics: Sequence[str] = layerwise_features.STATISTICS) -> int:
    """How many architectures :func:`nb201_data` uses without ``pool_size``, read without writing anything
    (so a command can check its split before it copies or grows a cache)."""
    path = layerwise_features.cache_path(statistics=layerwise_features.layerwise_statistics(statistics))
    for candidate in (path, layerwise_features.committed_cache(path)):
        if candidate.is_file():
            return len(layerwise_features.load_pool(candidate))
    raise _no_cache(path)


def _no_cache(path) -> ConfigError:
    return ConfigError(f"no layer-wise statistics cached at {path} (nor committed at "
                       f"{layerwise_features.committed_cache(path)}); pass --pool-size N to compute N architectures "
                       "(about 1 s each on one core)")


def check_train_size(train_size: int, pool_size: int) -> None:
    """A split needs 2 or more training architectures and 1 or more held out."""
    if not 2 <= train_size < pool_size:
        raise ConfigError(f"--train-size must be between 2 and {pool_size - 1} for a pool of {pool_size} "
                          f"architectures, got {train_size}")


def split(n: int, train_size: int, seed: int):
    check_train_size(train_size, n)
    order = np.random.default_rng(seed).permutation(n)
    return order[:train_size], order[train_size:]


def variant_spec(variant: str) -> Dict[str, object]:
    if variant not in VARIANTS:
        raise ConfigError(f"unknown predictor variant {variant!r}; choose from {', '.join(VARIANTS)}")
    return VARIANTS[variant]


def build_model(variant: str, in_features: int, model_config: str = "small", **overrides) -> torch.nn.Module:
    """``overrides`` change fields of the named :class:`ParZCConfig` (e.g. ``token_mixing=True``)."""
    spec = variant_spec(variant)
    if spec["model"] == "mlp":
        return ZCMLP(in_features)
    return ParZC(in_features, config(model_config, **{"bayesian": bool(spec["bayesian"]), **overrides}))


def correlations(scores: np.ndarray, truth: np.ndarray) -> Dict[str, float]:
    keep = np.isfinite(scores) & np.isfinite(truth)
    return {"kendall": kendall_tau(scores, truth), "spearman": spearman_rho(scores, truth),
            "pearson": float(np.corrcoef(scores[keep], truth[keep])[0, 1])}


@dataclass
class FittedPredictor:
    """A trained predictor with what scoring another architecture needs (the training split's scaler,
    how the pool's x_zc was computed) and ``report``, the fit's held-out evaluation."""

    model: torch.nn.Module
    scaler: FeatureScaler
    features: Dict[str, object]
    dataset: str
    mc_samples: int
    report: Dict[str, object]


def fit_predictor(data: PredictorData, train_size: int, seed: int = 0, variant: str = "parzc",
                  model_config: str = "small", train_config: Optional[TrainConfig] = None,
                  mc_samples: int = 20, loss: Optional[str] = None, progress=None,
                  **model_overrides) -> FittedPredictor:
    """Train ``variant`` on ``train_size`` random pool archs; correlations on all the others.

    The variant fixes the loss (``loss`` overrides it); ``train_config`` sets everything else;
    ``progress`` (a :class:`nastk.progress.Progress` over the epochs) follows the training.
    """
    started = time.perf_counter()
    train_rows, test_rows = split(len(data), train_size, seed)
    spec = variant_spec(variant)
    cfg = replace(train_config or TrainConfig(), loss=loss or str(spec["loss"]))
    scaler = FeatureScaler().fit(data.x[train_rows])
    torch.manual_seed(seed)
    model = build_model(variant, data.x.shape[1], model_config, **model_overrides)
    losses = train(model, scaler.transform(data.x[train_rows]), data.ops[train_rows], data.train_target[train_rows],
                   cfg, seed, progress=progress)
    mean, std = predict(model, scaler.transform(data.x[test_rows]), data.ops[test_rows], mc_samples)
    report = {"variant": variant, "train_size": int(train_size), "held_out": int(len(test_rows)), "seed": seed,
              **correlations(mean, data.eval_target[test_rows]),
              "mean_predictive_std": float(std.mean()), "final_train_loss": losses[-1],
              "model": {"config": model_config, **model.cfg.to_dict()} if isinstance(model, ParZC) else "mlp",
              "train": {**cfg.to_dict(), "epochs_run": cfg.epochs_for(train_size)},
              "protocols": data.protocols, "pool_size": len(data), "wall_s": round(time.perf_counter() - started, 2)}
    return FittedPredictor(model, scaler, dict(data.features), data.dataset, mc_samples, report)


def fit_and_evaluate(data: PredictorData, train_size: int, seed: int = 0, variant: str = "parzc",
                     model_config: str = "small", train_config: Optional[TrainConfig] = None,
                     mc_samples: int = 20, loss: Optional[str] = None, **model_overrides) -> Dict[str, object]:
    """:func:`fit_predictor`'s report alone (the reproduction script keeps no models)."""
    return fit_predictor(data, train_size, seed, variant, model_config, train_config, mc_samples, loss,
                         **model_overrides).report


def proxy_baselines(data: PredictorData, train_size: int, seed: int = 0) -> Dict[str, Dict[str, float]]:
    """Each raw proxy (sum over layers) on the same held-out architectures, no training."""
    _, test_rows = split(len(data), train_size, seed)
    return {name: correlations(values[test_rows], data.eval_target[test_rows]) for name, values in data.baselines.items()}
