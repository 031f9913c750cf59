"""Plug-ins that decide *which path* and *which examples* a one-shot trainer uses (methods.md 1).

The trainer calls, for every epoch ``e`` of ``E``::

    start_epoch(e)                     both samplers (re-seed from (seed, e): exact resume)
    data.epoch_indices()               the example list of the epoch (the trainer shuffles it)
    per step: path.sample()            one option per decision (or mixture weights), same on every rank
              ... forward / backward / optimizer step ...
              path.observe_step(supernet, choices)   gradients are still in ``.grad``
              data.observe_batch(indices, logits, targets)
    end_epoch(e, E, gather)            update the distributions for epoch e + 1

``gather(obj)`` returns the list of every rank's ``obj`` (``[obj]`` in a single process), so data
samplers can merge what each rank saw. State round-trips through :meth:`state_dict` (plain lists,
numbers and tensors) for checkpoints.

* Uniform samplers are SPOS (every allowed option and every example equally likely).
* PA&DA samples ops in proportion to the gradient norm of their parameters and examples in
  proportion to the gradient norm of the loss with respect to their logits, mixed with uniform by
  ``tau_e = e / E`` and updated once per epoch, exactly as methods.md 1.2 specifies.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Sequence, Tuple

import numpy as np
import torch

from nastk.errors import ConfigError
from nastk.registry import Registry

Gather = Callable[[Any], List[Any]]


def tau_schedule(epoch: int, epochs: int, tau_max: float = 1.0) -> float:
    """PA&DA's mixing weight after epoch ``epoch`` (0-based): ``e / E``, optionally capped."""
    return min(epoch / epochs, tau_max)


