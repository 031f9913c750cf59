"""The DARTS space's fixed facts (ops, cells, nodes, published genotypes) and its :class:`Genotype`, in a
leaf module that the space and its supernet both import (the space imports its networks only when building).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

#: The 7 ops of a discrete genotype (NASLib's op-index order). ``none`` exists only in a supernet.
OPS: Tuple[str, ...] = ("max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
                        "dil_conv_3x3", "dil_conv_5x5")
#: Compact-string names of :data:`OPS`.
SHORT: Dict[str, str] = {"max_pool_3x3": "max3", "avg_pool_3x3": "avg3", "skip_connect": "skip",
                         "sep_conv_3x3": "sep3", "sep_conv_5x5": "sep5", "dil_conv_3x3": "dil3",
                         "dil_conv_5x5": "dil5"}
CELLS: Tuple[str, ...] = ("normal", "reduce")
#: Intermediate nodes of a cell; node j chooses 2 of the nodes 0..j-1.
NODES: Tuple[int, ...] = (2, 3, 4, 5)
#: The nodes a cell concatenates into its output (always all intermediate nodes in this space).
CONCAT: Tuple[int, ...] = (2, 3, 4, 5)
#: Published genotypes (compact strings): DARTS second order (Liu et al. 2019, "DARTS_V2").
PUBLISHED: Dict[str, str] = {
    "DARTS_V2": "normal:sep3@0,sep3@1|sep3@0,sep3@1|skip@0,sep3@1|skip@0,dil3@2;"
                "reduce:max3@0,max3@1|max3@1,skip@2|max3@0,skip@2|max3@1,skip@2",
}

Pair = Tuple[str, int]


@dataclass(frozen=True)
class Genotype:
    """DARTS' genotype: per cell type, 8 (op, input) pairs (two per node 2..5) and the concat list."""

    normal: Tuple[Pair, ...]
    normal_concat: Tuple[int, ...]
    reduce: Tuple[Pair, ...]
    reduce_concat: Tuple[int, ...]

    def __str__(self) -> str:
        def pairs(cell):
            return "[" + ", ".join(f"({op!r}, {i})" for op, i in cell) + "]"

        return (f"Genotype(normal={pairs(self.normal)}, normal_concat={list(self.normal_concat)}, "
                f"reduce={pairs(self.reduce)}, reduce_concat={list(self.reduce_concat)})")
