"""EQ-Net (methods.md 11B): an elastic quantization supernet trained from a full-precision network, as a step.

The step (``eqnet``) trains a ``quant:SPACE`` supernet (:mod:`search_spaces.quantized`) on one base
architecture (the base space's largest child by default) in one of three modes:

``precision``:

* ``float``: the full-precision network (every quantizer at 32 bits): the pretraining EQ-Net starts from;
* ``elastic`` (EQ-Net): per batch, gradients accumulated, one optimizer step:
  1. the weight-distribution regulariser ``kurt_weight L_kurt + skew_weight L_skew`` (WDR: per conv / linear
     weight but the first layer, ``(Kurt - 1.8)^2`` and ``Skew^2`` averaged over layers);
  2. the largest configuration (all free units at the top bits) on the labels (plain CE);
  3. ``random_children`` random configurations, then the smallest, each with ``kd_weight KL(p_prev || p) +
     (1 - kd_weight) CE``, ``p_prev`` the previous configuration's detached output (GPG's chain; ``chain false``:
     always the largest's, the ablation);
  granularity and symmetry random per layer for every configuration (``random_forms``), first / last layers 8 / 8;
  gradient clipping by value, Adam (EQ-Net: lr 1e-3, no weight decay, cosine);
* ``static``: LSQ QAT of one configuration (every free unit at ``static_bits``, EQ-Net's search form), CE only:
  the separately trained counterpart.

``pretrained`` (a float run's folder or checkpoint) gives the starting weights; then every quantizer table is
calibrated (EQ-Net's init) on the first ``calibration_size`` training images, identical on every rank.
Children are scored by the supernet evaluator (``--evaluator supernet:RUN_DIR``, ``nastk supernet rank``): adaptive
BN through the kit's recalibration, in EQ-Net's search form, which a built supernet starts in and the step restores
after every batch.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.nn import functional as F

from nastk.devices import HOST
from nastk.errors import ConfigError, RunError
from nastk.oneshot.steps import Batch, StepOutput, TrainingStep
from nastk.options import Bool, Float, Int, Option, Text

#: the seeded stream (StepContext.rng) the configurations come from
CONFIG_STREAM = 26
MODES = ("elastic", "float", "static")
BASE_PATHS = ("largest", "random")
#: WDR's kurtosis target (a uniform distribution's)
KURTOSIS_TARGET = 1.8


def _moments(w: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(kurtosis, skewness) of a weight tensor's entries, unbiased standard deviation."""
    w = w.flatten()
    z = (w - w.mean()) / (w.std() + 1e-12)
    return (z ** 4).mean(), (z ** 3).mean()


def weight_distribution_loss(supernet, kurt_weight: float, skew_weight: float) -> torch.Tensor:
    """EQ-Net's WDR over every quantized layer's weight except the first layer's."""
    layers = supernet.layers()[1:]
    kurt, skew = zip(*(_moments(q.layer.weight) for q in layers))
    l_kurt = torch.stack([(k - KURTOSIS_TARGET) ** 2 for k in kurt]).mean()
    l_skew = torch.stack([s ** 2 for s in skew]).mean()
    return kurt_weight * l_kurt + skew_weight * l_skew


def random_forms(supernet, rng: np.random.Generator) -> List[Tuple[str, str]]:
    from nastk.quantization.mixed_precision import ACT_FORM_NAMES, WEIGHT_FORM_NAMES

    return [(WEIGHT_FORM_NAMES[rng.integers(len(WEIGHT_FORM_NAMES))], ACT_FORM_NAMES[rng.integers(len(ACT_FORM_NAMES))])
            for _ in supernet.layers()]


def search_forms(supernet) -> List[Tuple[str, str]]:
    from nastk.quantization.mixed_precision import SEARCH_FORM

    return [(SEARCH_FORM["wform"], SEARCH_FORM["aform"])] * len(supernet.layers())


