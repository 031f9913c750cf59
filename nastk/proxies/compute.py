"""``compute_proxies``: many proxies of one network from as few passes as possible.

Requested proxies are grouped by the pass that computes them (their spec's ``pass_name``); each pass
runs once for its whole group. Per-layer proxies come back both as a score (the sum over layers)
and as their layer-wise vector. Non-finite scores never raise: they become NaN with a warning, and
:func:`nan_last` ranks them below every finite score.
"""
from __future__ import annotations

import importlib
import time
import warnings
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from nastk.errors import ConfigError
from nastk.proxies.layers import ProxyInput
from nastk.proxies.registry import get_proxy

#: Pass name -> module whose ``run(ProxyInput, names) -> {name: float | per-layer ndarray}`` computes it.
PASS_MODULES = {
    "static": "nastk.proxies.static",
    "gradient": "nastk.proxies.gradient",
    "synflow": "nastk.proxies.synflow",
    "zen": "nastk.proxies.zen",
    "grad_sign": "nastk.proxies.gradsign",
}


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
    for name in dict.fromkeys(names):
        groups.setdefault(get_proxy(name).pass_name, []).append(name)
    return groups


def _finite(name: str, value: float) -> float:
    if not np.isfinite(value):
        warnings.warn(f"proxy {name!r} gave a non-finite value ({value}); recorded as NaN and ranked last",
                      RuntimeWarning, stacklevel=3)
        return float("nan")
    return float(value)


def compute_proxies(model: torch.nn.Module, batch: Tuple[torch.Tensor, Optional[torch.Tensor]],
                    names: Union[str, Sequence[str]], device: Union[str, torch.device] = "cpu",
                    seed: int = 0) -> ProxyScores:
    """Score ``model`` (moved to ``device``; its weights are never changed) on one batch ``(x, y)``.

    ``y`` may be None for an unlabeled batch, in which case proxies that need labels raise
    :class:`ConfigError`. ``seed`` drives the proxies that draw random numbers (zen).
    """
    names = [names] if isinstance(names, str) else list(names)
    groups = group_by_pass(names)
    x, y = batch
    if y is None:
        labelled = [n for n in names if get_proxy(n).needs_labels]
        if labelled:
            raise ConfigError(f"proxies {', '.join(labelled)} need labels, but the batch is unlabeled; "
                              "use a labeled dataset or label-free proxies")
    device = torch.device(device)
    model = model.to(device)
    inp = ProxyInput(model, x.to(device), None if y is None else y.to(device), seed)
    result = ProxyScores({}, layer_names=inp.layer_names)
    raw: Dict[str, object] = {}
    for pass_name, group in groups.items():
        started = time.perf_counter()
        raw.update(importlib.import_module(PASS_MODULES[pass_name]).run(inp, group))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        result.seconds[pass_name] = time.perf_counter() - started
    for name in names:
        value = raw[name]
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
