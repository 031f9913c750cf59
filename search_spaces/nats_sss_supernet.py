"""NATS-Bench size networks in torch: the stand-alone network and the slimmable supernet.

Layout (NATS-Bench's tiny size network, N = 1 cell per stage): stem Conv3x3(3 -> c0) + BN; cell (c0),
ResNet basic block stride 2 (c1), cell (c2), basic block (c3), cell (c4); BN, ReLU, global average
pool, linear. A cell is NB201's best cell with NB201's ops (:mod:`search_spaces.nb201.network`); a cell whose
input width differs from its own width maps the input inside the edges leaving node 0 (the convs take
``c_in -> c_out``; the ``skip_connect`` becomes a 1x1 conv + BN, NATS-Bench's stride-1 "factorized
reduce" [R: no ReLU before it]). Parameter counts equal NATS-Bench's records (tests).

The supernet holds every layer at 64 channels and runs prefix slices (``W[:c_out, :c_in]``), so a
narrower child shares the first channels of every wider one. BatchNorm is **switchable** by default (a
private BN per width, as BossNAS' NATS supernet has it) or **shared** (one BN whose first ``c`` entries a
``c``-wide child uses; its statistics must be re-estimated per child, :mod:`nastk.oneshot.recalibration`).
Each layer is a :class:`~nastk.supernet.ChoicePoint` on its channel decision; ``forward(x, block=k)``
stops after BossNAS block ``k`` (:data:`~nastk.benchmarks.nats_sss.BOSSNAS_BLOCKS`) and returns its feature
map, the backbone of the block-wise self-supervised training (:mod:`nastk.oneshot.bossnas`).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from nastk.benchmarks.nats_sss import BOSSNAS_BLOCKS, CELL, CELL_LAYERS, CHANNELS, LAYERS
from nastk.elastic import DynamicBatchNorm2d, DynamicConv2d
from nastk.errors import ConfigError
from nastk.supernet import ChoicePoint, Supernet, decisions_of
from search_spaces.nb201.constants import EDGES, NUM_NODES
from search_spaces.nb201.network import ReLUConvBN, ResidualReduction

MAX_CHANNELS = max(CHANNELS)
BN_KINDS = ("switchable", "shared")


# --- the stand-alone network -------------------------------------------------------------------------
class NATSCell(nn.Module):
    """NB201's best cell from ``c_in`` to ``c_out`` channels (edges from node 0 change the width)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        ops = []
        for (target, source), op in zip(EDGES, CELL):
            width_in = c_in if source == 0 else c_out
            if op == "nor_conv_3x3":
                ops.append(ReLUConvBN(width_in, c_out, 3))
            elif width_in == c_out:  # skip_connect
                ops.append(nn.Identity())
            else:
                ops.append(nn.Sequential(nn.Conv2d(width_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out)))
        self.ops = nn.ModuleList(ops)

    def forward(self, x):
        nodes, position = [x], 0
        for node in range(1, NUM_NODES):
            nodes.append(sum(self.ops[position + i](nodes[i]) for i in range(node)))
            position += node
        return nodes[-1]


class NATSSizeNetwork(nn.Module):
    """One NATS-Bench size network (channels ``c0..c4``)."""

    def __init__(self, channels: Sequence[int], num_classes: int = 10):
        super().__init__()
        if len(channels) != len(LAYERS):
            raise ConfigError(f"a NATS size network has {len(LAYERS)} channel counts, got {len(channels)}")
        self.stem = nn.Sequential(nn.Conv2d(3, channels[0], 3, padding=1, bias=False), nn.BatchNorm2d(channels[0]))
        layers, previous = [], channels[0]
        for index, width in enumerate(channels):
            layers.append(NATSCell(previous, width) if index in CELL_LAYERS else ResidualReduction(previous, width))
            previous = width
        self.cells = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.BatchNorm2d(previous), nn.ReLU(inplace=False), nn.AdaptiveAvgPool2d(1))
        self.classifier = nn.Linear(previous, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.head(self.cells(self.stem(x))).flatten(1))


# --- slimmable parts ----------------------------------------------------------------------------------
class WidthBN(nn.Module):
    """BatchNorm of whatever width its input has: a private ``BatchNorm2d`` per width (switchable) or the
    first channels of one shared BN."""

    def __init__(self, kind: str = "switchable"):
        super().__init__()
        if kind not in BN_KINDS:
            raise ConfigError(f"unknown BatchNorm kind {kind!r}; known: {', '.join(BN_KINDS)}")
        self.kind = kind
        if kind == "switchable":
            self.by_width = nn.ModuleList(nn.BatchNorm2d(c) for c in CHANNELS)
        else:
            self.shared = DynamicBatchNorm2d(MAX_CHANNELS)

    def forward(self, x):
        if self.kind == "shared":
            return self.shared(x)
        return self.by_width[CHANNELS.index(x.shape[1])](x)


