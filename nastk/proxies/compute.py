"""``compute_proxies``: many proxies of one network from as few passes as possible.

Requested proxies are grouped by the pass that computes them (their spec's ``pass_name``, a name of
:data:`~nastk.proxies.registry.PASSES`); each pass runs once for its whole group, computing the union
of the group's ``needs``, and each proxy function then reads the pass's result. Per-layer proxies
come back both as a score (the sum over layers) and as their layer-wise vector. Non-finite scores
never raise: they become NaN with a warning, and :func:`nan_last` ranks them below every finite score.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Dict, FrozenSet, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from nastk.devices import resolve_device
from nastk.errors import ConfigError, PluginError, UnknownNameError
from nastk.proxies.layers import ProxyInput
from nastk.proxies.registry import PASSES, ProxySpec, get_proxy


@dataclass
class ProxyScores:
    """``scores[name]``: the network's value; ``layerwise[name]``: per Conv/Linear layer, in
    ``layer_names`` order (only for proxies that are sums over layers); ``seconds[pass]``: wall time."""

    scores: Dict[str, float]
    layerwise: Dict[str, np.ndarray] = field(default_factory=dict)
    layer_names: List[str] = field(default_factory=list)
    seconds: Dict[str, float] = field(default_factory=dict)

    @property
    def total_seconds(self) -> float:
        return float(sum(self.seconds.values()))


def group_by_pass(names: Sequence[str]) -> Dict[str, List[str]]:
    """Requested proxies grouped by the pass that computes them (unknown names raise)."""
    groups: Dict[str, List[str]] = {}
    for name in dict.fromkeys(names):  # in order of first request
        groups.setdefault(get_proxy(name).pass_name, []).append(name)
    return groups


def _finite(name: str, value: float) -> float:
    if not np.isfinite(value):
        warnings.warn(f"proxy {name!r} gave a non-finite value ({value}); recorded as NaN and ranked last",
                      RuntimeWarning, stacklevel=3)
        return float("nan")
    return float(value)


@dataclass
class ProxyPlan:
    """How requested proxies are computed: their specs and functions, grouped by pass (in order of
    first request), each pass's class and the union of its group's ``needs``."""

    specs: Dict[str, ProxySpec]
    functions: Dict[str, Callable]
    groups: Dict[str, List[str]]
    passes: Dict[str, type]
    needs: Dict[str, FrozenSet[str]]


def plan_proxies(names: Sequence[str]) -> ProxyPlan:
    """The plan for ``names``, checked before any work: an unknown proxy or pass, a proxy function that
    cannot be loaded or a need its pass does not offer is one line (:class:`~nastk.errors.NastkError`)."""
    specs = {name: get_proxy(name) for name in dict.fromkeys(names)}
    functions = {name: spec.resolve_function() for name, spec in specs.items()}
    groups = group_by_pass(names)
    passes: Dict[str, type] = {}
    for pass_name, group in groups.items():
        try:
            passes[pass_name] = PASSES.get(pass_name)
        except PluginError:
            raise
        except UnknownNameError:
            raise ConfigError(f"proxy {group[0]!r} is computed by pass {pass_name!r}, which is not registered; "
                              f"known passes: {', '.join(PASSES.names())}") from None
    needs = {pass_name: _pass_needs(passes[pass_name], pass_name, {n: specs[n] for n in group})
             for pass_name, group in groups.items()}
    return ProxyPlan(specs, functions, groups, passes, needs)


def _pass_needs(pass_class: type, pass_name: str, specs: Dict[str, ProxySpec]) -> FrozenSet[str]:
    """The optional pieces a pass must compute for ``specs``; a need the pass does not offer is one line."""
    needs = frozenset(need for spec in specs.values() for need in spec.needs)
    for name, spec in specs.items():
        unknown = [need for need in spec.needs if need not in pass_class.OPTIONAL]
        if unknown:
            offered = ", ".join(pass_class.OPTIONAL) or "nothing optional"
            raise ConfigError(f"proxy {name!r} needs {', '.join(map(repr, unknown))}, which pass {pass_name!r} "
                              f"does not compute (it offers: {offered})")
    return needs


def _checked_value(name: str, spec: ProxySpec, value, layers: int) -> Union[float, np.ndarray]:
    """A proxy function's return value, or one :class:`PluginError` line saying what is wrong with it."""
    where = f"proxy {name!r}"
    if isinstance(value, np.ndarray):
        if value.shape != (layers,) or not np.issubdtype(value.dtype, np.number):
            raise PluginError(f"{where} returned an array of shape {value.shape} ({value.dtype}); a per-layer "
                              f"proxy returns a numeric vector of one value per Conv/Linear layer ({layers})")
        return value.astype(np.float64, copy=False)
    if spec.layerwise:
        raise PluginError(f"{where} is declared layerwise but returned {type(value).__name__}, not a per-layer "
                          f"numpy array (use nastk.proxies.per_layer)")
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        hint = " (use float(...) or nastk.proxies.per_layer)" if torch.is_tensor(value) else ""
        raise PluginError(f"{where} returned {type(value).__name__}; a proxy function returns a float or a "
                          f"per-layer numpy array{hint}")
    return value


