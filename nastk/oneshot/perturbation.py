"""DARTS-PT (methods.md 4): perturbation-based architecture selection with tuning between decisions.

An option's strength is how much the *supernet's* held-out accuracy drops when that option's weight
is zeroed on its decision (the other weights unchanged, not renormalised): the option whose removal
hurts most is kept (``crit="loss"``: the one whose removal raises the held-out loss most). Decisions
are made one round at a time, in a seeded random order of the undecided decisions, and the supernet
is tuned for ``interval`` epochs between rounds with the run's own training step (bilevel DARTS, or
alpha frozen: the fix-alpha / "blank" variant), fresh optimizers at ``lr_factor`` times the search
learning rate. A decided decision is fixed by restricting its allowed options to the kept one, so
the mixture runs it alone: the same mask mechanism as a few-shot sub-supernet's.

* Round groups come from :meth:`PerturbationSelectable.selection_groups` (an opt-in hook of the supernet) (DARTS cells: one normal and one reduction
  edge per round; NB201: one edge).
* Topology (:meth:`PerturbationSelectable.topology_groups`, DARTS cells): after the operations, for each node with
  more than two inputs, the input edge whose removal leaves the highest held-out accuracy is removed
  (set to the supernet's absent option) until two remain. The absent option (``none``) is never a
  candidate operation: removing edges is topology's job.
* Works on any supernet with architecture parameters and a mixture mode (NB201, DARTS, a user's).

Folder (default ``<run>/pt``)::

    config.json     source run, selection options and the tuning run's OneShotConfig
    journal.jsonl   one line per decision: round, epoch, decision, alpha row, every option's held-out
                    accuracy and loss without it, the kept option (topology: every removal step)
    checkpoint.pt   the tuning trainer's checkpoint (weights, alpha, mask, optimizers) after each epoch
    metrics.jsonl   the tuning epochs
    selection.json  the final architecture, when every round is done

A killed selection resumes exactly: the tuning trainer continues from its checkpoint and recorded
decisions are re-applied instead of recomputed.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from nastk.errors import CapabilityError, ConfigError, RunError
from nastk.log import LOGGER
from nastk.oneshot.trainer import OneShotConfig, OneShotTrainer, load_trained
from nastk.paths import LOCK_FILE, atomic_write, folder_in_use
from nastk.run_folder import Run, require_resumable
from nastk.supernet import PerturbationSelectable, Supernet, require_hooks

SELECTION = "selection.json"
CRITERIA = ("acc", "loss")
EDGE_ORDERS = ("random", "fixed")


@dataclass
class PTOptions:
    """DARTS-PT's defaults (methods.md 4.3); ``interval`` is proj_intv, the tuning epochs per round."""

    crit: str = "acc"
    interval: int = 5
    lr_factor: float = 0.1
    #: final tuning learning rate (None: constant; DARTS-PT's DARTS-space recipe anneals to 0.001)
    lr_min: Optional[float] = None
    #: None: as the supernet was trained; True: alpha frozen while tuning (fix-alpha / blank)
    fix_alpha: Optional[bool] = None
    edge_order: str = "random"
    topology: bool = True
    #: held-out images per forward pass (None: the run's batch size; BatchNorm uses batch statistics)
    eval_batch_size: Optional[int] = None

    def __post_init__(self):
        if self.crit not in CRITERIA:
            raise ConfigError(f"unknown DARTS-PT criterion {self.crit!r}; known: {', '.join(CRITERIA)}")
        if self.edge_order not in EDGE_ORDERS:
            raise ConfigError(f"unknown edge order {self.edge_order!r}; known: {', '.join(EDGE_ORDERS)}")
        if isinstance(self.interval, bool) or int(self.interval) != self.interval or self.interval < 0:
            raise ConfigError(f"the tuning interval must be a whole number of epochs >= 0, got {self.interval}")
        if not 0 < float(self.lr_factor) <= 10:
            raise ConfigError(f"lr_factor must be in (0, 10], got {self.lr_factor}")
        if self.lr_min is not None and not float(self.lr_min) >= 0:
            raise ConfigError(f"lr_min must be at least 0, got {self.lr_min}")
        if self.eval_batch_size is not None and int(self.eval_batch_size) < 1:
            raise ConfigError(f"eval_batch_size must be at least 1, got {self.eval_batch_size}")


