"""Few-shot training with splits decided during training: GM-NAS and exhaustive few-shot NAS (methods.md 3.3).

The root supernet trains until the first split epoch; it is then split (GM-NAS: the decision and
two option groups of :func:`~nastk.oneshot.gradient_matching.choose_split`; exhaustive: one child
per option of a decision); each child continues from its parent's checkpoint (weights, alpha,
optimizer, scheduler and sampler states: a non-final split inherits everything) until the next
split epoch, and so on. After the final split the leaves restart from a fresh, seeded
initialisation with a fresh schedule over ``epochs_after`` epochs (GM-NAS' ``restart=final``), or,
with ``restart=False``, continue their parents' schedule. For bilevel DARTS alpha is frozen until
the last split (GM-NAS' warm-up). The base step is the run's: ``darts`` (GM + DARTS) or
``single_path`` (GM + RSPS: uniform random paths restricted to each node's options).

Selection across the leaves (on the held-out images): darts — each leaf's argmax architecture,
the leaf of highest supernet (mixture) accuracy wins; single path — ``select_archs`` distinct random
architectures per leaf, the best one wins (RSPS' rule).

Run folder::

    config.json    {"fewshot": the SplitSchedule, "train": the OneShotConfig}
    tree.json      the split tree as it grows; each split's info holds the distances and partitions
    <node id>/     the node's trainer folder (checkpoint.pt, metrics.jsonl): root, root.0, root.0.1 ...
    selection.json every leaf's candidate and the chosen architecture

Resuming replays the schedule: a node whose checkpoint has reached its stage's end is not trained
again, a recorded split is not recomputed, and a partial stage continues from its checkpoint, so a
killed run ends where an uninterrupted one does.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from nastk.errors import ConfigError
from nastk.log import LOGGER
from nastk.oneshot.split_tree import TREE, SplitNode, SplitTree, _seeded, node_dir, restart_seed
from nastk.oneshot.gradient_matching import MODES, RULES, choose_split
from nastk.oneshot.trainer import CHECKPOINT, OneShotConfig, OneShotTrainer, build_supernet
from nastk.paths import atomic_write
from nastk.run_folder import Run

SELECTION = "selection.json"
METHODS = ("gm", "exhaustive")


@dataclass
class SplitSchedule:
    """When and how to split; defaults are the reduced NB201 schedule (methods.md 3.5)."""

    method: str = "gm"
    #: epochs of pre-split training after which each level splits (GM-NAS NB201: 15, 30)
    split_epochs: List[int] = field(default_factory=lambda: [3, 6])
    #: epochs each leaf trains after the final split (GM-NAS NB201: 30)
    epochs_after: int = 6
    #: the final split restarts the leaves from scratch (GM-NAS); False: leaves inherit and continue
    restart: bool = True
    #: gradient matching: minibatches averaged (R; the paper's 100), hard or soft, cut or darts rule
    batches: int = 10
    mode: str = "hard"
    rule: str = "cut"
    #: decisions that may be split (None: every decision)
    candidates: Optional[List[int]] = None
    #: exhaustive: the decision split at each level (None: the first unsplit candidate)
    exhaustive_decisions: Optional[List[int]] = None
    #: single-path selection: distinct random architectures evaluated per leaf (RSPS: 200)
    select_archs: int = 200

    def __post_init__(self):
        if self.method not in METHODS:
            raise ConfigError(f"unknown few-shot method {self.method!r}; known: {', '.join(METHODS)}")
        if self.mode not in MODES:
            raise ConfigError(f"unknown gradient-matching mode {self.mode!r}; known: {', '.join(MODES)}")
        if self.rule not in RULES:
            raise ConfigError(f"unknown partition rule {self.rule!r}; known: {', '.join(RULES)}")
        epochs = [_whole(e, "split epoch") for e in self.split_epochs]
        if not epochs or any(e < 1 for e in epochs) or epochs != sorted(set(epochs)):
            raise ConfigError(f"split epochs must be increasing whole numbers >= 1, got {self.split_epochs}")
        self.split_epochs = epochs
        if _whole(self.epochs_after, "epochs_after") < 1:
            raise ConfigError(f"epochs_after must be at least 1, got {self.epochs_after}")
        if _whole(self.batches, "batches") < 1:
            raise ConfigError(f"gradient matching needs at least 1 batch, got {self.batches}")
        if _whole(self.select_archs, "select_archs") < 1:
            raise ConfigError(f"select_archs must be at least 1, got {self.select_archs}")
        if self.exhaustive_decisions is not None and len(self.exhaustive_decisions) != len(epochs):
            raise ConfigError(f"exhaustive_decisions needs one decision per split level ({len(epochs)}), "
                              f"got {self.exhaustive_decisions}")

    @property
    def total_epochs(self) -> int:
        return self.split_epochs[-1] + self.epochs_after


def _whole(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"{what} must be a whole number, got {value!r}")
    return int(value)


class FewShotRun:
    """One GM-NAS / exhaustive few-shot run into ``run_dir`` (train with :meth:`run`)."""

    def __init__(self, config: OneShotConfig, schedule: SplitSchedule, run_dir, resume: bool = False,
                 device=None, progress: bool = True, data=None):
        self.schedule, self.run_dir = schedule, Path(run_dir)
        self.device, self.progress = device, progress
        warmup = dict(config.step_options)
        if config.step == "darts":  # alpha frozen until the last split (GM-NAS' projection warm-up)
            warmup["arch_warmup_epochs"] = max(int(warmup.get("arch_warmup_epochs", 0)), schedule.split_epochs[-1])
        self.config = replace(config, epochs=schedule.total_epochs, step_options=warmup)
        restarted = dict(config.step_options, arch_warmup_epochs=0) if config.step == "darts" else config.step_options
        self.leaf_config = (replace(config, epochs=schedule.epochs_after, step_options=restarted)
                            if schedule.restart else self.config)
        if data is None:
            from nastk.datasets import load_dataset

            data = load_dataset(config.dataset)
        self.data = data
        root = self._trainer(None, None)  # builds (and so validates) the root before the folder is made
        self.tree = SplitTree.of(root.supernet)
        candidates = schedule.candidates if schedule.candidates is not None else range(len(root.supernet.decisions))
        self.candidates = [int(d) for d in candidates]
        if any(not 0 <= d < len(root.supernet.decisions) for d in self.candidates):
            raise ConfigError(f"split candidates {schedule.candidates} out of range 0..{len(root.supernet.decisions) - 1}")
        if schedule.method == "gm":  # what choose_split would refuse after the first training epochs, said now
            from nastk.supernet import GradientMatchable, require_hooks

            require_hooks(root.supernet, GradientMatchable, "GM-NAS gradient matching")
            if schedule.mode == "soft" and config.step != "darts":
                raise ConfigError(f"soft gradient matching keeps an option's mixture weight; it needs a darts-step "
                                  f"supernet, not the {config.step} step (use --gm-mode hard, or --step darts)")
        if config.step == "single_path" and not len(root.x_held):
            raise ConfigError("single-path few-shot selection evaluates architectures on held-out images; "
                              "set held_out_fraction (e.g. 0.5)")
        del root
        self.folder = Run(self.run_dir, {"fewshot": asdict(schedule), "train": self.config.to_dict()}, resume=resume)
        if (self.run_dir / TREE).exists():
            self.tree = SplitTree.load(self.run_dir / TREE)

    # --- trainers ---------------------------------------------------------------------------------
    def _trainer(self, node: Optional[SplitNode], folder: Optional[Path], leaf: bool = False) -> OneShotTrainer:
        """The trainer of ``node`` (None: the root, not saved): from its own checkpoint, else its parent's."""
        config = self.leaf_config if leaf else self.config
        supernet = None
        if node is not None and node.parent is not None:
            seed = restart_seed(config.seed, node) if leaf and self.schedule.restart else config.seed
            with _seeded(seed):
                supernet = build_supernet(config, self.data.num_classes)
            supernet.allowed = node.allowed.copy()
            if config.step == "darts":
                supernet.init_arch_parameters(generator=torch.Generator().manual_seed(seed))
        trainer = OneShotTrainer(config, folder, self.device, data=self.data, progress=self.progress, supernet=supernet)
        trainer.label = f"sub-supernet {node.id}: " if node is not None and node.parent is not None else ""
        if folder is None:
            return trainer
        if not trainer.load_checkpoint() and node.parent is not None and not (leaf and self.schedule.restart):
            trainer.load_checkpoint(node_dir(self.run_dir, node.parent) / CHECKPOINT, keep_mask=True)
        return trainer

    def _say(self, line: str) -> None:
        if self.progress:
            LOGGER.info(line)

    # --- the schedule -----------------------------------------------------------------------------
    def split_candidates(self, node: SplitNode) -> List[int]:
        """Decisions not split on the node's way from the root, with at least two options left."""
        split, current = set(), node
        while current.parent is not None:
            split.add(current.parent.split.decision)
            current = current.parent
        return [d for d in self.candidates if d not in split and node.allowed[d].sum() >= 2]

    def split(self, node: SplitNode, trainer: OneShotTrainer, level: int) -> None:
        schedule, final = self.schedule, level == len(self.schedule.split_epochs) - 1
        candidates = self.split_candidates(node)
        if not candidates:
            raise ConfigError(f"node {node.id} has no decision left to split at level {level + 1}")
        started = time.perf_counter()
        if schedule.method == "gm":
            info = choose_split(trainer, candidates, schedule.batches, schedule.mode, schedule.rule,
                                seed=restart_seed(self.config.seed, node))
            decision, groups = info["decision"], info["groups"]
        else:
            chosen = schedule.exhaustive_decisions[level] if schedule.exhaustive_decisions else candidates[0]
            decision = int(chosen)
            groups = [[int(o)] for o in np.flatnonzero(node.allowed[decision])]
            info = {"rule": "exhaustive"}
        info["seconds"] = round(time.perf_counter() - started, 3)
        self.tree.split(node, decision, groups, inherit=not (final and schedule.restart),
                        epoch=schedule.split_epochs[level], info=info)
        self.tree.save(self.run_dir / TREE)
        what = trainer.supernet.decisions[decision]
        self._say(f"split {node.id} on {what.name}: " + " | ".join(",".join(what.options[o] for o in g) for g in groups)
                  + f" ({info['seconds']:.1f} s)")

    def run(self) -> Dict[str, Any]:
        """Train every stage and leaf (or what a killed run left), then select; returns the selection."""
        nodes = [self.tree.root]
        for level, epoch in enumerate(self.schedule.split_epochs):
            children = []
            for node in nodes:
                trainer = self._trainer(node, node_dir(self.run_dir, node))
                trainer.fit(until=epoch)
                if node.is_leaf:
                    self.split(node, trainer, level)
                children += node.children
                del trainer
            nodes = children
        for number, leaf in enumerate(nodes):
            self._say(f"sub-supernet {leaf.id} ({number + 1}/{len(nodes)})")
            trainer = self._trainer(leaf, node_dir(self.run_dir, leaf), leaf=True)
            trainer.fit()
            del trainer
        return self.select()

    # --- selection ----------------------------------------------------------------------------------
    def leaf_trainers(self):
        """(leaf, its trained trainer) for every leaf, one at a time."""
        for leaf in self.tree.leaves():
            yield leaf, self._trainer(leaf, node_dir(self.run_dir, leaf), leaf=True)

    def select(self) -> Dict[str, Any]:
        from nastk.oneshot.selection import parameter_free_share

        entries = []
        for leaf, trainer in self.leaf_trainers():
            candidate = best_of_leaf(trainer, self.schedule.select_archs, seed=restart_seed(self.config.seed, leaf))
            candidate.update({"leaf": leaf.id, "parameter_free_share":
                              parameter_free_share(trainer.supernet, candidate["choices"])})
            entries.append(candidate)
        best = max(entries, key=lambda e: e["held_out_acc"])
        out = {"method": f"{self.schedule.method}+{self.config.step}", "arch": best["arch"], "leaf": best["leaf"],
               "parameter_free_share": best["parameter_free_share"], "leaves": entries,
               "tree": self.tree.to_dict()}
        with atomic_write(self.run_dir / SELECTION, "w") as handle:
            json.dump(out, handle, indent=1)
        return out


