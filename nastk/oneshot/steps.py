"""Training steps: what a one-shot method does with one batch (the loop is :mod:`nastk.oneshot.trainer`).

The loop owns epochs, data, augmentation, checkpoints, exact resume, metrics, DDP and progress; a
step owns its optimizers, schedulers, samplers and architecture parameters, and one call of
:meth:`TrainingStep.step` per batch. A step gets a :class:`~nastk.oneshot.context.StepContext` (data,
wrapped models, seeded streams and the DDP-safe ``zero_grad`` / ``forward`` / ``backward``) and its
own options, so a new method is a new step, not a new trainer, and is correct under ``torchrun``::

    class MyStep(TrainingStep):
        name = "mine"
        def __init__(self, context, my_option=1.0): ...        # build optimizers over context.supernet.weights()
        def step(self, batch: Batch) -> StepOutput: ...        # context.forward / context.backward, optimizer steps
        def state_dict(self) / load_state_dict(self, state)    # everything needed for an exact resume

    register_step("mine", MyStep)   # then OneShotConfig(step="mine", step_options={...})

Steps here: :class:`SinglePathStep` (SPOS, PA&DA and its ablations: one sampled path per batch) and
:class:`DartsStep` (bilevel DARTS, first or second order, optional sharpDARTS Max-W weighting,
fixed-alpha "blank" training and an alpha warm-up, as GM-NAS and DARTS-PT use).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from nastk.devices import HOST
from nastk.errors import ConfigError
from nastk.options import Bool, Float, Int, Option, Text
from nastk.oneshot.samplers import sampler_pair, tau_schedule
from nastk.registry import Registry


@dataclass
class Batch:
    """One step's data on this rank: training example indices (+ augmentation), held-out indices."""

    indices: torch.Tensor
    augment: Optional[torch.Tensor] = None
    held_out: Optional[torch.Tensor] = None
    held_out_augment: Optional[torch.Tensor] = None
    epoch: int = 0


@dataclass
class StepOutput:
    """What the loop logs: the mean training loss of this rank's examples, and optionally detached
    logits and targets (classification steps: the loop's metrics and data samplers read them), the
    path trained and step-specific metrics (means over this rank's examples, logged as ``train_<name>``)."""

    loss: torch.Tensor
    logits: Optional[torch.Tensor] = None
    targets: Optional[torch.Tensor] = None
    #: the single path trained (one option per decision), or None (mixtures)
    path: Optional[Sequence[int]] = None
    #: several paths trained on this batch (sandwich rule); counted in ``op_counts``
    paths: Sequence[Sequence[int]] = ()
    metrics: Dict[str, float] = field(default_factory=dict)


# --- learning-rate schedules ---------------------------------------------------------------------------
def cosine_power(epoch: int, epochs: int, power: float = 10.0) -> float:
    """sharpDARTS' cosine power annealing as a factor in [0, 1] for epoch ``epoch`` of ``epochs`` (methods.md 13.2).

    ``c = (1 + cos(pi e / E)) / 2``, ``u = p^(c + 1)``, min-max normalised over the schedule, which is
    ``(p^c - 1) / (p - 1)``; ``p = 1`` is its limit ``c``, plain cosine annealing. Epochs count from 0
    (the first epoch runs at the full rate, the factor reaches 0 after the last), the way
    ``CosineAnnealingLR(T_max=E)`` counts, so ``p = 1`` is exactly that scheduler.
    """
    c = (1.0 + math.cos(math.pi * epoch / epochs)) / 2.0
    return c if power == 1.0 else (power ** c - 1.0) / (power - 1.0)


LR_SCHEDULES = ("cosine", "cosine_power")


