"""Weight-sharing supernets: one network that runs any architecture of a space, or a mixture of them.

A supernet is a network with *choice points*. Each choice point listens to one or more *decisions*
of the space (an NB201 edge, a DARTS edge; an MBConv block reads its kernel, expand ratio and its
stage's depth) and interprets the values they take. One mechanism carries every execution mode:
:meth:`Supernet.set_path` gives each decision either **one option** (an int) or **a weight vector**
over its options (a tensor row that may carry gradients to architecture parameters):

* **single path** (SPOS, PA&DA, RSPS, ranking, sandwich rule): every decision an int
  (:meth:`Supernet.set_active`); every choice point runs only that option;
* **weighted mixture** (DARTS, GM-NAS, DARTS-PT): every decision a weight row
  (:meth:`Supernet.set_mixture`); candidate-op choice points return the weighted sum of their
  allowed candidates;
* **partial**: some decisions fixed to one option, the others mixed (a DARTS-PT edge that has been
  decided, GDAS-style hard edges);
* **elastic** (OFA/BigNAS kernel, width, depth): an elastic block subclasses :class:`ChoicePoint`
  and reads its ints as "which kernel / width / depth" instead of "which module".

A decision may be restricted to a subset of its options (:attr:`Supernet.allowed`); few-shot NAS
splits a supernet into sub-supernets that differ only in what one decision allows
(:meth:`Supernet.split`). Architecture parameters (:meth:`Supernet.arch_parameters`, DARTS' alpha)
are owned by the supernet but kept apart from the weights (:meth:`Supernet.weights`), and
:meth:`Supernet.export` turns them (or any weights) into an :class:`Architecture`. Samplers and
training steps see only decisions, option indices and the parameters each candidate owns
(:meth:`ChoicePoint.candidate_parameters`), never a concrete space.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from nastk.architecture import Architecture
from nastk.devices import HOST
from nastk.errors import ArchitectureError, CapabilityError, ConfigError

Choices = Tuple[int, ...]
#: what one decision is given: one option index, or a weight vector over its options
PathValue = Union[int, torch.Tensor]


@dataclass(frozen=True)
class Decision:
    """One architectural choice of a space and the names of its options."""

    name: str
    options: Tuple[str, ...]


class ChoicePoint(nn.Module):
    """A place in a supernet whose behaviour depends on one or more decisions.

    Subclasses implement :meth:`configure`, which receives, for each decision the point listens to
    (in :attr:`decisions` order), an option index or a weight row, and that decision's allowed mask.
    Points that hold one module per option (:class:`CandidateOps`) also implement
    :meth:`candidate_parameters`; elastic blocks (shared weights sliced per option) own none.

    The constructor is cooperative: ``decisions`` (indices or decision names, resolved by the
    supernet) is a keyword and every other argument goes on to the next class, so an elastic layer
    can be ``class ElasticConv(ChoicePoint, nn.Conv2d)`` built as
    ``ElasticConv(16, 32, 3, decisions=("stage1_kernel",))``.
    """

    def __init__(self, *args, decisions: Sequence[Union[int, str]] = (), **kwargs):
        super().__init__(*args, **kwargs)
        if isinstance(decisions, (int, str)):
            decisions = (decisions,)
        if not decisions:
            raise ConfigError(f"{type(self).__name__}: a choice point must listen to at least one decision")
        #: the decisions as given (names or indices); :attr:`decisions` are their indices once resolved
        self.decision_refs: Tuple[Union[int, str], ...] = tuple(decisions)
        self.decisions: Tuple[int, ...] = tuple(d for d in self.decision_refs if isinstance(d, int))
        if len(self.decisions) != len(self.decision_refs):
            self.decisions = ()  # names: resolved by Supernet.choice_points()

    def resolve(self, index_of) -> None:
        """Turn decision names into indices (``index_of(name)``); called by the owning supernet."""
        self.decisions = tuple(d if isinstance(d, int) else index_of(d) for d in self.decision_refs)

    @property
    def decision(self) -> int:
        """The decision of a point that listens to exactly one."""
        if len(self.decisions) != 1:
            raise CapabilityError(f"{type(self).__name__} listens to decisions {self.decisions}, not one")
        return self.decisions[0]

    def configure(self, values: Sequence[PathValue], allowed: Sequence[Sequence[bool]]) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement configure(values, allowed)")

    def candidate_parameters(self, option: int) -> List[nn.Parameter]:
        """The parameters owned by ``option`` alone (empty for parameter-free or elastic options)."""
        return []


class CandidateOps(ChoicePoint):
    """A choice between whole modules: one candidate operation per option (an NB201 or DARTS edge)."""

    def __init__(self, decision: Union[int, str], candidates: Sequence[nn.Module]):
        super().__init__(decisions=(decision,))
        self.candidates = nn.ModuleList(candidates)
        self.active = 0
        self.weights: Optional[torch.Tensor] = None
        self.allowed: Sequence[bool] = (True,) * len(self.candidates)

    def configure(self, values: Sequence[PathValue], allowed: Sequence[Sequence[bool]]) -> None:
        (value,), (self.allowed,) = values, allowed
        if isinstance(value, torch.Tensor):
            self.weights = value
        else:
            self.active, self.weights = int(value), None

    def candidate_parameters(self, option: int) -> List[nn.Parameter]:
        return list(self.candidates[option].parameters())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weights is None:
            return self.candidates[self.active](x)
        # Every allowed candidate runs, also at weight 0: straight-through one-hot weights (GDAS,
        # SNAS) need the gradient with respect to the zero entries.
        return sum(w * op(x) for w, op, ok in zip(self.weights, self.candidates, self.allowed) if ok)


def max_w(weights: torch.Tensor) -> torch.Tensor:
    """sharpDARTS' Max-W weighting (methods.md 13.2): ``1 - max_j w_j + w_o`` per row, not detached.

    Every op gets at least ``1 - max w`` and the row's strongest op exactly 1, which keeps one op
    from drowning the others. Disallowed options (weight 0 from a masked softmax) stay 0.
    """
    shifted = 1.0 - weights.max(dim=-1, keepdim=True).values + weights
    return torch.where(weights > 0, shifted, torch.zeros_like(weights))


def decisions_of(space) -> List[Decision]:
    """One decision per choice of ``space``'s choice model, options named by the choice's text."""
    model = space.get_choice_model()
    return [Decision(choice.name, tuple(choice.text(v) for v in choice.options)) for choice in model.choices]


#: how architecture logits become mixture weights
WEIGHTINGS = ("softmax", "max_w")


class Supernet(nn.Module):
    """Base class of supernets. Subclasses build their layers and map architectures to choices."""

    def __init__(self, space, decisions: Sequence[Decision]):
        super().__init__()
        self.space = space
        self.decisions: Tuple[Decision, ...] = tuple(decisions)
        self.width = max(len(d.options) for d in self.decisions)
        #: ``allowed[d, o]``: may decision ``d`` take option ``o`` in this (sub-)supernet.
        self.allowed = np.zeros((len(self.decisions), self.width), dtype=bool)
        for index, decision in enumerate(self.decisions):
            self.allowed[index, :len(decision.options)] = True
        self.mode = "single"
        self.current_path: Tuple[PathValue, ...] = ()
        self.arch_logits: Optional[nn.Parameter] = None
        self._points: Optional[List[ChoicePoint]] = None

    # --- the space's side -------------------------------------------------------------------------
    def path_of_arch(self, arch: Architecture) -> Choices:
        """The option index of every decision for ``arch``.

        Default: one decision per choice of the space's choice model (:func:`decisions_of`), the
        option being the value's position (an inactive choice takes option 0, which nothing reads).
        Supernets whose decisions are not the space's choices (NB201 edges, DARTS edges) override it.
        """
        model = self.space.get_choice_model()
        values = self.space._values(arch)
        return tuple(0 if value is None else choice.position(value) for choice, value in zip(model.choices, values))

    def arch_of_path(self, choices: Sequence[int]) -> Architecture:
        """The architecture of one option per decision (inverse of :meth:`path_of_arch`)."""
        model = self.space.get_choice_model()
        values: List = []
        for i, (choice, option) in enumerate(zip(model.choices, choices)):
            values.append(choice.options[int(option)] if model.is_active(i, values) else None)
        return self.space._arch(model.validate(values))

    # --- structure ------------------------------------------------------------------------------
    def decision_index(self, name: Union[int, str]) -> int:
        """The index of decision ``name`` (an index is checked and returned as is)."""
        if isinstance(name, int) and not isinstance(name, bool):
            if not 0 <= name < len(self.decisions):
                raise ConfigError(f"decision index {name} out of range 0..{len(self.decisions) - 1}")
            return name
        for index, decision in enumerate(self.decisions):
            if decision.name == name:
                return index
        raise ConfigError(f"unknown decision {name!r}; known: {', '.join(d.name for d in self.decisions)}")

    def choice_points(self) -> List[ChoicePoint]:
        if self._points is None:
            self._points = [m for m in self.modules() if isinstance(m, ChoicePoint)]
            for point in self._points:
                point.resolve(self.decision_index)
        return self._points

    # --- generic tools ----------------------------------------------------------------------------
    def largest_path(self) -> Choices:
        """The option indices of the space's largest architecture (every ordered choice at its maximum)."""
        return self.path_of_arch(self.space.largest())

    def smallest_path(self) -> Choices:
        """The option indices of the space's smallest architecture (every ordered choice at its minimum)."""
        return self.path_of_arch(self.space.smallest())

    def path_of(self, values: Dict[str, Union[int, str]]) -> Choices:
        """A single path from ``{decision name: option index or option name}`` (every decision named)."""
        missing = [d.name for d in self.decisions if d.name not in values]
        unknown = sorted(set(values) - {d.name for d in self.decisions})
        if missing or unknown:
            raise ConfigError(f"a path names every decision once: missing {missing}, unknown {unknown}")
        path = []
        for decision in self.decisions:
            value = values[decision.name]
            if isinstance(value, str):
                if value not in decision.options:
                    raise ConfigError(f"decision {decision.name!r} has no option {value!r}; "
                                      f"options: {', '.join(decision.options)}")
                value = decision.options.index(value)
            path.append(int(value))
        return tuple(path)

    def extract(self, arch: Union[Architecture, Sequence[int]]) -> nn.Module:
        """A stand-alone module that runs ``arch`` with this supernet's current (inherited) weights.

        Its output equals the supernet's for that child. Default: a copy of the supernet fixed to
        the path; elastic supernets override it with a network holding only the child's slices.
        """
        choices = self.path_of_arch(arch) if isinstance(arch, Architecture) else tuple(int(c) for c in arch)
        copy_ = copy.deepcopy(self)
        copy_.set_active(choices)
        return FixedPath(copy_, choices)

    def expected_cost(self, weights: torch.Tensor, metric: str = "flops") -> torch.Tensor:
        """The expected ``metric`` (e.g. FLOPs) of a child drawn with independent per-decision
        probabilities ``weights[d, o]``, differentiable in ``weights`` (resource losses, ShiftNAS,
        QuantNAS). Supernets whose costs are known analytically implement it."""
        raise CapabilityError(f"{type(self).__name__} has no analytic cost model for expected_cost({metric!r})")

    def candidate_parameters(self) -> Dict[Tuple[int, int], List[nn.Parameter]]:
        """Parameters owned by each (decision, option), over every one-decision choice point."""
        owned: Dict[Tuple[int, int], List[nn.Parameter]] = {}
        for point in self.choice_points():
            if len(point.decisions) != 1:
                continue
            for option in range(len(self.decisions[point.decision].options)):
                owned.setdefault((point.decision, option), []).extend(point.candidate_parameters(option))
        return owned

    def shared_parameters(self) -> List[nn.Parameter]:
        """Weights that no candidate owns (stem, fixed blocks, head): used by every path."""
        owned = {id(p) for params in self.candidate_parameters().values() for p in params}
        return [p for p in self.weights() if id(p) not in owned]

    # --- weights and architecture parameters -----------------------------------------------------
    def weights(self) -> List[nn.Parameter]:
        """Every parameter except the architecture parameters: what the weight optimizer trains."""
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def arch_parameters(self) -> List[nn.Parameter]:
        """The architecture parameters (empty until :meth:`init_arch_parameters`)."""
        return [self.arch_logits] if self.arch_logits is not None else []

    def init_arch_parameters(self, std: float = 1e-3, generator: Optional[torch.Generator] = None) -> nn.Parameter:
        """DARTS' alpha: one logit per (decision, option), drawn from N(0, std^2) (std 0 = uniform)."""
        device = next(self.parameters()).device if any(True for _ in self.parameters()) else None
        logits = torch.randn(self.allowed.shape, generator=generator, device=generator.device if generator else HOST) * std
        self.arch_logits = nn.Parameter(logits.to(device))
        return self.arch_logits

    def mixture_weights(self, logits: Optional[torch.Tensor] = None, weighting: str = "softmax") -> torch.Tensor:
        """Mixture weights of the architecture logits: softmax over allowed options, optionally Max-W."""
        if weighting not in WEIGHTINGS:
            raise ConfigError(f"unknown weighting {weighting!r}; known: {', '.join(WEIGHTINGS)}")
        if logits is None:
            if self.arch_logits is None:
                raise CapabilityError("this supernet has no architecture parameters; call init_arch_parameters() first")
            logits = self.arch_logits
        weights = self.masked_softmax(logits)
        return max_w(weights) if weighting == "max_w" else weights

    def masked_softmax(self, logits: torch.Tensor) -> torch.Tensor:
        """Softmax over the allowed options of each decision (DARTS-style weights of a sub-supernet)."""
        mask = torch.as_tensor(self.allowed, device=logits.device)
        return torch.softmax(logits.masked_fill(~mask, float("-inf")), dim=-1)

    def discretize(self, weights: torch.Tensor) -> Choices:
        """One option per decision from mixture weights: the allowed option of largest weight.

        Spaces whose architectures are not one option per decision (DARTS cells keep two inputs per
        node) override this with their own rule.
        """
        masked = weights.detach().cpu().masked_fill(~torch.as_tensor(self.allowed, device=HOST), float("-inf"))
        return tuple(int(i) for i in masked.argmax(dim=1))

    def export(self, weights: Optional[torch.Tensor] = None) -> Architecture:
        """The architecture the current (or the given) mixture weights stand for."""
        return self.arch_of_path(self.discretize(self.mixture_weights() if weights is None else weights))

    # --- execution modes --------------------------------------------------------------------------
    def set_path(self, path: Sequence[PathValue]) -> None:
        """Give every decision one option (an int) or a weight vector over its options (a tensor row)."""
        if len(path) != len(self.decisions):
            raise ArchitectureError(f"expected {len(self.decisions)} choices, got {len(path)}")
        values: List[PathValue] = []
        for decision, value in enumerate(path):
            if isinstance(value, torch.Tensor) and value.dim() == 1:
                if len(value) != self.width:
                    raise ConfigError(f"mixture weights of decision {self.decisions[decision].name!r} must have "
                                      f"{self.width} entries, got {len(value)}")
            else:
                value = int(value)
                if not (0 <= value < self.width and self.allowed[decision, value]):
                    raise ArchitectureError(
                        f"option {value} of decision {self.decisions[decision].name!r} is not allowed in this supernet")
            values.append(value)
        for point in self.choice_points():
            point.configure([values[d] for d in point.decisions], [self.allowed[d].tolist() for d in point.decisions])
        mixed = sum(isinstance(v, torch.Tensor) for v in values)
        self.mode = "single" if mixed == 0 else "mixture" if mixed == len(values) else "partial"
        self.current_path = tuple(values)  # what runs now: one option (int) or a weight row per decision

    def set_active(self, arch: Union[Architecture, Sequence[int]]) -> Choices:
        """Single-path mode: run ``arch`` (an Architecture or one option index per decision)."""
        choices = self.path_of_arch(arch) if isinstance(arch, Architecture) else tuple(int(c) for c in arch)
        self.set_path(choices)
        return choices

    def set_mixture(self, weights: torch.Tensor, fixed: Optional[Dict[int, int]] = None) -> None:
        """Weighted-mixture mode: ``weights[d, o]`` scales option ``o`` of decision ``d``.

        ``fixed`` maps decisions that run one option alone (e.g. an edge DARTS-PT has decided).
        """
        if weights.dim() != 2 or weights.shape[0] != len(self.decisions):
            raise ConfigError(f"mixture weights must have shape ({len(self.decisions)}, options), got {tuple(weights.shape)}")
        fixed = fixed or {}
        self.set_path([fixed[d] if d in fixed else weights[d] for d in range(len(self.decisions))])

    # --- few-shot splitting -----------------------------------------------------------------------
    def split(self, decision: int, option_groups: Sequence[Sequence[int]], inherit: bool = True) -> List["Supernet"]:
        """Sub-supernets, one per group, each allowing only its group's options on ``decision``.

        Children inherit the weights and architecture parameters (``inherit=True``, a non-final
        few-shot split) or are re-initialised (a final split that restarts training).
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
        """Re-initialise every weight (and the architecture parameters, if any) in place."""
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters()
        if self.arch_logits is not None:
            with torch.no_grad():
                self.arch_logits.normal_(0, 1e-3)


class FixedPath(nn.Module):
    """A supernet copy pinned to one path: the generic :meth:`Supernet.extract`."""

    def __init__(self, supernet: Supernet, choices: Sequence[int]):
        super().__init__()
        self.supernet, self.choices = supernet, tuple(choices)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.supernet.set_active(self.choices)
        return self.supernet(x)


# --- opt-in hooks of particular methods ------------------------------------------------------------------
class GradientMatchable:
    """Opt-in hook of GM-NAS (:mod:`nastk.oneshot.gradient_matching`): which weights' gradients decide a split.

    Mix it into a supernet class (``class MySupernet(GradientMatchable, Supernet)``) to allow gradient
    matching splits; the default compares the searchable body's weights.
    """

    def matching_parameters(self, decision: int) -> List[nn.Parameter]:
        """The weights GM-NAS compares gradients of when splitting ``decision`` (methods.md 3.1).

        Every weight of the searchable body (the ``cells`` module, fixed reduction blocks included,
        when the supernet has one; stem and classifier are left out) except what ``decision``'s own
        candidates own. Supernets without a ``cells`` module compare all their weights.
        """
        body = getattr(self, "cells", None)
        pool = [p for p in body.parameters()] if isinstance(body, nn.Module) else self.weights()
        own = {id(p) for (d, _), params in self.candidate_parameters().items() if d == decision for p in params}
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in pool if id(p) not in own and id(p) not in arch]


class PerturbationSelectable:
    """Opt-in hooks of DARTS-PT (:mod:`nastk.oneshot.perturbation`): the order decisions are decided in,
    the topology step, and the option meaning "not part of the architecture".

    Mix it into a supernet class to allow ``supernet select --method pt``; the defaults decide every
    decision in one group and have no topology step.
    """

    #: the option name that means "this decision is not part of the architecture" (DARTS cells:
    #: ``none`` on an edge the genotype does not use); None when every decision is an operation
    absent_option: Optional[str] = None

    def selection_groups(self) -> List[List[int]]:
        """Decisions DARTS-PT decides one at a time, one of each group per round (default: one group).

        DARTS cells return the normal-cell and the reduction-cell edges: a round decides one of each.
        """
        return [list(range(len(self.decisions)))]

    def topology_groups(self) -> List[List[List[int]]]:
        """DARTS-PT's topology step: per round group, the nodes whose input edges compete (keep 2).

        Default: none (every decision is an operation); DARTS cells list nodes 3..5 of each cell type.
        """
        return []


def require_hooks(supernet, hooks: type, method: str) -> None:
    """A one-line :class:`CapabilityError` when ``supernet`` has not opted in to ``method``'s hooks."""
    if not isinstance(supernet, hooks):
        raise CapabilityError(f"{type(supernet).__name__} does not support {method}: mix "
                              f"nastk.supernet.{hooks.__name__} into the supernet class to opt in")
