"""GM-NAS' split criterion (methods.md 3.1-3.2): which options of a decision disagree about the shared weights.

For a (sub-)supernet and an unsplit decision ``d`` with allowed options O: per minibatch, for each
``o`` in O, run the supernet with ``d`` set to ``o`` and every other decision as the base step sets
it (DARTS: the current mixture; single path: one sampled path, the same for every ``o``), and take
the gradient ``g_o`` of the loss with respect to the weights shared by all of O
(:meth:`GradientMatchable.matching_parameters`, an opt-in hook of the supernet). The distance is ``1 - cos(g_i, g_j)``, averaged over
``batches`` minibatches. ``mode="soft"`` keeps ``o``'s mixture weight instead of a one-hot row.

:func:`best_partition` splits O into two groups by minimum within-group distance: ``rule="cut"``
(NB201's, canonical) tries the balanced splits (|group 1| = |O| // 2) and scores a decision by its
across-cut distance (larger = its options disagree more, split it first); ``rule="darts"`` (the
DARTS-space script's) tries every split with both groups of at least two options and scores a
decision by its within-group cost (smaller first). :func:`choose_split` applies it to every
candidate decision of a node.
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from nastk.devices import HOST
from nastk.errors import ConfigError
from nastk.supernet import GradientMatchable, require_hooks

MODES = ("hard", "soft")
RULES = ("cut", "darts")


@dataclass
class Partition:
    groups: Tuple[Tuple[int, ...], Tuple[int, ...]]
    within: float
    across: float

    def score(self, rule: str) -> float:
        """Larger = split this decision first."""
        return self.across if rule == "cut" else -self.within


def _flat_gradient(parameters: Sequence[torch.nn.Parameter]) -> torch.Tensor:
    return torch.cat([p.grad.reshape(-1) for p in parameters if p.grad is not None])


def gradient_distances(trainer, decision: int, batches: int = 10, mode: str = "hard",
                       seed: int = 0) -> Tuple[List[int], np.ndarray]:
    """(options, distance matrix) of ``decision``'s allowed options, averaged over ``batches`` minibatches.

    ``trainer`` is the node's :class:`~nastk.oneshot.trainer.OneShotTrainer` (its training images,
    loss and path sampler); weights, gradients and BatchNorm buffers are left as they were.
    """
    if mode not in MODES:
        raise ConfigError(f"unknown gradient-matching mode {mode!r}; known: {', '.join(MODES)}")
    if int(batches) < 1:
        raise ConfigError(f"gradient matching needs at least 1 batch, got {batches}")
    supernet = trainer.supernet
    options = [int(o) for o in np.flatnonzero(supernet.allowed[decision])]
    if len(options) < 2:
        raise ConfigError(f"decision {supernet.decisions[decision].name!r} has {len(options)} option(s); nothing to split")
    require_hooks(supernet, GradientMatchable, "GM-NAS gradient matching")
    shared = supernet.matching_parameters(decision)
    mixture = supernet.arch_logits is not None and trainer.config.step == "darts"
    if mode == "soft" and not mixture:
        raise ConfigError("soft gradient matching keeps an option's mixture weight; it needs a darts-step supernet")
    rng = np.random.default_rng([int(seed), 13, int(decision)])
    generator = torch.Generator().manual_seed(int(rng.integers(2 ** 31)))
    buffers = {name: b.clone() for name, b in supernet.named_buffers()}
    total = np.zeros((len(options), len(options)))
    supernet.train()
    for _ in range(int(batches)):
        indices = torch.randperm(len(trainer.x), generator=generator, device=HOST)[:trainer.config.batch_size]
        x, y = trainer.examples(indices)
        if mixture:
            base = supernet.mixture_weights().detach()
        else:
            path = trainer.path_sampler.uniform_path(rng)
        gradients = []
        for option in options:
            if mixture:
                weights = base.clone()
                row = torch.zeros_like(weights[decision])
                row[option] = 1.0 if mode == "hard" else float(base[decision, option])
                weights[decision] = row
            supernet.zero_grad(set_to_none=True)
            if mixture:
                supernet.set_mixture(weights)
            else:  # the sampled path with ``option`` on the decision
                supernet.set_active([int(option) if d == decision else p for d, p in enumerate(path)])
            trainer.loss(supernet(x), y).backward()
            gradients.append(_flat_gradient(shared))
        g = torch.stack(gradients).double()
        norms = g.norm(dim=1)
        cosine = (g @ g.T) / (norms[:, None] * norms[None, :] + 1e-6)
        total += (1.0 - cosine).cpu().numpy()
    supernet.zero_grad(set_to_none=True)
    with torch.no_grad():
        for name, buffer in supernet.named_buffers():
            buffer.copy_(buffers[name])
    distances = total / int(batches)
    np.fill_diagonal(distances, 0.0)
    return options, distances


def best_partition(distances: np.ndarray, rule: str = "cut") -> Partition:
    """The two-group split of minimum within-group distance (positions into ``distances``)."""
    if rule not in RULES:
        raise ConfigError(f"unknown partition rule {rule!r}; known: {', '.join(RULES)}")
    n = len(distances)
    if n < 2 or (rule == "darts" and n < 4):
        raise ConfigError(f"cannot split {n} options into two groups by the {rule} rule")
    everything = float(np.triu(distances, 1).sum())
    sizes = [n // 2] if rule == "cut" else range(2, n // 2 + 1)
    best: Optional[Partition] = None
    for size in sizes:
        for first in itertools.combinations(range(n), size):
            if size * 2 == n and 0 not in first:  # each balanced split once
                continue
            second = tuple(i for i in range(n) if i not in first)
            within = sum(float(distances[a, b]) for group in (first, second) for a, b in itertools.combinations(group, 2))
            if best is None or within < best.within - 1e-12:
                best = Partition((first, second), within, everything - within)
    return best


def choose_split(trainer, candidates: Sequence[int], batches: int = 10, mode: str = "hard", rule: str = "cut",
                 seed: int = 0) -> Dict[str, Any]:
    """The decision to split among ``candidates`` and its two option groups, with every candidate's evidence."""
    supernet = trainer.supernet
    evidence, best = [], None
    for decision in candidates:
        started = time.perf_counter()
        options, distances = gradient_distances(trainer, decision, batches, mode, seed)
        partition = best_partition(distances, rule)
        groups = [[options[i] for i in group] for group in partition.groups]
        entry = {"decision": int(decision), "name": supernet.decisions[decision].name,
                 "options": [supernet.decisions[decision].options[o] for o in options],
                 "distances": np.round(distances, 6).tolist(), "groups": groups,
                 "within": round(partition.within, 6), "across": round(partition.across, 6),
                 "seconds": round(time.perf_counter() - started, 3)}
        evidence.append(entry)
        if best is None or partition.score(rule) > best[0]:
            best = (partition.score(rule), entry)
    if best is None:
        raise ConfigError("no decision left to split")
    return {"decision": best[1]["decision"], "groups": best[1]["groups"], "rule": rule, "mode": mode,
            "batches": int(batches), "candidates": evidence}