@dataclass(frozen=True)
class Round:
    """One selection round: ``kind`` op or topology, one item (a decision, or a node's input edges) per group."""

    index: int
    kind: str


def plan_rounds(supernet: Supernet, topology: bool = True) -> List[Round]:
    """Op rounds (the longest selection group's length), then topology rounds (most nodes in a group)."""
    require_hooks(supernet, PerturbationSelectable, "DARTS-PT selection")
    ops = max(len(group) for group in supernet.selection_groups())
    nodes = max((len(group) for group in supernet.topology_groups()), default=0) if topology else 0
    return [Round(i, "op") for i in range(ops)] + [Round(ops + i, "topology") for i in range(nodes)]


def tuning_config(source: OneShotConfig, options: PTOptions, rounds: int) -> OneShotConfig:
    """The tuning run: the source's data and step, ``interval * (rounds - 1)`` epochs at lr_factor x lr."""
    if source.step != "darts":
        raise CapabilityError(f"DARTS-PT selects from a supernet with architecture parameters; this run was trained "
                              f"with the {source.step} step (train one with --step darts, or --step darts --fix-alpha)")
    lr = source.lr * float(options.lr_factor)
    step_options = dict(source.step_options, arch_warmup_epochs=0)
    if options.fix_alpha is not None:
        step_options["fix_alpha"] = bool(options.fix_alpha)
    epochs = max(1, int(options.interval) * (rounds - 1))
    lr_min = lr if options.lr_min is None else min(float(options.lr_min), lr)
    return replace(source, epochs=epochs, lr=lr, lr_min=lr_min, step_options=step_options)


