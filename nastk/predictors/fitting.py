"""Training and Monte-Carlo prediction for architecture-performance predictors (methods.md 8.4).

Protocol of the ParZC code: Adam (lr 1e-4, weight decay 1e-3), cosine annealing over the epochs,
train batch 10, targets z-normalised over the training split. Zero-cost statistics span dozens of
orders of magnitude (synflow reaches 1e30), so inputs are sign(x) log(1 + |x|) and then standardised
with the training split's mean and std: a choice of nastk, the spec does not say how the code scales.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from nastk.devices import HOST, model_device
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

    def state_dict(self) -> Dict[str, np.ndarray]:
        return {"mean": np.asarray(self.mean, dtype=np.float64), "std": np.asarray(self.std, dtype=np.float64)}

    @classmethod
    def from_state_dict(cls, state: Dict[str, np.ndarray]) -> "FeatureScaler":
        """The scaler a training split gave, restored (a saved predictor scales new inputs with it)."""
        scaler = cls()
        scaler.mean = np.asarray(state["mean"], dtype=np.float64)
        scaler.std = np.asarray(state["std"], dtype=np.float64)
        return scaler

    @staticmethod
    def _log(x: np.ndarray) -> np.ndarray:
        x = np.nan_to_num(np.asarray(x, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        return np.sign(x) * np.log1p(np.abs(x))


def train(model: torch.nn.Module, x: np.ndarray, ops: np.ndarray, y: np.ndarray, cfg: TrainConfig,
          seed: int = 0, progress=None) -> List[float]:
    """Fit ``model(x, ops) -> score`` to ``y``; returns the mean training loss of every epoch.

    ``progress`` (a :class:`nastk.progress.Progress` over :meth:`TrainConfig.epochs_for` epochs) is
    updated after each epoch with the lowest epoch loss so far; None trains silently. It trains where the
    model is; the batch order is drawn on the host, so it is the same on every device.
    """
    if len(y) < 2:
        raise ConfigError(f"training a predictor needs at least 2 labelled architectures, got {len(y)}")
    torch.manual_seed(seed)
    generator = torch.Generator(HOST).manual_seed(seed)
    loss_fn = make_loss(cfg.loss, cfg.alpha, cfg.scale)
    device = model_device(model)
    x_t = torch.as_tensor(x, dtype=torch.float32, device=device)
    ops_t = torch.as_tensor(ops, dtype=torch.long, device=device)
    y = np.asarray(y, dtype=np.float64)
    y_t = torch.as_tensor((y - y.mean()) / (y.std() or 1.0), dtype=torch.float32, device=device)
    epochs = cfg.epochs_for(len(y))
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    history = []
    model.train()
    for _ in range(epochs):
        order, losses = torch.randperm(len(y_t), generator=generator, device=HOST).to(device), []
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
        if progress is not None:
            progress.update(best=min(history))
    return history


@torch.no_grad()
def predict(model: torch.nn.Module, x: np.ndarray, ops: np.ndarray, samples: int = 20,
            batch_size: int = 512, seed: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Mean and std over ``samples`` forward passes (dropout off; Bayesian layers keep sampling).

    With a ``seed``, pass ``s`` draws its Bayesian weights from a generator seeded with (seed, s) for
    every batch, so an architecture's prediction is reproducible and the same whether it is scored
    alone or among others (the global torch generator is left as it was).
    """
    model.eval()
    device = model_device(model)
    x_t = torch.as_tensor(x, dtype=torch.float32, device=device)
    ops_t = torch.as_tensor(ops, dtype=torch.long, device=device)

    def forward(sample: int, start: int) -> np.ndarray:
        if seed is not None:
            torch.manual_seed(int(np.random.SeedSequence([seed, sample]).generate_state(1)[0]))
        return model(x_t[start:start + batch_size], ops_t[start:start + batch_size]).cpu().numpy()

    gpus = [torch.cuda.current_device() if device.index is None else device.index] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=gpus) if seed is not None else nullcontext():
        draws = np.stack([np.concatenate([forward(sample, start) for start in range(0, len(x_t), batch_size)])
                          for sample in range(max(1, samples))])
    return draws.mean(axis=0), draws.std(axis=0)
