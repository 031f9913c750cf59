"""Training and Monte-Carlo prediction for architecture-performance predictors (methods.md 8.4).

Protocol of the ParZC code: Adam (lr 1e-4, weight decay 1e-3), cosine annealing over the epochs,
train batch 10, targets z-normalised over the training split. Zero-cost statistics span dozens of
orders of magnitude (synflow reaches 1e30), so inputs are sign(x) log(1 + |x|) and then standardised
with the training split's mean and std: a choice of nastk, the spec does not say how the code scales.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import List, Optional, Tuple

import numpy as np
import torch

from nastk.errors import ConfigError
from nastk.predictors.losses import make_loss


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 300
    batch_size: int = 10
    lr: float = 1e-4
    weight_decay: float = 1e-3
    loss: str = "diffkendall"
    alpha: float = 0.5
    scale: str = "picoNAS"
    #: Cap on optimiser steps (fewer epochs for large training sets); None trains all epochs.
    max_steps: Optional[int] = None

    def to_dict(self):
        return asdict(self)

    def epochs_for(self, n: int) -> int:
        steps_per_epoch = max(1, n // self.batch_size)
        return max(1, min(self.epochs, self.max_steps // steps_per_epoch)) if self.max_steps else self.epochs


class FeatureScaler:
    """Signed log, then standardisation with statistics of the training split only."""

    def fit(self, x: np.ndarray) -> "FeatureScaler":
        logged = self._log(x)
        self.mean, std = logged.mean(axis=0), logged.std(axis=0)
        self.std = np.where(std > 0, std, 1.0)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        return ((self._log(x) - self.mean) / self.std).astype(np.float32)

    @staticmethod
    def _log(x: np.ndarray) -> np.ndarray:
        x = np.nan_to_num(np.asarray(x, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        return np.sign(x) * np.log1p(np.abs(x))


def train(model: torch.nn.Module, x: np.ndarray, ops: np.ndarray, y: np.ndarray, cfg: TrainConfig,
          seed: int = 0) -> List[float]:
    """Fit ``model(x, ops) -> score`` to ``y``; returns the mean training loss of every epoch."""
    if len(y) < 2:
        raise ConfigError(f"training a predictor needs at least 2 labelled architectures, got {len(y)}")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    loss_fn = make_loss(cfg.loss, cfg.alpha, cfg.scale)
    x_t, ops_t = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(ops, dtype=torch.long)
    y = np.asarray(y, dtype=np.float64)
    y_t = torch.as_tensor((y - y.mean()) / (y.std() or 1.0), dtype=torch.float32)
    epochs = cfg.epochs_for(len(y))
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    history = []
    model.train()
    for _ in range(epochs):
        order, losses = torch.randperm(len(y_t), generator=generator), []
        for start in range(0, len(order), cfg.batch_size):
            batch = order[start:start + cfg.batch_size]
            if len(batch) < 2:  # a ranking loss needs a pair
                continue
            loss = loss_fn(model(x_t[batch], ops_t[batch]), y_t[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        schedule.step()
        history.append(float(np.mean(losses)))
    return history


@torch.no_grad()
def predict(model: torch.nn.Module, x: np.ndarray, ops: np.ndarray, samples: int = 20,
            batch_size: int = 512) -> Tuple[np.ndarray, np.ndarray]:
    """Mean and std over ``samples`` forward passes (dropout off; Bayesian layers keep sampling)."""
    model.eval()
    x_t, ops_t = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(ops, dtype=torch.long)
    draws = np.stack([
        np.concatenate([model(x_t[i:i + batch_size], ops_t[i:i + batch_size]).numpy()
                        for i in range(0, len(x_t), batch_size)])
        for _ in range(max(1, samples))])
    return draws.mean(axis=0), draws.std(axis=0)
