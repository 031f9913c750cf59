"""Few-shot NAS: a supernet split into sub-supernets, kept as a tree, and the leaves trained one by one.

Few-shot NAS (and GM-NAS, methods.md 3) partitions the architectures of a supernet by restricting
one decision at a time: a split of a node on decision ``d`` into option groups gives one child per
group, allowing only that group's options on ``d``. Repeated splits make a tree whose leaves'
``allowed`` masks partition the root's architectures, so every architecture has exactly one leaf
(:meth:`SplitTree.route`).

* :class:`SplitNode`, :class:`Split`, :class:`SplitTree`: the tree (ids ``root``, ``root.0``,
  ``root.0.1``...), its validation, routing and JSON round trip (``tree.json``). A split records
  whether its children inherit the parent's weights (a non-final GM-NAS split) or restart from a
  fresh initialisation (the final split), the epoch it happened at and free JSON metadata (a
  gradient-matching distance matrix, a score). :meth:`SplitTree.exhaustive` is the few-shot NAS
  baseline rule: one child per allowed option.
* :func:`sub_supernet` / :func:`split_supernet`: the supernet a node stands for, from the root's (or
  its parent's) supernet, via :meth:`Supernet.split`. Restarts are seeded from the node's position,
  so the same tree and root always give the same sub-supernets.
* :func:`train_leaves`: every leaf trained by the ordinary :class:`OneShotTrainer` in its own folder;
  a killed run resumes exactly (finished leaves are skipped, a partial leaf continues from its
  checkpoint, a leaf not yet started is rebuilt from the stored root).
* :func:`load_leaf`, :func:`route_and_load`, :class:`FewShotSupernets`: the trained sub-supernets,
  and the evaluation of an architecture with the one that contains it.

Run folder::

    config.json    the OneShotConfig every leaf is trained with
    tree.json      the split tree
    root.pt        the supernet the tree's root stands for (weights and mask) when the leaves were split
    <node id>/     one folder per leaf (``root.0``, ``root.1.0``...): the trainer's checkpoint.pt, metrics.jsonl
    summary.json   one entry per leaf (final metrics), written when every leaf is trained
"""
from __future__ import annotations

import contextlib
import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from nastk.architecture import Architecture
from nastk.devices import resolve_device
from nastk.errors import ArchitectureError, ConfigError, RunError
from nastk.oneshot.ddp import Distributed
from nastk.oneshot.trainer import CHECKPOINT, METRICS, OneShotConfig, OneShotTrainer, build_supernet, read_checkpoint
from nastk.paths import atomic_write
from nastk.plain_data import plain
from nastk.run_folder import Run
from nastk.supernet import Supernet

TREE, ROOT_STATE, SUMMARY = "tree.json", "root.pt", "summary.json"
TREE_FORMAT = 1
ROOT_FORMAT = 1
ROOT_ID = "root"
Choices = Tuple[int, ...]
NodeRef = Union["SplitNode", str]


