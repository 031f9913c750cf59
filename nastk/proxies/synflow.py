"""SynFlow: synaptic saliency of the all-positive, BatchNorm-free network (Tanaka et al.).

With |W| everywhere and an all-ones input, R = sum(outputs) is a product of weight magnitudes along
every path, so it grows geometrically with depth and width; float32 overflows on deep or wide
networks. The pass runs on a float64 copy, which keeps NB201-sized (and much larger) networks
finite; a value that still overflows comes back non-finite and is recorded as NaN by the caller.
The caller's network is never modified.
"""
from __future__ import annotations

from typing import Dict, Sequence

import torch

from nastk.proxies.layers import ProxyInput, per_layer, weight_layers, without_batchnorm


def synflow_layerwise(model: torch.nn.Module, input_shape, dtype=torch.float64):
    """Per-layer sum |W * dR/dW| for the Conv/Linear weights of ``model`` (on a modified copy)."""
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
    with torch.no_grad():
        return per_layer((w * g).abs().sum() if g is not None else torch.zeros((), device=device)
                         for w, g in zip(weights, grads))


def run(inp: ProxyInput, names: Sequence[str]) -> Dict[str, object]:
    return {"synflow": synflow_layerwise(inp.model, inp.x.shape[1:])}
