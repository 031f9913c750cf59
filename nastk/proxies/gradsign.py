"""GradSign (Zhang & Jia, ICLR 2022, methods.md section 7): agreement of per-example gradient signs.

For every Conv/Linear weight coordinate k, S_k = sum_i sign(dl(x_i, y_i)/dW_k); the score is
sum_k |S_k| ("sum" aggregation) or that divided by the number of coordinates ("mean").

Each example's gradient is taken with BatchNorm in train mode on that example alone (batch-of-one
statistics), on a copy of the network that keeps no running statistics; the caller's network is
untouched. Three interchangeable ways compute the per-example gradients (``method``):

* ``"hooks"`` (default where it applies): ONE batched forward+backward per chunk. Every BatchNorm
  normalises each example by its own statistics (over its non-channel positions, which is what a
  batch-of-one BatchNorm does), so examples do not interact and the backward of the summed losses
  carries each example's own output gradients. Autograd propagates activation gradients only (no
  weight gradient summed over the batch); hooks on every Conv2d/Linear turn (input, output gradient)
  into per-example weight gradients: a batched matmul for Linears and 1x1 convs, else the weight
  gradient of a grouped convolution with one group per example. This costs about one plain
  forward+backward. Supports plain Conv2d (any stride, padding, dilation, groups; zero padding) and
  Linear modules; for anything else ``"auto"`` falls back to ``"vmap"``.
* ``"vmap"``: ``torch.func`` ``vmap`` over ``grad`` of a ``functional_call``: any network torch.func
  can trace; on CPU slower than hooks (about 1.5x vs 1.25x a plain forward+backward on NB201).
* ``"loop"``: one single-example forward+backward per example; the reference for tests/benchmarks
  (about 2.2x a plain forward+backward on NB201 on one CPU thread).
"""
from __future__ import annotations

import copy
from typing import Dict, FrozenSet, Iterator, List, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, replace_all_batch_norm_modules_, vmap
from torch.nn.modules.batchnorm import _BatchNorm

from nastk.errors import ConfigError
from nastk.proxies.layers import ProxyInput, per_layer, weight_layers
from nastk.proxies.passes import ProxyPass

METHODS = ("auto", "hooks", "vmap", "loop")
#: Examples per chunk. ``vmap`` holds chunk x (number of weights) floats per chunk; ``hooks`` holds
#: the batched activations (as one training step at that batch size would) and, per layer, the
#: chunk's gradients of that layer only. ``loop`` uses single examples whatever the chunk.
CHUNK = {"hooks": 64, "vmap": 16, "loop": 16}


class PerExampleBatchNorm(nn.Module):
    """A train-mode BatchNorm applied to every example of the batch separately.

    Statistics over the example's own positions (H, W for BatchNorm2d), then the BN's affine: the
    output of a batch-of-one forward, for all examples at once (``instance_norm`` computes it by a
    batch norm over the batch folded into channels)."""

    def __init__(self, bn: _BatchNorm):
        super().__init__()
        self.weight, self.bias, self.eps = bn.weight, bn.bias, bn.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 3:  # (N, C): a batch of one has one value per channel; the loop fails the same way
            raise ValueError("Expected more than 1 value per channel when training (per-example BatchNorm1d "
                             f"on input of shape {tuple(x.shape)})")
        return F.instance_norm(x, weight=self.weight, bias=self.bias, eps=self.eps)


def hooks_apply(model: nn.Module) -> bool:
    """Whether the hook path computes exactly what the loop does: every weight layer a plain Conv2d
    (zero padding, numeric padding) or Linear, each with its own weight."""
    layers = [module for _, module in weight_layers(model)]
    supported = all(type(m) is nn.Linear or (type(m) is nn.Conv2d and m.padding_mode == "zeros"
                                             and not isinstance(m.padding, str)) for m in layers)
    return supported and len({id(m.weight) for m in layers}) == len(layers)


def _per_example_network(model: nn.Module, method: str) -> nn.Module:
    clone = copy.deepcopy(model)
    if method == "hooks":
        for parent in list(clone.modules()):
            for child_name, child in list(parent.named_children()):
                if isinstance(child, _BatchNorm):
                    setattr(parent, child_name, PerExampleBatchNorm(child))
    else:
        replace_all_batch_norm_modules_(clone)
    return clone.train()


