"""ShiftNAS (ICCV 2023; methods.md 2): complexity-bin sampling with a learned bin distribution ("probability
shift") and an architecture generator trained jointly with an elastic supernet. Experimental and partly
reconstructed: the paper's appendix and code are not available; every design choice it does not state is
marked [R] here, in methods.md 2.1 and in the results.

Plug-ins of the one-shot kit:

* path samplers ``bin_uniform`` (:class:`BinPathSampler`: a complexity bin drawn uniformly, then a child of
  that bin, by rejection from uniform per-choice draws [R]) and ``shifted`` (:class:`ShiftedBinPathSampler`:
  the same with learnable bin logits ``B``). With ``--step single_path`` they train bin-balanced children
  without a generator; the ``shiftnas`` step draws the bin by Gumbel-softmax on ``B`` instead.
* the training step ``shiftnas`` (:class:`ShiftNASStep`): per batch one bin (Gumbel-softmax on ``B``, target
  ``C`` = the bin's value), the generator's child for ``C`` executed through the matrix mapping
  (:mod:`nastk.oneshot.generator`), ``L = L_task + lambda (F - C)^2`` back-propagated into the supernet weights
  (SGD) and the generator (Adam 1e-3); ``B`` is frozen there. After ``warmup_fraction`` of the epochs, every
  ``shift_every`` iterations, ``B`` takes one Adam step on Eq. 8: ``shift_draws`` Gumbel bin draws ``y``, the
  generator's child for each, its loss on this step's held-out batch at the current weights and at the weights
  of the previous B update, and ``min_B mean y_k (L_t - L_{t-1})`` -- a bin whose held-out loss fell gains
  probability. With ``--sampler bin_uniform`` B never moves (the paper's ablation: uniform bins + generator).

DDP: bins and generator noise come from seeded streams (identical on every rank), the generator is
registered with the context (its gradients are averaged with the supernet's), held-out losses are averaged
over ranks before the B update, so the supernet, the generator and ``B`` stay identical replicas.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from nastk.devices import model_device
from nastk.errors import CapabilityError, ConfigError
from nastk.oneshot.complexity import ComplexityBins, make_bins, path_cost
from nastk.oneshot.generator import ArchitectureGenerator, MaskMapping, fit_resource, gumbel_softmax, resource_loss
from nastk.oneshot.samplers import PathSampler, draw_paths
from nastk.oneshot.steps import Batch, StepOutput, TrainingStep, clip, weight_optimizer
from nastk.options import Bool, Float, Int, Option, Text

#: the step's random streams (StepContext: 0-9 are the loop's)
NOISE_STREAM = 21


# --- samplers ------------------------------------------------------------------------------------------
class BinPathSampler(PathSampler):
    """Complexity bins with a bin distribution ``softmax(B)``, ``B = 0`` (uniform over bins) and never updated.

    :meth:`configure` sets the bins (the ``shiftnas`` step passes its options; a ``single_path`` run gets 8
    equal-width FLOPs bins, methods.md 2.3). :meth:`sample` draws a bin, then a child of that bin.
    """

    name = "bin_uniform"
    #: whether the step updates ``B`` (Eq. 8)
    learns = False
    #: uniform draws tried per child before a bin is declared empty
    MAX_DRAWS = 200_000

    def __init__(self, supernet, seed: int = 0):
        super().__init__(supernet, seed)
        self.supernet = supernet
        self.configure()

    def configure(self, bins: int = 8, bin_step: float = 0.0, metric: str = "flops", shift_lr: float = 1e-3) -> None:
        """Bins (``bin_step`` > 0: the paper's fixed step in the cost's units, else ``bins`` equal-width bins)
        and the optimizer of ``B`` (Adam, methods.md 2.1 item 7)."""
        self.bins: ComplexityBins = make_bins(self.supernet, metric, count=None if bin_step else int(bins),
                                              step=float(bin_step) if bin_step else None)
        self.logits = torch.zeros(self.bins.count, dtype=torch.float64, requires_grad=True)
        self.optimizer = torch.optim.Adam([self.logits], lr=shift_lr)
        self.updates = 0
        #: (iteration, bin probabilities) after every update of B
        self.trajectory: List[Tuple[int, List[float]]] = []
        self._cost_cache: Dict[Tuple[int, ...], float] = {}

    def bin_probabilities(self) -> np.ndarray:
        return torch.softmax(self.logits.detach(), 0).numpy()

    def draw_bin(self, generator: torch.Generator, tau: float = 1.0) -> Tuple[int, torch.Tensor]:
        """One bin by straight-through Gumbel-softmax on ``B``: (index, one-hot ``y`` carrying ``dy/dB``)."""
        y, index = gumbel_softmax(self.logits, tau, generator)
        return int(index), y

    def sample(self) -> Tuple[int, ...]:
        k = int(self.rng.choice(self.bins.count, p=self.bin_probabilities()))
        return self.path_in_bin(k, self.rng)

    def cost(self, path: Sequence[int]) -> float:
        key = tuple(int(o) for o in path)
        if key not in self._cost_cache:
            self._cost_cache[key] = path_cost(self.supernet, key, self.bins.metric)
        return self._cost_cache[key]

    def path_in_bin(self, k: int, rng: np.random.Generator) -> Tuple[int, ...]:
        """A uniformly random child among those of bin ``k`` (rejection from uniform per-choice draws) [R]."""
        probabilities = self.allowed / self.allowed.sum(axis=1, keepdims=True)
        drawn = 0
        while drawn < self.MAX_DRAWS:
            for path in draw_paths(probabilities, rng, 256):
                if self.bins.index(self.cost(path)) == k:
                    return path
            drawn += 256
        raise ConfigError(f"no child of {self.supernet.space.name} fell into {self.bins.metric} bin {k} "
                          f"({self.bins.labels()[k]}) in {self.MAX_DRAWS} uniform draws; use fewer bins")

    def shift(self, draws: Sequence[Tuple[int, torch.Tensor]], deltas: Sequence[float], iteration: int) -> None:
        """One Adam step of ``B`` on Eq. 8: minimise ``mean_i y_i[k_i] * delta_i`` (``delta``: held-out loss now
        minus at the previous update) -- only for samplers that learn."""
        if not self.learns:
            return
        self.optimizer.zero_grad(set_to_none=True)
        objective = sum(y[k] * float(delta) for (k, y), delta in zip(draws, deltas)) / len(draws)
        objective.backward()
        self.optimizer.step()
        self.updates += 1
        self.trajectory.append((int(iteration), [round(float(p), 6) for p in self.bin_probabilities()]))

    def summary(self) -> Dict[str, Any]:
        return {"bin_probs": [round(float(p), 6) for p in self.bin_probabilities()], "bin_updates": self.updates}

    def state_dict(self) -> Dict[str, Any]:
        return {"edges": list(self.bins.edges), "logits": self.logits.detach().clone(),
                "optimizer": self.optimizer.state_dict(), "updates": self.updates, "trajectory": list(self.trajectory)}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if [round(e, 9) for e in state["edges"]] != [round(e, 9) for e in self.bins.edges]:
            raise ConfigError("the checkpoint's complexity bins differ from this run's (bins / bin_step / metric changed)")
        with torch.no_grad():
            self.logits.copy_(state["logits"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.updates, self.trajectory = int(state["updates"]), [tuple(t) for t in state["trajectory"]]


class ShiftedBinPathSampler(BinPathSampler):
    """:class:`BinPathSampler` whose ``B`` the ``shiftnas`` step learns (the probability shift)."""

    name = "shifted"
    learns = True


# --- the training step -------------------------------------------------------------------------------------
class ShiftNASStep(TrainingStep):
    """ShiftNAS' joint supernet + generator training with the probability shift (see the module docstring)."""

    name = "shiftnas"
    held_out_fraction = 0.2
    OPTIONS = (
        Option("bins", Int(minimum=1, maximum=1000), "equal-width complexity bins over the cost range (ignored with bin_step)"),
        Option("bin_step", Float(minimum=0), "fixed bin width in the cost's units (paper: 0.1 GFLOPs); 0 = use bins"),
        Option("metric", Text(choices=("flops", "params")), "the complexity the bins cut: flops or params"),
        Option("generator", Bool(), "train the architecture generator (false: a random child of the drawn bin)"),
        Option("generator_hidden", Int(minimum=1, maximum=4096), "LSTM hidden units of the generator (paper 64)"),
        Option("generator_lr", Float(above=0), "Adam learning rate of the generator [R]"),
        Option("resource_weight", Float(minimum=0), "lambda of the squared resource loss (F - C)^2 [R]"),
        Option("gumbel_tau", Float(above=0), "Gumbel-softmax temperature of bins and generator [R]"),
        Option("shift_lr", Float(above=0), "Adam learning rate of the bin logits B (paper 1e-3)"),
        Option("shift_every", Int(minimum=1), "iterations between B updates (paper 100)"),
        Option("shift_draws", Int(minimum=1, maximum=1000), "Gumbel bin draws averaged per B update [R]"),
        Option("warmup_fraction", Float(minimum=0, below=1), "share of the epochs before B learns (paper 50 epochs)"),
        Option("generator_warmup", Int(minimum=0), "resource-loss-only generator steps before training [R] (paper: none)"))
    RECIPE = {"sampler": "shifted"}

    def __init__(self, context, bins: int = 8, bin_step: float = 0.0, metric: str = "flops", generator: bool = True,
                 generator_hidden: int = 64, generator_lr: float = 1e-3, resource_weight: float = 1.0,
                 gumbel_tau: float = 1.0, shift_lr: float = 1e-3, shift_every: int = 20, shift_draws: int = 4,
                 warmup_fraction: float = 1 / 3, generator_warmup: int = 0, **options):
        super().__init__(context, **options)
        sampler = context.path_sampler
        if not isinstance(sampler, BinPathSampler):
            raise ConfigError(f"the shiftnas step draws complexity bins: use --sampler shifted (learned bins) or "
                              f"bin_uniform (uniform bins), not {context.config.sampler!r}")
        for name, value in (("bins", bins), ("generator_hidden", generator_hidden), ("shift_every", shift_every),
                            ("shift_draws", shift_draws)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"shiftnas option {name} must be a positive integer, got {value!r}")
        for name, value in (("generator_lr", generator_lr), ("gumbel_tau", gumbel_tau), ("shift_lr", shift_lr)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"shiftnas option {name} must be a positive number, got {value!r}")
        if not 0 <= float(warmup_fraction) < 1 or not float(resource_weight) >= 0 or not float(bin_step) >= 0:
            raise ConfigError("shiftnas options: warmup_fraction must be in [0, 1), resource_weight and bin_step at least 0")
        sampler.configure(bins, bin_step, metric, shift_lr)
        self.sampler, self.bins = sampler, sampler.bins
        self.metric, self.tau, self.resource_weight = metric, float(gumbel_tau), float(resource_weight)
        self.shift_every, self.shift_draws = int(shift_every), int(shift_draws)
        self.warmup_epochs = int(np.ceil(float(warmup_fraction) * context.config.epochs))
        supernet = context.supernet
        self.optimizer, self.scheduler = weight_optimizer(context, supernet.weights())
        self.generator: Optional[ArchitectureGenerator] = None
        if generator:
            self.mapping = MaskMapping(supernet)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(context.config.seed + 7919)
                self.generator = ArchitectureGenerator.for_supernet(supernet, int(generator_hidden))
            context.wrap(self.generator)  # on the device; its gradients are averaged with the supernet's
            self.generator_optimizer = torch.optim.Adam(self.generator.parameters(), lr=generator_lr)
        self.generator_warmup = int(generator_warmup)
        if self.generator_warmup < 0:
            raise ConfigError(f"shiftnas option generator_warmup must be at least 0, got {generator_warmup!r}")
        self.iteration = 0
        self.epoch = 0
        self.snapshot: Optional[Dict[str, torch.Tensor]] = None
        self.noise = context.torch_generator(NOISE_STREAM, 0)
        self.path_rng = context.rng(NOISE_STREAM + 1, 0)

    @property
    def needs_held_out(self) -> bool:
        """Eq. 8 reads held-out losses, unless the bins stay uniform"""
        return self.sampler.learns

    # --- children ----------------------------------------------------------------------------------
    def child(self, target: float, noise: bool = True) -> Tuple[Tuple[int, ...], Optional[torch.Tensor]]:
        """(path, straight-through one-hots or None) of a child for target cost ``target``."""
        if self.generator is None:
            return self.sampler.path_in_bin(self.bins.index(target), self.path_rng), None
        target_in = torch.tensor([self.bins.normalise(target)], device=model_device(self.generator))
        rows, index = self.generator(target_in, self.tau, self.noise, noise)
        return tuple(int(i) for i in index[0]), rows[0]

    def generate(self, target: float) -> Tuple[int, ...]:
        """The generator's most probable child for target cost ``target`` (deployment, methods.md 2.1 item 8)."""
        if self.generator is None:
            raise CapabilityError("this shiftnas run trained no generator (generator false)")
        return self.generator.argmax_path(self.bins.normalise(float(target)))

    # --- the step ------------------------------------------------------------------------------------
    def start_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.sampler.start_epoch(epoch)
        self.noise = self.context.torch_generator(NOISE_STREAM, epoch)
        self.path_rng = self.context.rng(NOISE_STREAM + 1, epoch)

    def step(self, batch: Batch) -> StepOutput:
        context = self.context
        if self.iteration == 0 and self.generator is not None and self.generator_warmup:
            fit_resource(self.generator, context.supernet, self.bins.low, self.bins.high, self.generator_warmup,
                         self.generator_optimizer.param_groups[0]["lr"], batch=8,
                         noise=context.torch_generator(NOISE_STREAM + 2, 0), metric=self.metric)
        if self.sampler.learns and self.epoch >= self.warmup_epochs and self.iteration % self.shift_every == 0:
            self.shift(batch)
        self.iteration += 1
        with torch.no_grad():
            k, _ = self.sampler.draw_bin(self.noise, self.tau)  # B is frozen while weights and generator learn
        target = float(self.bins.values[k])
        path, rows = self.child(target)
        context.zero_grad()
        metrics = {"target": target, "child_cost": self.sampler.cost(path)}
        metrics["cost_gap"] = abs(metrics["child_cost"] - target) / target
        if rows is None:
            logits, targets, loss = context.forward_backward(batch.indices, batch.augment, path=path)
        else:
            leaf = rows.detach().to(context.device).requires_grad_(True)
            with self.mapping.applied(leaf):
                logits, targets, loss = context.forward_backward(batch.indices, batch.augment,
                                                                 path=self.mapping.execution_path(path), last=False)
            penalty = self.resource_weight * resource_loss(context.supernet, leaf, torch.tensor(target, device=leaf.device), self.metric).sum()
            penalty.backward()
            rows.backward(leaf.grad.to(rows.device))  # the task and resource gradients, into the generator
            context.sync_gradients()
            metrics["resource_loss"] = float(penalty.detach())
            self.generator_optimizer.step()
        clip(context.supernet.weights(), context.config.grad_clip)
        self.optimizer.step()
        return StepOutput(loss, logits, targets, path=path, metrics=metrics)

    def shift(self, batch: Batch) -> None:
        """Eq. 8 on this step's held-out batch; the first call only takes the weight snapshot ``w_0``."""
        supernet = self.context.supernet
        current = {name: value.detach().clone() for name, value in supernet.state_dict().items()}
        if self.snapshot is not None:
            x, y = self.context.examples(batch.held_out, batch.held_out_augment, held_out=True)
            draws = [self.sampler.draw_bin(self.noise, self.tau) for _ in range(self.shift_draws)]
            with torch.no_grad():
                paths = [self.child(float(self.bins.values[k]))[0] for k, _ in draws]
            losses = torch.stack([self._losses(paths, x, y)])
            supernet.load_state_dict(self.snapshot)
            previous = torch.stack([self._losses(paths, x, y)])
            supernet.load_state_dict(current)  # the weights and BN buffers as they were
            now, before = self.context.dist.all_reduce_mean([losses[0], previous[0]])
            self.sampler.shift(draws, (now - before).tolist(), self.iteration)
        self.snapshot = current

    @torch.no_grad()
    def _losses(self, paths, x, y) -> torch.Tensor:
        """Held-out losses of ``paths`` (bare supernet, batch statistics; no gradient, no DDP)."""
        supernet = self.context.supernet
        out = []
        for path in paths:
            supernet.set_active(path)
            out.append(self.context.loss(supernet(x), y))
        return torch.stack(out).double()

    def end_epoch(self, epoch: int, epochs: int, gather) -> None:
        self.scheduler.step()
        checksum = float(sum(p.detach().double().sum() + p.detach().double().abs().sum()
                             for p in self.step_parameters()))
        sums = gather(checksum)
        self._spread = max(sums) - min(sums)

    def step_parameters(self) -> List[torch.Tensor]:
        """What the step learns beside the supernet: the generator's weights and the bin logits."""
        return ([] if self.generator is None else list(self.generator.parameters())) + [self.sampler.logits]

    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def summary(self) -> Dict[str, Any]:
        return {**self.sampler.summary(), "step_replica_spread": getattr(self, "_spread", 0.0)}

    def state_dict(self) -> Dict[str, Any]:
        state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                 "path_sampler": self.sampler.state_dict(), "iteration": self.iteration, "snapshot": self.snapshot}
        if self.generator is not None:
            state.update(generator=self.generator.state_dict(), generator_optimizer=self.generator_optimizer.state_dict())
        return state

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.sampler.load_state_dict(state["path_sampler"])
        self.iteration, self.snapshot = int(state["iteration"]), state["snapshot"]
        if (self.generator is None) != ("generator" not in state):
            raise ConfigError("the checkpoint was trained with a different generator setting")
        if self.generator is not None:
            self.generator.load_state_dict(state["generator"])
            self.generator_optimizer.load_state_dict(state["generator_optimizer"])


