"""The DARTS cell search space (methods.md 13.1), written against nastk's public API only.

A network stacks two cell types, ``normal`` and ``reduce``. A cell has two inputs (nodes 0 and 1:
the outputs of the two previous cells) and four intermediate nodes 2..5; node j sums two
operations, each applied to a *different* earlier node, and the cell outputs the concatenation of
nodes 2..5. A discrete genotype never uses ``none``, so each of the 2 x 8 (op, input) pairs takes one
of 7 ops: (C(2,2) C(3,2) C(4,2) C(5,2) x 7^8)^2 = 180^2 x 7^16 ~ 1.1e18 architectures.

**Choices** (the order of ``Architecture.choices``; declared in :meth:`DartsSpace.choice_model`):
per cell type (normal, then reduce) and node j = 2..5, three values

* ``{cell}_n{j}_inputs``: the node's two inputs, an ascending pair of distinct nodes < j (choose 2),
* ``{cell}_n{j}_op0``: the op on the smaller input, ``{cell}_n{j}_op1``: the op on the larger one.

Because inputs are stored sorted, a node's two (op, input) pairs have no order: genotypes that
differ only by swapping them (DARTS prints them in order of edge weight) are the same
``Architecture``.

**Strings.** :meth:`DartsSpace.from_str` reads either

* DARTS' notation ``Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=[2, 3, 4, 5],
  reduce=[...], reduce_concat=[2, 3, 4, 5])``, also with ``range(2, 6)`` as concat and with the pairs
  grouped per node (``normal=[[(op, i), (op, i)], ...]``); parsed from its syntax tree, never
  evaluated; or
* the compact string that :meth:`DartsSpace.to_str` writes::

      normal:sep3@0,sep3@1|sep3@0,sep3@1|skip@0,sep3@1|skip@0,dil3@2;reduce:max3@0,max3@1|...

  ``;`` separates the two cells (labelled ``normal:`` and ``reduce:``), ``|`` the nodes 2..5, ``,``
  the two ``op@input`` pairs of a node, smaller input first. Short op names are ``max3 avg3 skip sep3
  sep5 dil3 dil5``; the full names are accepted too. Concat is always 2..5 and not written.

:meth:`DartsSpace.genotype_str` prints DARTS' notation (pairs in the canonical order).
"""
from __future__ import annotations

import ast
import itertools
import numbers
from typing import Dict, List, Optional, Tuple

import networkx as nx

from nastk.architecture import Architecture
from nastk.choices import Categorical, ChoiceModel, ChooseK
from nastk.errors import ArchitectureError, UnknownOpError
from nastk.options import Int, Option
from nastk.space import SearchSpace
from search_spaces.darts.constants import CELLS, CONCAT, NODES, OPS, SHORT, Genotype, Pair

_FROM_NAME: Dict[str, str] = {**{op: op for op in OPS}, **{short: op for op, short in SHORT.items()}}
_MAX_TEXT = 4000  # longer strings are not architectures; refusing them bounds the parser's work
_MAX_CONCAT = 64  # a concat range longer than this is refused before it is expanded