def weight_optimizer(context, parameters: List[torch.nn.Parameter], decay_norm_and_bias: bool = True):
    """The SGD optimizer and per-epoch schedule of the supernet weights, from the run's config.

    ``decay_norm_and_bias=False`` exempts one-dimensional parameters (BatchNorm scales and shifts,
    biases) from weight decay, as BigNAS / OFA train.
    """
    config = context.config
    if not decay_norm_and_bias:
        parameters = [{"params": [p for p in parameters if p.dim() > 1]},
                      {"params": [p for p in parameters if p.dim() <= 1], "weight_decay": 0.0}]
    optimizer = torch.optim.SGD(parameters, lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay, nesterov=config.nesterov)
    lr_min, lr_max = config.lr_min, config.lr
    if config.lr_schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs, eta_min=lr_min)
    else:
        factor = lambda e: (lr_min + (lr_max - lr_min) * cosine_power(e, config.epochs, config.lr_power)) / lr_max  # noqa: E731
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return optimizer, scheduler


# --- the interface ---------------------------------------------------------------------------------------
class TrainingStep:
    """Base class of training steps; see the module docstring for the contract."""

    name = ""
    #: share of the training images the loop holds out for this step (DARTS' alpha half); 0 = none
    held_out_fraction = 0.0
    #: whether :meth:`step` reads held-out batches (``Batch.held_out``); a run that holds out no
    #: images is then refused before anything is written (a property where it depends on the options)
    needs_held_out = False

    #: the options the step takes (``nastk supernet train`` makes one flag each; config files are
    #: checked against them); defaults come from the constructor's signature
    OPTIONS: Tuple[Option, ...] = ()
    #: run settings the step starts from unless given (DARTS' search recipe)
    RECIPE: Dict[str, Any] = {}
    #: ``score(outputs, targets)``: the sum over a batch of the per-example quality that selection, held-out
    #: quality, ranking and the supernet evaluator maximise; None: the data module's (top-1 accuracy for
    #: labelled images, PSNR for image pairs). A step of another task sets its own (a staticmethod).
    score = None

    def __init__(self, context, **options):
        if options:
            raise ConfigError(f"training step {self.name!r} has no option(s) {', '.join(sorted(options))}")
        self.context = context

    def start_epoch(self, epoch: int) -> None:
        """Called before the epoch's first step (re-seed random streams from (seed, epoch) here)."""

    def step(self, batch: Batch) -> StepOutput:
        raise NotImplementedError(f"training step {self.name!r} must implement step(batch)")

    def train_children(self, batch: Batch, children: Sequence, child_loss, before_batch=None):
        """Gradients of several children on every micro-batch of ``batch``, for one optimizer step (the sandwich
        rule and the steps built like it): ``before_batch(x)`` gives a micro-batch's shared state (a dict: a
        teacher's soft labels, the previous child's), ``child_loss(i, child, x, y, state)`` the child's
        ``(loss, logged loss, logits)``. Returns the first child's mean logged loss, logits and targets."""
        context = self.context
        pieces = context.config.accumulate
        context.zero_grad()
        outputs, targets, first_loss = [], [], 0.0
        for x, y, last_piece in context.micro_batches(batch.indices, batch.augment):
            state = before_batch(x) if before_batch is not None else {}
            for i, child in enumerate(children):
                loss, logged, out = child_loss(i, child, x, y, state)
                context.backward(loss / pieces, last=last_piece and i == len(children) - 1)
                if i == 0:
                    outputs.append(out.detach())
                    targets.append(y)
                    first_loss += float(logged.detach()) / pieces
        return first_loss, torch.cat(outputs), torch.cat(targets)

    def end_epoch(self, epoch: int, epochs: int, gather) -> None:
        """Called after the epoch's last step: step the schedulers, update sampling distributions."""

    def lr(self) -> float:
        """The weight learning rate of the current epoch (logged)."""
        return float("nan")

    def validation_path(self, rng: np.random.Generator):
        """The path the loop's monitoring accuracy runs per batch (default: a uniformly random one the
        run's path sampler could draw)."""
        return self.context.path_sampler.uniform_path(rng)

    def summary(self) -> Dict[str, Any]:
        """What to add to the epoch's metrics line."""
        return {}

    def state_dict(self) -> Dict[str, Any]:
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        pass