# --- small helpers -----------------------------------------------------------------------------------------
def _index(value: Any, what: str) -> int:
    """An int from an int-like value (not a bool, not a float)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"{what} must be an integer, got {value!r}")
    return int(value)


def _plain_json(value: Any, what: str) -> Any:
    """``value`` as plain JSON data (numpy arrays and tensors become lists); ConfigError if it is not JSON."""
    try:
        return plain(value)
    except TypeError as error:
        raise ConfigError(f"{what} must be plain JSON data: {error}") from None


def _mask(allowed: Any, what: str = "allowed mask") -> np.ndarray:
    mask = np.array(allowed)
    if mask.ndim != 2 or mask.shape[0] < 1 or mask.shape[1] < 1 or mask.dtype != bool:
        raise ConfigError(f"{what} must be a non-empty 2-D bool array (decisions x options), got shape "
                          f"{mask.shape} and dtype {mask.dtype}")
    empty = np.flatnonzero(~mask.any(axis=1))
    if len(empty):
        raise ConfigError(f"{what} allows no option on decision(s) {empty.tolist()}")
    return mask.copy()


@dataclass
class Split:
    """How a node was split: decision ``decision`` into ``groups`` (one child per group, in order).

    ``inherit``: the children start from the parent's weights (a non-final split); False restarts
    them from a fresh, seeded initialisation (GM-NAS' final split). ``epoch``: when the split
    happened (None when not trained in between); ``info``: plain JSON metadata of the partition rule
    (e.g. a gradient-matching distance matrix and score).
    """

    decision: int
    groups: Tuple[Tuple[int, ...], ...]
    inherit: bool = True
    epoch: Optional[int] = None
    info: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return {"decision": self.decision, "groups": [list(g) for g in self.groups], "inherit": self.inherit,
                "epoch": self.epoch, "info": self.info}


class SplitNode:
    """One node of a :class:`SplitTree`: the architectures its ``allowed`` mask stands for.

    ``split`` is the split that made its ``children`` (None for a leaf); ``info`` is free plain JSON
    metadata (e.g. the sub-supernet's validation accuracy once trained).
    """

    def __init__(self, path: Tuple[int, ...], allowed: np.ndarray, parent: Optional["SplitNode"] = None):
        self.path: Tuple[int, ...] = tuple(path)
        self.allowed: np.ndarray = allowed
        self.allowed.flags.writeable = False
        self.parent = parent
        self.split: Optional[Split] = None
        self.children: List[SplitNode] = []
        self.info: Dict[str, Any] = {}

    @property
    def id(self) -> str:
        return ".".join([ROOT_ID] + [str(i) for i in self.path])

    @property
    def depth(self) -> int:
        return len(self.path)

    @property
    def is_leaf(self) -> bool:
        return self.split is None

    def options(self, decision: int) -> Tuple[int, ...]:
        """The options this node allows on ``decision``."""
        return tuple(int(o) for o in np.flatnonzero(self.allowed[decision]))

    def allows(self, decision: int, option: int) -> bool:
        decision, option = int(decision), int(option)
        if not 0 <= decision < self.allowed.shape[0]:
            raise ArchitectureError(f"decision {decision} out of range: node {self.id} has {self.allowed.shape[0]} decisions")
        return 0 <= option < self.allowed.shape[1] and bool(self.allowed[decision, option])

    def contains(self, choices: Sequence[int]) -> bool:
        """Whether the architecture of ``choices`` (one option index per decision) is one of this node's."""
        choices = tuple(int(c) for c in choices)
        if len(choices) != self.allowed.shape[0]:
            raise ArchitectureError(f"expected {self.allowed.shape[0]} choices, got {len(choices)}")
        return all(self.allows(d, o) for d, o in enumerate(choices))

    def __iter__(self) -> Iterator["SplitNode"]:
        """This node and every node below it, depth first (children in group order)."""
        yield self
        for child in self.children:
            yield from child

    def __repr__(self) -> str:
        split = "leaf" if self.split is None else f"split on {self.split.decision} into {list(map(list, self.split.groups))}"
        return f"SplitNode({self.id!r}, {split})"


class SplitTree:
    """Sub-supernets as a tree of splits whose leaves partition the root's architectures.

    ``decisions`` (optional) are the decision names and option names of the supernet the tree was
    built for (:meth:`of` records them), kept in ``tree.json`` to check a supernet against it.
    """

    def __init__(self, allowed: Any, decisions: Optional[Sequence[Tuple[str, Sequence[str]]]] = None):
        self.root = SplitNode((), _mask(allowed, "the root's allowed mask"))
        self.decisions: Optional[Tuple[Tuple[str, Tuple[str, ...]], ...]] = None
        if decisions is not None:
            decisions = tuple((str(name), tuple(str(o) for o in options)) for name, options in decisions)
            if len(decisions) != self.root.allowed.shape[0]:
                raise ConfigError(f"{len(decisions)} decision names for a mask of {self.root.allowed.shape[0]} decisions")
            for d, (name, options) in enumerate(decisions):
                if len(options) > self.root.allowed.shape[1] or self.root.allowed[d, len(options):].any():
                    raise ConfigError(f"decision {name!r} has {len(options)} options but the mask allows more")
            self.decisions = decisions
        self._nodes: Dict[str, SplitNode] = {self.root.id: self.root}

    @classmethod
    def of(cls, supernet: Supernet) -> "SplitTree":
        """A one-node tree for ``supernet`` (its current mask is the root's)."""
        return cls(supernet.allowed, [(d.name, d.options) for d in supernet.decisions])

    # --- access -----------------------------------------------------------------------------------------
    def node(self, node: NodeRef) -> SplitNode:
        if isinstance(node, SplitNode):
            if self._nodes.get(node.id) is not node:
                raise ConfigError(f"node {node.id} is not a node of this tree")
            return node
        if node not in self._nodes:
            raise ConfigError(f"no node {node!r} in the split tree; nodes: {', '.join(self._nodes)}")
        return self._nodes[node]

    def nodes(self) -> List[SplitNode]:
        """Every node, depth first from the root (children in group order)."""
        return list(self.root)

    def leaves(self) -> List[SplitNode]:
        """The leaves, depth first: the sub-supernets to train."""
        return [node for node in self.root if node.is_leaf]

    def __len__(self) -> int:
        return len(self._nodes)

    def decision_name(self, decision: int) -> str:
        return f"{decision} ({self.decisions[decision][0]!r})" if self.decisions else str(decision)

    # --- splitting --------------------------------------------------------------------------------------
    def split(self, node: NodeRef, decision: int, option_groups: Sequence[Sequence[int]], *, inherit: bool = True,
              epoch: Optional[int] = None, info: Optional[Dict[str, Any]] = None) -> List[SplitNode]:
        """Split leaf ``node`` on ``decision``: one child per group of ``option_groups`` (in order).

        The groups must partition the options the node allows on that decision (each non-empty, no
        option twice, none left out, at least two groups). Returns the children.
        """
        node = self.node(node)
        if not node.is_leaf:
            raise ConfigError(f"node {node.id} is already split (on decision {node.split.decision}); split its children")
        decision = _index(decision, "the split decision")
        count, width = node.allowed.shape
        if not 0 <= decision < count:
            raise ConfigError(f"cannot split node {node.id}: decision {decision} out of range (0..{count - 1})")
        where = f"cannot split node {node.id} on decision {self.decision_name(decision)}"
        if isinstance(option_groups, (str, bytes)) or not isinstance(option_groups, Sequence):
            raise ConfigError(f"{where}: option groups must be a list of lists of option indices, got {option_groups!r}")
        groups: List[Tuple[int, ...]] = []
        for number, group in enumerate(option_groups):
            if isinstance(group, (str, bytes)) or not isinstance(group, (Sequence, np.ndarray)):
                raise ConfigError(f"{where}: group {number} must be a list of option indices, got {group!r}")
            groups.append(tuple(sorted(_index(o, f"option {o!r} of group {number}") for o in group)))
        available = set(node.options(decision))
        if len(groups) < 2:
            raise ConfigError(f"{where}: a split needs at least two option groups, got {len(groups)}")
        seen: Dict[int, int] = {}
        for number, group in enumerate(groups):
            if not group:
                raise ConfigError(f"{where}: group {number} is empty")
            for option in group:
                if option not in available:
                    state = "out of range" if not 0 <= option < width else "not allowed at this node"
                    raise ConfigError(f"{where}: option {option} of group {number} is {state} "
                                      f"(allowed: {sorted(available)})")
                if option in seen:
                    raise ConfigError(f"{where}: option {option} is in groups {seen[option]} and {number}; "
                                      f"groups must be disjoint")
                seen[option] = number
        missing = sorted(available - set(seen))
        if missing:
            raise ConfigError(f"{where}: option(s) {missing} are in no group; the groups must cover every "
                              f"allowed option {sorted(available)}")
        if epoch is not None:
            epoch = _index(epoch, "the split epoch")
        node.split = Split(decision, tuple(groups), bool(inherit), epoch, _plain_json(info or {}, "split info"))
        for index, group in enumerate(groups):
            allowed = node.allowed.copy()
            allowed[decision] = False
            allowed[decision, list(group)] = True
            child = SplitNode(node.path + (index,), allowed, node)
            node.children.append(child)
            self._nodes[child.id] = child
        return list(node.children)

    def exhaustive(self, node: NodeRef, decision: int, **options) -> List[SplitNode]:
        """Few-shot NAS' split: one child per option ``node`` allows on ``decision``."""
        node = self.node(node)
        decision = _index(decision, "the split decision")
        if not 0 <= decision < node.allowed.shape[0]:
            raise ConfigError(f"cannot split node {node.id}: decision {decision} out of range (0..{node.allowed.shape[0] - 1})")
        return self.split(node, decision, [[o] for o in node.options(decision)], **options)

    # --- routing ----------------------------------------------------------------------------------------
    def route(self, choices: Sequence[int]) -> SplitNode:
        """The unique leaf whose sub-supernet contains the architecture of ``choices``."""
        choices = tuple(int(c) for c in choices)
        node = self.root
        if len(choices) != node.allowed.shape[0]:
            raise ArchitectureError(f"expected {node.allowed.shape[0]} choices, got {len(choices)}")
        for decision, option in enumerate(choices):
            if not node.allows(decision, option):
                raise ArchitectureError(f"no sub-supernet contains architecture {choices}: decision "
                                        f"{self.decision_name(decision)} takes option {option}, which the root does not allow")
        while not node.is_leaf:
            option = choices[node.split.decision]
            node = next(child for child, group in zip(node.children, node.split.groups) if option in group)
        return node

    # --- persistence ------------------------------------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        def record(node: SplitNode) -> Dict[str, Any]:
            return {"id": node.id, "allowed": [list(node.options(d)) for d in range(node.allowed.shape[0])],
                    "info": node.info, "split": None if node.split is None else node.split.to_dict(),
                    "children": [record(child) for child in node.children]}

        decisions = None if self.decisions is None else [{"name": n, "options": list(o)} for n, o in self.decisions]
        return {"format": TREE_FORMAT, "shape": list(self.root.allowed.shape), "decisions": decisions,
                "root": _plain_json(record(self.root), "node info")}

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "SplitTree":
        """Rebuild a tree by replaying its splits (every split is validated again, every mask checked)."""
        try:
            if not isinstance(data, dict) or data.get("format") != TREE_FORMAT:
                raise ConfigError(f"not a split tree of format {TREE_FORMAT}")
            count, width = (_index(v, "shape") for v in data["shape"])
            if count < 1 or width < 1:
                raise ConfigError(f"shape must be positive, got {data['shape']}")

            def mask_of(record: Dict[str, Any]) -> np.ndarray:
                rows = record["allowed"]
                if len(rows) != count:
                    raise ConfigError(f"node {record.get('id')!r} has {len(rows)} mask rows, expected {count}")
                mask = np.zeros((count, width), dtype=bool)
                for d, row in enumerate(rows):
                    for option in row:
                        option = _index(option, f"an allowed option of node {record.get('id')!r}")
                        if not 0 <= option < width:
                            raise ConfigError(f"node {record.get('id')!r} allows option {option}, out of range (0..{width - 1})")
                        mask[d, option] = True
                return mask

            decisions = data.get("decisions")
            if decisions is not None:
                decisions = [(d["name"], d["options"]) for d in decisions]
            tree = cls(mask_of(data["root"]), decisions)
            stack = [(tree.root, data["root"])]
            while stack:
                node, record = stack.pop()
                if record.get("id") != node.id:
                    raise ConfigError(f"node {node.id} is stored as {record.get('id')!r}")
                if not np.array_equal(mask_of(record), node.allowed):
                    raise ConfigError(f"the mask stored for node {node.id} is not what its splits give")
                node.info = _plain_json(record.get("info") or {}, f"info of node {node.id}")
                split, children = record.get("split"), record.get("children") or []
                if split is None:
                    if children:
                        raise ConfigError(f"node {node.id} has children but no split")
                    continue
                made = tree.split(node, split["decision"], split["groups"], inherit=split.get("inherit", True),
                                  epoch=split.get("epoch"), info=split.get("info"))
                if len(children) != len(made):
                    raise ConfigError(f"node {node.id} is split into {len(made)} groups but stores {len(children)} children")
                stack.extend(zip(made, children))
            return tree
        except ConfigError:
            raise
        except (KeyError, TypeError, AttributeError, IndexError, ValueError) as error:
            raise ConfigError(f"malformed split tree ({type(error).__name__}: {error})") from None

    def save(self, path) -> Path:
        path = Path(path)
        text = json.dumps(self.to_dict(), indent=1)
        with atomic_write(path, "w") as handle:
            handle.write(text + "\n")
        return path

    @classmethod
    def load(cls, path) -> "SplitTree":
        from nastk.readers import read_json

        path = Path(path)
        data = read_json(path, "split tree", RunError)  # size, depth and shape checked, one line each
        try:
            return cls.from_dict(data)
        except ConfigError as error:
            raise RunError(f"{path} is not a consistent split tree: {error}") from None

    def __eq__(self, other) -> bool:
        return isinstance(other, SplitTree) and self.to_dict() == other.to_dict()

    def check_supernet(self, supernet: Supernet, node: NodeRef = ROOT_ID) -> None:
        """ConfigError unless ``supernet`` has this tree's decisions and exactly ``node``'s mask."""
        node = self.node(node)
        if self.decisions is not None:
            theirs = tuple((d.name, tuple(d.options)) for d in supernet.decisions)
            if theirs != self.decisions:
                raise ConfigError(f"the supernet's decisions ({', '.join(n for n, _ in theirs)}) are not the split tree's "
                                  f"({', '.join(n for n, _ in self.decisions)})")
        if supernet.allowed.shape != node.allowed.shape or not np.array_equal(supernet.allowed, node.allowed):
            raise ConfigError(f"the supernet's allowed mask is not that of node {node.id} of the split tree")


# --- sub-supernets ----------------------------------------------------------------------------------------
def restart_seed(seed: int, node: SplitNode) -> int:
    """The seed of a restarted node's initialisation: a function of the run's seed and the node's path."""
    return int(np.random.SeedSequence([int(seed), 11, node.depth, *node.path]).generate_state(1)[0])


@contextlib.contextmanager
def _seeded(seed: int, supernet: Optional[Supernet] = None):
    """Seed every torch generator the supernet's initialisers may use (CPU, and the GPUs it lives on),
    restoring the global streams afterwards."""
    devices = sorted({p.device.index or 0 for p in supernet.parameters() if p.is_cuda}) if supernet is not None else []
    with torch.random.fork_rng(devices=devices):
        torch.random.default_generator.manual_seed(seed)
        for device in devices:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        yield


def _child(tree: SplitTree, parent: SplitNode, index: int, supernet: Supernet, seed: int) -> Supernet:
    split, child = parent.split, parent.children[index]
    if split.inherit:
        (made,) = supernet.split(split.decision, [split.groups[index]], inherit=True)
    else:
        with _seeded(restart_seed(seed, child), supernet):
            (made,) = supernet.split(split.decision, [split.groups[index]], inherit=False)
    if not np.array_equal(made.allowed, child.allowed):  # Supernet.split and the tree disagree
        raise ConfigError(f"Supernet.split gave node {child.id} another mask than the split tree")
    return made


def split_supernet(tree: SplitTree, node: NodeRef, supernet: Supernet, seed: int = 0) -> List[Supernet]:
    """The children of ``node``'s sub-supernet ``supernet`` (one per child, inheriting or restarting as split)."""
    node = tree.node(node)
    if node.is_leaf:
        raise ConfigError(f"node {node.id} is a leaf; it has no children to materialise")
    tree.check_supernet(supernet, node)
    return [_child(tree, node, index, supernet, seed) for index in range(len(node.children))]


def sub_supernet(tree: SplitTree, node: NodeRef, root: Supernet, seed: int = 0) -> Supernet:
    """The supernet of ``node``, from the root's supernet ``root`` (left unchanged): the splits on the
    way down applied in turn, each inheriting or restarting (seeded by ``seed`` and the node) as recorded."""
    node = tree.node(node)
    tree.check_supernet(root)
    lineage = []
    while node.parent is not None:
        lineage.append(node)
        node = node.parent
    current = copy.deepcopy(root) if not lineage else root
    for child in reversed(lineage):
        current = _child(tree, child.parent, child.path[-1], current, seed)
    return current


def node_dir(run_dir, node: NodeRef) -> Path:
    """The folder of a node's sub-supernet in a few-shot run folder (named after the node id)."""
    return Path(run_dir) / (node.id if isinstance(node, SplitNode) else str(node))


# --- root state ---------------------------------------------------------------------------------------------
def _save_root(path: Path, supernet: Supernet) -> None:
    state = {"format": ROOT_FORMAT, "model": supernet.state_dict(), "allowed": supernet.allowed.tolist()}
    with atomic_write(path) as handle:
        torch.save(state, handle)


def _read_root(path: Path, device=None) -> Dict[str, Any]:
    try:
        state = torch.load(path, map_location=resolve_device(device), weights_only=True)
    except Exception as error:  # torn or foreign file
        raise RunError(f"cannot read the root supernet {path}: {error}") from None
    if not isinstance(state, dict) or state.get("format") != ROOT_FORMAT or "model" not in state:
        raise RunError(f"{path} is not a nastk few-shot root supernet (format {ROOT_FORMAT})")
    return state


def _load_state(supernet: Supernet, model: Dict[str, torch.Tensor], allowed, source: Path) -> Supernet:
    if "arch_logits" in model and supernet.arch_logits is None:
        supernet.init_arch_parameters()
    try:
        supernet.load_state_dict(model)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise RunError(f"the weights in {source} do not fit this supernet: {first}") from None
    supernet.allowed = np.array(allowed, dtype=bool)
    return supernet


def _same_weights(a: Dict[str, torch.Tensor], b: Dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k].cpu(), b[k].cpu()) for k in a)


