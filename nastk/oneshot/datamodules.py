"""What a one-shot step's examples are: labelled images (default), two augmented views, image pairs.

The loop keeps one indexable training set (images and labels, split into trained / held-out parts by
:func:`~nastk.oneshot.splits.split_images`) and draws augmentation parameters for each global batch
from the run's seeded stream; a data module turns the images at some indices (and those parameters)
into what a step trains on, and says what monitoring and held-out selection feed the network:

* ``labelled`` — ``(images, labels)``, crop + flip (classification; every existing run);
* ``two_views`` — ``((view_a, view_b), labels)``, two independent crops / flips of each image
  (self-supervised steps such as BossNAS' ensemble bootstrapping; labels only for monitoring);
* ``image_pairs`` — ``(low_resolution, high_resolution)``: the (augmented) image and its
  ``scale``-times average-pooled copy (super-resolution; QuantNAS trains on such pairs);

A generator's input noise is not data: a GAN step draws it from ``StepContext.torch_generator``.
Register another with :func:`register_data_module` or an entry point of group ``nastk.data``.
"""
from __future__ import annotations

import functools
from typing import Any, Dict, Optional, Tuple

import torch
from torch.nn import functional as F

from nastk.errors import ConfigError
from nastk.datasets import crop_flip, crop_flip_params
from nastk.options import Int, Option, Text
from nastk.registry import Registry


