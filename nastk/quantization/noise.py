"""QuantNAS' quantization noise (methods.md 11A): a smooth stand-in for quantizing a tensor to ``b`` bits.

Rounding a tensor of range ``R`` to ``2^b - 1`` steps perturbs it by about a step; QuantNAS replaces that
perturbation by random noise of the same scale, ``n_b(T) = (max T - min T) / (2^b - 1) * eps`` over the whole
tensor (batch included), ``eps ~ N(0, 1) / 2`` (default, standard deviation
:func:`~nastk.quantization.quantizers.quantization_noise_std`) or ``U(-1/2, 1/2)``. The noise is detached: it
shifts the value, not the gradient. Draws come from a caller's generator, so a seeded run (and its resume)
sees the same noise.
"""
from __future__ import annotations

from typing import Optional

import torch

from nastk.errors import ConfigError
from nastk.quantization.quantizers import check_bits, quantization_noise_std

#: the distributions of eps: QuantNAS' default N(0, 1) / 2, or U(-1/2, 1/2)
DISTRIBUTIONS = ("normal", "uniform")


def check_distribution(distribution: str) -> str:
    if distribution not in DISTRIBUTIONS:
        raise ConfigError(f"unknown noise distribution {distribution!r}; known: {', '.join(DISTRIBUTIONS)}")
    return distribution


def quantization_noise(t: torch.Tensor, bits: int, generator: Optional[torch.Generator] = None,
                       distribution: str = "normal") -> torch.Tensor:
    """Detached noise of the scale of ``bits``-bit rounding of ``t`` (same shape as ``t``)."""
    check_bits(bits)
    check_distribution(distribution)
    value_range = (t.detach().max() - t.detach().min())
    if distribution == "normal":
        eps = torch.randn(t.shape, generator=generator, device=t.device, dtype=t.dtype)
        return (quantization_noise_std(value_range, bits) * eps).detach()
    eps = torch.rand(t.shape, generator=generator, device=t.device, dtype=t.dtype) - 0.5
    return (value_range / (2 ** bits - 1) * eps).detach()


def mixed_noise(t: torch.Tensor, weights: torch.Tensor, bits, generator: Optional[torch.Generator] = None,
                distribution: str = "normal") -> torch.Tensor:
    """``sum_b weights[b] n_b(t)``: independent noises of every bit-width, drawn at once, weighted (differentiable in
    ``weights``, detached in ``t``); what a mixture over bit-widths adds to ``t``."""
    for b in bits:
        check_bits(b)
    check_distribution(distribution)
    value_range = (t.detach().max() - t.detach().min())
    shape = (len(bits),) + tuple(t.shape)
    if distribution == "normal":
        eps = torch.randn(shape, generator=generator, device=t.device, dtype=t.dtype)
        scales = torch.stack([quantization_noise_std(value_range, b) for b in bits])
    else:
        eps = torch.rand(shape, generator=generator, device=t.device, dtype=t.dtype) - 0.5
        scales = torch.stack([value_range / (2 ** b - 1) for b in bits])
    coefficients = (weights * scales).view((-1,) + (1,) * t.dim())
    return (coefficients * eps).sum(0)


class NoiseSource:
    """Where the noise of one supernet comes from: the generator a training step seeds and the
    distribution; shared (by reference, not a module) by every quantized layer of the supernet."""

    def __init__(self, distribution: str = "normal"):
        self.distribution = check_distribution(distribution)
        self.generator: Optional[torch.Generator] = None

    def seed(self, seed: int, device) -> None:
        """Draw from a fresh generator seeded with ``seed`` on ``device`` (a step calls it per epoch)."""
        self.generator = torch.Generator(device=torch.device(device)).manual_seed(int(seed))

    def _generator(self, t: torch.Tensor) -> Optional[torch.Generator]:
        return self.generator if self.generator is not None and self.generator.device == t.device else None

    def __call__(self, t: torch.Tensor, bits: int) -> torch.Tensor:
        return quantization_noise(t, bits, self._generator(t), self.distribution)

    def mixture(self, t: torch.Tensor, weights: torch.Tensor, bits) -> torch.Tensor:
        return mixed_noise(t, weights, bits, self._generator(t), self.distribution)

    def __deepcopy__(self, memo):  # a copied supernet (extract, split) keeps its own source
        copy_ = NoiseSource(self.distribution)
        memo[id(self)] = copy_
        return copy_