# --- training the leaves ------------------------------------------------------------------------------------
def train_leaves(config: OneShotConfig, tree: Optional[SplitTree], run_dir, supernet: Optional[Supernet] = None,
                 resume: bool = False, device=None, data=None, progress: bool = True, callbacks=(),
                 loss=None, metrics=None) -> Dict[str, Any]:
    """Train every leaf of ``tree`` with the ordinary one-shot loop, one folder per leaf; returns the summary.

    ``supernet`` is the root's supernet (e.g. a trained one-shot supernet to split; default: a fresh
    one built from ``config``, seeded by ``config.seed``); each leaf starts from :func:`sub_supernet`
    of it and is trained for ``config.epochs`` epochs by :class:`OneShotTrainer` with ``config``.
    ``resume``: continue a killed run (``tree`` may then be None: the stored one is used; a given
    one, or ``supernet``, must equal what the run stored). Finished leaves are skipped, a leaf with a
    partial checkpoint continues from it, a leaf not started yet is rebuilt from ``root.pt``; the
    result is bitwise what an uninterrupted run gives. ``callbacks`` go to every leaf's trainer
    (``trainer.run_dir`` tells which leaf).
    """
    run_dir = Path(run_dir)
    dist = Distributed.from_env(device)
    folder_run = Run(run_dir, config.to_dict(), resume=resume) if dist.is_main else None  # refuses a used folder unless resuming
    try:
        dist.barrier()
        tree = _run_tree(run_dir, tree, dist)
        if data is None:
            from nastk.datasets import load_dataset

            data = load_dataset(config.dataset)
        root = _run_root(config, tree, run_dir, supernet, data.num_classes, dist)

        leaves, entries = tree.leaves(), []
        for number, leaf in enumerate(leaves):
            folder = node_dir(run_dir, leaf)
            state = _leaf_checkpoint(folder, leaf, config)
            if state is not None and int(state["epoch"]) >= config.epochs:
                entries.append(_leaf_entry(leaf, state["history"], int(state["epoch"]), skipped=True))
                continue
            if progress and dist.is_main:
                _write(f"sub-supernet {leaf.id} ({number + 1}/{len(leaves)})"
                       + (f": resuming at epoch {int(state['epoch']) + 1}" if state is not None else ""))
            child = sub_supernet(tree, leaf, root, config.seed)
            trainer = OneShotTrainer(config, folder, device, dist, data, progress, callbacks, supernet=child,
                                     loss=loss, metrics=metrics)
            trainer.label = f"sub-supernet {leaf.id}: "
            resumed_from = 0
            if state is not None:
                trainer.load_checkpoint()
                if not np.array_equal(trainer.supernet.allowed, leaf.allowed):
                    raise RunError(f"{folder / CHECKPOINT} restored another mask than leaf {leaf.id}'s")
                resumed_from = trainer.epoch
            elif dist.is_main and (folder / METRICS).exists():  # lines of a run whose checkpoint was removed
                (folder / METRICS).unlink()
            dist.barrier()
            trainer.fit()
            entries.append(_leaf_entry(leaf, trainer.history, trainer.epoch, resumed_from=resumed_from))
            del trainer, child

        summary = {"run_dir": str(run_dir), "space": config.space, "step": config.step, "sampler": config.sampler,
                   "epochs": config.epochs, "leaves": entries,
                   "trained": sum(not e["skipped"] for e in entries), "skipped": sum(e["skipped"] for e in entries)}
        if dist.is_main:
            with atomic_write(run_dir / SUMMARY, "w") as handle:
                json.dump(_plain_json(summary, "the summary"), handle, indent=2)
        dist.barrier()
        return summary
    finally:  # the folder's lock is released however training ends
        if folder_run is not None:
            folder_run.release()


