"""The ``adversarial`` training step: hinge-loss GAN training of a GAN supernet (methods.md 5.2-5.3).

The kit's supernet is the network being searched; the step owns the other one and registers it with
:meth:`StepContext.wrap`, so both are DDP-safe (one flattened gradient all-reduce per backward):

* ``search generator`` (EAGAN stage 1, "many-to-one"): the supernet is the G supernet; D is EAGAN's fixed
  ``simple_Discriminator`` (``discriminator fixed``) or the stand-alone D of a genotype (``discriminator
  <genotype>``, used to train a final pair). A G path is drawn per window of ``n_critic`` D steps from
  the population the search sets (a fresh random genotype while ``epoch < warmup_epochs``).
* ``search discriminator`` (stage 2, "one-to-one"): the supernet is the D supernet; G is the
  stand-alone generator of ``generator_arch``. Every population slot owns a copy of G's weights: it is
  loaded at the start of its window and saved back after the window's G step (one Adam state shared,
  as in EAGAN). Default: real copies, so training copy i leaves copy j alone; the search resets them
  (weight resetting). ``alias_generator_copies true`` reproduces the released code instead: a copy
  saved after a G step is ``state_dict()`` itself, i.e. the live tensors, so all visited slots end up
  as one shared G (for comparison only).

Each ``step(batch)`` is one D step; every ``n_critic``-th also a G step on ``g_batch_factor`` times the
batch. Adam (beta1 0, beta2 0.9), no decay. ``ema`` > 0 keeps an exponential moving average of G's
parameters per G step (the final training's EMA generator).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import torch
from torch.nn import functional as F

from nastk.errors import ConfigError
from nastk.options import Bool, Float, Int, Option, Text
from nastk.oneshot.steps import StepOutput, TrainingStep

SEARCHES = ("generator", "discriminator")


def hinge_d_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    return F.relu(1.0 - real_scores).mean() + F.relu(1.0 + fake_scores).mean()


def hinge_g_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    return -fake_scores.mean()


def _variant_spaces(space):
    """The (generator space, discriminator space) of the variant ``space`` belongs to."""
    from nastk.registry import get_space

    return get_space(f"gan-g-{space.variant}"), get_space(f"gan-d-{space.variant}")


class AdversarialStep(TrainingStep):
    name = "adversarial"
    OPTIONS = (
        Option("search", Text(choices=SEARCHES), "which network the supernet is: generator (stage 1) or "
               "discriminator (stage 2)"),
        Option("discriminator", Text(), "search generator: 'fixed' (EAGAN's simple discriminator) or a "
               "discriminator genotype (a stand-alone D)"),
        Option("generator_arch", Text(), "search discriminator: the generator genotype G is built from"),
        Option("n_critic", Int(minimum=1), "D steps per G step"),
        Option("lr_g", Float(above=0), "Adam learning rate of G"),
        Option("lr_d", Float(above=0), "Adam learning rate of D"),
        Option("beta1", Float(minimum=0, below=1), "Adam beta1"),
        Option("beta2", Float(minimum=0, below=1), "Adam beta2"),
        Option("g_batch_factor", Int(minimum=1), "G step batch = factor x D batch (EAGAN: 80 / 40)"),
        Option("warmup_epochs", Int(minimum=0), "epochs in which every window draws a fresh random genotype"),
        Option("ema", Float(minimum=0, below=1), "decay of the EMA of G's parameters per G step (0: none)"),
        Option("alias_generator_copies", Bool(), "stage 2: the released code's aliasing G copies (comparison only)"),
        Option("slots", Int(minimum=1), "stage 2: population slots that own a G copy"),
        Option("other_width", Int(minimum=0), "cell width of the network the step builds (0: the variant's)"),
        Option("other_latent_per_cell", Int(minimum=0), "search discriminator: G's latent size per cell (0: the variant's)"),
    )

    def __init__(self, context, search: str = "generator", discriminator: str = "fixed", generator_arch: str = "",
                 n_critic: int = 5, lr_g: float = 2e-4, lr_d: float = 2e-4, beta1: float = 0.0, beta2: float = 0.9,
                 g_batch_factor: int = 2, warmup_epochs: int = 0, ema: float = 0.0,
                 alias_generator_copies: bool = False, slots: int = 8,
                 other_width: int = 0, other_latent_per_cell: int = 0):
        super().__init__(context)
        if search not in SEARCHES:
            raise ConfigError(f"adversarial step: search must be one of {', '.join(SEARCHES)}, got {search!r}")
        supernet = context.supernet
        if not hasattr(supernet.space, "variant"):
            raise ConfigError(f"the adversarial step trains GAN spaces (gan-g-*, gan-d-*), not {supernet.space.name!r}")
        g_space, d_space = _variant_spaces(supernet.space)
        expected = g_space if search == "generator" else d_space
        if supernet.space.name != expected.name:
            raise ConfigError(f"adversarial step with search {search}: the supernet must be of space {expected.name}, "
                              f"got {supernet.space.name}")
        self.search, self.n_critic, self.g_batch_factor = search, n_critic, g_batch_factor
        self.warmup_epochs, self.ema_decay, self.alias = warmup_epochs, ema, alias_generator_copies
        torch.manual_seed(context.config.seed + 1)
        if search == "generator":
            if discriminator == "fixed":
                other = g_space.fixed_discriminator()
            else:
                other = d_space.build(d_space.from_str(discriminator), width=other_width)
            self.discriminator = context.wrap(other)
            self.generator = context.model
            g_params, d_params = context.supernet.weights(), list(self.discriminator.parameters())
            self.latent_dim = supernet.latent_dim
        else:
            if not generator_arch:
                raise ConfigError("adversarial step with search discriminator needs generator_arch (a G genotype)")
            g = g_space.build(g_space.from_str(generator_arch), width=other_width, latent_per_cell=other_latent_per_cell)
            self.generator = context.wrap(g)
            self.discriminator = context.model
            g_params, d_params = list(self.generator.parameters()), context.supernet.weights()
            self.latent_dim = g.latent_dim
        self.g_module = context._unwrapped(self.generator)[0]
        self.g_optimizer = torch.optim.Adam(g_params, lr=lr_g, betas=(beta1, beta2))
        self.d_optimizer = torch.optim.Adam(d_params, lr=lr_d, betas=(beta1, beta2))
        self.ema = ({n: p.detach().clone() for n, p in self.g_module.named_parameters()} if ema > 0 else None)
        #: the architectures (paths of the supernet) windows draw from; set by the search
        self.population: List[List[int]] = []
        self.iteration = 0
        self.window_path: Optional[List[int]] = None
        self.window_slot: Optional[int] = None
        self._active = False
        #: stage 2: one G state per population slot (deep copies of the initial G)
        self.copies: List[Dict[str, torch.Tensor]] = []
        self.aliased: set = set()
        if search == "discriminator":
            self.copies = [self._g_state() for _ in range(slots)]

    # --- what the search calls -----------------------------------------------------------------
    def set_population(self, paths: Sequence[Sequence[int]]) -> None:
        self.population = [list(map(int, p)) for p in paths]
        self.window_path = None
        self._active = False

    def _g_state(self) -> Dict[str, torch.Tensor]:
        return {n: t.detach().clone() for n, t in self.g_module.state_dict().items()}

    def load_copy(self, slot: int) -> None:
        """Put slot ``slot``'s G copy into the live generator."""
        self.g_module.load_state_dict(self.copies[slot])

    def reset_copies(self, state: Optional[Dict[str, torch.Tensor]] = None, slots: Optional[Sequence[int]] = None) -> None:
        """Weight resetting: the copies of ``slots`` (default all) become ``state`` (default the live G)."""
        if self.alias:
            return  # the released code never resets (its reset lines are commented out)
        state = self._g_state() if state is None else {n: t.detach().clone() for n, t in state.items()}
        for slot in (range(len(self.copies)) if slots is None else slots):
            self.copies[slot] = {n: t.clone() for n, t in state.items()}
            self.aliased.discard(slot)

    def generator_state(self, slot: Optional[int] = None) -> Dict[str, torch.Tensor]:
        """G's weights: slot ``slot``'s copy (stage 2), the EMA (if kept), or the live ones."""
        if slot is not None:
            return {n: t.detach().clone() for n, t in self.copies[slot].items()}
        return {n: t.detach().clone() for n, t in self.g_module.state_dict().items()}

    def ema_state(self) -> Optional[Dict[str, torch.Tensor]]:
        return None if self.ema is None else {n: t.clone() for n, t in self.ema.items()}

    # --- one batch -----------------------------------------------------------------------------
    def start_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self._active = False  # the search may have scored other paths between epochs
        self.noise = self.context.torch_generator(10)
        self.rng = self.context.rng(11)

    def _draw_window(self) -> None:
        supernet = self.context.supernet
        warm = self.epoch < self.warmup_epochs or not self.population
        if warm:
            self.window_slot = None
            self.window_path = list(supernet.path_of_arch(supernet.space.sample(self.rng)))
        else:
            self.window_slot = int(self.rng.integers(len(self.population)))
            self.window_path = self.population[self.window_slot]
        if self.search == "discriminator" and self.window_slot is not None and self.window_slot < len(self.copies):
            self.load_copy(self.window_slot)

    def _latent(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.latent_dim, generator=self.noise).to(self.context.device)

    def step(self, batch) -> StepOutput:
        context = self.context
        if self.iteration % self.n_critic == 0 or self.window_path is None:
            previous = self.window_path
            self._draw_window()
            self._active = self._active and self.window_path == previous
        if not self._active:  # set_path once per window (and after anything else moved the path)
            context.activate(self.window_path)
            self._active = True
        real, _ = context.examples(batch.indices)
        g, d = self.generator, self.discriminator
        with torch.no_grad():
            fake = context.forward(self._latent(len(real)), model=g)
        d_loss = hinge_d_loss(context.forward(real, model=d), context.forward(fake, model=d))
        # the optimizers hold exactly the models' trainable weights: clearing through them is
        # context.zero_grad(model) without walking the supernet's module tree every step
        self.d_optimizer.zero_grad(set_to_none=True)
        context.backward(d_loss, model=d)
        self.d_optimizer.step()
        metrics = {"d_loss": float(d_loss.detach())}
        self.iteration += 1
        if self.iteration % self.n_critic == 0:
            fake = context.forward(self._latent(len(real) * self.g_batch_factor), model=g)
            g_loss = hinge_g_loss(context.forward(fake, model=d))
            self.g_optimizer.zero_grad(set_to_none=True)
            context.backward(g_loss, model=g)
            self.g_optimizer.step()
            metrics["g_loss"] = float(g_loss.detach())
            self._after_g_step()
        return StepOutput(d_loss.detach(), path=self.window_path, metrics=metrics)

    def _after_g_step(self) -> None:
        if self.ema is not None:
            with torch.no_grad():
                for name, p in self.g_module.named_parameters():
                    self.ema[name].mul_(self.ema_decay).add_(p.detach(), alpha=1 - self.ema_decay)
        if self.search == "discriminator" and self.window_slot is not None and self.window_slot < len(self.copies):
            if self.alias:  # the released code: the live tensors themselves
                self.copies[self.window_slot] = self.g_module.state_dict()
                self.aliased.add(self.window_slot)
            else:
                self.copies[self.window_slot] = self._g_state()

    def lr(self) -> float:
        return self.g_optimizer.param_groups[0]["lr"]

    # --- exact resume ----------------------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        other = self.discriminator if self.search == "generator" else self.generator
        return {"other": self.context._unwrapped(other)[0].state_dict(), "g_optimizer": self.g_optimizer.state_dict(),
                "d_optimizer": self.d_optimizer.state_dict(), "population": self.population,
                "iteration": self.iteration, "window_path": self.window_path, "window_slot": self.window_slot,
                "copies": self.copies, "aliased": sorted(self.aliased), "ema": self.ema}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        other = self.discriminator if self.search == "generator" else self.generator
        self.context._unwrapped(other)[0].load_state_dict(state["other"])
        self.g_optimizer.load_state_dict(state["g_optimizer"])
        self.d_optimizer.load_state_dict(state["d_optimizer"])
        self.population = [list(p) for p in state["population"]]
        self.iteration = int(state["iteration"])
        self.window_path = None if state["window_path"] is None else list(state["window_path"])
        self.window_slot = state["window_slot"]
        self.copies = [dict(c) for c in state["copies"]]
        self.aliased = set(state["aliased"])
        live = self.g_module.state_dict()
        for slot in self.aliased:  # aliasing survives a resume: those slots are the live tensors again
            self.copies[slot] = live
        if state["ema"] is not None:
            self.ema = {n: t.clone() for n, t in state["ema"].items()}
