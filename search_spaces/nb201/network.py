"""The NAS-Bench-201 network in torch: stem, three stages of N cells, residual reductions, head.

The layer structure follows the benchmark's definition so that parameter counts equal the table's
``params_mb_cifar10`` exactly: every convolution is bias-free, every ``nor_conv`` is
ReLU -> Conv -> BN, and stages are joined by a ResNet basic block with stride 2.
:func:`add_stages` lays out stem, cells, reductions and head once, for this network and for the
supernet (:mod:`search_spaces.nb201.supernet`), which differ only in their cells and BatchNorms.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from search_spaces.nb201.constants import EDGES, NUM_NODES


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in, c_out, kernel_size, stride=1, affine=True, track_running_stats=True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(c_out, affine=affine, track_running_stats=track_running_stats),
        )


class Zero(nn.Module):
    """The ``none`` operation: an all-zero output of the input's shape."""

    def forward(self, x):
        return x.mul(0.0)


def make_op(name: str, channels: int, affine: bool = True, track_running_stats: bool = True) -> nn.Module:
    """One NB201 cell operation on ``channels`` channels (stride 1, same resolution)."""
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1, affine=affine, track_running_stats=track_running_stats)
    if name == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3, affine=affine, track_running_stats=track_running_stats)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ValueError(f"unknown NB201 op {name!r}")  # unreachable: architectures are validated first


class ResidualReduction(nn.Module):
    """The fixed ResNet basic block (stride 2) between NB201 stages."""

    def __init__(self, c_in, c_out, affine=True, track_running_stats=True):
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride=2, affine=affine, track_running_stats=track_running_stats)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, affine=affine, track_running_stats=track_running_stats)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, stride=2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x):
        return self.shortcut(x) + self.conv_b(self.conv_a(x))


class NB201Cell(nn.Module):
    """Node j = sum over i<j of op_(j<-i)(node i); returns node 3."""

    def __init__(self, ops: Sequence[str], channels: int, affine=True, track_running_stats=True):
        super().__init__()
        self.edges = EDGES
        self.ops = nn.ModuleList(make_op(op, channels, affine, track_running_stats) for op in ops)

    def forward(self, x):
        nodes = [x]
        position = 0
        for node in range(1, NUM_NODES):
            nodes.append(sum(self.ops[position + i](nodes[i]) for i in range(node)))
            position += node
        return nodes[-1]


def add_stages(net: nn.Module, C: int, N: int, num_classes: int, cell: Callable[[int], nn.Module],
               affine: bool, track_running_stats: bool, outer_norm: Callable[[int], nn.Module]) -> None:
    """Give ``net`` NB201's layout: ``stem`` (3x3 conv to C, ``outer_norm``), ``cells`` (three stages of N
    ``cell(channels)``, joined by stride-2 :class:`ResidualReduction` blocks doubling the channels),
    ``head`` (``outer_norm``, ReLU, global pool) and ``classifier``. Modules are created in this order,
    so a seeded build draws the same initial weights as ever."""
    net.stem = nn.Sequential(nn.Conv2d(3, C, 3, padding=1, bias=False), outer_norm(C))
    layers, channels = [], C
    for stage in range(3):
        if stage > 0:
            layers.append(ResidualReduction(channels, channels * 2, affine, track_running_stats))
            channels *= 2
        layers.extend(cell(channels) for _ in range(N))
    net.cells = nn.Sequential(*layers)
    net.head = nn.Sequential(outer_norm(channels), nn.ReLU(inplace=False), nn.AdaptiveAvgPool2d(1))
    net.classifier = nn.Linear(channels, num_classes)


class NB201Network(nn.Module):
    """The stand-alone network of one cell (stem and head BatchNorms are always the affine, tracking kind)."""

    def __init__(self, ops: Sequence[str], num_classes: int = 10, C: int = 16, N: int = 5,
                 affine: bool = True, track_running_stats: bool = True):
        super().__init__()
        add_stages(self, C, N, num_classes, lambda channels: NB201Cell(ops, channels, affine, track_running_stats),
                   affine, track_running_stats, nn.BatchNorm2d)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.cells(self.stem(x))).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(x))