class SlimConvBN(nn.Module):
    """(ReLU ->) sliced Conv -> width BN; its output width is set by the owning layer."""

    def __init__(self, kernel: int, stride: int, bn: str, relu: bool = True):
        super().__init__()
        self.relu = relu
        self.conv = DynamicConv2d(MAX_CHANNELS, MAX_CHANNELS, kernel, stride=stride)
        self.bn = WidthBN(bn)

    def forward(self, x):
        return self.bn(self.conv(F.relu(x) if self.relu else x))


class WidthLayer(ChoicePoint):
    """A layer whose output width is its decision's channel count."""

    width = MAX_CHANNELS

    def configure(self, values, allowed) -> None:
        (value,) = values
        if isinstance(value, torch.Tensor):
            raise ConfigError("the NATS size supernet runs single paths only (no mixtures of widths)")
        self.width = CHANNELS[int(value)]
        for module in self.modules():
            if isinstance(module, DynamicConv2d):
                module.set_active(out_channels=self.width)


class SlimStem(WidthLayer):
    def __init__(self, decision: str, bn: str):
        super().__init__(decisions=(decision,))
        self.op = SlimConvBN(3, 1, bn, relu=False)
        self.op.conv = DynamicConv2d(3, MAX_CHANNELS, 3)

    def forward(self, x):
        return self.op(x)


class SlimCell(WidthLayer):
    """NB201's best cell, sliced; the ``skip_connect`` from node 0 becomes a 1x1 conv + BN when the input's
    width differs from the cell's."""

    def __init__(self, decision: str, bn: str):
        super().__init__(decisions=(decision,))
        self.ops = nn.ModuleList(SlimConvBN(3 if op == "nor_conv_3x3" else 1, 1, bn, relu=op == "nor_conv_3x3")
                                 for op in CELL)
        self.skips = [i for i, op in enumerate(CELL) if op == "skip_connect"]

    def forward(self, x):
        nodes, position = [x], 0
        for node in range(1, NUM_NODES):
            terms = []
            for i in range(node):
                edge = position + i
                if edge in self.skips and nodes[i].shape[1] == self.width:
                    terms.append(nodes[i])
                else:
                    terms.append(self.ops[edge](nodes[i]))
            nodes.append(sum(terms))
            position += node
        return nodes[-1]


class SlimReduction(WidthLayer):
    """The ResNet basic block (stride 2) between stages, sliced."""

    def __init__(self, decision: str, bn: str):
        super().__init__(decisions=(decision,))
        self.conv_a = SlimConvBN(3, 2, bn)
        self.conv_b = SlimConvBN(3, 1, bn)
        self.shortcut = DynamicConv2d(MAX_CHANNELS, MAX_CHANNELS, 1)

    def forward(self, x):
        return self.shortcut(F.avg_pool2d(x, 2, 2)) + self.conv_b(self.conv_a(x))


class NATSSizeSupernet(Supernet):
    """The slimmable NATS size supernet (module docstring); decisions ``c0..c4`` over ``8..64``."""

    def __init__(self, space, num_classes: int = 10, bn: str = "switchable"):
        super().__init__(space, decisions_of(space))
        if bn not in BN_KINDS:
            raise ConfigError(f"unknown nats-sss BatchNorm kind {bn!r}; known: {', '.join(BN_KINDS)}")
        self.bn = bn
        self.stem = SlimStem(LAYERS[0], bn)
        self.cells = nn.ModuleList(SlimCell(name, bn) if i in CELL_LAYERS else SlimReduction(name, bn)
                                   for i, name in enumerate(LAYERS))
        self.head_bn = WidthBN(bn)
        self.classifier = nn.Linear(MAX_CHANNELS, num_classes)
        self.set_active(self.largest_path())

    #: BossNAS' blocks (layer indices), for block-wise training and rating
    blocks = BOSSNAS_BLOCKS

    def block_decisions(self, block: int) -> Sequence[int]:
        """The decisions (layers) of block ``block``."""
        return self.blocks[block]

    def block_outputs(self, block: int):
        """(channels, adapter down-sampling factor) of every output block ``block`` can have: one per width."""
        return [(c, 1) for c in CHANNELS]

    def modules_before(self, block: int):
        """The stem and the layers of earlier blocks (what ``freeze_previous_blocks`` freezes)."""
        first = self.blocks[block][0]
        return [self.stem, *self.cells[:first]] if block > 0 else []

    def forward(self, x: torch.Tensor, block: Optional[int] = None) -> torch.Tensor:
        """Logits of the active child, or (``block=k``) the feature map after BossNAS block ``k``."""
        last = len(self.cells) - 1 if block is None else self.blocks[block][-1]
        x = self.stem(x)
        for cell in self.cells[:last + 1]:
            x = cell(x)
        if block is not None:
            return x
        x = F.adaptive_avg_pool2d(F.relu(self.head_bn(x)), 1).flatten(1)
        return F.linear(x, self.classifier.weight[:, :x.shape[1]], self.classifier.bias)