def _short(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")


# --- DARTS' Python notation, read from its syntax tree -------------------------------------------
def parse_genotype(text: str) -> Genotype:
    """``Genotype(normal=..., normal_concat=..., reduce=..., reduce_concat=...)`` without eval.

    Only the shapes DARTS writes are accepted: lists/tuples of (str, int) pairs, optionally grouped
    per node, and concat as a list of ints or ``range(a, b)``. Fields may be keywords or positional
    (in the namedtuple's order). Counts and ranges are checked by :meth:`DartsSpace.from_genotype`.
    """
    if len(text) > _MAX_TEXT:
        raise ArchitectureError(f"DARTS genotype string is {len(text)} characters long; not a genotype")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise ArchitectureError(f"DARTS genotype {_short(text)} is not valid Genotype(...) notation") from None
    call = tree.body
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "Genotype"):
        raise ArchitectureError(f"DARTS genotype {_short(text)} must be Genotype(normal=..., reduce=..., ...)")
    fields = ("normal", "normal_concat", "reduce", "reduce_concat")
    if len(call.args) > len(fields):
        raise ArchitectureError(f"DARTS genotype {_short(text)} has {len(call.args)} fields, expected 4")
    values = dict(zip(fields, call.args))
    for keyword in call.keywords:
        if keyword.arg not in fields:
            raise ArchitectureError(f"unknown Genotype field {keyword.arg!r} in {_short(text)}; "
                                    f"fields: {', '.join(fields)}")
        if keyword.arg in values:
            raise ArchitectureError(f"Genotype field {keyword.arg!r} given twice in {_short(text)}")
        values[keyword.arg] = keyword.value
    missing = [name for name in fields if name not in values]
    if missing:
        raise ArchitectureError(f"DARTS genotype {_short(text)} lacks {', '.join(missing)}")
    return Genotype(_pairs(values["normal"], "normal"), _concat(values["normal_concat"], "normal_concat"),
                    _pairs(values["reduce"], "reduce"), _concat(values["reduce_concat"], "reduce_concat"))


def _is_int(node) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) is int


def _as_pair(node) -> Optional[Pair]:
    if (isinstance(node, (ast.Tuple, ast.List)) and len(node.elts) == 2
            and isinstance(node.elts[0], ast.Constant) and isinstance(node.elts[0].value, str)):
        if not _is_int(node.elts[1]):
            raise ArchitectureError(f"input of op {node.elts[0].value!r} must be an integer node index")
        return node.elts[0].value, node.elts[1].value
    return None


def _pairs(node, field: str) -> Tuple[Pair, ...]:
    if not isinstance(node, (ast.List, ast.Tuple)):
        raise ArchitectureError(f"Genotype {field} must be a list of (op, input) pairs")
    pairs: List[Pair] = []
    for element in node.elts:
        pair = _as_pair(element)
        if pair is not None:
            pairs.append(pair)
            continue
        group = [_as_pair(e) for e in element.elts] if isinstance(element, (ast.List, ast.Tuple)) else [None]
        if len(group) != 2 or None in group:
            raise ArchitectureError(f"Genotype {field} must hold (op, input) pairs, optionally grouped two per node")
        pairs.extend(group)
    return tuple(pairs)


def _concat(node, field: str) -> Tuple[int, ...]:
    if isinstance(node, (ast.List, ast.Tuple)) and all(_is_int(e) for e in node.elts):
        return tuple(e.value for e in node.elts)
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range"
            and not node.keywords and 1 <= len(node.args) <= 2 and all(_is_int(a) for a in node.args)):
        nodes = range(*(a.value for a in node.args))
        if len(nodes) > _MAX_CONCAT:  # never materialised: range(2, 10**14) is a typo, not a cell
            raise ArchitectureError(f"Genotype {field} range({', '.join(str(a.value) for a in node.args)}) spans "
                                    f"{len(nodes)} nodes; a cell concatenates at most {_MAX_CONCAT}")
        return tuple(nodes)
    raise ArchitectureError(f"Genotype {field} must be a list of node indices or range(a, b)")


# --- the compact string ---------------------------------------------------------------------------
def format_compact(genotype: Genotype) -> str:
    cells = []
    for cell, pairs in zip(CELLS, (genotype.normal, genotype.reduce)):
        nodes = [",".join(f"{SHORT[op]}@{i}" for op, i in pairs[k:k + 2]) for k in range(0, len(pairs), 2)]
        cells.append(f"{cell}:" + "|".join(nodes))
    return ";".join(cells)


