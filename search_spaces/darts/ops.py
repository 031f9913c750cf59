"""The eight DARTS operations and the two fixed blocks around them (methods.md 13.1).

Kept apart from the network so the stand-alone network and a later supernet build their edges from
the same definitions. Every op maps ``C`` channels to ``C`` channels; with ``stride=2`` it halves the
resolution (only edges from a reduction cell's two inputs use stride 2). ``affine=False`` gives the
BatchNorm of DARTS' search model; the evaluation network uses ``affine=True``.

=================  =================================================================================
``none``           zeros (subsampled for stride 2)
``max_pool_3x3``   3x3 max pool, padding 1
``avg_pool_3x3``   3x3 average pool, padding 1, padding not counted
``skip_connect``   identity; :class:`FactorizedReduce` for stride 2
``sep_conv_k``     (ReLU -> depthwise kxk -> pointwise 1x1 -> BN) twice; the first has the stride
``dil_conv_k``     ReLU -> depthwise kxk dilation 2 -> pointwise 1x1 -> BN, once
=================  =================================================================================

Nothing here picks a device: modules follow ``.to(device)`` and tensors made in ``forward`` are
created on the input's device.
"""
from __future__ import annotations

from typing import Callable, Dict

import torch
import torch.nn.functional as F
from torch import nn

#: All DARTS ops in DARTS' primitive order (the order of a supernet's 8 mixture weights).
PRIMITIVES = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
              "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")


class ReLUConvBN(nn.Sequential):
    """ReLU -> Conv(kxk) -> BN: the cells' 1x1 input preprocessing."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 1, stride: int = 1, affine: bool = True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class DilConv(nn.Sequential):
    """ReLU -> depthwise kxk (dilation d) -> pointwise 1x1 -> BN."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int, dilation: int, affine: bool = True):
        padding = dilation * (kernel_size - 1) // 2  # keeps the resolution at stride 1
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel_size, stride=stride, padding=padding, dilation=dilation,
                      groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two undilated :class:`DilConv` blocks; only the first strides."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int, affine: bool = True):
        super().__init__(
            DilConv(c_in, c_in, kernel_size, stride, dilation=1, affine=affine),
            DilConv(c_in, c_out, kernel_size, 1, dilation=1, affine=affine),
        )


class FactorizedReduce(nn.Module):
    """Halve the resolution without losing pixels: two stride-2 1x1 convs, one on the input shifted by
    one pixel, concatenated on channels, then BN.

    The shifted branch pads one row and column at the bottom-right before shifting, so both branches
    have the same size for odd inputs too; for even inputs (CIFAR's 32 -> 16 -> 8) this is exactly
    DARTS' ``x[:, :, 1:, 1:]``. An odd ``c_out`` gives the extra channel to the second branch.
    """

    def __init__(self, c_in: int, c_out: int, affine: bool = True):
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out - c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        shifted = F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


class Zero(nn.Module):
    """The ``none`` op: zeros of the output's shape (a stride-2 edge subsamples first)."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, ::self.stride, ::self.stride].mul(0.0)


def _skip(c: int, stride: int, affine: bool) -> nn.Module:
    return nn.Identity() if stride == 1 else FactorizedReduce(c, c, affine=affine)


#: op name -> factory(C, stride, affine).
OPS: Dict[str, Callable[[int, int, bool], nn.Module]] = {
    "none": lambda c, stride, affine: Zero(stride),
    "max_pool_3x3": lambda c, stride, affine: nn.MaxPool2d(3, stride=stride, padding=1),
    "avg_pool_3x3": lambda c, stride, affine: nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False),
    "skip_connect": _skip,
    "sep_conv_3x3": lambda c, stride, affine: SepConv(c, c, 3, stride, affine=affine),
    "sep_conv_5x5": lambda c, stride, affine: SepConv(c, c, 5, stride, affine=affine),
    "dil_conv_3x3": lambda c, stride, affine: DilConv(c, c, 3, stride, dilation=2, affine=affine),
    "dil_conv_5x5": lambda c, stride, affine: DilConv(c, c, 5, stride, dilation=2, affine=affine),
}


def make_op(name: str, channels: int, stride: int = 1, affine: bool = True) -> nn.Module:
    """One DARTS op on ``channels`` channels; ``stride`` 1 or 2."""
    if stride not in (1, 2):
        raise ValueError(f"DARTS ops use stride 1 or 2, got {stride}")
    try:
        factory = OPS[name]
    except KeyError:
        raise ValueError(f"unknown DARTS op {name!r}; known: {', '.join(PRIMITIVES)}") from None
    return factory(channels, stride, affine)


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zero whole examples with probability ``drop_prob`` and rescale the rest by 1/(1 - p)
    (DARTS' drop path: one Bernoulli draw per example, on the input's device)."""
    if drop_prob <= 0.0:
        return x
    keep = 1.0 - drop_prob
    mask = torch.empty(x.size(0), 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x.div(keep).mul(mask)