class PerturbationSelection:
    """One DARTS-PT selection into ``out_dir`` from the trained supernet of ``run_dir``."""

    def __init__(self, run_dir, out_dir=None, options: Optional[PTOptions] = None, resume: bool = False,
                 device=None, progress: bool = True, data=None):
        self.run_dir = Path(run_dir)
        self.options = options or PTOptions()
        if in_use_elsewhere(self.run_dir):  # its checkpoint changes under the selection
            raise RunError(f"{self.run_dir} is still being trained ({_holder(self.run_dir)}); select from it once "
                           f"its training has finished")
        out = Path(out_dir) if out_dir is not None else self.run_dir / ("pt-fix-alpha" if self.options.fix_alpha else "pt")
        if resume:
            require_resumable(out, "DARTS-PT selection")  # a mistyped --out is not a fresh selection
        supernet, source, self.source_epoch = load_trained(self.run_dir, device)
        if supernet.arch_logits is None:
            raise CapabilityError(f"{self.run_dir}'s supernet has no architecture parameters; DARTS-PT needs a "
                                  "supernet trained with --step darts")
        self.rounds = plan_rounds(supernet, self.options.topology)
        self.config = tuning_config(source, self.options, len(self.rounds))
        self.out_dir = out
        # everything is validated (trainer built) before the folder is made
        self.trainer = OneShotTrainer(self.config, self.out_dir, device, data=data, progress=progress, supernet=supernet)
        self.supernet = self.trainer.supernet
        self.eval_batch_size = int(self.options.eval_batch_size or source.batch_size)
        self.run = Run(self.out_dir, {"method": "pt", "source_run": str(self.run_dir.resolve()),
                                      "source_epoch": self.source_epoch, "options": asdict(self.options),
                                      "tuning": self.config.to_dict()}, resume=resume)
        self.progress = progress
        if resume:
            self.trainer.load_checkpoint()

    # --- scoring ----------------------------------------------------------------------------------
    def weights(self) -> torch.Tensor:
        return self.supernet.mixture_weights(weighting=self.config.step_options.get("weighting", "softmax")).detach()

    def quality(self, weights: torch.Tensor) -> Tuple[float, float]:
        return self.trainer.held_out_quality(weights, self.eval_batch_size)

    def worse(self, quality: Tuple[float, float]) -> float:
        """How bad a perturbed supernet is: lower accuracy, or higher loss."""
        return -quality[0] if self.options.crit == "acc" else quality[1]

    def decide_op(self, decision: int) -> Dict[str, Any]:
        """Keep the option whose removal hurts the held-out accuracy (or loss) most."""
        supernet = self.supernet
        names = supernet.decisions[decision].options
        candidates = [o for o in np.flatnonzero(supernet.allowed[decision]) if names[o] != supernet.absent_option]
        base = self.weights()
        scores = {}
        for option in candidates:
            weights = base.clone()
            weights[decision, option] = 0.0
            acc, loss = self.quality(weights)
            scores[names[option]] = {"acc": acc, "loss": loss}
        chosen = max(candidates, key=lambda o: self.worse((scores[names[o]]["acc"], scores[names[o]]["loss"])))
        acc, loss = self.quality(base)
        return {"kind": "op", "decision": int(decision), "name": supernet.decisions[decision].name,
                "weights": [round(float(w), 6) for w in base[decision][:len(names)]], "base_acc": acc, "base_loss": loss,
                "scores": scores, "chosen": int(chosen), "chosen_name": names[chosen]}

    def decide_topology(self, edges: Sequence[int]) -> Dict[str, Any]:
        """Remove the input edge whose removal leaves the best supernet, until two remain."""
        supernet = self.supernet
        remaining = [e for e in edges if self.present(e)]
        steps = []
        while len(remaining) > 2:
            base = self.weights()
            scores = {}
            for edge in remaining:
                weights = base.clone()
                weights[edge] = 0.0
                scores[edge] = self.quality(weights)
            removed = min(remaining, key=lambda e: self.worse(scores[e]))
            steps.append({"scores": {supernet.decisions[e].name: {"acc": a, "loss": l} for e, (a, l) in scores.items()},
                          "removed": int(removed), "removed_name": supernet.decisions[removed].name})
            self._remove_edge(removed)
            remaining.remove(removed)
        return {"kind": "topology", "edges": [int(e) for e in edges], "steps": steps, "kept": [int(e) for e in remaining]}

    # --- applying decisions ------------------------------------------------------------------------
    def _keep_only(self, decision: int, option: int) -> None:
        self.supernet.allowed[decision] = False
        self.supernet.allowed[decision, option] = True

    def _remove_edge(self, edge: int) -> None:
        if self.supernet.absent_option is None:
            raise CapabilityError("topology selection needs a supernet with an absent option (such as DARTS' none)")
        self._keep_only(edge, self.supernet.decisions[edge].options.index(self.supernet.absent_option))

    def apply(self, record: Dict[str, Any]) -> None:
        if record["kind"] == "op":
            self._keep_only(record["decision"], record["chosen"])
        else:
            for step in record["steps"]:
                self._remove_edge(step["removed"])

    # --- rounds ------------------------------------------------------------------------------------
    def decided(self, decision: int) -> bool:
        return int(self.supernet.allowed[decision].sum()) == 1

    def present(self, edge: int) -> bool:
        """Whether an edge is still in the cell (not removed by a topology decision)."""
        absent = self.supernet.absent_option
        options = self.supernet.decisions[edge].options
        return not (self.decided(edge) and options[int(np.argmax(self.supernet.allowed[edge]))] == absent)

    def round_items(self, round_: Round, this_round: Sequence[Dict[str, Any]]) -> List[Tuple[int, Any]]:
        """(group, decision or node's edges) for each group with something left to decide this round.

        Drawn from the state at the round's start (decisions already made in this round, recorded in
        ``this_round``, count as open), with one seeded stream per (round, group), so a resumed round
        draws what the uninterrupted one drew.
        """
        items = []
        if round_.kind == "op":
            touched = {r["decision"] for r in this_round}
            for group_index, group in enumerate(self.supernet.selection_groups()):
                open_ = [d for d in group if not self.decided(d) or d in touched]
                if open_:
                    items.append((group_index, open_[self._draw(round_, group_index, len(open_))]))
        else:
            touched = {tuple(r["edges"]) for r in this_round}
            for group_index, group in enumerate(self.supernet.topology_groups()):
                open_ = [edges for edges in group
                         if sum(self.present(e) for e in edges) > 2 or tuple(edges) in touched]
                if open_:
                    items.append((group_index, open_[self._draw(round_, group_index, len(open_))]))
        return items

    def _draw(self, round_: Round, group: int, count: int) -> int:
        if self.options.edge_order == "fixed":
            return 0
        return int(np.random.default_rng([int(self.config.seed), 7, round_.index, group]).integers(count))

    def select(self) -> Dict[str, Any]:
        """Run (or finish) every round; returns and writes the selection."""
        records = self.run.records()
        for record in records:  # decisions after the last checkpoint are re-applied, not recomputed
            self.apply(record)
        interval = int(self.options.interval)
        for round_ in self.rounds:
            self.trainer.fit(until=round_.index * interval)
            started = time.perf_counter()
            this_round = [r for r in records if r["round"] == round_.index]
            done = {r["group"] for r in this_round}
            for group, target in self.round_items(round_, this_round):
                if group in done:
                    continue
                record = self.decide_op(target) if round_.kind == "op" else self.decide_topology(target)
                record.update({"round": round_.index, "group": group, "epoch": self.trainer.epoch,
                               "seconds": round(time.perf_counter() - started, 3)})
                started = time.perf_counter()
                self.apply(record)
                self.run.append(record)
                records.append(record)
                if self.progress:
                    LOGGER.info(_describe(record))
        if interval:
            self.trainer.fit()  # the schedule's last epochs, if the rounds ended early
        return self.finish(records)

    def finish(self, records: List[Dict[str, Any]]) -> Dict[str, Any]:
        from nastk.oneshot.selection import parameter_free_share

        supernet = self.supernet
        choices = supernet.discretize(self.weights())
        arch = supernet.arch_of_path(choices)
        passes = sum(len(r["scores"]) for r in records if r["kind"] == "op") + \
            sum(len(s["scores"]) for r in records if r["kind"] == "topology" for s in r["steps"])
        out = {"method": "pt", "folder": str(self.out_dir), "arch": arch.to_str(), "choices": [int(c) for c in choices],
               "parameter_free_share": parameter_free_share(supernet, choices), "crit": self.options.crit,
               "fix_alpha": bool(self.config.step_options.get("fix_alpha", False)), "rounds": len(self.rounds),
               "tuning_epochs": self.trainer.epoch, "validation_passes": passes,
               "decision_s": round(sum(r["seconds"] for r in records), 3),
               "tuning_s": round(sum(h["epoch_s"] for h in self.trainer.history), 3), "decisions": records}
        with atomic_write(self.out_dir / SELECTION, "w") as handle:
            json.dump(out, handle, indent=1)
        return out


