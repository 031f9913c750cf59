"""Supernet gradient variance at fixed weights, the quantity PA&DA's importance sampling lowers.

Following methods.md 1.5: draw minibatches the way a sampler would (a path from its path
distribution, examples from its epoch list), compute the full flattened gradient of each (inactive
parameters count as zero) without stepping, and report the total variance across minibatches
(the trace of the gradient covariance, unbiased over minibatches).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np
import torch

from nastk.datasets import crop_flip_params
from nastk.devices import HOST
from nastk.oneshot.samplers import draw_paths


def flat_gradient(parameters: Sequence[torch.nn.Parameter]) -> torch.Tensor:
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).detach().reshape(-1).double().cpu()
                      for p in parameters])


def gradient_variance(trainer, path_probabilities: np.ndarray, data_indices: np.ndarray, batches: int = 10,
                      seed: int = 0, batch_size: Optional[int] = None) -> Dict[str, float]:
    """Variance of the minibatch gradient of ``trainer``'s supernet at its current weights.

    ``path_probabilities[d, o]`` is the path distribution and ``data_indices`` the example list
    (a batch = ``batch_size`` entries of it without replacement, as in a shuffled epoch).
    Augmentation follows the trainer's config. The weights are not changed.
    """
    batch_size = batch_size or trainer.config.batch_size
    rng = np.random.default_rng(seed)
    augment_rng = torch.Generator().manual_seed(seed)
    data_indices = np.asarray(data_indices)
    parameters = list(trainer.supernet.parameters())
    trainer.supernet.train()
    gradients = []
    for path in draw_paths(path_probabilities, rng, batches):
        positions = rng.choice(len(data_indices), size=min(batch_size, len(data_indices)), replace=False)
        indices = torch.as_tensor(data_indices[positions], dtype=torch.long, device=HOST)  # examples() moves them
        augment = crop_flip_params(len(indices), augment_rng) if trainer.config.augment else None
        trainer.activate(path)
        trainer.forward_backward(indices, augment)
        gradients.append(flat_gradient(parameters))
    trainer.supernet.zero_grad(set_to_none=True)
    stacked = torch.stack(gradients)
    mean = stacked.mean(0)
    total = float(((stacked - mean) ** 2).sum(1).sum() / (len(stacked) - 1))
    return {"total_variance": total, "mean_gradient_sq_norm": float(mean.pow(2).sum()),
            "mean_sq_norm": float(stacked.pow(2).sum(1).mean()), "batches": batches, "batch_size": batch_size}
