"""The elastic MobileNet supernet of the MobileNet spaces (methods.md 12.1).

One module per unit of the space's :meth:`~search_spaces.mobilenet.MobileNetSpace.layout`: elastic
stem / head layers listen to their width decisions, every MBConv block (an
:class:`~nastk.elastic.ElasticMBConv`) to its kernel, expand, depth and width decisions. Decisions are
the space's choices (:func:`~nastk.supernet.decisions_of`), so the default ``path_of_arch`` / ``arch_of_path``
apply; the ``resolution`` decision is read by no layer (the supernet runs the resolution of its
input). :meth:`MobileNetSupernet.extract` returns a plain network of the child's weight slices and
:meth:`MobileNetSupernet.expected_cost` the differentiable expected cost under per-decision
probabilities, both from the same layout as the space's analytic cost.
"""
from __future__ import annotations

import copy
import itertools
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from nastk.architecture import Architecture
from nastk.elastic import ConvBNAct, DynamicLinear, DynamicMBConv, ElasticConvBNAct, ElasticMBConv
from nastk.errors import ConfigError
from nastk.supernet import Supernet, decisions_of
from search_spaces.mobilenet import BlockUnit, ConvUnit, CostTerm, PoolUnit

#: what :meth:`MobileNetSupernet.expected_cost` can average: the cost tuple's column
METRICS = {"params": 0, "flops": 1}


class ChannelsLast(nn.Module):
    """Images in channels-last memory order: oneDNN then convolves without converting every activation to
    its own layout and back (measured 1.9x faster per training step on CPU, docs/results/elastic_speed.md).
    The supernet and every extracted child start with it, so both compute in the same order."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


class Classifier(nn.Module):
    """Flatten, dropout, linear over the input's features."""

    def __init__(self, max_in: int, classes: int, dropout: float, device=None):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = DynamicLinear(max_in, classes, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.dropout(x.flatten(1)))

    def output_channels(self, in_channels: int) -> int:
        return self.linear.out_features

    def export(self, in_channels: int) -> nn.Sequential:
        return nn.Sequential(nn.Flatten(), nn.Dropout(self.dropout.p), self.linear.export(in_channels))


