"""NB201's fixed facts, in a leaf module that the space, its network and its supernet all import.

The operation and edge order and the datasets' classes are the benchmark's (its architecture strings
and product codes use them), so they come from :mod:`nastk.benchmarks.nb201`; the rest follows.
"""
from __future__ import annotations

from typing import Dict

from nastk.benchmarks.nb201 import EDGES, INPUT_SIZE, NUM_CLASSES, OPS  # noqa: F401 (the benchmark's, re-exported)

NUM_NODES = 4
#: Number of cells (product codes run 0..SIZE-1).
SIZE = len(OPS) ** len(EDGES)
#: Position of each operation in :data:`OPS` (the one-hot and product-code order).
OP_INDEX: Dict[str, int] = {op: i for i, op in enumerate(OPS)}
