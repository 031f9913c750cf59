"""The pass that needs no data: size baselines and weight norms."""
from __future__ import annotations

from typing import FrozenSet, List, Tuple

import numpy as np
import torch

from nastk.cost import count_flops, count_parameters
from nastk.proxies.layers import ProxyInput, per_layer
from nastk.proxies.passes import ProxyPass


class StaticPass(ProxyPass):
    """No forward at all: ``model``, ``input_shape`` (one example's (C, H, W)), ``layer_names`` and
    ``weights`` (the Conv/Linear weights, in module order)."""

    def __init__(self, model: torch.nn.Module, input_shape: Tuple[int, ...], layer_names: List[str],
                 weights: List[torch.Tensor]):
        self.model, self.input_shape, self.layer_names, self.weights = model, input_shape, layer_names, weights

    @classmethod
    def run(cls, inp: ProxyInput, needs: FrozenSet[str]) -> "StaticPass":
        layers = inp.layers
        return cls(inp.model, tuple(inp.x.shape[1:]), [name for name, _ in layers], [m.weight for _, m in layers])


def params(p: StaticPass) -> float:
    return float(count_parameters(p.model))


def flops(p: StaticPass) -> float:
    return float(count_flops(p.model, input_size=int(p.input_shape[-1]), channels=int(p.input_shape[0])))


def l2_norm(p: StaticPass) -> np.ndarray:
    return per_layer(w.norm() for w in p.weights)
