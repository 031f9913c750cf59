"""GradSign (Zhang & Jia, ICLR 2022, methods.md section 7): agreement of per-example gradient signs.

For every Conv/Linear weight coordinate k, S_k = sum_i sign(dl(x_i, y_i)/dW_k); the score is
sum_k |S_k| ("sum" aggregation) or that divided by the number of coordinates ("mean").

Per-example gradients are computed in chunks, either vectorised (``torch.func``: ``vmap`` over
``grad`` of a ``functional_call``) or by a plain loop of single-example backward passes (the
reference, kept for tests and benchmarks). Both run on one copy of the network whose BatchNorms
keep no running statistics, so each example is normalised by its own statistics in train mode,
exactly as a batch-of-one forward does, and the caller's network is untouched.
"""
from __future__ import annotations

import copy
from typing import Dict, Iterator, List, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, replace_all_batch_norm_modules_, vmap

from nastk.proxies.layers import ProxyInput, per_layer, weight_layers

#: Examples per vectorised chunk: bounds memory to chunk x (number of weights) floats.
CHUNK = 16


def _per_example_network(model: nn.Module) -> nn.Module:
    clone = copy.deepcopy(model)
    replace_all_batch_norm_modules_(clone)
    return clone.train()


def _vectorised(model, names: List[str], x, y, chunk: int) -> Iterator[List[torch.Tensor]]:
    weights = {name + ".weight": module.weight.detach() for name, module in weight_layers(model)}

    def loss(w, xi, yi):
        return F.cross_entropy(functional_call(model, w, (xi.unsqueeze(0),)), yi.unsqueeze(0))

    per_example = vmap(grad(loss), in_dims=(None, 0, 0))
    for start in range(0, len(x), chunk):
        grads = per_example(weights, x[start:start + chunk], y[start:start + chunk])
        yield [grads[name + ".weight"] for name in names]


def _looped(model, names: List[str], x, y, chunk: int) -> Iterator[List[torch.Tensor]]:
    modules = dict(model.named_modules())
    weights = [modules[name].weight for name in names]
    for start in range(0, len(x), chunk):
        rows = []
        for i in range(start, min(start + chunk, len(x))):
            loss = F.cross_entropy(model(x[i:i + 1]), y[i:i + 1])
            grads = torch.autograd.grad(loss, weights, allow_unused=True)
            rows.append([torch.zeros_like(w) if g is None else g for w, g in zip(weights, grads)])
        yield [torch.stack(column) for column in zip(*rows)]


def sign_sums(model: nn.Module, x: torch.Tensor, y: torch.Tensor, vectorized: bool = True,
              chunk: int = CHUNK) -> List[torch.Tensor]:
    """S_l = sum_i sign(g_i) for the weight of each Conv/Linear layer (NaN gradients count as 0)."""
    net = _per_example_network(model)
    names = [name for name, _ in weight_layers(net)]
    sums = [torch.zeros_like(module.weight, dtype=torch.int64) for _, module in weight_layers(net)]
    chunks = (_vectorised if vectorized else _looped)(net, names, x, y, chunk)
    for grads in chunks:
        for total, g in zip(sums, grads):
            total += torch.sign(g.detach()).nan_to_num_(nan=0.0).sum(0).to(torch.int64)
    return sums


def grad_sign_layerwise(model: nn.Module, x: torch.Tensor, y: torch.Tensor, vectorized: bool = True,
                        chunk: int = CHUNK):
    """Per-layer sum_k |S_k| (the "sum" aggregation before summing layers) and the weight count."""
    sums = sign_sums(model, x, y, vectorized, chunk)
    return per_layer(s.abs().sum() for s in sums), sum(s.numel() for s in sums)


def run(inp: ProxyInput, names: Sequence[str], vectorized: bool = True, chunk: int = CHUNK) -> Dict[str, object]:
    layerwise, count = grad_sign_layerwise(inp.model, inp.x, inp.y, vectorized, chunk)
    out: Dict[str, object] = {}
    if "grad_sign" in names:
        out["grad_sign"] = layerwise
    if "grad_sign_mean" in names:
        out["grad_sign_mean"] = float(layerwise.sum()) / count if count else float("nan")
    return out