def _run_tree(run_dir: Path, tree: Optional[SplitTree], dist: Distributed) -> SplitTree:
    path = run_dir / TREE
    if path.exists():
        stored = SplitTree.load(path)
        if tree is not None and tree != stored:
            raise RunError(f"cannot resume {run_dir}: the given split tree differs from its {TREE}")
        return stored
    if tree is None:
        raise ConfigError(f"{run_dir} holds no {TREE}; give the split tree to train")
    if dist.is_main:
        tree.save(path)
    dist.barrier()
    return tree


def _run_root(config: OneShotConfig, tree: SplitTree, run_dir: Path, supernet: Optional[Supernet],
              num_classes: int, dist: Distributed) -> Supernet:
    path = run_dir / ROOT_STATE
    if path.exists():
        state = _read_root(path)
        if supernet is not None:
            if not (_same_weights(supernet.state_dict(), state["model"])
                    and np.array_equal(supernet.allowed, np.array(state["allowed"], dtype=bool))):
                raise RunError(f"cannot resume {run_dir}: the given supernet differs from the root it stored ({path})")
            root = supernet
        else:
            root = _load_state(build_supernet(config, num_classes), state["model"], state["allowed"], path)
    else:
        if supernet is None:
            with _seeded(config.seed):  # what OneShotTrainer builds, without touching the global stream
                supernet = build_supernet(config, num_classes)
        root = supernet
    try:
        tree.check_supernet(root)
    except ConfigError as error:
        raise ConfigError(f"the root supernet does not fit the split tree: {error}") from None
    if not path.exists():
        if dist.is_main:
            _save_root(path, root)
        dist.barrier()
    return root


