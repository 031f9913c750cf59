"""The NAS-Bench-201 supernet: the stand-alone network's skeleton with all 5 ops on every edge.

Every edge of every cell is a :class:`~nastk.supernet.CandidateOps` listening to the edge's decision,
so one edge index selects the same op in all 3N cells, as in the benchmark. The ops are the
stand-alone network's own (:func:`search_spaces.nb201.network.make_op`), and so is the stage layout
(:func:`~search_spaces.nb201.network.add_stages`). As in PA&DA's supernet,
BatchNorm defaults to ``affine=False, track_running_stats=False`` (batch statistics also at
evaluation) and, following NB201's convention ``bias = not affine``, candidate convolutions then
carry a bias (zero-initialised, so a fresh supernet computes exactly what the stand-alone net does).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from nastk.supernet import CandidateOps, Decision, GradientMatchable, PerturbationSelectable, Supernet
from search_spaces.nb201.constants import EDGES, OPS
from search_spaces.nb201.network import NB201Cell, ReLUConvBN, add_stages, make_op


def make_candidate(name: str, channels: int, affine: bool, track_running_stats: bool, conv_bias: bool) -> nn.Module:
    op = make_op(name, channels, affine, track_running_stats)
    if conv_bias and isinstance(op, ReLUConvBN):
        conv = op[1]
        conv.bias = nn.Parameter(torch.zeros(conv.out_channels))
    return op


class NB201SupernetCell(NB201Cell):
    """An NB201 cell whose 6 edges hold all 5 candidate ops (the forward pass is the cell's own)."""

    def __init__(self, channels: int, affine: bool, track_running_stats: bool, conv_bias: bool):
        super().__init__(("none",) * len(EDGES), channels)
        self.ops = nn.ModuleList(
            CandidateOps(edge, [make_candidate(op, channels, affine, track_running_stats, conv_bias) for op in OPS])
            for edge in range(len(EDGES)))


class NB201Supernet(GradientMatchable, PerturbationSelectable, Supernet):
    def __init__(self, space, num_classes: int = 10, C: int = 16, N: int = 5, affine: bool = False,
                 track_running_stats: bool = False, conv_bias: Optional[bool] = None):
        super().__init__(space, [Decision(f"{target}<-{source}", OPS) for target, source in EDGES])
        conv_bias = (not affine) if conv_bias is None else conv_bias
        add_stages(self, C, N, num_classes,
                   lambda channels: NB201SupernetCell(channels, affine, track_running_stats, conv_bias),
                   affine, track_running_stats,
                   lambda channels: nn.BatchNorm2d(channels, affine=affine, track_running_stats=track_running_stats))

    def reset_parameters(self) -> None:
        """Re-initialise as a fresh supernet is initialised (candidate conv biases back to zero)."""
        super().reset_parameters()
        with torch.no_grad():
            for point in self.choice_points():
                for candidate in point.candidates:
                    if isinstance(candidate, ReLUConvBN) and candidate[1].bias is not None:
                        candidate[1].bias.zero_()

    def path_of_arch(self, arch):
        return self.space.op_indices(arch)

    def arch_of_path(self, choices: Sequence[int]):
        return self.space.from_ops([int(c) for c in choices])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.head(self.cells(self.stem(x))).flatten(1))
