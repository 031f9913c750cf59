"""The DARTS evaluation network (methods.md 13.1): stem, stacked cells, auxiliary head, drop path.

* Stem: 3x3 conv to ``3C`` channels + BN.
* ``layers`` cells; the cells at ``layers // 3`` and ``2 * layers // 3`` are reduction cells (stride 2
  on the edges from the cell inputs, channels doubled), all others normal cells.
* Each cell takes the outputs of the two previous cells, preprocessed to ``C`` channels by
  ReLU-Conv1x1-BN, or by :class:`FactorizedReduce` for the older one when the previous cell reduced
  (so both inputs have the same resolution). Node j = op_a(input_a) + op_b(input_b); the cell's
  output concatenates the four intermediate nodes (``4C`` channels).
* Head: global average pooling and a linear classifier.
* Auxiliary head (``auxiliary=True``, DARTS' CIFAR head, for 32x32 inputs: 8x8 at that depth): on the
  output of the second reduction cell. In training mode ``forward`` then returns
  ``(logits, aux_logits)``; in eval mode, or without the head, it returns plain ``logits``.
* Drop path: with ``drop_path_prob > 0`` and in training mode, every non-identity op's output is
  dropped per example (DARTS; the probability is an attribute so a training loop can schedule it).
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
from torch import nn

from search_spaces.darts.ops import FactorizedReduce, ReLUConvBN, drop_path, make_op

#: One cell: 8 (op, input) pairs, two per intermediate node, node by node.
CellSpec = Sequence[Tuple[str, int]]


class Cell(nn.Module):
    def __init__(self, spec: CellSpec, concat: Sequence[int], c_prev_prev: int, c_prev: int, c: int,
                 reduction: bool, reduction_prev: bool):
        super().__init__()
        self.reduction = reduction
        self.preprocess0 = (FactorizedReduce(c_prev_prev, c) if reduction_prev
                            else ReLUConvBN(c_prev_prev, c, 1))
        self.preprocess1 = ReLUConvBN(c_prev, c, 1)
        self.inputs = [index for _, index in spec]
        self.concat = list(concat)
        self.ops = nn.ModuleList(
            make_op(op, c, stride=2 if reduction and index < 2 else 1) for op, index in spec
        )
        self.multiplier = len(self.concat)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        states: List[torch.Tensor] = [self.preprocess0(s0), self.preprocess1(s1)]
        for position in range(0, len(self.ops), 2):
            node = 0
            for op, index in ((self.ops[position], self.inputs[position]),
                              (self.ops[position + 1], self.inputs[position + 1])):
                h = op(states[index])
                if self.training and drop_prob > 0.0 and not isinstance(op, nn.Identity):
                    h = drop_path(h, drop_prob)
                node = node + h
            states.append(node)
        return torch.cat([states[i] for i in self.concat], dim=1)


class AuxiliaryHead(nn.Module):
    """DARTS' CIFAR auxiliary classifier on an 8x8 feature map."""

    def __init__(self, c: int, num_classes: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False),  # 8x8 -> 2x2
            nn.Conv2d(c, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=False),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=False),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class DartsNetwork(nn.Module):
    """The stand-alone network of a DARTS genotype (``normal``/``reduce``: 8 (op, input) pairs each)."""

    def __init__(self, normal: CellSpec, reduce: CellSpec, num_classes: int = 10, C: int = 36, layers: int = 20,
                 auxiliary: bool = False, drop_path_prob: float = 0.0,
                 normal_concat: Sequence[int] = (2, 3, 4, 5), reduce_concat: Sequence[int] = (2, 3, 4, 5)):
        super().__init__()
        if layers < 3:
            raise ValueError(f"a DARTS network needs at least 3 cells (two are reduction cells), got {layers}")
        self.layers = layers
        self.drop_path_prob = drop_path_prob
        self.reduction_layers = (layers // 3, 2 * layers // 3)
        self.aux_layer = 2 * layers // 3
        c_curr = 3 * C
        self.stem = nn.Sequential(nn.Conv2d(3, c_curr, 3, padding=1, bias=False), nn.BatchNorm2d(c_curr))
        c_prev_prev, c_prev, c_curr = c_curr, c_curr, C
        cells, reduction_prev, c_aux = [], False, None
        for i in range(layers):
            reduction = i in self.reduction_layers
            if reduction:
                c_curr *= 2
            cell = Cell(reduce if reduction else normal, reduce_concat if reduction else normal_concat,
                        c_prev_prev, c_prev, c_curr, reduction, reduction_prev)
            cells.append(cell)
            reduction_prev = reduction
            c_prev_prev, c_prev = c_prev, cell.multiplier * c_curr
            if i == self.aux_layer:
                c_aux = c_prev
        self.cells = nn.ModuleList(cells)
        self.auxiliary_head = AuxiliaryHead(c_aux, num_classes) if auxiliary else None
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x: torch.Tensor):
        s0 = s1 = self.stem(x)
        aux_logits = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self.aux_layer and self.auxiliary_head is not None and self.training:
                aux_logits = self.auxiliary_head(s1)
        logits = self.classifier(self.global_pooling(s1).flatten(1))
        return (logits, aux_logits) if aux_logits is not None else logits