STEPS: Registry[type] = Registry("training step", group="nastk.steps", subclass_of=TrainingStep)


def register_step(name: str, step: type) -> None:
    STEPS.register(name, step)


def make_step(context) -> TrainingStep:
    config = context.config
    try:
        return STEPS.get(config.step)(context, **dict(config.step_options))
    except TypeError as error:  # a user's step without declared OPTIONS given an option it does not take
        if "unexpected keyword argument" not in str(error):
            raise
        raise ConfigError(f"training step {config.step!r}: {error}") from None


def clip(parameters, max_norm: float) -> None:
    if max_norm:
        torch.nn.utils.clip_grad_norm_(parameters, max_norm)


# --- single path: SPOS, PA&DA ------------------------------------------------------------------------------
class SinglePathStep(TrainingStep):
    """One path per batch from the run's path sampler (uniform = SPOS, pada = PA&DA), SGD on the weights.

    The path sampler sees the clipped gradients after the optimizer step (PA&DA's op statistics).
    """

    name = "single_path"

    def __init__(self, context, **options):
        super().__init__(context, **options)
        self.path_sampler = context.path_sampler
        self.optimizer, self.scheduler = weight_optimizer(context, context.supernet.weights())
        self.epoch = 0

    def start_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.path_sampler.start_epoch(epoch)

    def step(self, batch: Batch) -> StepOutput:
        context = self.context
        path = self.path_sampler.sample()
        context.zero_grad()
        logits, targets, loss = context.forward_backward(batch.indices, batch.augment, path=path)
        clip(context.supernet.weights(), context.config.grad_clip)
        self.optimizer.step()
        self.path_sampler.observe_step(context.supernet, path)
        return StepOutput(loss, logits, targets, path=None if isinstance(path, torch.Tensor) else path)

    def end_epoch(self, epoch: int, epochs: int, gather) -> None:
        self.scheduler.step()
        self.path_sampler.end_epoch(epoch, epochs, gather)

    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def summary(self) -> Dict[str, Any]:
        return {"tau": tau_schedule(self.epoch, self.context.config.epochs), **self.path_sampler.summary()}

    def state_dict(self) -> Dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "path_sampler": self.path_sampler.state_dict()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.path_sampler.load_state_dict(state["path_sampler"])