def uniform_path(supernet, base_path: Sequence[int], bits: int) -> Tuple[int, ...]:
    """``base_path`` with every free unit at ``bits`` / ``bits`` (a bit option of the space)."""
    options = supernet.space.bits
    if bits not in options:
        raise ConfigError(f"{bits} bits is not a bit option of {supernet.space.name} ({options})")
    return tuple(base_path) + (options.index(bits),) * (len(supernet.decisions) - supernet.base_count)


class EQNetStep(TrainingStep):
    """EQ-Net's training step (module docstring)."""

    name = "eqnet"
    OPTIONS = (
        Option("precision", Text(choices=MODES, nullable=False), "elastic (EQ-Net), float (the full-precision pretraining) or static (LSQ QAT of one "
               "uniform configuration at static_bits)"),
        Option("static_bits", Int(minimum=2, maximum=8), "bits of every free layer in static mode"),
        Option("pretrained", Text(), "a float run folder or checkpoint to start from (empty: the fresh weights)"),
        Option("base_path", Text(choices=BASE_PATHS, nullable=False), "the base architecture: largest (one network, EQ-Net) or random per configuration"),
        Option("random_children", Int(minimum=0), "random configurations between the largest and the smallest"),
        Option("kd_weight", Float(minimum=0, maximum=1), "weight of KL(p_prev || p) beside (1 - kd_weight) x CE"),
        Option("chain", Bool(), "GPG's chain: each configuration learns the previous one's output (false: the largest's)"),
        Option("kurt_weight", Float(minimum=0), "WDR's kurtosis weight (0.015; 0 with skew_weight 0: no WDR)"),
        Option("skew_weight", Float(minimum=0), "WDR's skewness weight (1.0)"),
        Option("random_forms", Bool(), "granularity and symmetry random per layer for every trained configuration"),
        Option("grad_clip_value", Float(minimum=0), "clip every gradient entry to [-v, v] (0: no clipping)"),
        Option("calibration_size", Int(minimum=1), "training images the quantizer tables are initialised on"))
    #: EQ-Net's recipe: Adam lr 1e-3, no weight decay, cosine (per epoch here)
    RECIPE = {"lr": 1e-3, "weight_decay": 0.0, "batch_size": 128, "grad_clip": 0.0, "momentum": 0.9}

    def __init__(self, context, precision: str = "elastic", static_bits: int = 8, pretrained: str = "",
                 base_path: str = "largest", random_children: int = 1, kd_weight: float = 0.5, chain: bool = True,
                 kurt_weight: float = 0.015, skew_weight: float = 1.0, random_forms: bool = True,
                 grad_clip_value: float = 1.0, calibration_size: int = 256, **options):
        super().__init__(context, **options)
        from nastk.quantization.mixed_precision import QuantizedSupernet

        supernet = context.supernet
        if not isinstance(supernet, QuantizedSupernet):
            raise ConfigError(f"the eqnet step trains a quant:SPACE supernet (e.g. --space quant:mobilenet), "
                              f"not {context.config.space!r}")
        self.mode, self.base_path_rule = precision, base_path  # values checked by their OPTIONS declarations
        self.random_children, self.kd_weight, self.chain = int(random_children), float(kd_weight), bool(chain)
        self.kurt_weight, self.skew_weight = float(kurt_weight), float(skew_weight)
        self.random_forms, self.grad_clip_value = bool(random_forms), float(grad_clip_value)
        largest = tuple(supernet.largest_path())
        self.base_largest = largest[:supernet.base_count]
        bits = supernet.space.bits
        self.largest = uniform_path(supernet, self.base_largest, max(bits))
        self.smallest = uniform_path(supernet, self.base_largest, min(bits))
        if self.mode == "static":
            self.largest = uniform_path(supernet, self.base_largest, static_bits)
            supernet.precision_override = int(static_bits)
        elif self.mode == "float":
            supernet.precision_override = 32
        if pretrained:
            load_weights(supernet, pretrained, context.device)
        if self.mode != "float":
            count = min(int(calibration_size), context.train_size)
            x, _ = context.examples(torch.arange(count, device=HOST))  # examples() moves the indices
            supernet.set_active(self.largest)
            supernet.calibrate(x)
        supernet.set_forms(search_forms(supernet))
        self.optimizer = torch.optim.Adam(supernet.weights(), lr=context.config.lr,
                                          weight_decay=context.config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=context.config.epochs,
                                                                    eta_min=context.config.lr_min)

    def start_epoch(self, epoch: int) -> None:
        self.rng = self.context.rng(CONFIG_STREAM)

    def _random_path(self) -> Tuple[int, ...]:
        path = tuple(self.context.path_sampler.uniform_path(self.rng))
        base = self.base_largest if self.base_path_rule == "largest" else path[:len(self.base_largest)]
        return tuple(base) + path[len(self.base_largest):]

    def configurations(self) -> List[Tuple[Tuple[int, ...], Optional[list]]]:
        """This batch's (path, forms) in training order."""
        supernet = self.context.supernet
        if self.mode != "elastic":
            return [(self.largest, None)]
        paths = [self.largest] + [self._random_path() for _ in range(self.random_children)] + [self.smallest]
        if self.base_path_rule == "random":
            paths[-1] = tuple(self._random_path()[:len(self.base_largest)]) + self.smallest[len(self.base_largest):]
        return [(p, random_forms(supernet, self.rng) if self.random_forms else None) for p in paths]

    def step(self, batch: Batch) -> StepOutput:
        context, supernet = self.context, self.context.supernet
        configurations = self.configurations()

        def child_loss(i, configuration, x, y, state):
            path, forms = configuration
            context.activate(path)
            if forms is not None:
                supernet.set_forms(forms)
            out = context.forward(x)
            ce = F.cross_entropy(out, y)
            previous = state.get("previous")
            if previous is None:
                loss = ce
            else:
                kl = F.kl_div(F.log_softmax(out, dim=1), previous, reduction="batchmean")
                loss = self.kd_weight * kl + (1 - self.kd_weight) * ce
            if i == 0 and self.mode == "elastic" and (self.kurt_weight or self.skew_weight):
                loss = loss + weight_distribution_loss(supernet, self.kurt_weight, self.skew_weight)
            if previous is None or self.chain:
                state["previous"] = F.softmax(out.detach(), dim=1)
            return loss, ce, out

        first_loss, outputs, targets = self.train_children(batch, configurations, child_loss)
        supernet.set_forms(search_forms(supernet))
        if self.grad_clip_value:
            torch.nn.utils.clip_grad_value_(supernet.weights(), self.grad_clip_value)
        self.optimizer.step()
        return StepOutput(torch.tensor(first_loss, device=HOST), outputs, targets,  # a logged number
                          paths=[p for p, _ in configurations])

    def validation_path(self, rng: np.random.Generator):
        return self.largest

    def end_epoch(self, epoch: int, epochs: int, gather) -> None:
        self.scheduler.step()

    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def summary(self) -> Dict[str, Any]:
        return {"configurations_per_step": self.random_children + 2 if self.mode == "elastic" else 1}

    def state_dict(self) -> Dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])


def load_weights(supernet, source: str, device) -> None:
    """A run folder's (or checkpoint's) model weights into ``supernet`` (same space); BN statistics included."""
    from nastk.oneshot.trainer import CHECKPOINT, read_checkpoint

    path = Path(source)
    path = path / CHECKPOINT if path.is_dir() else path
    if not path.is_file():
        raise RunError(f"pretrained {source!r} is not a supernet run folder or checkpoint")
    state = read_checkpoint(path, device)
    try:
        supernet.load_state_dict(state["model"])
    except RuntimeError as error:
        raise RunError(f"pretrained {source!r} does not fit this supernet ({str(error).splitlines()[0]})") from None

