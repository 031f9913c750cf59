"""BigNAS' sandwich rule with in-place distillation (methods.md 12.2), as a training step.

Per batch (AttentiveNAS' step order, the toolkit default):

1. the **largest** child (regularised when the supernet offers it: ``set_regularization(True)``,
   e.g. dropout; the other children run with it off) on the labels, cross-entropy with label smoothing; backward. Its
   detached, softmaxed output of *this* forward is the soft target;
2. ``random_children`` uniformly random children and, last, the **smallest** child, each on the
   soft target (soft cross-entropy, temperature 1, no label term) with ``inplace_distillation``, or
   on the labels without it; backward each (gradients accumulate);
3. gradient clipping by value (``grad_clip_value``, AttentiveNAS' 1.0), one optimizer step.

With ``include_extremes=False`` (and no distillation) the same step is "uniform k": ``random_children``
random children on the labels, the equal-compute baseline of the sandwich rule. Every forward goes
through the :class:`~nastk.oneshot.context.StepContext`, so the step is correct under DDP, and every
random child comes from the context's seeded stream (the same on every rank, the same after resume).

**OFA's progressive shrinking step** (``ofa``, methods.md 12.1) is the same step with other defaults: no
extremes, ``random_children`` children drawn uniformly among the options the current stage allows, a
fixed full-network ``teacher`` (a run folder or checkpoint; ``stage:NAME`` inside a stage schedule) run
without gradients in train mode, and each child's loss = CE with label smoothing + ``kd_ratio`` x soft
CE to the teacher's output.
"""
from __future__ import annotations

from typing import Any, Dict, List, Sequence

import torch
from torch.nn import functional as F

from nastk.devices import HOST
from nastk.errors import ConfigError
from nastk.oneshot.steps import Batch, StepOutput, TrainingStep, weight_optimizer
from nastk.options import Bool, Float, Int, Option, Text

#: the seeded stream (StepContext.rng) the random children come from
CHILD_STREAM = 12


def soft_cross_entropy(logits: torch.Tensor, soft_targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``-sum_c p_c log softmax(logits)_c``: distillation to a probability row."""
    return -(soft_targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


class SandwichStep(TrainingStep):
    """The sandwich rule (largest, random children, smallest; one optimizer step) with optional in-place
    distillation from the largest child. See the module docstring."""

    name = "sandwich"
    OPTIONS = (Option("random_children", Int(minimum=0), "random children per batch between the largest and the smallest"),
               Option("include_extremes", Bool(), "train the largest and the smallest child too (the sandwich rule; "
                      "false: only random children, the uniform-k baseline)"),
               Option("inplace_distillation", Bool(), "children learn the largest child's soft output instead of the labels"),
               Option("label_smoothing", Float(minimum=0, below=1), "label smoothing of the cross-entropy on labels"),
               Option("grad_clip_value", Float(minimum=0), "clip every gradient entry to [-v, v] (0: no clipping)"),
               Option("decay_norm_and_bias", Bool(), "apply weight decay to BatchNorm and bias parameters too"),
               Option("teacher", Text(), "a fixed teacher: a supernet run folder or checkpoint whose largest child's "
                      "output the children learn (OFA; 'stage:NAME' in a stage schedule); empty: none"),
               Option("kd_ratio", Float(minimum=0), "weight of the soft cross-entropy to the teacher (fixed teacher, or "
                      "the largest child with inplace_distillation)"),
               Option("labels_with_kd", Bool(), "keep the labels' cross-entropy beside the distillation term (OFA: "
                      "true; BigNAS' in-place distillation: false)"))
    #: BigNAS' recipe (methods.md 12.2-12.3): SGD-Nesterov, lr 0.1 cosine, small weight decay, batch 128
    RECIPE = {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-5, "batch_size": 128, "grad_clip": 0.0}

    def __init__(self, context, random_children: int = 2, include_extremes: bool = True,
                 inplace_distillation: bool = True, label_smoothing: float = 0.1, grad_clip_value: float = 1.0,
                 decay_norm_and_bias: bool = False, teacher: str = "", kd_ratio: float = 1.0,
                 labels_with_kd: bool = False, **options):
        super().__init__(context, **options)
        if teacher and inplace_distillation:
            raise ConfigError("a fixed teacher and inplace_distillation exclude each other: choose one soft target")
        self.teacher = load_teacher(teacher, context) if teacher else None
        self.kd_ratio, self.labels_with_kd = float(kd_ratio), bool(labels_with_kd)
        if inplace_distillation and not include_extremes:
            raise ConfigError("inplace_distillation needs the largest child as teacher (include_extremes true)")
        if int(random_children) < 0 or (not include_extremes and int(random_children) < 1):
            raise ConfigError(f"the step trains no child: random_children {random_children} without the extremes")
        self.random_children, self.include_extremes = int(random_children), bool(include_extremes)
        self.inplace_distillation, self.label_smoothing = bool(inplace_distillation), float(label_smoothing)
        self.grad_clip_value = float(grad_clip_value)
        supernet = context.supernet
        self.largest, self.smallest = tuple(supernet.largest_path()), tuple(supernet.smallest_path())
        self.optimizer, self.scheduler = weight_optimizer(context, supernet.weights(), decay_norm_and_bias)

    def start_epoch(self, epoch: int) -> None:
        self.rng = self.context.rng(CHILD_STREAM)

    def children(self) -> List[Sequence[int]]:
        """This batch's children in training order (largest first, smallest last)."""
        sampler = self.context.path_sampler
        randoms = [tuple(sampler.uniform_path(self.rng)) for _ in range(self.random_children)]
        return [self.largest, *randoms, self.smallest] if self.include_extremes else randoms

    def _regularize(self, enabled: bool) -> None:
        setter = getattr(self.context.supernet, "set_regularization", None)
        if setter is not None:
            setter(enabled)

    def step(self, batch: Batch) -> StepOutput:
        context = self.context
        children = self.children()

        def teacher_labels(x):
            if self.teacher is None:
                return {"soft": None}
            with torch.no_grad():
                return {"soft": F.softmax(self.teacher(x), dim=1)}

        def child_loss(i, child, x, y, state):
            teacher = self.include_extremes and i == 0
            self._regularize(teacher)
            out = context.forward(x, path=child)
            soft = state["soft"]
            distilled = soft is not None and (self.teacher is not None or not teacher)
            loss = self.kd_ratio * soft_cross_entropy(out, soft) if distilled else 0.0
            if not distilled or self.labels_with_kd:
                loss = loss + F.cross_entropy(out, y, label_smoothing=self.label_smoothing)
            if teacher and self.inplace_distillation:
                state["soft"] = F.softmax(out.detach(), dim=1)
            return loss, loss, out

        first_loss, outputs, targets = self.train_children(batch, children, child_loss, teacher_labels)
        self._regularize(True)  # the supernet's own state between steps: as built
        if self.grad_clip_value:
            torch.nn.utils.clip_grad_value_(context.supernet.weights(), self.grad_clip_value)
        self.optimizer.step()
        # logits of the first child trained (the largest under the sandwich rule): what train_acc shows
        return StepOutput(torch.tensor(first_loss, device=HOST), outputs, targets, paths=children)  # a logged number

    def end_epoch(self, epoch: int, epochs: int, gather) -> None:
        self.scheduler.step()

    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def summary(self) -> Dict[str, Any]:
        return {"children_per_step": self.random_children + (2 if self.include_extremes else 0)}

    def state_dict(self) -> Dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])


