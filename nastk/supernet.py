"""Weight-sharing supernets: one network that runs any architecture of a space, or a mixture of them.

A supernet is a network with *choice points*. Each choice point listens to one *decision* of the
space (an NB201 edge, a DARTS edge, an MBConv kernel size, a stage depth...) and interprets the
value the decision takes. Three execution modes share that one mechanism:

* **single path** (SPOS, PA&DA, RSPS, ranking): :meth:`Supernet.set_active` gives every decision one
  option, and every choice point runs only that option;
* **weighted mixture** (DARTS, GM-NAS, DARTS-PT): :meth:`Supernet.set_mixture` gives every decision a
  weight vector (which may carry gradients to architecture parameters), and candidate-op choice
  points return the weighted sum of their allowed candidates;
* **elastic** (OFA/BigNAS kernel, width, depth): an elastic block subclasses :class:`ChoicePoint` and
  reads the single-path value as "which kernel / width / depth" instead of "which module".

A decision may be restricted to a subset of its options (:attr:`Supernet.allowed`); few-shot NAS
splits a supernet into sub-supernets that differ only in what one decision allows
(:meth:`Supernet.split`). Samplers and trainers see only decisions, option indices and the
parameters each candidate owns (:meth:`ChoicePoint.candidate_parameters`), never a concrete space.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from nastk.architecture import Architecture
from nastk.errors import ArchitectureError, CapabilityError, ConfigError

Choices = Tuple[int, ...]


@dataclass(frozen=True)
class Decision:
    """One architectural choice of a space and the names of its options."""

    name: str
    options: Tuple[str, ...]


class ChoicePoint(nn.Module):
    """A place in a supernet whose behaviour depends on one decision.

    Subclasses implement :meth:`select`; those that hold one module per option also implement
    :meth:`mix` and :meth:`candidate_parameters`. Elastic blocks (shared weights sliced per option)
    implement :meth:`select` only.
    """

    def __init__(self, decision: int):
        super().__init__()
        self.decision = decision

    def select(self, option: int) -> None:
        raise NotImplementedError

    def mix(self, weights: torch.Tensor, allowed: Sequence[bool]) -> None:
        raise CapabilityError(f"{type(self).__name__} has no weighted-mixture mode")

    def candidate_parameters(self, option: int) -> List[nn.Parameter]:
        """The parameters owned by ``option`` alone (empty for parameter-free or elastic options)."""
        return []


class CandidateOps(ChoicePoint):
    """A choice between whole modules: one candidate operation per option (an NB201 or DARTS edge)."""

    def __init__(self, decision: int, candidates: Sequence[nn.Module]):
        super().__init__(decision)
        self.candidates = nn.ModuleList(candidates)
        self.active = 0
        self.weights: Optional[torch.Tensor] = None
        self.allowed: Sequence[bool] = (True,) * len(self.candidates)

    def select(self, option: int) -> None:
        self.active, self.weights = int(option), None

    def mix(self, weights: torch.Tensor, allowed: Sequence[bool]) -> None:
        self.weights, self.allowed = weights, allowed

    def candidate_parameters(self, option: int) -> List[nn.Parameter]:
        return list(self.candidates[option].parameters())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weights is None:
            return self.candidates[self.active](x)
        # Every allowed candidate runs, also at weight 0: straight-through one-hot weights (GDAS,
        # SNAS) need the gradient with respect to the zero entries.
        return sum(w * op(x) for w, op, ok in zip(self.weights, self.candidates, self.allowed) if ok)


class Supernet(nn.Module):
    """Base class of supernets. Subclasses build their layers and map architectures to choices."""

    def __init__(self, space, decisions: Sequence[Decision]):
        super().__init__()
        self.space = space
        self.decisions: Tuple[Decision, ...] = tuple(decisions)
        width = max(len(d.options) for d in self.decisions)
        #: ``allowed[d, o]``: may decision ``d`` take option ``o`` in this (sub-)supernet.
        self.allowed = np.zeros((len(self.decisions), width), dtype=bool)
        for index, decision in enumerate(self.decisions):
            self.allowed[index, :len(decision.options)] = True
        self.mode = "single"
        self._points: Optional[List[ChoicePoint]] = None

    # --- the space's side -------------------------------------------------------------------------
    def choices_of(self, arch: Architecture) -> Choices:
        """The option index of every decision for ``arch``."""
        raise NotImplementedError

    def arch_of(self, choices: Sequence[int]) -> Architecture:
        raise NotImplementedError

    # --- structure ------------------------------------------------------------------------------
    def choice_points(self) -> List[ChoicePoint]:
        if self._points is None:
            self._points = [m for m in self.modules() if isinstance(m, ChoicePoint)]
        return self._points

    def candidate_parameters(self) -> Dict[Tuple[int, int], List[nn.Parameter]]:
        """Parameters owned by each (decision, option), over every choice point of that decision."""
        owned: Dict[Tuple[int, int], List[nn.Parameter]] = {}
        for point in self.choice_points():
            for option in range(len(self.decisions[point.decision].options)):
                owned.setdefault((point.decision, option), []).extend(point.candidate_parameters(option))
        return owned

    def shared_parameters(self) -> List[nn.Parameter]:
        """Parameters that no candidate owns (stem, fixed blocks, head): used by every path."""
        owned = {id(p) for params in self.candidate_parameters().values() for p in params}
        return [p for p in self.parameters() if id(p) not in owned]

    # --- execution modes --------------------------------------------------------------------------
    def set_active(self, arch: Union[Architecture, Sequence[int]]) -> Choices:
        """Single-path mode: run ``arch`` (an Architecture or one option index per decision)."""
        choices = self.choices_of(arch) if isinstance(arch, Architecture) else tuple(int(c) for c in arch)
        if len(choices) != len(self.decisions):
            raise ArchitectureError(f"expected {len(self.decisions)} choices, got {len(choices)}")
        for decision, option in enumerate(choices):
            if not (0 <= option < self.allowed.shape[1] and self.allowed[decision, option]):
                raise ArchitectureError(
                    f"option {option} of decision {self.decisions[decision].name!r} is not allowed in this supernet")
        for point in self.choice_points():
            point.select(choices[point.decision])
        self.mode = "single"
        return choices

    def set_mixture(self, weights: torch.Tensor) -> None:
        """Weighted-mixture mode: ``weights[d, o]`` scales option ``o`` of decision ``d``."""
        if weights.dim() != 2 or weights.shape[0] != len(self.decisions):
            raise ConfigError(f"mixture weights must have shape ({len(self.decisions)}, options), got {tuple(weights.shape)}")
        for point in self.choice_points():
            point.mix(weights[point.decision], self.allowed[point.decision].tolist())
        self.mode = "mixture"

    def masked_softmax(self, logits: torch.Tensor) -> torch.Tensor:
        """Softmax over the allowed options of each decision (DARTS-style weights of a sub-supernet)."""
        mask = torch.as_tensor(self.allowed, device=logits.device)
        return torch.softmax(logits.masked_fill(~mask, float("-inf")), dim=-1)

    # --- few-shot splitting -----------------------------------------------------------------------
    def split(self, decision: int, option_groups: Sequence[Sequence[int]], inherit: bool = True) -> List["Supernet"]:
        """Sub-supernets, one per group, each allowing only its group's options on ``decision``.

        Children inherit the weights (``inherit=True``, a non-final few-shot split) or are
        re-initialised (a final split that restarts training).
        """
        groups = [sorted({int(o) for o in group}) for group in option_groups]
        available = set(np.flatnonzero(self.allowed[decision]).tolist())
        if any(not group for group in groups) or any(set(g) - available for g in groups):
            raise ConfigError(f"option groups {groups} must be non-empty subsets of the allowed options {sorted(available)}")
        children = []
        for group in groups:
            child = copy.deepcopy(self)
            child.allowed[decision] = False
            child.allowed[decision, group] = True
            if not inherit:
                child.reset_parameters()
            children.append(child)
        return children

    def reset_parameters(self) -> None:
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters()
