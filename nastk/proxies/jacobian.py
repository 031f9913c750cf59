"""Scores of the input Jacobian J (one row per example): jacob_cov and EPE-NAS.

Both ask how *differently* a network responds to different inputs at initialisation: correlated
Jacobian rows mean the network cannot tell the inputs apart. Computed in float64 on the host.
"""
from __future__ import annotations

import numpy as np

K = 1e-5


def _corrcoef(rows: np.ndarray) -> np.ndarray:
    """Correlation matrix of the rows; NaN where a row is constant (e.g. an input-independent net)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.corrcoef(rows)


def jacob_cov(jacobian: np.ndarray) -> float:
    """-sum_i [log(l_i + k) + 1/(l_i + k)] over the eigenvalues l of corrcoef(J)."""
    corr = _corrcoef(jacobian)
    if not np.all(np.isfinite(corr)):
        return float("nan")
    eigenvalues = np.linalg.eigvalsh(corr)
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(-np.sum(np.log(eigenvalues + K) + 1.0 / (eigenvalues + K)))


def epe_nas(jacobian: np.ndarray, labels: np.ndarray) -> float:
    """Sum over classes of |sum_ij log(|R_c,ij| + k)|, R_c = corrcoef of class c's Jacobian rows.

    Low within-class correlation gives large magnitudes; classes with one example carry no
    correlation and are skipped.
    """
    score = 0.0
    for label in np.unique(labels):
        rows = jacobian[labels == label]
        if len(rows) < 2:
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            score += abs(float(np.sum(np.log(np.abs(_corrcoef(rows)) + K))))
    return score
