"""Which parameters proxies measure, and the network surgery some proxies need.

All per-weight proxies use the ``weight`` of every convolution and linear layer (biases and BN
parameters excluded), in module order; these are also the rows of the layer-wise output.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

WEIGHT_LAYERS = (_ConvNd, nn.Linear)


def weight_layers(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """``(module path, module)`` of every Conv/Linear layer with a weight, in module order."""
    return [(name, module) for name, module in model.named_modules()
            if isinstance(module, WEIGHT_LAYERS) and getattr(module, "weight", None) is not None]


def without_batchnorm(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with every BatchNorm replaced by the identity (module paths kept)."""
    clone = copy.deepcopy(model)
    for module in list(clone.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, _BatchNorm):
                setattr(module, child_name, nn.Identity())
    return clone


@dataclass
class ProxyInput:
    """What every pass receives: the (initialised) network and one batch, already on ``device``, and
    the loss ``loss(logits, y)`` of the passes that take one (None: their default, cross-entropy)."""

    model: nn.Module
    x: torch.Tensor
    y: Optional[torch.Tensor]
    seed: int = 0
    loss: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None

    @property
    def layers(self) -> List[Tuple[str, nn.Module]]:
        return weight_layers(self.model)

    @property
    def layer_names(self) -> List[str]:
        return [name for name, _ in self.layers]


def per_layer(values) -> np.ndarray:
    """A float64 vector of per-layer scalar tensors, copied to the host in one transfer."""
    values = [v.detach().to(torch.float64) for v in values]
    return torch.stack(values).cpu().numpy() if values else np.zeros(0)