class ProgressiveShrinkingStep(SandwichStep):
    """OFA's progressive-shrinking step: the sandwich step with OFA's defaults (module docstring)."""

    name = "ofa"
    #: OFA's recipe (methods.md 12.1): SGD-Nesterov 0.9, wd 3e-5 (none on BN / bias), cosine, no norm clipping
    RECIPE = {"lr": 0.03, "momentum": 0.9, "nesterov": True, "weight_decay": 3e-5, "batch_size": 64, "grad_clip": 0.0}

    def __init__(self, context, random_children: int = 1, include_extremes: bool = False,
                 inplace_distillation: bool = False, label_smoothing: float = 0.1, grad_clip_value: float = 0.0,
                 decay_norm_and_bias: bool = False, teacher: str = "", kd_ratio: float = 1.0,
                 labels_with_kd: bool = True, **options):
        super().__init__(context, random_children, include_extremes, inplace_distillation, label_smoothing,
                         grad_clip_value, decay_norm_and_bias, teacher, kd_ratio, labels_with_kd, **options)


class FixedTeacher(torch.nn.Module):
    """A trained supernet's largest child, frozen: OFA's full-network teacher (train-mode BN, no gradients)."""

    def __init__(self, supernet):
        super().__init__()
        self.supernet = supernet.requires_grad_(False)
        self.path = tuple(supernet.largest_path())

    def forward(self, x):
        self.supernet.set_active(self.path)
        self.supernet.train()
        return self.supernet(x)


def load_teacher(teacher: str, context) -> FixedTeacher:
    """The teacher of a run folder or checkpoint file, on the context's device."""
    from pathlib import Path

    from nastk.errors import RunError
    from nastk.oneshot.trainer import CHECKPOINT, OneShotConfig, build_supernet, read_checkpoint

    path = Path(teacher)
    path = path / CHECKPOINT if path.is_dir() else path
    if not path.is_file():
        raise RunError(f"teacher {teacher!r} is not a supernet run folder or checkpoint")
    state = read_checkpoint(path, context.device)
    supernet = build_supernet(OneShotConfig.from_dict(state["config"]), int(state["num_classes"]))
    if "arch_logits" in state["model"]:
        supernet.init_arch_parameters()
    supernet.load_state_dict(state["model"])
    return FixedTeacher(supernet.to(context.device))
