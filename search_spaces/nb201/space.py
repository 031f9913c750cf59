"""The NAS-Bench-201 cell search space, written against nastk's public API only.

A cell is a DAG of 4 nodes; node j sums one operation applied to every earlier node, so there are
6 edges, ordered ``1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2``, each taking one of 5 operations:
5**6 = 15,625 cells, 6,466 of them distinct up to isomorphism. The official string of a cell lists
node 1's, node 2's and node 3's inputs: ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``.

The six edges are the space's choice model (``Categorical`` choices named ``1<-0`` ... ``3<-2``), so
sample, mutate, neighbors, crossover, encode, optuna suggest and enumerate are the generic ones of
:class:`~nastk.space.SearchSpace`; they give exactly the results (and consume exactly the random
numbers) of the hand-written NB201 operators they replaced, so seeded searches are unchanged. The
space keeps its own codec (the official string), product codes, graph and canonical form.

The NB201 *index* of a cell (0..15624) is the order of the benchmark file, a shuffled order that
only the benchmark defines: ``benchmark_for("nb201").index(arch)`` and ``.arch_at(i)``
(:mod:`nastk.benchmarks.nb201`); the space knows only its own product codes.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import networkx as nx
import numpy as np

from nastk.architecture import Architecture
from nastk.choices import Categorical, ChoiceModel
from nastk.errors import ArchitectureError, UnknownOpError
from nastk.options import Int, Option
from nastk.space import SearchSpace
from search_spaces.nb201.constants import EDGES, NUM_NODES, OP_INDEX as _OP_INDEX, OPS, SIZE


class NB201Space(SearchSpace):
    name = "nb201"
    capabilities = frozenset({"graph", "supernet"})  # + enumerate, mutate, ... from the choice model, build
    #: A search trains small networks by default (CPU); NB201's own network is C=16, N=5.
    BUILD_OPTIONS = (Option("C", Int(minimum=1), "channels of the first stage (NB201's network: 16)", 8),
                     Option("N", Int(minimum=1), "cells per stage (NB201's network: 5)", 1))
    #: Keywords of :meth:`supernet` (``nastk supernet train --C 8 --N 1``); defaults are supernet()'s own.
    #: The same small network as a search trains by default (CPU); supernet() itself keeps NB201's C=16, N=5,
    #: and a new run records the sizes it used, so a run made before these defaults still loads as trained.
    SUPERNET_OPTIONS = (Option("C", Int(minimum=1), "nb201 supernet: channels of the first stage (NB201's network: 16)", 8),
                        Option("N", Int(minimum=1), "nb201 supernet: cells per stage (NB201's network: 5)", 1))

    def choice_model(self) -> ChoiceModel:
        """Six categorical edges named ``"1<-0"`` ... ``"3<-2"`` (NB201's edge order), each over :data:`OPS`."""
        return ChoiceModel([Categorical(f"{to}<-{source}", OPS) for to, source in EDGES])

    # --- codec -------------------------------------------------------------------------------
    def to_str(self, arch: Architecture) -> str:
        ops = self._ops(arch)
        groups, position = [], 0
        for node in range(1, NUM_NODES):
            groups.append("|" + "|".join(f"{ops[position + i]}~{i}" for i in range(node)) + "|")
            position += node
        return "+".join(groups)

    def from_str(self, text: str) -> Architecture:
        if not isinstance(text, str):
            raise ArchitectureError(f"NB201 architecture must be a string, got {type(text).__name__}")
        groups = text.strip().split("+")
        if len(groups) != NUM_NODES - 1:
            raise ArchitectureError(
                f"NB201 architecture {text!r} has {len(groups)} node groups separated by '+', expected 3"
            )
        ops: List[str] = []
        for node, group in enumerate(groups, start=1):
            if len(group) < 2 or not (group.startswith("|") and group.endswith("|")):
                raise ArchitectureError(f"NB201 node group {group!r} in {text!r} must look like |op~0|...|")
            entries = group[1:-1].split("|")
            if len(entries) != node:
                raise ArchitectureError(
                    f"NB201 node {node} in {text!r} has {len(entries)} input edges, expected {node}"
                )
            for position, entry in enumerate(entries):
                op, sep, source = entry.partition("~")
                if not sep or source != str(position):  # exactly the ASCII index: no '00', '٠' or '０'
                    raise ArchitectureError(
                        f"NB201 edge {entry!r} of node {node} in {text!r} must be 'op~{position}'"
                    )
                if op not in _OP_INDEX:
                    raise UnknownOpError(f"unknown NB201 operation {op!r} in {text!r}; known: {', '.join(OPS)}")
                ops.append(op)
        return Architecture(self.name, tuple(ops))

    def from_ops(self, ops) -> Architecture:
        """An architecture from 6 op names or op indices in the canonical edge order."""
        ops = tuple(ops)
        if len(ops) != len(EDGES):
            raise ArchitectureError(f"NB201 needs {len(EDGES)} operations, got {len(ops)}")
        names = []
        for op in ops:
            if isinstance(op, (int, np.integer)):
                if not 0 <= op < len(OPS):
                    raise UnknownOpError(f"NB201 op index {op} out of range 0..{len(OPS) - 1}")
                op = OPS[op]
            elif op not in _OP_INDEX:
                raise UnknownOpError(f"unknown NB201 operation {op!r}; known: {', '.join(OPS)}")
            names.append(op)
        return Architecture(self.name, tuple(names))

    def _ops(self, arch: Architecture) -> Tuple[str, ...]:
        if not isinstance(arch, Architecture) or arch.space != self.name:
            raise ArchitectureError(f"expected an NB201 Architecture, got {arch!r}")
        if len(arch.choices) != len(EDGES) or any(op not in _OP_INDEX for op in arch.choices):
            raise ArchitectureError(f"NB201 architecture needs 6 known operations, got {arch.choices!r}")
        return arch.choices

    def op_indices(self, arch: Architecture) -> Tuple[int, ...]:
        return tuple(_OP_INDEX[op] for op in self._ops(arch))

    # --- product codes (the benchmark's index order is the benchmark's: nastk.benchmarks.nb201) -------
    def code(self, arch: Architecture) -> int:
        """The product-order position of ``arch`` (base-5 number of its op indices; ``enumerate()``
        yields cells in this order, which is not NB201's index order)."""
        value = 0
        for op in self._ops(arch):
            value = value * len(OPS) + _OP_INDEX[op]
        return value

    def from_code(self, code: int) -> Architecture:
        if not 0 <= code < SIZE:
            raise ArchitectureError(f"NB201 product code {code} out of range 0..{SIZE - 1}")
        ops = []
        for _ in EDGES:
            code, op = divmod(code, len(OPS))
            ops.append(OPS[op])
        return Architecture(self.name, tuple(reversed(ops)))

    # --- graph and isomorphism ----------------------------------------------------------------
    def graph(self, arch: Architecture) -> nx.DiGraph:
        """The cell as a DiGraph: nodes 0..3 and all 6 edges, each with its ``op`` attribute."""
        g = nx.DiGraph()
        g.add_nodes_from(range(NUM_NODES))
        for (target, source), op in zip(EDGES, self._ops(arch)):
            g.add_edge(source, target, op=op)
        return g

    def canonical(self, arch: Architecture) -> str:
        """NB201's isomorphism-canonical string: equal for cells NB201 counts as one (6,466 classes).

        Each node is written as the sorted ``+``-join of its incoming terms: ``none``, or any op on a
        source that is exactly ``#``, gives ``#``; ``skip_connect`` passes its source's string
        through; any other op gives ``(source)@op``. Sorting within a node makes the string
        independent of which intermediate node is which. This is the benchmark's definition, so
        sums are not flattened and sums of zeros are not folded.
        """
        g = self.graph(arch)
        strings = {0: "0"}
        for node in nx.topological_sort(g):
            if node == 0:
                continue
            terms = []
            for source in g.predecessors(node):
                op = g.edges[source, node]["op"]
                if op == "none" or strings[source] == "#":
                    terms.append("#")
                elif op == "skip_connect":
                    terms.append(strings[source])
                else:
                    terms.append(f"({strings[source]})@{op}")
            strings[node] = "+".join(sorted(terms))
        return strings[NUM_NODES - 1]

    def is_connected(self, arch: Architecture) -> bool:
        """Whether some path of non-``none`` edges links the cell's input to its output."""
        g = self.graph(arch)
        live = g.edge_subgraph([(u, v) for u, v, op in g.edges(data="op") if op != "none"])
        return 0 in live and NUM_NODES - 1 in live and nx.has_path(live, 0, NUM_NODES - 1)

    # --- networks -----------------------------------------------------------------------------
    def build(self, arch: Architecture, num_classes: int = 10, C: int = 16, N: int = 5, **options):
        """The stand-alone NB201 network (see :mod:`search_spaces.nb201.network`)."""
        from search_spaces.nb201.network import NB201Network

        return NB201Network(self._ops(arch), num_classes=num_classes, C=C, N=N, **options)

    def supernet(self, num_classes: int = 10, C: int = 16, N: int = 5, **options):
        """The weight-sharing NB201 supernet (see :mod:`search_spaces.nb201.supernet`)."""
        from search_spaces.nb201.supernet import NB201Supernet

        return NB201Supernet(self, num_classes=num_classes, C=C, N=N, **options)

    def cost(self, arch: Architecture, num_classes: int = 10, input_size: int = 32,
             C: int = 16, N: int = 5) -> Dict[str, float]:
        from nastk.cost import model_cost

        return model_cost(self.build(arch, num_classes, C=C, N=N), input_size=input_size)