def _leaf_checkpoint(folder: Path, leaf: SplitNode, config: OneShotConfig) -> Optional[Dict[str, Any]]:
    """The leaf's checkpoint, checked against the leaf's mask and the run's config (None when absent)."""
    path = folder / CHECKPOINT
    if not path.is_file():
        return None
    state = read_checkpoint(path)
    allowed = np.array(state["allowed"], dtype=bool)
    if allowed.shape != leaf.allowed.shape or not np.array_equal(allowed, leaf.allowed):
        raise RunError(f"{path} is not a checkpoint of leaf {leaf.id}: its allowed mask differs from the leaf's")
    if state["config"] != config.to_dict():
        raise RunError(f"{path} was trained with another config than this run's")
    return state


def _leaf_entry(leaf: SplitNode, history: List[Dict[str, Any]], epoch: int, resumed_from: int = 0,
                skipped: bool = False) -> Dict[str, Any]:
    last = history[-1] if history else {}
    return {"id": leaf.id, "allowed": [list(leaf.options(d)) for d in range(leaf.allowed.shape[0])], "epochs": epoch,
            "skipped": skipped, "resumed_from_epoch": epoch if skipped else resumed_from,
            "final_train_loss": last.get("train_loss"), "final_train_acc": last.get("train_acc"),
            "final_test_acc": last.get("test_acc")}


