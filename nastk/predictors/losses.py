"""Ranking losses for predictors (methods.md 8.3): DiffKendall, MSE, pairwise logistic, and their sums.

A predictor used for NAS only has to *order* architectures, so ParZC trains with a differentiable
Kendall tau. Two scalings exist and both are offered:

* ``scale="paper"`` (DiffKendall, Zheng et al. 2023): tau_a = 2/(N(N-1)) sum_{i<j} tanh(a ds) tanh(a dy),
  which tends to Kendall's tau as a -> infinity;
* ``scale="picoNAS"`` (the ParZC code): sigmoid(a d) - sigmoid(-a d) = tanh(a d / 2) for both factors,
  summed over ordered pairs i != j and divided by N(N-1)/2, i.e. ``picoNAS(a) = 2 * paper(a / 2)``.
"""
from __future__ import annotations

from typing import Callable, Dict

import torch

from nastk.errors import ConfigError

SCALES = ("paper", "picoNAS")


def _differences(values: torch.Tensor) -> torch.Tensor:
    values = values.reshape(-1)
    return values.unsqueeze(1) - values.unsqueeze(0)  # [i, j] = v_i - v_j


def diffkendall(scores: torch.Tensor, targets: torch.Tensor, alpha: float = 0.5, scale: str = "picoNAS") -> torch.Tensor:
    """The differentiable Kendall tau of ``scores`` against ``targets`` (higher = better agreement)."""
    n = scores.numel()
    if n < 2:
        raise ConfigError("DiffKendall needs at least 2 architectures per batch")
    ds, dy = _differences(scores), _differences(targets.to(scores.dtype))
    if scale == "paper":
        pairs = torch.tanh(alpha * ds) * torch.tanh(alpha * dy)
        return pairs.triu(diagonal=1).sum() * 2.0 / (n * (n - 1))
    if scale == "picoNAS":
        pairs = (torch.sigmoid(alpha * ds) - torch.sigmoid(-alpha * ds)) * (
            torch.sigmoid(alpha * dy) - torch.sigmoid(-alpha * dy))
        return pairs.sum() / (n * (n - 1) / 2.0)  # the diagonal is 0, so this is the sum over i != j
    raise ConfigError(f"unknown DiffKendall scale {scale!r}; choose from {', '.join(SCALES)}")


def diffkendall_loss(scores, targets, alpha: float = 0.5, scale: str = "picoNAS") -> torch.Tensor:
    return -diffkendall(scores, targets, alpha, scale)


def mse_loss(scores, targets) -> torch.Tensor:
    return torch.nn.functional.mse_loss(scores.reshape(-1), targets.reshape(-1).to(scores.dtype))


def pairwise_loss(scores, targets) -> torch.Tensor:
    """mean over i != j of log(1 + exp(-(s_i - s_j) * sign(y_i - y_j)))."""
    n = scores.numel()
    margins = -_differences(scores) * torch.sign(_differences(targets.to(scores.dtype)))
    off_diagonal = ~torch.eye(n, dtype=torch.bool, device=scores.device)
    return torch.nn.functional.softplus(margins)[off_diagonal].mean()


_PARTS: Dict[str, Callable] = {"mse": mse_loss, "pw": pairwise_loss, "dk": diffkendall_loss}
_ALIASES = {"diffkendall": "dk", "pairwise": "pw"}


def make_loss(name: str, alpha: float = 0.5, scale: str = "picoNAS") -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``diffkendall``, ``mse``, ``pw``/``pairwise`` or a ``+``-sum such as ``mse+dk`` (the spec's ablations)."""
    parts = [_ALIASES.get(part.strip(), part.strip()) for part in name.split("+")]
    unknown = [p for p in parts if p not in _PARTS]
    if unknown or not parts:
        raise ConfigError(f"unknown loss {name!r}; use diffkendall, mse, pw or sums like mse+dk")
    if scale not in SCALES:
        raise ConfigError(f"unknown DiffKendall scale {scale!r}; choose from {', '.join(SCALES)}")

    def loss(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return sum(diffkendall_loss(scores, targets, alpha, scale) if p == "dk" else _PARTS[p](scores, targets)
                   for p in parts)

    return loss
