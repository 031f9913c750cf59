"""Zen-NAS score (Lin et al.): expressivity of a Gaussian-initialised network.

A copy of the network gets N(0, 1) Conv/Linear weights (zero biases, unit BN affine); for Gaussian
inputs x and perturbations eps, the score is log E||f(x) - f(x + 0.01 eps)||_F over the pre-pooling
feature map, plus sum over BN layers of log sqrt(mean_c sigma_c^2) (the batch variance each BN
normalises away, which the perturbation norm no longer sees; BNs fed only zeros are skipped).
Averaged over ``REPEATS`` draws, which come from a CPU generator seeded by ``seed``, so the score
is the same on every device.

This is the paper's definition. The Zen-NAS code (and its derivatives, e.g. alethiometer 1.1.2)
differs: it sums |f(x) - f(x + 0.01 eps)| over all elements (an L1 norm, not the Frobenius norm) and
takes the BN scale from ``running_var`` after its two train-mode forwards (at BatchNorm's default momentum 0.1
that is still 0.81 parts the initial value 1), and it draws from torch's global generator.
Values therefore differ from that code by construction; ``docs/results/proxies_reference.md``
compares the rankings.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import FrozenSet, List

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from nastk.proxies.layers import ProxyInput, weight_layers
from nastk.proxies.passes import ProxyPass

MIXUP = 0.01
REPEATS = 1


def _gaussian_copy(model: nn.Module, generator: torch.Generator) -> nn.Module:
    clone = copy.deepcopy(model)
    with torch.no_grad():
        for _, module in weight_layers(clone):
            module.weight.copy_(torch.randn(module.weight.shape, generator=generator, device=generator.device))
            if getattr(module, "bias", None) is not None:
                module.bias.zero_()
        for module in clone.modules():
            if isinstance(module, _BatchNorm) and module.affine:
                module.weight.fill_(1.0)
                module.bias.zero_()
    return clone.train()


def _pre_pool_features(model: nn.Module, x: torch.Tensor, bn_log_scales: List[float] = None) -> torch.Tensor:
    """The input of the last global pooling layer (the output if there is none)."""
    pools = [m for m in model.modules() if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d))]
    captured, handles = [], []
    if pools:
        handles.append(pools[-1].register_forward_pre_hook(lambda _m, inputs: captured.append(inputs[0])))
    if bn_log_scales is not None:
        def record(_m, inputs):
            dims = [d for d in range(inputs[0].dim()) if d != 1]
            variance = float(inputs[0].var(dim=dims, unbiased=False).double().mean())
            if variance > 0:  # a BN fed only zeros rescales nothing
                bn_log_scales.append(0.5 * math.log(variance))
        handles += [m.register_forward_pre_hook(record) for m in model.modules() if isinstance(m, _BatchNorm)]
    try:
        output = model(x)
    finally:
        for handle in handles:
            handle.remove()
    return captured[-1] if captured else output


@dataclass
class ZenDraw:
    """One draw of the Zen-NAS score: pre-pooling features of x and of x + 0.01 eps on the Gaussian
    copy, and log sqrt(mean sigma^2) of every BN the x forward went through."""

    features: torch.Tensor
    perturbed: torch.Tensor
    bn_log_scales: List[float]


class ZenPass(ProxyPass):
    """``draws``: ``REPEATS`` :class:`ZenDraw` on Gaussian copies of the network, drawn from a CPU
    generator seeded by the pass's ``seed`` (so the same on every device)."""

    def __init__(self, draws: List[ZenDraw]):
        self.draws = draws

    @classmethod
    def run(cls, inp: ProxyInput, needs: FrozenSet[str]) -> "ZenPass":
        return cls.of(inp.model, inp.x.shape[1:], len(inp.x), inp.seed)

    @classmethod
    def of(cls, model: nn.Module, input_shape, batch: int, seed: int, repeats: int = REPEATS) -> "ZenPass":
        generator = torch.Generator().manual_seed(seed)
        device = next(model.parameters()).device
        draws = []
        with torch.no_grad():
            for _ in range(repeats):
                net = _gaussian_copy(model, generator).to(device)
                x = torch.randn((batch,) + tuple(input_shape), generator=generator).to(device)
                eps = torch.randn((batch,) + tuple(input_shape), generator=generator).to(device)
                bn_log_scales: List[float] = []
                features = _pre_pool_features(net, x, bn_log_scales)
                draws.append(ZenDraw(features, _pre_pool_features(net, x + MIXUP * eps), bn_log_scales))
        return cls(draws)


def zen(p: ZenPass) -> float:
    """The mean over draws of log E_batch||f(x) - f(x + 0.01 eps)||_F + sum of the BN log scales."""
    scores = []
    for draw in p.draws:
        distance = (draw.features - draw.perturbed).double().flatten(1).norm(dim=1).mean()
        scores.append(math.log(float(distance)) + sum(draw.bn_log_scales) if distance > 0 else float("nan"))
    return float(sum(scores) / len(scores))