def parse_compact(text: str) -> Genotype:
    """``normal:op@i,op@i|...|...|...;reduce:...`` (see the module docstring)."""
    if len(text) > _MAX_TEXT:
        raise ArchitectureError(f"DARTS architecture string is {len(text)} characters long; not an architecture")
    parts = text.strip().split(";")
    if len(parts) != 2:
        raise ArchitectureError(f"DARTS architecture {_short(text)} must be 'normal:...;reduce:...' "
                                f"(or Genotype(...) notation); found {len(parts)} ';'-separated cells")
    cells: Dict[str, Tuple[Pair, ...]] = {}
    for part in parts:
        label, sep, body = part.partition(":")
        label = label.strip()
        if not sep or label not in CELLS:
            raise ArchitectureError(f"DARTS cell {_short(part)} must start with 'normal:' or 'reduce:'")
        if label in cells:
            raise ArchitectureError(f"DARTS architecture {_short(text)} gives the {label} cell twice")
        nodes = body.split("|")
        if len(nodes) != len(NODES):
            raise ArchitectureError(f"DARTS {label} cell has {len(nodes)} '|'-separated nodes, expected 4 (nodes 2..5)")
        pairs: List[Pair] = []
        for position, node in enumerate(nodes):
            entries = node.split(",")
            if len(entries) != 2:
                raise ArchitectureError(f"DARTS {label} node {position + 2} has {len(entries)} op@input entries, expected 2")
            for entry in entries:
                op, sep, source = entry.strip().partition("@")
                source = source.strip()
                if not sep or not (source.isascii() and source.isdigit()):
                    raise ArchitectureError(f"DARTS {label} node {position + 2}: {entry.strip()!r} must be op@input")
                pairs.append((_FROM_NAME.get(op.strip(), op.strip()), int(source)))
        cells[label] = tuple(pairs)
    return Genotype(cells["normal"], CONCAT, cells["reduce"], CONCAT)


