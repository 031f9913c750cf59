"""Complexity bins over an elastic space's cost range, and the cost histogram of uniformly sampled children.

ShiftNAS (methods.md 2) starts from an imbalance: with uniform per-choice sampling a child's FLOPs are a
sum of many independent per-block costs, so they pile up in the middle of the range and the smallest and
largest children are rarely trained. :func:`make_bins` cuts the range ``[cost(smallest), cost(largest)]``
into bins, at a fixed step as the paper does (0.1 GFLOPs on ImageNet) or into a given number of equal-width
bins; :func:`uniform_histogram` counts how uniform sampling fills them. Costs come from the supernet's
analytic, differentiable :meth:`~nastk.supernet.Supernet.expected_cost` evaluated on one-hot rows, in its
units (millions of multiply-adds or parameters), so any elastic space that knows its costs works.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from nastk.errors import ConfigError

METRICS = ("flops", "params")


def one_hot_rows(supernet, path: Sequence[int], dtype=torch.float64) -> torch.Tensor:
    """The ``(decisions, options)`` one-hot weights of a path (what ``expected_cost`` reads)."""
    rows = torch.zeros(supernet.allowed.shape, dtype=dtype)
    rows[torch.arange(len(path)), torch.as_tensor(list(path), dtype=torch.long)] = 1.0
    return rows


def path_cost(supernet, path: Sequence[int], metric: str = "flops") -> float:
    """The exact cost of one child (the supernet's analytic cost of its one-hot rows)."""
    return float(supernet.expected_cost(one_hot_rows(supernet, path), metric))


def cost_range(supernet, metric: str = "flops") -> Tuple[float, float]:
    """(cost of the smallest child, cost of the largest child): the range of a nested elastic space."""
    if metric not in METRICS:
        raise ConfigError(f"unknown complexity metric {metric!r}; known: {', '.join(METRICS)}")
    if not hasattr(supernet, "expected_cost"):
        raise ConfigError(f"the {supernet.space.name} supernet has no analytic cost (expected_cost); complexity bins need one")
    low = path_cost(supernet, supernet.path_of_arch(supernet.space.smallest()), metric)
    high = path_cost(supernet, supernet.path_of_arch(supernet.space.largest()), metric)
    if not high > low:
        raise ConfigError(f"the {supernet.space.name} space has no {metric} range to bin ({low:g} .. {high:g})")
    return low, high


@dataclass(frozen=True)
class ComplexityBins:
    """Bins ``[edges[k], edges[k+1])`` (the last one closed) over a cost range; ``values[k]`` is the bin's
    target cost ``C``: its centre [R] (the paper's target is "the bin's value"; with a 0.1 G step that is
    the bin's label, e.g. 1.3 G)."""

    edges: Tuple[float, ...]
    metric: str = "flops"

    @property
    def count(self) -> int:
        return len(self.edges) - 1

    @property
    def values(self) -> np.ndarray:
        edges = np.asarray(self.edges)
        return (edges[:-1] + edges[1:]) / 2.0

    @property
    def low(self) -> float:
        return self.edges[0]

    @property
    def high(self) -> float:
        return self.edges[-1]

    def index(self, cost: float) -> int:
        """The bin holding ``cost`` (costs outside the range go to the nearest end bin)."""
        return int(np.clip(np.searchsorted(self.edges, cost, side="right") - 1, 0, self.count - 1))

    def normalise(self, cost):
        """``cost`` mapped to [0, 1] over the range (the generator's input)."""
        return (cost - self.low) / (self.high - self.low)

    def labels(self) -> List[str]:
        return [f"{a:.2f}-{b:.2f}" for a, b in zip(self.edges[:-1], self.edges[1:])]

    def to_dict(self) -> Dict:
        return {"edges": list(self.edges), "metric": self.metric}


def make_bins(supernet, metric: str = "flops", count: Optional[int] = None, step: Optional[float] = None) -> ComplexityBins:
    """Bins over the supernet's cost range: ``count`` equal-width bins, or a fixed ``step`` (the paper's way,
    in the cost's units) from the smallest child's cost, the last bin reaching past the largest child's."""
    if (count is None) == (step is None):
        raise ConfigError("complexity bins need exactly one of a bin count and a bin step")
    low, high = cost_range(supernet, metric)
    if step is not None:
        if not (isinstance(step, (int, float)) and step > 0):
            raise ConfigError(f"bin step must be a positive number, got {step!r}")
        count = max(1, int(np.ceil((high - low) / step - 1e-9)))
        if count > 1000:
            raise ConfigError(f"a bin step of {step:g} cuts the range {low:g}..{high:g} into {count} bins (at most 1000)")
        edges = low + step * np.arange(count + 1)
    else:
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
            raise ConfigError(f"bin count must be a positive integer, got {count!r}")
        edges = np.linspace(low, high, int(count) + 1)
    return ComplexityBins(tuple(float(e) for e in edges), metric)


def uniform_paths(supernet, samples: int, seed: int) -> List[Tuple[int, ...]]:
    """``samples`` children with every allowed option of every decision equally likely (SPOS)."""
    from nastk.oneshot.samplers import draw_paths

    allowed = np.asarray(supernet.allowed, dtype=float)
    return draw_paths(allowed / allowed.sum(axis=1, keepdims=True), np.random.default_rng(seed), samples)


def uniform_histogram(supernet, bins: ComplexityBins, samples: int = 10000, seed: int = 0) -> Dict:
    """How uniform per-choice sampling fills the bins: counts, shares and the costs' summary."""
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
        raise ConfigError(f"samples must be a positive integer, got {samples!r}")
    costs = np.array([path_cost(supernet, p, bins.metric) for p in uniform_paths(supernet, int(samples), seed)])
    counts = np.bincount([bins.index(c) for c in costs], minlength=bins.count)
    return {"metric": bins.metric, "edges": list(bins.edges), "counts": counts.tolist(),
            "shares": (counts / counts.sum()).tolist(), "samples": int(samples), "seed": seed,
            "mean": float(costs.mean()), "min_sampled": float(costs.min()), "max_sampled": float(costs.max()),
            "range": [bins.low, bins.high]}


def plot_histogram(histogram: Dict, path, title: str = "") -> None:
    """A bar chart of the shares per bin (matplotlib, written through nastk's one writer)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nastk.paths import save_figure

    edges = np.asarray(histogram["edges"])
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.bar(edges[:-1], np.asarray(histogram["shares"]) * 100, width=np.diff(edges), align="edge", edgecolor="black")
    unit = "MFLOPs" if histogram["metric"] == "flops" else "M params"
    ax.set_xlabel(f"{histogram['metric']} ({unit})")
    ax.set_ylabel(f"% of {histogram['samples']} uniform children")
    ax.set_title(title or "cost of uniformly sampled children per bin")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