def _write(line: str) -> None:
    from nastk.log import LOGGER

    LOGGER.info(line)


# --- the trained sub-supernets ------------------------------------------------------------------------------
def load_leaf(run_dir, node_id: NodeRef, device=None, supernet: Optional[Supernet] = None,
              finished: bool = True) -> Supernet:
    """The trained sub-supernet of a node of a few-shot run folder (in eval mode).

    ``supernet``: a supernet of the same kind to load the weights into (a copy is made; default: one
    built from the checkpoint's config). ``finished``: refuse a leaf trained for fewer than its epochs.
    ``device`` None: torch's default device (:func:`nastk.devices.resolve_device`).
    """
    run_dir = Path(run_dir)
    return _load_node(run_dir, SplitTree.load(run_dir / TREE), node_id, device, supernet, finished)


def _load_node(run_dir: Path, tree: SplitTree, node_id: NodeRef, device, template: Optional[Supernet],
               finished: bool) -> Supernet:
    node = tree.node(node_id if isinstance(node_id, str) else node_id.id)
    path = node_dir(run_dir, node) / CHECKPOINT
    if not path.is_file():
        raise RunError(f"{path.parent} holds no sub-supernet checkpoint of node {node.id}; "
                       f"train the leaves with train_leaves(..., resume=True)")
    device = resolve_device(device)
    state = read_checkpoint(path, device)
    allowed = np.array(state["allowed"], dtype=bool)
    if allowed.shape != node.allowed.shape or not np.array_equal(allowed, node.allowed):
        raise RunError(f"{path} is not a checkpoint of node {node.id}: its allowed mask differs from the node's")
    config = OneShotConfig.from_dict(state["config"])
    if finished and int(state["epoch"]) < config.epochs:
        raise RunError(f"sub-supernet {node.id} in {path.parent} is trained for {state['epoch']} of {config.epochs} "
                       f"epochs; resume the run first")
    supernet = copy.deepcopy(template) if template is not None else build_supernet(config, int(state["num_classes"]))
    supernet = _load_state(supernet.to(device), state["model"], allowed, path)
    supernet.eval()
    return supernet