def _describe(record: Dict[str, Any]) -> str:
    if record["kind"] == "op":
        return (f"round {record['round'] + 1}: {record['name']} keeps {record['chosen_name']} "
                f"(held-out acc without it {record['scores'][record['chosen_name']]['acc']:.2f}, "
                f"supernet {record['base_acc']:.2f})")
    removed = ", ".join(step["removed_name"] for step in record["steps"])
    return f"round {record['round'] + 1}: topology removes {removed or 'nothing'}"


def in_use_elsewhere(directory: Path) -> bool:
    """Whether another live process holds the run folder's lock (one still training it); a lock this
    process holds is a run it has finished (an interpreter runs its commands one after another)."""
    if not folder_in_use(directory):
        return False
    return _holder(directory) != f"nastk process {os.getpid()}"


def _holder(directory: Path) -> str:
    try:
        return (Path(directory) / LOCK_FILE).read_text().strip() or "another process"
    except OSError:
        return "another process"


def select_pt(run_dir, out_dir=None, resume: bool = False, device=None, progress: bool = True, data=None,
              **options) -> Dict[str, Any]:
    """DARTS-PT on a trained supernet run; ``options`` are :class:`PTOptions` fields."""
    selection = PerturbationSelection(run_dir, out_dir, PTOptions(**options), resume, device, progress, data)
    with selection.run:  # the folder's lock is released however the selection ends
        return selection.select()