def logit_gradient_norms(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-example ``||softmax(z) - onehot(y)||_2``, which is exactly ``||dCE/dz||_2``."""
    probs = torch.softmax(logits.detach().float(), dim=1)
    probs[torch.arange(len(targets), device=probs.device), targets] -= 1.0
    return probs.norm(dim=1)


def _rng(seed: int, epoch: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, stream])


# --- the epoch and state hooks both kinds of sampler share --------------------------------------------
class SamplerHooks:
    """Per-epoch update, logging and checkpoint hooks; the uniform samplers need none of them."""

    def end_epoch(self, epoch: int, epochs: int, gather: Gather = lambda obj: [obj]) -> None:
        """Update the distribution for epoch ``epoch + 1`` from what this epoch observed."""

    def summary(self) -> Dict[str, Any]:
        """What to log per epoch."""
        return {}

    def state_dict(self) -> Dict[str, Any]:
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        pass


# --- path samplers ----------------------------------------------------------------------------------
class PathSampler(SamplerHooks):
    """Draws one option per decision of a supernet for each training step."""

    name = ""

    def __init__(self, supernet, seed: int = 0, **options):
        if options:
            raise ConfigError(f"path sampler {self.name!r} has no option(s) {', '.join(options)}")
        self.allowed = np.array(supernet.allowed, dtype=bool)
        self.seed = seed
        self.rng = _rng(seed, 0, 0)

    def start_epoch(self, epoch: int) -> None:
        self.rng = _rng(self.seed, epoch, 0)

    def probabilities(self) -> np.ndarray:
        """``p[d, o]``: probability that decision ``d`` takes option ``o`` at the next step."""
        return self.allowed / self.allowed.sum(axis=1, keepdims=True)

    def sample(self) -> Tuple[int, ...]:
        return draw_paths(self.probabilities(), self.rng, 1)[0]

    def uniform_path(self, rng: np.random.Generator) -> Tuple[int, ...]:
        """A path for monitoring, uniform over what this sampler can draw (default: every allowed option)."""
        return draw_paths(self.allowed / self.allowed.sum(axis=1, keepdims=True), rng, 1)[0]

    def observe_step(self, supernet, choices: Sequence[int]) -> None:
        pass


def draw_paths(probabilities: np.ndarray, rng: np.random.Generator, count: int) -> List[Tuple[int, ...]]:
    """``count`` paths, each decision drawn independently from its row of ``probabilities``."""
    cumulative = np.cumsum(probabilities, axis=1)
    cumulative[:, -1] = 1.0
    draws = rng.random((count, len(probabilities)))
    return [tuple(int(np.searchsorted(row, u, side="right")) for row, u in zip(cumulative, us)) for us in draws]


class UniformPathSampler(PathSampler):
    """SPOS: every allowed option of every decision equally likely, always."""

    name = "uniform"


class SpacePathSampler(PathSampler):
    """Paths that are architectures of the space: ``space.sample`` mapped through ``supernet.path_of_arch``.

    For supernets whose decisions are not independent (a DARTS cell keeps exactly two inputs per
    node, so drawing every edge on its own would train subgraphs outside the space). Draws that use
    an option a few-shot sub-supernet does not allow are redrawn.
    """

    name = "space"
    MAX_DRAWS = 1000

    def __init__(self, supernet, seed: int = 0):
        super().__init__(supernet, seed)
        self.space, self.path_of_arch = supernet.space, supernet.path_of_arch

    def probabilities(self) -> np.ndarray:
        raise ConfigError("the space sampler draws whole architectures; it has no per-decision distribution")

    def sample(self) -> Tuple[int, ...]:
        return self.uniform_path(self.rng)

    def uniform_path(self, rng: np.random.Generator) -> Tuple[int, ...]:
        for _ in range(self.MAX_DRAWS):
            choices = tuple(int(c) for c in self.path_of_arch(self.space.sample(rng)))
            if all(self.allowed[d, o] for d, o in enumerate(choices)):
                return choices
        raise ConfigError(f"no architecture of {self.space.name} in {self.MAX_DRAWS} draws fits this sub-supernet's allowed options")


class PADAPathSampler(PathSampler):
    """PA&DA's op distribution: one categorical over the options, shared by all decisions.

    ``G(o)`` is an epoch-level running statistic (``G <- (G + value) / 2``, from 0, reset every
    epoch) of the summed gradient norms of the parameters of the sampled candidates of option ``o``
    (over all choice points), divided by the number of decisions that chose ``o``. At the end of
    epoch ``e``: ``p(o) = tau_e * G(o) / sum G + (1 - tau_e) / K``. Parameter-free options never get a
    non-zero ``G``, so their probability decays to ``(1 - tau_e) / K``; ``tau_max < 1`` keeps a floor.
    """

    name = "pada"

    def __init__(self, supernet, seed: int = 0, tau_max: float = 1.0):
        super().__init__(supernet, seed)
        options = {d.options for d in supernet.decisions}
        if len(options) != 1:
            raise ConfigError("the PA&DA path sampler needs every decision to have the same options")
        self.num_options = len(options.pop())
        self.tau_max = float(tau_max)
        self.op_probs = np.full(self.num_options, 1.0 / self.num_options)
        self.G = np.zeros(self.num_options)

    def probabilities(self) -> np.ndarray:
        p = self.op_probs[None, :] * self.allowed
        return p / p.sum(axis=1, keepdims=True)

    def observe_step(self, supernet, choices: Sequence[int]) -> None:
        norms, owners = [], []
        for point in supernet.choice_points():
            option = choices[point.decision]
            for param in point.candidate_parameters(option):
                if param.grad is not None:
                    norms.append(param.grad.detach().norm())
                    owners.append(option)
        if not norms:
            return
        sums = np.bincount(owners, weights=torch.stack(norms).cpu().double().numpy(), minlength=self.num_options)
        counts = np.bincount(np.asarray(choices), minlength=self.num_options)
        for option in np.flatnonzero(sums):
            self.G[option] = 0.5 * (self.G[option] + sums[option] / counts[option])

    def end_epoch(self, epoch: int, epochs: int, gather: Gather = lambda obj: [obj]) -> None:
        tau = tau_schedule(epoch, epochs, self.tau_max)
        importance = self.G / self.G.sum() if self.G.sum() > 0 else np.full(self.num_options, 1.0 / self.num_options)
        self.op_probs = tau * importance + (1.0 - tau) / self.num_options
        self.G = np.zeros(self.num_options)

    def summary(self) -> Dict[str, Any]:
        return {"op_probs": [round(float(p), 6) for p in self.op_probs]}

    def state_dict(self) -> Dict[str, Any]:
        return {"op_probs": self.op_probs.tolist(), "G": self.G.tolist()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.op_probs = np.asarray(state["op_probs"], dtype=float)
        self.G = np.asarray(state["G"], dtype=float)


# --- data samplers ----------------------------------------------------------------------------------
class DataSampler(SamplerHooks):
    """Chooses the list of training-example indices of each epoch (the trainer shuffles it)."""

    name = ""

    def __init__(self, size: int, seed: int = 0, **options):
        if options:
            raise ConfigError(f"data sampler {self.name!r} has no option(s) {', '.join(options)}")
        self.size = int(size)
        self.seed = seed

    def start_epoch(self, epoch: int) -> None:
        pass

    def epoch_indices(self) -> np.ndarray:
        return np.arange(self.size)

    def observe_batch(self, indices: np.ndarray, logits: torch.Tensor, targets: torch.Tensor) -> None:
        pass



class UniformDataSampler(DataSampler):
    """Every example once per epoch (ordinary shuffled epochs)."""

    name = "uniform"


class PADADataSampler(DataSampler):
    """PA&DA's data distribution: importance ``g_i = ||softmax(z_i) - onehot(y_i)||``, once per epoch.

    Values of an example seen several times in an epoch combine by ``new = (old + value) / 2``;
    unseen examples get 0. At the end of epoch ``e``: ``q = tau_e * g / sum g + (1 - tau_e) / N`` and
    the next epoch's list is ``N`` indices drawn with replacement from ``q``.
    """

    name = "pada"

    def __init__(self, size: int, seed: int = 0, tau_max: float = 1.0):
        super().__init__(size, seed)
        self.tau_max = float(tau_max)
        self.indices = np.arange(self.size)
        self.q = np.full(self.size, 1.0 / self.size)
        self._seen: List[Tuple[np.ndarray, np.ndarray]] = []

    def start_epoch(self, epoch: int) -> None:
        self._seen = []

    def epoch_indices(self) -> np.ndarray:
        return self.indices.copy()

    def observe_batch(self, indices: np.ndarray, logits: torch.Tensor, targets: torch.Tensor) -> None:
        norms = logit_gradient_norms(logits, targets).cpu().double().numpy()
        self._seen.append((np.asarray(indices, dtype=np.int64), norms))

    def end_epoch(self, epoch: int, epochs: int, gather: Gather = lambda obj: [obj]) -> None:
        per_rank = gather(self._seen)
        # step-major, rank-minor: the order in which one process would have seen the global batches
        steps = max(len(seen) for seen in per_rank)
        observations = [seen[step] for step in range(steps) for seen in per_rank if step < len(seen)]
        g = np.zeros(self.size)
        seen = np.zeros(self.size, dtype=bool)
        for indices, norms in observations:
            for index, value in zip(indices.tolist(), norms.tolist()):
                g[index] = 0.5 * (g[index] + value) if seen[index] else value
                seen[index] = True
        tau = tau_schedule(epoch, epochs, self.tau_max)
        importance = g / g.sum() if g.sum() > 0 else np.full(self.size, 1.0 / self.size)
        self.q = tau * importance + (1.0 - tau) / self.size
        self.indices = _rng(self.seed, epoch, 1).choice(self.size, size=self.size, replace=True, p=self.q)
        self._seen = []

    def summary(self) -> Dict[str, Any]:
        return {"data_unique_fraction": round(len(np.unique(self.indices)) / self.size, 6),
                "data_q_max_ratio": round(float(self.q.max() * self.size), 6)}

    def state_dict(self) -> Dict[str, Any]:
        return {"indices": torch.from_numpy(self.indices.astype(np.int64)), "q": torch.from_numpy(self.q)}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.indices = state["indices"].numpy().astype(np.int64)
        self.q = state["q"].numpy().astype(float)


PATH_SAMPLERS: Registry[type] = Registry("path sampler", group="nastk.samplers", subclass_of=PathSampler)
PATH_SAMPLERS.register("uniform", UniformPathSampler)
PATH_SAMPLERS.register("pada", PADAPathSampler)
PATH_SAMPLERS.register("space", SpacePathSampler)
PATH_SAMPLERS.register("fair", "nastk.oneshot.bossnas:FairPathSampler")
PATH_SAMPLERS.register("bin_uniform", "nastk.oneshot.shiftnas:BinPathSampler")
PATH_SAMPLERS.register("shifted", "nastk.oneshot.shiftnas:ShiftedBinPathSampler")
DATA_SAMPLERS: Registry[type] = Registry("data sampler", group="nastk.data_samplers", subclass_of=DataSampler)
DATA_SAMPLERS.register("uniform", UniformDataSampler)
DATA_SAMPLERS.register("pada", PADADataSampler)

#: Named (path sampler, data sampler) pairs: SPOS, PA&DA and its two ablations, SPOS over the space's own
#: architectures (DARTS cells).
SAMPLER_PRESETS: Dict[str, Tuple[str, str]] = {
    "uniform": ("uniform", "uniform"),
    "pada": ("pada", "pada"),
    "pa": ("pada", "uniform"),
    "da": ("uniform", "pada"),
    "space": ("space", "uniform"),
}


def sampler_pair(name: str) -> Tuple[str, str]:
    """(path sampler, data sampler) of a preset, or of a path sampler's own name (registered, an entry point of
    group nastk.samplers, or package.module:Class) with uniform data."""
    if name in SAMPLER_PRESETS:
        return SAMPLER_PRESETS[name]
    PATH_SAMPLERS.get(name)  # an unknown name: one line listing the known ones
    return name, "uniform"


def make_samplers(preset: str, supernet, train_size: int, seed: int, options: Dict[str, Any] = None):
    """The (path sampler, data sampler) pair of a preset; ``options`` go to both (e.g. ``tau_max``)."""
    path_name, data_name = sampler_pair(preset)
    options = dict(options or {})
    only_pada = lambda name: options if name == "pada" else {}  # noqa: E731  (uniform takes no options)
    return (PATH_SAMPLERS.get(path_name)(supernet, seed, **only_pada(path_name)),
            DATA_SAMPLERS.get(data_name)(train_size, seed, **only_pada(data_name)))
