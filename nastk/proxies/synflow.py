"""SynFlow: synaptic saliency of the all-positive, BatchNorm-free network (Tanaka et al.).

With |W| everywhere and an all-ones input, R = sum(outputs) is a product of weight magnitudes along
every path, so it grows geometrically with depth and width; float32 overflows on deep or wide
networks. The pass runs on a float64 copy, which keeps NB201-sized (and much larger) networks
finite; a value that still overflows comes back non-finite and is recorded as NaN by the caller.
The caller's network is never modified.
"""
from __future__ import annotations

from typing import FrozenSet

import numpy as np
import torch

from nastk.proxies.layers import ProxyInput, per_layer, weight_layers, without_batchnorm
from nastk.proxies.passes import ProxyPass


class SynflowPass(ProxyPass):
    """A float64 copy of the network with BatchNorm removed and every parameter and buffer made |.|,
    run on an all-ones input: ``model`` (that copy), ``layer_names``, ``weights`` (its Conv/Linear
    weights), ``output`` and ``weight_gradients`` (dR/dW for R = sum(output); zeros where unused)."""

    def __init__(self, model, layer_names, weights, output, weight_gradients):
        self.model, self.layer_names, self.weights = model, layer_names, weights
        self.output, self.weight_gradients = output, weight_gradients

    @classmethod
    def run(cls, inp: ProxyInput, needs: FrozenSet[str], dtype=torch.float64) -> "SynflowPass":
        return cls.of(inp.model, inp.x.shape[1:], dtype)

    @classmethod
    def of(cls, model: torch.nn.Module, input_shape, dtype=torch.float64) -> "SynflowPass":
        device = next(model.parameters()).device
        linear = without_batchnorm(model).to(dtype)
        linear.eval()  # BN is gone; eval only silences dropout-like layers
        with torch.no_grad():
            for tensor in list(linear.parameters()) + list(linear.buffers()):
                if tensor.is_floating_point():
                    tensor.abs_()
        linear.zero_grad(set_to_none=True)
        layers = weight_layers(linear)
        weights = [module.weight for _, module in layers]
        output = linear(torch.ones((1,) + tuple(input_shape), dtype=dtype, device=device))
        grads = torch.autograd.grad(output.sum(), weights, allow_unused=True)
        grads = [torch.zeros_like(w) if g is None else g for w, g in zip(weights, grads)]
        return cls(linear, [name for name, _ in layers], weights, output, grads)


def synflow(p: SynflowPass) -> np.ndarray:
    """Per layer sum |W * dR/dW| (a layer R does not reach: 0)."""
    return per_layer((w * g).abs().sum() for w, g in zip(p.weights, p.weight_gradients))


def synflow_layerwise(model: torch.nn.Module, input_shape, dtype=torch.float64) -> np.ndarray:
    """Per-layer sum |W * dR/dW| for the Conv/Linear weights of ``model`` (on a modified copy)."""
    computed = SynflowPass.of(model, input_shape, dtype)
    with torch.no_grad():
        return synflow(computed)