# --- deployment ----------------------------------------------------------------------------------------------
def load_generator(run_dir, device=None):
    """(supernet, generator, bins) of a finished ``shiftnas`` run folder: the trained weights, the generator and
    the run's complexity bins, ready for :func:`generated_child`, on ``device`` (``None``: torch's default device)."""
    from pathlib import Path

    from nastk.devices import resolve_device
    from nastk.errors import RunError
    from nastk.oneshot.complexity import ComplexityBins
    from nastk.oneshot.trainer import CHECKPOINT, load_trained, read_checkpoint

    device = resolve_device(device)
    supernet, config, _ = load_trained(run_dir, device)
    state = read_checkpoint(Path(run_dir) / CHECKPOINT, device)["step"]
    if config.step != "shiftnas" or "generator" not in state:
        raise RunError(f"{run_dir} is not a shiftnas run with an architecture generator (step {config.step!r})")
    options = dict(config.step_options)
    generator = ArchitectureGenerator.for_supernet(supernet, int(options.get("generator_hidden", 64))).to(device)
    generator.load_state_dict(state["generator"])
    bins = ComplexityBins(tuple(state["path_sampler"]["edges"]), options.get("metric", "flops"))
    return supernet, generator.eval(), bins


def generated_child(supernet, generator: ArchitectureGenerator, bins: ComplexityBins, budget: float):
    """(architecture, its cost, the plain child network with inherited weights) the generator deploys for
    ``budget`` (in the bins' units): each decision's most probable option, extracted by the space (no search,
    no retraining; recalibrate its BN before scoring, [R])."""
    if not isinstance(budget, (int, float)) or isinstance(budget, bool) or not budget > 0:
        raise ConfigError(f"a budget must be a positive number, got {budget!r}")
    path = generator.argmax_path(bins.normalise(float(budget)))
    arch = supernet.arch_of_path(path)
    return arch, path_cost(supernet, path, bins.metric), supernet.extract(arch)