class DartsSpace(SearchSpace):
    name = "darts"
    # sample, encode, mutate, neighbors, crossover and optuna's suggest come from the choice model
    capabilities = frozenset({"graph", "build", "supernet"})
    #: A search trains DARTS' search-sized network by default; its evaluation network is C=36, 20 cells.
    BUILD_OPTIONS = (Option("C", Int(minimum=1), "initial channels (DARTS' evaluation network: 36)", 16),
                     Option("layers", Int(minimum=2), "cells (DARTS' evaluation network: 20)", 8))
    #: Keywords of :meth:`supernet` (``nastk supernet train --C 8 --layers 5``); defaults are supernet()'s own.
    SUPERNET_OPTIONS = (Option("C", Int(minimum=1), "darts supernet: initial channels"),
                        Option("layers", Int(minimum=1), "darts supernet: cells of the search network"))

    # --- choices --------------------------------------------------------------------------------
    def choice_model(self):
        """Per cell type and node: ``ChooseK`` of 2 inputs, then two ``Categorical`` ops (module docstring).

        The base class derives sample (every choice uniform, so uniform over architectures), encode
        (k-hot inputs + one-hot ops, 140 values), mutate, neighbors (128 per architecture), crossover
        and optuna's ``suggest`` from it.
        """
        choices = []
        for cell in CELLS:
            for node in NODES:
                choices += [ChooseK(f"{cell}_n{node}_inputs", tuple(range(node)), 2),
                            Categorical(f"{cell}_n{node}_op0", OPS),
                            Categorical(f"{cell}_n{node}_op1", OPS)]
        return ChoiceModel(choices)

    # --- codec ----------------------------------------------------------------------------------
    def to_str(self, arch: Architecture) -> str:
        """The compact string (canonical: a node's smaller input first)."""
        return format_compact(self.genotype(arch))

    def genotype_str(self, arch: Architecture) -> str:
        """DARTS' ``Genotype(...)`` notation, pairs in the canonical order, concat ``[2, 3, 4, 5]``."""
        return str(self.genotype(arch))

    def from_str(self, text: str) -> Architecture:
        """The compact string or DARTS' ``Genotype(...)`` notation."""
        if not isinstance(text, str):
            raise ArchitectureError(f"DARTS architecture must be a string, got {type(text).__name__}")
        parse = parse_genotype if text.lstrip().startswith("Genotype") else parse_compact
        return self.from_genotype(parse(text))

    def from_genotype(self, genotype) -> Architecture:
        """An architecture from a :class:`Genotype` (or DARTS' own namedtuple: anything with its fields).

        Raises :class:`ArchitectureError` (or :class:`UnknownOpError`) naming the first thing outside
        this space: a count other than 8 pairs, ``none`` or an unknown op, an input not below its
        node, a node using one input twice, a concat other than 2..5.
        """
        choices: List = []
        for cell in CELLS:  # at most one element more than expected is taken (a huge range is never expanded)
            pairs = tuple(itertools.islice(getattr(genotype, cell), 2 * len(NODES) + 1))
            concat = tuple(itertools.islice(getattr(genotype, f"{cell}_concat"), len(CONCAT) + 1))
            if len(pairs) != 2 * len(NODES):
                count = len(pairs) if len(pairs) <= 2 * len(NODES) else "more than 8"
                raise ArchitectureError(f"DARTS {cell} cell has {count} (op, input) pairs, expected 8 (2 per node 2..5)")
            if concat != CONCAT:
                shown = str(list(concat)) if len(concat) <= len(CONCAT) else str(list(concat))[:-1] + ", ...]"
                raise ArchitectureError(f"DARTS {cell}_concat is {shown}; this space concatenates nodes [2, 3, 4, 5]")
            for k, node in enumerate(NODES):
                (op_a, in_a), (op_b, in_b) = (_checked_pair(cell, node, pair) for pair in pairs[2 * k:2 * k + 2])
                if in_a == in_b:
                    raise ArchitectureError(f"DARTS {cell} node {node} uses input {in_a} twice; "
                                            "a node takes two different inputs")
                if in_a > in_b:
                    (op_a, in_a), (op_b, in_b) = (op_b, in_b), (op_a, in_a)
                choices.extend([(in_a, in_b), op_a, op_b])
        return Architecture(self.name, tuple(choices))

    def genotype(self, arch: Architecture) -> Genotype:
        cells = self._cells(arch)
        return Genotype(cells["normal"], CONCAT, cells["reduce"], CONCAT)

    def _cells(self, arch: Architecture) -> Dict[str, Tuple[Pair, ...]]:
        """``{cell: 8 (op, input) pairs}``, checking ``arch`` is a valid DARTS architecture."""
        if not isinstance(arch, Architecture) or arch.space != self.name:
            raise ArchitectureError(f"expected a DARTS Architecture, got {arch!r}")
        values = arch.choices
        if len(values) != 3 * len(CELLS) * len(NODES):
            raise ArchitectureError(f"DARTS architecture needs {3 * len(CELLS) * len(NODES)} choices, got {len(values)}")
        cells, position = {}, 0
        for cell in CELLS:
            pairs: List[Pair] = []
            for node in NODES:
                inputs, op_a, op_b = values[position:position + 3]
                position += 3
                if (not isinstance(inputs, tuple) or len(inputs) != 2 or not all(_is_index(i) for i in inputs)
                        or not 0 <= inputs[0] < inputs[1] < node):
                    raise ArchitectureError(f"DARTS {cell} node {node}: inputs {inputs!r} must be an ascending pair of "
                                            f"distinct nodes below {node}")
                pairs += [_checked_pair(cell, node, (op_a, inputs[0])), _checked_pair(cell, node, (op_b, inputs[1]))]
            cells[cell] = tuple(pairs)
        return cells

    # --- graph and canonical form -----------------------------------------------------------------
    def graph(self, arch: Architecture) -> nx.DiGraph:
        """Both cells in one DiGraph. Nodes are ``(cell, i)`` for i = 0..5 and ``(cell, "out")``;
        op edges carry ``op``, the four edges into the output carry ``op="concat"``."""
        g = nx.DiGraph()
        for cell, pairs in self._cells(arch).items():
            for i in range(NODES[-1] + 1):
                g.add_node((cell, i), cell=cell, role="input" if i < NODES[0] else "intermediate")
            g.add_node((cell, "out"), cell=cell, role="output")
            for k, (op, source) in enumerate(pairs):
                g.add_edge((cell, source), (cell, NODES[k // 2]), op=op)
            for node in CONCAT:
                g.add_edge((cell, node), (cell, "out"), op="concat")
        return g

    def canonical(self, arch: Architecture) -> str:
        """A string equal for genotypes that differ only in the order of a node's two (op, input) pairs.

        Built from :meth:`graph` (each node's incoming (input, op) edges, sorted). Since choices keep
        each node's inputs sorted, it equals :meth:`to_str`. Relabelling intermediate nodes (which
        gives a functionally equivalent network when the dependencies allow it) is *not* merged.
        """
        g = self.graph(arch)
        cells = []
        for cell in CELLS:
            nodes = []
            for node in NODES:
                incoming = sorted((source[1], g.edges[source, (cell, node)]["op"])
                                  for source in g.predecessors((cell, node)))
                nodes.append(",".join(f"{SHORT[op]}@{source}" for source, op in incoming))
            cells.append(f"{cell}:" + "|".join(nodes))
        return ";".join(cells)

    # --- networks ---------------------------------------------------------------------------------
    def build(self, arch: Architecture, num_classes: int = 10, C: int = 36, layers: int = 20,
              auxiliary: bool = False, drop_path_prob: float = 0.0, device=None, **options):
        """The stand-alone DARTS evaluation network (see :mod:`search_spaces.darts.network`).

        Defaults are DARTS' CIFAR-10 evaluation setting (C=36, 20 cells); ``device`` moves it there.
        """
        from search_spaces.darts.network import DartsNetwork

        cells = self._cells(arch)
        model = DartsNetwork(cells["normal"], cells["reduce"], num_classes=num_classes, C=C, layers=layers,
                             auxiliary=auxiliary, drop_path_prob=drop_path_prob, **options)
        return model if device is None else model.to(device)

    def supernet(self, num_classes: int = 10, C: int = 16, layers: int = 8, **options):
        """DARTS' weight-sharing search network (see :mod:`search_spaces.darts.supernet`).

        Defaults are DARTS' CIFAR-10 search setting (C=16, 8 cells).
        """
        from search_spaces.darts.supernet import DartsSupernet

        return DartsSupernet(self, num_classes=num_classes, C=C, layers=layers, **options)

    def cost(self, arch: Architecture, num_classes: int = 10, input_size: int = 32,
             C: int = 36, layers: int = 20) -> Dict[str, float]:
        """Params and FLOPs (millions) of the network without the auxiliary head (DARTS' convention)."""
        from nastk.cost import model_cost

        return model_cost(self.build(arch, num_classes, C=C, layers=layers), input_size=input_size)


def _is_index(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _checked_pair(cell: str, node: int, pair) -> Pair:
    try:
        op, source = pair
    except (TypeError, ValueError):
        raise ArchitectureError(f"DARTS {cell} node {node}: {pair!r} is not an (op, input) pair") from None
    if op not in OPS:
        if op == "none":
            raise ArchitectureError(f"DARTS {cell} node {node}: 'none' is a supernet op; a discrete genotype "
                                    "never uses it")
        raise UnknownOpError(f"unknown DARTS op {op!r} in the {cell} cell; known: {', '.join(OPS)}")
    if not _is_index(source) or not 0 <= source < node:
        raise ArchitectureError(f"DARTS {cell} node {node}: input {source!r} must be a node index 0..{node - 1}")
    return op, int(source)