def _layer_grads(module: nn.Module, a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Per-example weight gradients (n, *weight.shape) from the layer's input a and output gradient g."""
    n = len(a)
    if isinstance(module, nn.Linear):  # sum over any middle dims of outer products
        return torch.einsum("n...o,n...i->noi", g, a)
    shape = module.weight.shape
    if shape[2:] == (1, 1) and module.groups == 1 and module.stride == (1, 1) and module.padding == (0, 0):
        # a pointwise conv is a Linear over positions; a batched matmul is 2-3x faster than below
        return torch.bmm(g.flatten(2), a.flatten(2).transpose(1, 2)).view(n, *shape)
    # Fold the batch into channels: a grouped convolution with n x groups groups, whose weight
    # gradient is the stack of the n per-example weight gradients.
    folded = torch.nn.grad.conv2d_weight(a.reshape(1, -1, *a.shape[2:]), (n * shape[0], *shape[1:]),
                                         g.reshape(1, -1, *g.shape[2:]), module.stride, module.padding,
                                         module.dilation, module.groups * n)
    return folded.reshape(n, *shape)


def _signs(g: torch.Tensor, own: bool = False) -> torch.Tensor:
    """sum_i sign(g_i) over the example dimension, NaN counted as 0 (in place where g is ``own``)."""
    signs = g.detach().sign_() if own else torch.sign(g.detach())
    return signs.nansum(0).to(torch.int64)


def _hooked(model, names: List[str], x, y, chunk: int, sums: List[torch.Tensor]) -> None:
    modules = dict(model.named_modules())
    index = {modules[name]: i for i, name in enumerate(names)}
    model.requires_grad_(False)  # autograd carries activation gradients only; weights are done by hooks
    calls: Dict[nn.Module, int] = {}  # forward calls of each layer in this chunk
    pending: Dict[nn.Module, list] = {}  # [gradient so far, calls seen] of layers called more than once

    def forward_hook(module, inputs, output):
        calls[module] = calls.get(module, 0) + 1
        a = inputs[0].detach()
        if not output.requires_grad:  # nothing upstream needs a gradient: start the graph here, with
            output = output.detach().requires_grad_().clone()  # a non-leaf the network may modify in place
        version = a._version  # autograd does not save inputs of frozen layers: check them ourselves
        output.register_hook(lambda g: backward_hook(module, a, version, g))
        return output

    def backward_hook(module, a, version, g):
        if a._version != version:
            raise RuntimeError(f"GradSign hooks: the input of {type(module).__name__} was modified in place "
                               "after use; use method='vmap' or 'loop'")
        g = _layer_grads(module, a, g)
        if calls[module] > 1:  # a shared layer: its gradient is the sum over its calls
            state = pending.setdefault(module, [0, 0])
            state[0], state[1] = state[0] + g, state[1] + 1
            if state[1] < calls[module]:
                return
            g = pending.pop(module)[0]
        sums[index[module]] += _signs(g, own=True)  # g is a fresh tensor: no copy for the signs

    handles = [module.register_forward_hook(forward_hook) for module in index]
    try:
        for start in range(0, len(x), chunk):
            calls.clear()
            pending.clear()
            loss = F.cross_entropy(model(x[start:start + chunk]), y[start:start + chunk], reduction="sum")
            if loss.requires_grad:  # else no weight layer reaches the loss: all gradients are zero
                loss.backward()
            for module, (g, _) in pending.items():  # shared layers with some calls unused
                sums[index[module]] += _signs(g)
    finally:
        for handle in handles:
            handle.remove()


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


def resolve_method(model: nn.Module, method: str = "auto") -> str:
    """The method ``sign_sums`` will use: ``auto`` is ``hooks`` where it applies, else ``vmap``."""
    if method not in METHODS:
        raise ConfigError(f"unknown GradSign method {method!r}; expected one of {', '.join(METHODS)}")
    if method == "auto":
        return "hooks" if hooks_apply(model) else "vmap"
    if method == "hooks" and not hooks_apply(model):
        raise ConfigError("GradSign method 'hooks' supports plain Conv2d (zero, numeric padding) and Linear "
                          "layers with unshared weights only; use method='vmap'")
    return method


def sign_sums(model: nn.Module, x: torch.Tensor, y: torch.Tensor, method: str = "auto",
              chunk: Optional[int] = None) -> List[torch.Tensor]:
    """S_l = sum_i sign(g_i) for the weight of each Conv/Linear layer (NaN gradients count as 0)."""
    method = resolve_method(model, method)
    chunk = chunk or CHUNK[method]
    net = _per_example_network(model, method)
    names = [name for name, _ in weight_layers(net)]
    sums = [torch.zeros_like(module.weight, dtype=torch.int64) for _, module in weight_layers(net)]
    if method == "hooks":
        _hooked(net, names, x, y, chunk, sums)
        return sums
    for grads in (_vectorised if method == "vmap" else _looped)(net, names, x, y, chunk):
        for total, g in zip(sums, grads):
            total += _signs(g)
    return sums


def grad_sign_layerwise(model: nn.Module, x: torch.Tensor, y: torch.Tensor, method: str = "auto",
                        chunk: Optional[int] = None):
    """Per-layer sum_k |S_k| (the "sum" aggregation before summing layers) and the weight count."""
    sums = sign_sums(model, x, y, method, chunk)
    return _layer_totals(sums), sum(s.numel() for s in sums)


def _layer_totals(sums: List[torch.Tensor]):
    """Per layer sum_k |S_k|."""
    return per_layer(s.abs().sum() for s in sums)


class GradSignPass(ProxyPass):
    """``sign_sums``: per Conv/Linear weight (``layer_names`` order) S = sum_i sign(dl_i/dW) as int64,
    from per-example cross-entropy gradients (see the module text for how they are computed)."""

    def __init__(self, layer_names: List[str], sign_sums: List[torch.Tensor]):
        self.layer_names, self.sign_sums = layer_names, sign_sums

    @classmethod
    def run(cls, inp: ProxyInput, needs: FrozenSet[str], method: str = "auto",
            chunk: Optional[int] = None) -> "GradSignPass":
        if inp.loss is not None:
            raise ConfigError("the grad_sign pass takes per-example cross-entropy gradients; it does not take "
                              "another loss (compute grad_sign proxies in a call without loss=...)")
        return cls(inp.layer_names, sign_sums(inp.model, inp.x, inp.y, method, chunk))


def grad_sign(p: GradSignPass):
    return _layer_totals(p.sign_sums)


def grad_sign_mean(p: GradSignPass) -> float:
    count = sum(s.numel() for s in p.sign_sums)
    return float(grad_sign(p).sum()) / count if count else float("nan")