def compute_proxies(model: torch.nn.Module, batch: Tuple[torch.Tensor, Optional[torch.Tensor]],
                    names: Union[str, Sequence[str]], device: Union[str, torch.device, None] = None,
                    seed: int = 0, loss: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None
                    ) -> ProxyScores:
    """Score ``model`` (its weights are never changed) on one batch ``(x, y)``.

    ``device``: where to score (the model is moved there); None scores where the model's parameters
    are. ``y`` may be None for an unlabeled batch, in which case proxies that need labels raise
    :class:`ConfigError`. ``seed`` drives the proxies that draw random numbers (zen). ``loss``:
    ``loss(logits, y) -> scalar`` of the gradient pass (default cross-entropy; e.g. MSE for a
    regression or super-resolution network).
    """
    names = [names] if isinstance(names, str) else list(names)
    plan = plan_proxies(names)
    x, y = batch
    if y is None:
        labelled = [n for n in names if plan.specs[n].needs_labels]
        if labelled:
            raise ConfigError(f"proxies {', '.join(labelled)} need labels, but the batch is unlabeled; "
                              "use a labeled dataset or label-free proxies")
    device = resolve_device(device, model)
    model = model.to(device)
    inp = ProxyInput(model, x.to(device), None if y is None else y.to(device), seed, loss)
    result = ProxyScores({}, layer_names=inp.layer_names)
    raw: Dict[str, object] = {}
    for pass_name, group in plan.groups.items():
        started = time.perf_counter()
        computed = plan.passes[pass_name].run(inp, plan.needs[pass_name])
        with torch.no_grad():  # proxy functions read the pass; any gradient work belongs to the pass
            for name in group:
                raw[name] = plan.functions[name](computed)
        del computed
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        result.seconds[pass_name] = time.perf_counter() - started
    for name in names:
        value = _checked_value(name, plan.specs[name], raw[name], len(result.layer_names))
        if isinstance(value, np.ndarray):
            result.layerwise[name] = value
            value = value.sum()
        result.scores[name] = _finite(name, value)
    return result


def nan_last(scores: Sequence[float], higher_is_better: bool = True) -> np.ndarray:
    """Scores oriented so that larger is better, with NaN replaced by a value below every finite one.

    Rank correlations and top-k selections on the result rank failed (NaN) architectures last.
    """
    values = np.asarray(scores, dtype=float) * (1.0 if higher_is_better else -1.0)
    finite = np.isfinite(values)
    floor = values[finite].min() - 1.0 if finite.any() else 0.0
    return np.where(finite, values, floor)