class FewShotSupernets:
    """The trained sub-supernets of a few-shot run folder, loaded on demand and kept once loaded.

    ``supernet`` (optional) is a supernet of the run's kind to load weights into (see :func:`load_leaf`).
    """

    def __init__(self, run_dir, device=None, supernet: Optional[Supernet] = None, finished: bool = True):
        self.run_dir = Path(run_dir)
        self.tree = SplitTree.load(self.run_dir / TREE)
        self.device, self.template, self.finished = resolve_device(device), supernet, finished
        self._loaded: Dict[str, Supernet] = {}

    def leaf(self, node_id: NodeRef) -> Supernet:
        node = self.tree.node(node_id if isinstance(node_id, str) else node_id.id)
        if node.id not in self._loaded:
            self._loaded[node.id] = _load_node(self.run_dir, self.tree, node, self.device, self.template, self.finished)
        return self._loaded[node.id]

    def path_of_arch(self, arch: Union[Architecture, Sequence[int]]) -> Choices:
        if not isinstance(arch, Architecture):
            return tuple(int(c) for c in arch)
        mapper = self.template or (next(iter(self._loaded.values())) if self._loaded else self.leaf(self.tree.leaves()[0]))
        return tuple(int(c) for c in mapper.path_of_arch(arch))

    def route(self, arch: Union[Architecture, Sequence[int]]) -> SplitNode:
        """The leaf that contains ``arch`` (an Architecture or one option index per decision)."""
        return self.tree.route(self.path_of_arch(arch))

    def supernet_for(self, arch: Union[Architecture, Sequence[int]]) -> Tuple[SplitNode, Supernet]:
        """The leaf containing ``arch`` and its trained sub-supernet, with ``arch`` set active."""
        node = self.route(arch)
        supernet = self.leaf(node)
        supernet.set_active(arch if isinstance(arch, Architecture) else self.path_of_arch(arch))
        return node, supernet

    def accuracies(self, archs: Sequence[Architecture], x: torch.Tensor, y: torch.Tensor, **options) -> np.ndarray:
        """Top-1 accuracy (percent) of each architecture with the sub-supernet that contains it
        (:func:`nastk.oneshot.ranking.inherited_accuracies`, one call per leaf)."""
        from nastk.oneshot.ranking import inherited_accuracies

        options.setdefault("device", self.device)
        by_leaf: Dict[str, List[int]] = {}
        for i, arch in enumerate(archs):
            by_leaf.setdefault(self.route(arch).id, []).append(i)
        scores = np.zeros(len(archs))
        for node_id, indices in by_leaf.items():
            scores[indices] = inherited_accuracies(self.leaf(node_id), [archs[i] for i in indices], x, y, **options)
        return scores


def route_and_load(run_dir, arch: Union[Architecture, Sequence[int]], device=None,
                   supernet: Optional[Supernet] = None) -> Tuple[SplitNode, Supernet]:
    """The leaf of a few-shot run that contains ``arch`` and its trained sub-supernet (``arch`` set active).

    For many architectures keep one :class:`FewShotSupernets` instead: it loads each leaf once.
    """
    return FewShotSupernets(run_dir, device, supernet).supernet_for(arch)
