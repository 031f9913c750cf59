"""Ranking and search-quality metrics, written once for every evaluator and report (methods.md 0.4, 14)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import stats

from nastk.errors import ConfigError


def _paired(scores: Sequence[float], truth: Sequence[float]):
    scores, truth = np.asarray(scores, dtype=float), np.asarray(truth, dtype=float)
    if scores.shape != truth.shape or scores.ndim != 1:
        raise ConfigError(f"scores and ground truth must be equal-length 1-D sequences, got {scores.shape} and {truth.shape}")
    keep = np.isfinite(scores) & np.isfinite(truth)
    return scores[keep], truth[keep]


def kendall_tau(scores: Sequence[float], truth: Sequence[float]) -> float:
    """Kendall's tau-b (scipy's default) over the pairs where both values are finite."""
    scores, truth = _paired(scores, truth)
    return float(stats.kendalltau(scores, truth).statistic) if len(scores) > 1 else float("nan")


def spearman_rho(scores: Sequence[float], truth: Sequence[float]) -> float:
    scores, truth = _paired(scores, truth)
    return float(stats.spearmanr(scores, truth).statistic) if len(scores) > 1 else float("nan")


def precision_at_k(scores: Sequence[float], truth: Sequence[float], k: int) -> float:
    """Fraction of the predicted top-k that is in the true top-k (NaN scores rank last)."""
    scores, truth = np.asarray(scores, dtype=float), np.asarray(truth, dtype=float)
    if not 0 < k <= len(scores):
        raise ConfigError(f"precision@k needs 0 < k <= {len(scores)}, got k={k}")
    predicted = np.argsort(-np.nan_to_num(scores, nan=-np.inf), kind="stable")[:k]
    actual = np.argsort(-np.nan_to_num(truth, nan=-np.inf), kind="stable")[:k]
    return len(set(predicted.tolist()) & set(actual.tolist())) / k


def relative_improvement(method_accuracies: Sequence[float], random_accuracies: Sequence[float]) -> float:
    """RI = 100 * (mean method accuracy - mean random accuracy) / mean random accuracy (methods.md 14.1)."""
    method, random = np.asarray(method_accuracies, dtype=float), np.asarray(random_accuracies, dtype=float)
    if method.size == 0 or random.size == 0:
        raise ConfigError("relative improvement needs at least one method and one random accuracy")
    baseline = random.mean()
    return float(100.0 * (method.mean() - baseline) / baseline)