# --- bilevel DARTS --------------------------------------------------------------------------------------------
class DartsStep(TrainingStep):
    """Bilevel DARTS (methods.md 13.1): alpha on a held-out batch (Adam), then the weights on a training batch (SGD).

    * ``order=1``: alpha's gradient is dL_val/dalpha at the current weights.
    * ``order=2``: one unrolled step, ``w' = w - xi (dL_train/dw + momentum buffer + weight decay)`` with
      ``xi`` the current weight learning rate, then ``dL_val(w', alpha)/dalpha - xi H`` where the
      Hessian-vector term ``H`` is the central finite difference of ``dL_train/dalpha`` at
      ``w +- r dL_val/dw'`` with ``r = 0.01 / ||dL_val/dw'||`` (DARTS' approximation).
    * ``weighting="max_w"``: sharpDARTS' Max-W weights instead of the softmax in the mixture
      (methods.md 13.2); the architecture is still derived from softmax(alpha), as DARTS derives it.
    * ``fix_alpha=True``: alpha stays at its initial value (DARTS-PT's "blank" supernet);
      ``arch_warmup_epochs=K``: alpha is frozen for the first K epochs (GM-NAS' warm-up).

    The weights see the mixture with alpha detached. Under DDP, every gradient taken outside the
    wrapped model (alpha, the unrolled step) is averaged over ranks explicitly. The held-out half is
    processed whole (no micro-batches).
    """

    name = "darts"
    held_out_fraction = 0.5
    OPTIONS = (Option("order", Int(minimum=1, maximum=2), "first- or second-order (unrolled) alpha gradient"),
               Option("arch_lr", Float(above=0), "Adam learning rate of alpha"),
               Option("arch_weight_decay", Float(minimum=0), "Adam weight decay of alpha"),
               Option("weighting", Text(choices=("softmax", "max_w")), "mixture weights: softmax or sharpDARTS' Max-W"),
               Option("fix_alpha", Bool(), "never update alpha (uniform mixture, DARTS-PT's blank supernet)"),
               Option("arch_warmup_epochs", Int(minimum=0), "epochs with alpha frozen before it learns"),
               Option("init_std", Float(minimum=0), "standard deviation of alpha's initial logits"))
    #: the DARTS search recipe (methods.md 13.1), the starting point of a new run with this step
    RECIPE = {"epochs": 50, "batch_size": 64, "lr": 0.025, "lr_min": 0.001, "momentum": 0.9, "weight_decay": 3e-4}

    def __init__(self, context, order: int = 1, arch_lr: float = 3e-4, arch_betas: Sequence[float] = (0.5, 0.999),
                 arch_weight_decay: float = 1e-3, weighting: str = "softmax", fix_alpha: bool = False,
                 arch_warmup_epochs: int = 0, init_std: float = 1e-3, **options):
        super().__init__(context, **options)
        if int(order) not in (1, 2):
            raise ConfigError(f"DARTS order must be 1 or 2, got {order}")
        if not arch_lr > 0:
            raise ConfigError(f"arch_lr must be positive, got {arch_lr}")
        if int(arch_warmup_epochs) < 0:
            raise ConfigError(f"arch_warmup_epochs must be at least 0, got {arch_warmup_epochs}")
        if sampler_pair(context.config.sampler)[0] != "uniform":
            raise ConfigError(f"the darts step trains a mixture and draws no paths; sampler {context.config.sampler!r} "
                              f"samples paths (use uniform, or da for PA&DA's data sampling alone)")
        supernet = context.supernet
        supernet.mixture_weights(torch.zeros(supernet.allowed.shape, device=HOST), weighting)  # checks the weighting name
        self.order, self.weighting, self.fix_alpha = int(order), weighting, bool(fix_alpha)
        self.arch_warmup_epochs = int(arch_warmup_epochs)
        if supernet.arch_logits is None:  # a given sub-supernet keeps its inherited alpha
            supernet.init_arch_parameters(init_std, torch.Generator().manual_seed(context.config.seed))
        self.optimizer, self.scheduler = weight_optimizer(context, supernet.weights())
        self.arch_optimizer = torch.optim.Adam(supernet.arch_parameters(), lr=arch_lr, betas=tuple(arch_betas),
                                               weight_decay=arch_weight_decay)
        self.epoch = 0

    # --- helpers ---
    @property
    def alpha(self) -> torch.nn.Parameter:
        return self.context.supernet.arch_logits

    def weights_now(self) -> torch.Tensor:
        return self.context.supernet.mixture_weights(weighting=self.weighting)

    def _grads(self, loss: torch.Tensor, parameters: List[torch.Tensor]) -> List[torch.Tensor]:
        """Gradients (zeros where unused), averaged over ranks."""
        grads = torch.autograd.grad(loss, parameters, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for g, p in zip(grads, parameters)]
        return self.context.dist.all_reduce_mean(grads)

    def _loss(self, x, y, detach_alpha: bool) -> torch.Tensor:
        # autograd.grad on the bare supernet: these gradients never enter .grad and are averaged
        # over ranks explicitly (_grads), so the DDP wrapper is not involved
        supernet = self.context.supernet
        weights = self.weights_now()
        supernet.set_mixture(weights.detach() if detach_alpha else weights)
        return self.context.loss(supernet(x), y)

    def updates_alpha(self) -> bool:
        return not self.fix_alpha and self.epoch >= self.arch_warmup_epochs

    @property
    def needs_held_out(self) -> bool:
        """alpha learns on held-out batches, unless it is fixed"""
        return not self.fix_alpha

    # --- the step ---
    def start_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def step(self, batch: Batch) -> StepOutput:
        context = self.context
        if self.updates_alpha():
            x_val, y_val = context.examples(batch.held_out, batch.held_out_augment, held_out=True)
            if self.order == 1:
                (grad,) = self._grads(self._loss(x_val, y_val, detach_alpha=False), [self.alpha])
            else:
                grad = self._unrolled_alpha_gradient(context.examples(batch.indices, batch.augment), (x_val, y_val))
            self.arch_optimizer.zero_grad(set_to_none=True)
            self.alpha.grad = grad
            self.arch_optimizer.step()
        context.zero_grad()
        logits, targets, loss = context.forward_backward(batch.indices, batch.augment, path=self.weights_now().detach())
        self.alpha.grad = None
        clip(context.supernet.weights(), context.config.grad_clip)
        self.optimizer.step()
        return StepOutput(loss, logits, targets)

    def _unrolled_alpha_gradient(self, train, valid) -> torch.Tensor:
        """DARTS' second-order alpha gradient (see the class docstring); the weights are left unchanged."""
        weights = self.context.supernet.weights()
        originals = [w.detach().clone() for w in weights]
        xi = self.optimizer.param_groups[0]["lr"]
        momentum, decay = self.optimizer.param_groups[0]["momentum"], self.optimizer.param_groups[0]["weight_decay"]
        train_grads = self._grads(self._loss(*train, detach_alpha=True), weights)
        with torch.no_grad():
            for w, g in zip(weights, train_grads):
                buffer = self.optimizer.state.get(w, {}).get("momentum_buffer")
                step = g + decay * w
                if buffer is not None:
                    step = step + momentum * buffer
                w.sub_(xi * step)
        grads = self._grads(self._loss(*valid, detach_alpha=False), [self.alpha] + weights)
        alpha_grad, dw = grads[0], grads[1:]
        r = 0.01 / torch.sqrt(sum((d ** 2).sum() for d in dw)).clamp_min(1e-12)
        finite = []
        for sign in (1.0, -1.0):
            with torch.no_grad():
                for w, original, d in zip(weights, originals, dw):
                    w.copy_(original + sign * r * d)
            finite.append(self._grads(self._loss(*train, detach_alpha=False), [self.alpha])[0])
        with torch.no_grad():
            for w, original in zip(weights, originals):
                w.copy_(original)
        return alpha_grad - xi * (finite[0] - finite[1]) / (2 * r)

    def end_epoch(self, epoch: int, epochs: int, gather) -> None:
        self.scheduler.step()

    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def validation_path(self, rng: np.random.Generator):
        return self.weights_now().detach()

    def summary(self) -> Dict[str, Any]:
        supernet = self.context.supernet
        return {"arch": supernet.export().to_str(),
                "alpha_entropy": round(float(_entropy(supernet.mixture_weights().detach())), 6)}

    def state_dict(self) -> Dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "arch_optimizer": self.arch_optimizer.state_dict()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.arch_optimizer.load_state_dict(state["arch_optimizer"])


def _entropy(weights: torch.Tensor) -> torch.Tensor:
    """Mean entropy of the decisions' weight rows (how far alpha is from a one-hot choice)."""
    p = weights.clamp_min(1e-12)
    return -(weights * p.log()).sum(dim=1).mean()


register_step("single_path", SinglePathStep)
register_step("darts", DartsStep)
register_step("sandwich", "nastk.oneshot.sandwich:SandwichStep")
register_step("ofa", "nastk.oneshot.sandwich:ProgressiveShrinkingStep")
register_step("bossnas", "nastk.oneshot.bossnas:BossNASStep")
register_step("adversarial", "nastk.generative.adversarial:AdversarialStep")
register_step("shiftnas", "nastk.oneshot.shiftnas:ShiftNASStep")
register_step("quantnas", "nastk.quantization.quantnas:QuantNASStep")
register_step("eqnet", "nastk.oneshot.eqnet:EQNetStep")
