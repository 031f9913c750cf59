"""Plain supervised training and evaluation of a stand-alone network, on any device.

Used by the train-from-scratch evaluator and for training a search's winner. Deterministic for a
seed on CPU: the seed fixes weight initialisation and batch order.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from nastk.devices import HOST, resolve_device


@dataclass(frozen=True)
class TrainingConfig:
    """SGD with Nesterov momentum and a cosine schedule, NB201's recipe at a configurable length."""

    epochs: int = 4
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4


def train_model(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: TrainingConfig,
                device=None, seed: int = 0, loss=None) -> float:
    """Train in place on ``device`` (None: where the model is); returns the last epoch's mean training loss.
    Batch order is drawn on the host from ``seed``, so it is the same on every device. ``loss(outputs, y)``:
    None is cross-entropy against labels (a super-resolution network takes L1 against its targets ``y``)."""
    device = resolve_device(device, model)
    model.to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay, nesterov=True)
    steps_per_epoch = math.ceil(len(x) / config.batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, config.epochs * steps_per_epoch))
    generator = torch.Generator(HOST).manual_seed(seed)
    loss_fn = loss or nn.CrossEntropyLoss()
    last_loss = math.nan
    for _ in range(config.epochs):
        order = torch.randperm(len(x), generator=generator, device=HOST)
        total = 0.0
        for start in range(0, len(x), config.batch_size):
            batch = order[start:start + config.batch_size]
            inputs, targets = x[batch].to(device), y[batch].to(device)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(inputs), targets)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.item() * len(batch)
        last_loss = total / len(x)
    return last_loss


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device=None, batch_size: int = 512) -> float:
    """Top-1 accuracy in percent, computed on ``device`` (None: where the model is)."""
    device = resolve_device(device, model)
    model.to(device).eval()
    correct = 0
    for start in range(0, len(x), batch_size):
        logits = model(x[start:start + batch_size].to(device))
        correct += int((logits.argmax(1).cpu() == y[start:start + batch_size]).sum())
    return 100.0 * correct / max(1, len(x))