def best_of_leaf(trainer: OneShotTrainer, archs: int = 200, seed: int = 0) -> Dict[str, Any]:
    """A (sub-)supernet's candidate: darts — its argmax architecture, scored by the supernet's
    held-out mixture accuracy; single path — the best of ``archs`` distinct random architectures
    of its options, by held-out accuracy (RSPS)."""
    supernet = trainer.supernet
    if supernet.arch_logits is not None and trainer.config.step == "darts":
        weights = supernet.mixture_weights().detach()
        choices = supernet.discretize(weights)
        acc, loss = trainer.held_out_quality(weights)
        return {"arch": supernet.arch_of_path(choices).to_str(), "choices": [int(c) for c in choices],
                "held_out_acc": acc, "held_out_loss": loss, "rule": "argmax, supernet accuracy"}
    rng = np.random.default_rng([int(seed), 17])
    seen, best = set(), None
    for _ in range(archs * 20):
        if len(seen) >= archs:
            break
        path = tuple(trainer.path_sampler.uniform_path(rng))
        if path in seen:
            continue
        seen.add(path)
        acc, loss = trainer.held_out_quality(path)
        if best is None or acc > best[0]:
            best = (acc, loss, path)
    acc, loss, path = best
    return {"arch": supernet.arch_of_path(path).to_str(), "choices": [int(c) for c in path], "held_out_acc": acc,
            "held_out_loss": loss, "rule": f"best of {len(seen)} random architectures"}


def train_fewshot(config: OneShotConfig, schedule: SplitSchedule, run_dir, resume: bool = False, device=None,
                  progress: bool = True, data=None) -> Dict[str, Any]:
    fewshot = FewShotRun(config, schedule, run_dir, resume, device, progress, data)
    with fewshot.folder:  # the folder's lock is released however the run ends
        return fewshot.run()
