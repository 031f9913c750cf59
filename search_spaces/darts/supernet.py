"""The DARTS search supernet (methods.md 13.1): every edge of every cell holds all 8 DARTS ops.

A discrete DARTS genotype picks, per node, two inputs and one op on each; the search network
instead connects every node to *all* earlier nodes (2 + 3 + 4 + 5 = 14 edges per cell) and lets each
edge choose among the 8 primitives, ``none`` included. So the supernet's **28 decisions** are the
edges, normal cell then reduction cell, node j = 2..5 then input i < j (``"normal_2<-0"`` ...
``"reduce_5<-4"``), each over :data:`~search_spaces.darts.ops.PRIMITIVES`. All normal cells share the
14 normal decisions and all reduction cells the 14 reduce ones, as DARTS' alpha does.

* A genotype's **single path** runs its op on each of its 16 edges and ``none`` on the other 12
  (:meth:`DartsSupernet.path_of_arch`), which computes what the genotype's cell computes;
  :meth:`DartsSupernet.arch_of_path` is the inverse and refuses paths that are not genotypes.
* :meth:`DartsSupernet.discretize` is DARTS' rule: per node keep the two edges whose strongest
  non-``none`` op weighs most, and take that op on them.
* The skeleton is the stand-alone network's (:mod:`search_spaces.darts.network`): stem 3x3 conv to
  ``stem_multiplier * C`` channels, reduction cells at ``layers // 3`` and ``2 * layers // 3``,
  inputs preprocessed by ReLU-Conv1x1-BN (FactorizedReduce after a reduction), output the concat
  of nodes 2..5, global pooling and a linear classifier. As in DARTS' search model the cells'
  BatchNorm defaults to ``affine=False``, pools are followed by ``BN(affine=False)`` (so a pool's
  output scale is comparable to the convolutions' in a mixture) and the stem's BN stays affine.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
from torch import nn

from nastk.errors import ArchitectureError, ConfigError
from nastk.supernet import CandidateOps, Choices, Decision, GradientMatchable, PerturbationSelectable, Supernet
from search_spaces.darts.constants import CELLS, CONCAT, NODES, Genotype
from search_spaces.darts.ops import PRIMITIVES, FactorizedReduce, ReLUConvBN, make_op

#: The 14 edges of a cell as (node, input), node by node: the order of a cell type's decisions.
EDGES: Tuple[Tuple[int, int], ...] = tuple((node, source) for node in NODES for source in range(node))
NONE = PRIMITIVES.index("none")


def edge_decision(cell: str, node: int, source: int) -> int:
    """The decision index of edge ``source -> node`` of cell type ``cell``."""
    return CELLS.index(cell) * len(EDGES) + EDGES.index((node, source))


def search_op(name: str, channels: int, stride: int, affine: bool) -> nn.Module:
    """A DARTS op as the search model uses it: pools get a parameter-free BN after them."""
    op = make_op(name, channels, stride=stride, affine=affine)
    if "pool" in name:
        op = nn.Sequential(op, nn.BatchNorm2d(channels, affine=False))
    return op


class SearchCell(nn.Module):
    """A cell whose 14 edges are :class:`CandidateOps`; node j sums the outputs of its j edges."""

    def __init__(self, first_decision: int, c_prev_prev: int, c_prev: int, c: int, reduction: bool,
                 reduction_prev: bool, affine: bool):
        super().__init__()
        self.reduction = reduction
        self.preprocess0 = (FactorizedReduce(c_prev_prev, c, affine=affine) if reduction_prev
                            else ReLUConvBN(c_prev_prev, c, 1, affine=affine))
        self.preprocess1 = ReLUConvBN(c_prev, c, 1, affine=affine)
        self.edges = nn.ModuleList(
            CandidateOps(first_decision + k,
                         [search_op(op, c, 2 if reduction and source < 2 else 1, affine) for op in PRIMITIVES])
            for k, (_, source) in enumerate(EDGES))
        self.multiplier = len(CONCAT)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states: List[torch.Tensor] = [self.preprocess0(s0), self.preprocess1(s1)]
        position = 0
        for node in NODES:
            states.append(sum(self.edges[position + source](states[source]) for source in range(node)))
            position += node
        return torch.cat([states[i] for i in CONCAT], dim=1)


class DartsSupernet(GradientMatchable, PerturbationSelectable, Supernet):
    """DARTS' search network over a :class:`~search_spaces.darts.space.DartsSpace` (module docstring).

    ``track_running_stats=False`` makes every BatchNorm use batch statistics also in eval mode
    (useful when single paths are ranked, as PA&DA's NB201 supernet does); DARTS tracks them.
    """

    #: an edge at ``none`` is not part of the genotype (not counted as an operation)
    absent_option = "none"

    def __init__(self, space, num_classes: int = 10, C: int = 16, layers: int = 8, stem_multiplier: int = 3,
                 affine: bool = False, track_running_stats: bool = True):
        super().__init__(space, [Decision(f"{cell}_{node}<-{source}", PRIMITIVES)
                                 for cell in CELLS for node, source in EDGES])
        if layers < 3:
            raise ConfigError(f"a DARTS supernet needs at least 3 cells (two are reduction cells), got {layers}")
        self.layers = layers
        self.reduction_layers = (layers // 3, 2 * layers // 3)
        c_curr = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(3, c_curr, 3, padding=1, bias=False), nn.BatchNorm2d(c_curr))
        c_prev_prev, c_prev, c_curr = c_curr, c_curr, C
        cells, reduction_prev = [], False
        for i in range(layers):
            reduction = i in self.reduction_layers
            if reduction:
                c_curr *= 2
            first = edge_decision("reduce" if reduction else "normal", *EDGES[0])
            cell = SearchCell(first, c_prev_prev, c_prev, c_curr, reduction, reduction_prev, affine)
            cells.append(cell)
            reduction_prev = reduction
            c_prev_prev, c_prev = c_prev, cell.multiplier * c_curr
        self.cells = nn.ModuleList(cells)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)
        if not track_running_stats:
            for module in self.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.track_running_stats = False
                    module.running_mean = module.running_var = module.num_batches_tracked = None

    # --- genotypes <-> one option per edge --------------------------------------------------------
    def path_of_arch(self, arch) -> Choices:
        """The genotype's op index on each of its edges, ``none`` (0) on every other edge."""
        choices = [NONE] * len(self.decisions)
        for cell, pairs in self.space._cells(arch).items():
            for k, (op, source) in enumerate(pairs):
                choices[edge_decision(cell, NODES[k // 2], source)] = PRIMITIVES.index(op)
        return tuple(choices)

    def arch_of_path(self, choices: Sequence[int]):
        """The genotype of a single path; every node must have exactly two non-``none`` inputs."""
        if len(choices) != len(self.decisions):
            raise ArchitectureError(f"a DARTS supernet path has {len(self.decisions)} choices, got {len(choices)}")
        cells = {}
        for cell in CELLS:
            pairs: List[Tuple[str, int]] = []
            for node in NODES:
                used = []
                for source in range(node):
                    option = int(choices[edge_decision(cell, node, source)])
                    if not 0 <= option < len(PRIMITIVES):
                        raise ArchitectureError(f"DARTS supernet edge {cell}_{node}<-{source}: option {option} "
                                                f"is not one of the {len(PRIMITIVES)} ops")
                    if option != NONE:
                        used.append((PRIMITIVES[option], source))
                if len(used) != 2:
                    raise ArchitectureError(f"DARTS {cell} node {node} has {len(used)} non-none inputs "
                                            f"({', '.join(f'{op}@{i}' for op, i in used) or 'none'}); a genotype needs exactly 2")
                pairs += used
            cells[cell] = tuple(pairs)
        return self.space.from_genotype(Genotype(cells["normal"], CONCAT, cells["reduce"], CONCAT))

    def selection_groups(self) -> List[List[int]]:
        """DARTS-PT decides one normal and one reduction edge per round."""
        return [[edge_decision(cell, node, source) for node, source in EDGES] for cell in CELLS]

    def topology_groups(self) -> List[List[List[int]]]:
        """Nodes with more than two candidate inputs (3, 4, 5), per cell type."""
        return [[[edge_decision(cell, node, source) for source in range(node)] for node in NODES if node > 2]
                for cell in CELLS]

    def discretize(self, weights: torch.Tensor) -> Choices:
        """DARTS' rule: per node the 2 edges of largest max-non-``none`` weight, each with that op.

        Only allowed options count (a few-shot sub-supernet's mask); other edges get ``none``. Ties
        go to the earlier input, as DARTS' stable sort does.
        """
        strengths = weights.detach().cpu().double().clone()
        usable = torch.as_tensor(self.allowed).clone()
        usable[:, NONE] = False
        strengths[~usable] = float("-inf")
        choices = [NONE] * len(self.decisions)
        for cell in CELLS:
            for node in NODES:
                edges = [edge_decision(cell, node, source) for source in range(node)]
                best = strengths[edges].max(dim=1)
                ranked = sorted(range(node), key=lambda source: -float(best.values[source]))[:2]
                for source in ranked:
                    if best.values[source] == float("-inf"):
                        raise ArchitectureError(f"DARTS {cell} node {node}: fewer than 2 inputs have an allowed "
                                                "op other than none; cannot discretize")
                    choices[edges[source]] = int(best.indices[source])
        return tuple(choices)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.classifier(self.global_pooling(s1).flatten(1))