def correct_percent(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Top-1 hits x 100 (averaged by the loop: accuracy in percent)."""
    return 100.0 * float((logits.argmax(1) == targets).sum())


def psnr_sum(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Peak signal-to-noise ratio (dB) per image, summed over the batch, for images on the normalised scale
    (peak-to-peak range taken from the targets)."""
    peak = float(targets.max() - targets.min()) or 1.0
    mse = ((outputs - targets) ** 2).flatten(1).mean(1).clamp_min(1e-12)
    return float((10 * torch.log10(peak ** 2 / mse)).sum())


#: ITU-R BT.601 luma of RGB in [0, 1] (offset 16/255): the Y channel super-resolution papers score
BT601 = (65.481 / 255, 128.553 / 255, 24.966 / 255)


def y_psnr_sum(outputs: torch.Tensor, targets: torch.Tensor, border: int = 4) -> float:
    """PSNR (dB) of the BT.601 Y channel per image, summed over the batch, for RGB images in [0, 1]: the
    output clamped and rounded to 8 bits, ``border`` pixels cropped on every side, peak 1 (= 255 in 8 bits)."""
    def luma(rgb):
        weights = torch.tensor(BT601, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
        y = (rgb * weights).sum(1) + 16 / 255
        return y[:, border:y.shape[1] - border, border:y.shape[2] - border] if border else y
    outputs = torch.round(outputs.detach().clamp(0, 1) * 255) / 255
    mse = ((luma(outputs) - luma(targets.detach())) ** 2).flatten(1).mean(1).clamp_min(1e-12)
    return float((10 * torch.log10(1.0 / mse)).sum())


class LabelledImages:
    """Images and their labels; one crop + flip per image (the loop's default)."""

    name = "labelled"
    OPTIONS: Tuple[Option, ...] = ()

    def __init__(self, **options):
        if options:
            raise ConfigError(f"data module {self.name!r} has no option(s) {', '.join(sorted(options))}")

    def augment_params(self, count: int, generator: torch.Generator) -> torch.Tensor:
        """One row of augmentation parameters per image of a global batch (sharded with it)."""
        return crop_flip_params(count, generator)

    def examples(self, x: torch.Tensor, y: torch.Tensor, augment: Optional[torch.Tensor]) -> Tuple[Any, Any]:
        return (crop_flip(x, augment) if augment is not None else x), y

    def monitor(self, x: torch.Tensor, y: torch.Tensor) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
        """(network input, target) for monitoring and held-out selection; None: nothing to score."""
        return x, y

    def default_metrics(self) -> Dict[str, Any]:
        return {"acc": correct_percent}

    #: the loss a step trains with unless it defines its own
    loss = staticmethod(F.cross_entropy)
    #: the per-batch sum selection and ranking maximise unless the step defines its own
    score = staticmethod(correct_percent)
    #: what ``score`` measures (an evaluator's metric name: ``--objectives`` and summaries read it) and its unit
    score_name, score_unit = "accuracy", "%"


class TwoViews(LabelledImages):
    """Two independently augmented views of every image (self-supervised steps)."""

    name = "two_views"

    def augment_params(self, count: int, generator: torch.Generator) -> torch.Tensor:
        return torch.cat([crop_flip_params(count, generator), crop_flip_params(count, generator)], dim=1)

    def examples(self, x, y, augment):
        if augment is None:
            return (x, x), y
        half = augment.shape[1] // 2
        return (crop_flip(x, augment[:, :half]), crop_flip(x, augment[:, half:])), y

    def monitor(self, x, y):
        return None  # no label-free score is defined for two views; a step reports its own loss

    def default_metrics(self) -> Dict[str, Any]:
        return {}

    @staticmethod
    def loss(outputs, targets):
        raise ConfigError("the two_views data module has no supervised loss: a self-supervised step computes its own")

    score = None
    score_name, score_unit = None, ""


class ImagePairs(LabelledImages):
    """(low-resolution input, high-resolution target): the image down-scaled by ``scale``, and the image.

    ``downscale``: ``average`` pooling (default) or antialiased ``bicubic`` (the SR papers' LR images).
    ``psnr``: ``range`` (any normalisation, peak = the targets' range) or ``y`` (:func:`y_psnr_sum`: RGB in
    [0, 1], BT.601 Y channel, 8-bit output, ``border`` pixels cropped), the score selection maximises.
    """

    name = "image_pairs"
    OPTIONS = (Option("scale", Int(minimum=2), "down-scaling factor of the low-resolution inputs (x2, x4)"),
               Option("downscale", Text(choices=("average", "bicubic")), "how the low-resolution inputs are made"),
               Option("psnr", Text(choices=("range", "y")), "PSNR of the normalised images (range) or of the "
                      "Y channel of RGB in [0, 1] (y)"),
               Option("border", Int(minimum=0), "pixels cropped on every side before the Y-channel PSNR"))

    def __init__(self, scale: int = 2, downscale: str = "average", psnr: str = "range", border: int = 4, **options):
        super().__init__(**options)
        self.scale = int(scale)
        if downscale not in ("average", "bicubic") or psnr not in ("range", "y"):
            raise ConfigError(f"image_pairs: downscale must be average or bicubic and psnr range or y, "
                              f"got {downscale!r} and {psnr!r}")
        self.downscale, self.psnr, self.border = downscale, psnr, int(border)
        if psnr == "y":
            self.score = functools.partial(y_psnr_sum, border=self.border)

    def _pair(self, hr: torch.Tensor):
        if hr.shape[-1] % self.scale or hr.shape[-2] % self.scale:
            raise ConfigError(f"image_pairs: scale {self.scale} must divide the image size {tuple(hr.shape[-2:])}")
        if self.downscale == "bicubic":
            size = (hr.shape[-2] // self.scale, hr.shape[-1] // self.scale)
            return F.interpolate(hr, size=size, mode="bicubic", align_corners=False, antialias=True), hr
        return F.avg_pool2d(hr, self.scale), hr

    def examples(self, x, y, augment):
        return self._pair(crop_flip(x, augment) if augment is not None else x)

    def monitor(self, x, y):
        return self._pair(x)

    def default_metrics(self) -> Dict[str, Any]:
        return {"psnr": self.score}

    loss = staticmethod(F.l1_loss)  # QuantNAS / EDSR train super-resolution with L1
    score = staticmethod(psnr_sum)
    score_name, score_unit = "psnr", "dB"


def _is_data_module(obj) -> bool:
    return isinstance(obj, type) and all(callable(getattr(obj, m, None)) for m in ("examples", "monitor", "augment_params"))


DATA_MODULES: Registry[type] = Registry("data module", group="nastk.data", check=(
    _is_data_module, "a data module class (with examples, monitor and augment_params, e.g. a LabelledImages subclass)"))


def register_data_module(name: str, module: type) -> None:
    DATA_MODULES.register(name, module)


for _module in (LabelledImages, TwoViews, ImagePairs):
    register_data_module(_module.name, _module)


def make_data_module(name: str, options: Optional[Dict[str, Any]] = None):
    """The data module ``name`` with ``options`` checked against its declarations."""
    from nastk.options import declared

    cls = DATA_MODULES.get(name)
    options = dict(options or {})
    declarations = {o.name: o for o in declared(cls)}
    unknown = sorted(set(options) - set(declarations))
    if unknown:
        raise ConfigError(f"data module {name!r} has no option(s) {', '.join(unknown)}"
                          + (f"; its options: {', '.join(declarations)}" if declarations else ""))
    return cls(**{k: declarations[k].check(v, f"the options of data module {name}") for k, v in options.items()})
