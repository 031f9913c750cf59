"""Architecture selection: from a trained supernet with architecture parameters to one architecture.

``argmax`` is DARTS' own rule: each decision's allowed option of largest mixture weight, through the
supernet's :meth:`~nastk.supernet.Supernet.discretize` (spaces such as DARTS cells add their
topology rule there). Perturbation-based selection (DARTS-PT) tunes the supernet between
decisions, so it is a run of its own: :mod:`nastk.oneshot.perturbation`.
Every selection reports the share of parameter-free operations it picked, the usual symptom of
DARTS' collapse (methods.md 4.4).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Sequence

import torch

from nastk.architecture import Architecture
from nastk.errors import CapabilityError, PluginError
from nastk.registry import Registry, describe_object
from nastk.supernet import Supernet


@dataclass
class Selection:
    arch: Architecture
    method: str
    choices: Sequence[int]
    #: the mixture weights the selection read, rounded, one row per decision
    weights: List[List[float]] = field(default_factory=list)
    parameter_free_share: float = float("nan")
    details: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return {"arch": self.arch.to_str(), "method": self.method, "choices": [int(c) for c in self.choices],
                "parameter_free_share": self.parameter_free_share, "weights": self.weights, **self.details}


def parameter_free_share(supernet: Supernet, choices: Sequence[int]) -> float:
    """Share of the architecture's operations that own no parameters (none, skip, pooling).

    An option is parameter-free when no choice point gives it parameters. Decisions that take the
    supernet's :attr:`~nastk.supernet.PerturbationSelectable.absent_option` (DARTS: ``none`` = the edge is not in
    the cell) are not operations of the architecture and are not counted.
    """
    owned = supernet.candidate_parameters()
    counted = [(d, o) for d, o in enumerate(choices)
               if supernet.decisions[d].options[o] != getattr(supernet, "absent_option", None)]
    if not counted:
        return float("nan")
    return sum(not owned.get((d, o)) for d, o in counted) / len(counted)


def select_argmax(supernet: Supernet, weighting: str = "softmax") -> Selection:
    if not supernet.arch_parameters():
        raise CapabilityError("this supernet has no architecture parameters (trained with a single-path step?); "
                              "argmax selection needs a step such as darts")
    weights = supernet.mixture_weights(weighting=weighting).detach().cpu()
    choices = supernet.discretize(weights)
    return Selection(supernet.arch_of_path(choices), "argmax", choices,
                     [[round(float(w), 6) for w in row] for row in weights], parameter_free_share(supernet, choices))


def _is_selector(obj) -> bool:
    """A Python function (or callable object) that takes the supernet: ``selector(supernet, **options)``."""
    if inspect.isclass(obj) or inspect.isbuiltin(obj) or inspect.ismodule(obj) or not callable(obj):
        return False
    try:
        inspect.signature(obj).bind(None)
    except (TypeError, ValueError):
        return False
    return True


SELECTORS: Registry[Callable[..., Selection]] = Registry(
    "selection method", group="nastk.selectors",
    check=(_is_selector, "a selection function selector(supernet, **options) -> Selection"))
SELECTORS.register("argmax", select_argmax)


def select(supernet: Supernet, method: str = "argmax", **options) -> Selection:
    selector = SELECTORS.get(method)
    with torch.no_grad():
        selection = selector(supernet, **options)
    if not isinstance(selection, Selection):
        raise PluginError(f"selection method {method!r} returned {describe_object(selection)}, not a "
                          f"nastk.oneshot.selection.Selection")
    return selection