class MobileNetSupernet(Supernet):
    """Elastic MobileNet supernet of a :class:`~search_spaces.mobilenet.MobileNetSpace`.

    Options: ``width_mult`` (widths ``make_divisible(w * width_mult, 8)``), ``dropout`` (default: the
    space's; :attr:`dropout` is the module a training step may change), ``bn_momentum`` / ``bn_eps``
    (0.1 / 1e-5; BigNAS trains with momentum 0), ``kernel_transform`` and ``zero_gamma`` (default:
    the space's), ``device`` (where every weight is created).
    """

    def __init__(self, space, num_classes: int = 10, width_mult: float = 1.0, dropout: Optional[float] = None,
                 bn_momentum: Optional[float] = 0.1, bn_eps: float = 1e-5, kernel_transform: Optional[bool] = None,
                 zero_gamma: Optional[bool] = None, device=None):
        super().__init__(space, decisions_of(space))
        spec = space.spec
        dropout = spec.dropout if dropout is None else dropout
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ConfigError(f"dropout must be a number in [0, 1), got {dropout!r}")
        self.num_classes, self.width_mult = num_classes, float(width_mult)
        self.kernel_transform = spec.kernel_transform if kernel_transform is None else bool(kernel_transform)
        self.zero_gamma = spec.zero_gamma if zero_gamma is None else bool(zero_gamma)
        norm = dict(bn_momentum=bn_momentum, bn_eps=bn_eps, device=device)
        layers, max_in = [], 3
        for unit in space.layout(num_classes, self.width_mult):
            layers.append(self._module(unit, max_in, float(dropout), norm))
            if isinstance(unit, (ConvUnit, BlockUnit)):
                max_in = unit.width.largest
        self.layers = nn.ModuleList(layers)
        self.channels_last = ChannelsLast()
        self._path: Optional[Tuple[int, ...]] = None
        self._tables: Dict[Tuple, torch.Tensor] = {}
        self._zero_residual_gamma()

    def set_regularization(self, enabled: bool) -> None:
        """Dropout on (the built rate) or off: BigNAS regularises only the largest child of a sandwich step."""
        if not hasattr(self, "_dropout_rate"):
            self._dropout_rate = self.dropout.p
        self.dropout.p = self._dropout_rate if enabled else 0.0

    @property
    def dropout(self) -> nn.Dropout:
        """The classifier's dropout (BigNAS regularises only the largest child: a step may set its ``p``)."""
        return self.layers[-1].dropout

    def _module(self, unit, max_in: int, dropout: float, norm: dict) -> nn.Module:
        if isinstance(unit, ConvUnit):
            args = (max_in, unit.width.largest, unit.kernel, unit.stride, unit.act, unit.bn)
            if unit.width.choice is None:
                return ConvBNAct(*args, **norm)
            return ElasticConvBNAct(*args, widths=unit.width.values, decisions=(unit.width.choice,), **norm)
        if isinstance(unit, BlockUnit):
            options = dict(stride=unit.stride, act=unit.act, se=unit.se, residual=unit.residual,
                           kernel_transform=self.kernel_transform, **norm)
            roles = (unit.kernel, unit.expand, unit.depth, unit.width)
            if all(role is None or role.choice is None for role in roles):
                return DynamicMBConv(max_in, unit.width.largest, unit.kernel.values, unit.expand.values, **options)
            depths = unit.depth.values if unit.depth is not None else (unit.index + 1,)
            return ElasticMBConv(max_in, unit.width.values, unit.kernel.values, unit.expand.values, depths, unit.index,
                                 decisions=tuple(role.choice if role is not None else None for role in roles), **options)
        if isinstance(unit, PoolUnit):
            return nn.AdaptiveAvgPool2d(1)
        return Classifier(max_in, unit.classes, dropout, device=norm["device"])

    def blocks(self):
        return [m for m in self.layers if isinstance(m, DynamicMBConv)]

    def _zero_residual_gamma(self) -> None:
        if self.zero_gamma:
            for block in self.blocks():
                if block.residual:
                    block.zero_last_bn()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self._zero_residual_gamma()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.channels_last(x)
        for layer in self.layers:
            x = layer(x)
        return x

    def set_path(self, path) -> None:
        super().set_path(path)
        self._path = tuple(path) if self.mode == "single" else None

    def sort_channels(self, expand_ratios_in_band: Optional[Sequence[float]] = None) -> None:
        """OFA's channel sorting of every block (see :meth:`nastk.elastic.DynamicMBConv.sort_channels`)."""
        for block in self.blocks():
            block.sort_channels(expand_ratios_in_band)

    # --- children ---------------------------------------------------------------------------------
    def extract(self, arch: Union[Architecture, Sequence[int]]) -> nn.Sequential:
        """A plain network (``nn.Conv2d`` / ``nn.BatchNorm2d`` / ``nn.Linear``) holding copies of the
        child's weight slices and running statistics, transformed kernels baked in; it computes what
        the supernet computes for that child, in train and eval mode. The supernet's path is kept."""
        previous = self._path
        self.set_active(arch)
        try:
            layers, channels = [], 3
            with torch.no_grad():
                for layer in self.layers:
                    if hasattr(layer, "export"):
                        exported = layer.export(channels)
                        channels = layer.output_channels(channels)
                        if exported is not None:
                            layers.append(exported)
                    else:
                        layers.append(copy.deepcopy(layer))
        finally:
            if previous is not None:
                self.set_path(previous)
        return nn.Sequential(ChannelsLast(), *layers).train(self.training)

    # --- costs ------------------------------------------------------------------------------------
    def expected_cost(self, weights: torch.Tensor, metric: str = "flops", input_size: Optional[int] = None) -> torch.Tensor:
        """Expected ``metric`` (millions of multiply-adds or parameters) of a child whose decisions are
        drawn independently, decision ``d`` taking option ``o`` with probability ``weights[d, o]``.

        Exactly ``fixed parts + sum over blocks P(block runs) * E[block cost]`` (every term averaged
        over the joint options of the few decisions it reads), differentiable in ``weights``; a
        one-hot ``weights`` gives the space's ``cost()`` of that child. The input side is ``input_size``
        or, in spaces with a resolution decision, averaged over that decision (else 32).
        """
        if metric not in METRICS:
            raise ConfigError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
        if not isinstance(weights, torch.Tensor) or weights.dim() != 2 or weights.shape[0] != len(self.decisions):
            raise ConfigError(f"weights must be a tensor of shape ({len(self.decisions)}, options), got "
                              f"{tuple(weights.shape) if isinstance(weights, torch.Tensor) else type(weights).__name__}")
        if weights.shape[1] < max(len(d.options) for d in self.decisions):
            raise ConfigError(f"weights need a column per option ({self.width}), got {weights.shape[1]}")
        rows = {d.name: weights[i, :len(d.options)] for i, d in enumerate(self.decisions)}
        if input_size is None and "resolution" in rows:
            sizes = tuple(int(o) for o in self.decisions[self.decision_index("resolution")].options)
            size_row = rows["resolution"]
        else:
            sizes, size_row = (self.space.input_size(None, input_size),), weights.new_ones(1)
        total = weights.new_zeros(())
        for index, term in enumerate(self.space.cost_terms(self.num_classes, self.width_mult)):
            expected = self._table(index, term, sizes, METRICS[metric]).to(weights)
            for row in [size_row] + [rows[name] for name in term.reads]:  # contract one decision at a time
                expected = torch.tensordot(row, expected, dims=([0], [0]))
            if term.depth is not None:
                role, block = term.depth
                runs = torch.tensor([depth > block for depth in role.values], device=weights.device)
                expected = expected * (rows[role.choice] * runs).sum()
            total = total + expected
        return total / 1e6

    def _table(self, index: int, term: CostTerm, sizes: Tuple[int, ...], column: int) -> torch.Tensor:
        """A term's cost for every input size and every joint option of the decisions it reads."""
        key = (index, sizes, column)
        if key not in self._tables:
            counts = [len(self.decisions[self.decision_index(name)].options) for name in term.reads]
            values = [[term.cost(dict(zip(term.reads, options)), size)[column]
                       for options in itertools.product(*(range(n) for n in counts))] for size in sizes]
            self._tables[key] = torch.tensor(values, dtype=torch.float64).reshape(len(sizes), *counts)
        return self._tables[key]
