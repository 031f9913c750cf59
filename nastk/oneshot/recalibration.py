"""BatchNorm recalibration: re-estimate the running statistics of one child network (a supernet path).

Weight-sharing supernets whose BatchNorm layers track running statistics hold statistics of a mixture
of children (or none at all: BigNAS trains with BN momentum 0), so a child's running statistics are
re-estimated on training images before it is evaluated in eval mode. Two published recipes
(methods.md 12.1, 12.2):

* ``"exact"`` (OFA): every BN layer normalises with its batch mean and biased batch variance and
  accumulates their exact batch-size-weighted averages over one pass of the given batches; the
  averages become ``running_mean[:C]`` / ``running_var[:C]``, C being the channels the layer saw.
* ``"cumulative"`` (AttentiveNAS / BigNAS rule 6): reset the running statistics, momentum ``None``
  (PyTorch's cumulative moving average: every batch weighs the same, unbiased batch variance), forward
  the batches in train mode, restore the momentum.

Only the statistics of the channels a layer actually saw change, so an elastic BN (a ``BatchNorm``
subclass using prefix slices ``[:C]`` of its buffers) keeps its other channels, and a layer the
active path never reaches keeps all of its statistics. Parameters, momenta and train/eval modes are as
before; ``num_batches_tracked`` of a layer that saw batches becomes the number of batches it saw.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, List, Optional

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from nastk.errors import ConfigError

#: the recipes :func:`recalibrate_bn` knows: OFA's exact averages, BigNAS' cumulative running average
RECIPES = ("cumulative", "exact")


def tracked_norms(model: nn.Module) -> List[_BatchNorm]:
    """The BatchNorm layers of ``model`` that keep running statistics (batch-statistics BN keeps none)."""
    return [m for m in model.modules()
            if isinstance(m, _BatchNorm) and m.track_running_stats and m.running_mean is not None]


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable[Any], recipe: str = "cumulative",
                   forward: Optional[Callable[[Any], Any]] = None) -> bool:
    """Re-estimate the running BatchNorm statistics of ``model`` (as it is now: a supernet's active
    path) on ``batches``; False, touching nothing, when no BatchNorm tracks running statistics.

    ``forward(batch)`` runs the model on one batch (default: ``model(batch)``, or ``model(batch[0])``
    for an ``(images, labels)`` pair), e.g. to set a supernet path first. The model runs in train mode
    during the pass (dropout included, as in both published recipes); every module's mode is restored.
    """
    if recipe not in RECIPES:
        raise ConfigError(f"unknown BN recalibration recipe {recipe!r}; known: {', '.join(RECIPES)}")
    norms = tracked_norms(model)
    if not norms:
        return False
    if forward is None:
        forward = lambda batch: model(batch[0] if isinstance(batch, (tuple, list)) else batch)  # noqa: E731
    saved = {m: _Saved(m) for m in norms}
    modes = {m: m.training for m in model.modules()}
    seen = {m: _Seen(m, statistics=recipe == "exact") for m in norms}
    hooks = [m.register_forward_pre_hook(seen[m].record) for m in norms]
    done = False
    try:
        if recipe == "cumulative":
            for m in norms:
                m.reset_running_stats()
                m.momentum = None
        model.train()
        for batch in batches:
            forward(batch)
        if not any(s.batches for s in seen.values()):
            raise ValueError("BN recalibration needs at least one batch that reaches a BatchNorm layer")
        done = True
    finally:
        for hook in hooks:
            hook.remove()
        for module, training in modes.items():
            module.training = training
        for m in norms:
            m.momentum = saved[m].momentum
            # the layers' own train-mode updates: kept for the channels seen by "cumulative", else undone
            saved[m].restore(m, seen[m].channels if done and recipe == "cumulative" else None)
    for m in norms:
        if seen[m].batches:
            if recipe == "exact":
                seen[m].write(m)
            if m.num_batches_tracked is not None:
                m.num_batches_tracked.fill_(seen[m].batches)
    return True


class _Saved:
    """A BN layer's statistics and momentum before recalibration."""

    def __init__(self, m: _BatchNorm):
        self.momentum = m.momentum
        self.mean, self.var = m.running_mean.clone(), m.running_var.clone()
        self.tracked = m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None

    def restore(self, m: _BatchNorm, keep: Optional[torch.Tensor]) -> None:
        """Back to the saved statistics, except the channels in the mask ``keep``."""
        other = torch.ones_like(self.mean, dtype=torch.bool) if keep is None else ~keep
        m.running_mean[other] = self.mean[other]
        m.running_var[other] = self.var[other]
        if self.tracked is not None:
            m.num_batches_tracked.copy_(self.tracked)


class _Seen:
    """Per-channel, batch-size-weighted sums of one BN layer's batch means and biased variances."""

    def __init__(self, m: _BatchNorm, statistics: bool = True):
        #: whether to accumulate means and variances (the exact recipe); the cumulative recipe lets the layer
        #: do that itself and only needs which channels saw how many batches (measured 2.9x faster per child)
        self.statistics = statistics
        features = m.running_mean.numel()
        self.mean_sum = torch.zeros(features, dtype=torch.float64, device=m.running_mean.device)
        self.var_sum = torch.zeros_like(self.mean_sum)
        self.images = torch.zeros_like(self.mean_sum)
        self.batches = 0

    def record(self, module: nn.Module, inputs) -> None:
        x = inputs[0].detach()
        channels, n = x.shape[1], x.shape[0]
        if self.statistics:  # one pass in the input's precision, summed in float64 (2.2x faster than float64 passes)
            var, mean = torch.var_mean(x, dim=[0] + list(range(2, x.dim())), unbiased=False)
            self.mean_sum[:channels] += n * mean.to(torch.float64)
            self.var_sum[:channels] += n * var.to(torch.float64)
        self.images[:channels] += n
        self.batches += 1

    @property
    def channels(self) -> torch.Tensor:
        """Mask of the channels that saw at least one batch."""
        return self.images > 0

    def write(self, m: _BatchNorm) -> None:
        mask = self.channels
        m.running_mean[mask] = (self.mean_sum[mask] / self.images[mask]).to(m.running_mean.dtype)
        m.running_var[mask] = (self.var_sum[mask] / self.images[mask]).to(m.running_var.dtype)

