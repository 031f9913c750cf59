"""A supernet run's training images split as its trainer splits them: the part the weights train on,
the held-out part, and the images selection may score on (never the test split by default)."""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from nastk.datasets import ImageDataset, downsample, load_dataset, mixed
from nastk.errors import ConfigError

Images = Tuple[torch.Tensor, torch.Tensor]


def split_images(config, data: Optional[ImageDataset] = None) -> Tuple[Images, Images]:
    """A supernet run's training images as its trainer splits them: ``((x, y), (x_held, y_held))``.

    ``config`` is the run's :class:`~nastk.oneshot.trainer.OneShotConfig`; ``data`` its dataset (default:
    ``config.dataset`` loaded), average-pooled to ``config.image_size`` here when it is not yet. The
    first ``train_size`` training images in :func:`mixed` order are cut into the weights' part and,
    last, the held-out ``held_out_fraction`` (default: the step's own) that weight training never
    reads. Tensors stay on the CPU.
    """
    from nastk.oneshot.steps import STEPS

    data = downsample(data if data is not None else load_dataset(config.dataset), config.image_size)
    x, y = mixed(data.x_train, data.y_train, config.train_size)
    fraction = STEPS.get(config.step).held_out_fraction if config.held_out_fraction is None else config.held_out_fraction
    held_out = int(round(len(x) * float(fraction)))
    if held_out and held_out == len(x):
        raise ConfigError(f"the {config.step} step holds out {held_out} of {len(x)} training images, leaving none to train on")
    # mixed() interleaves the classes, so both contiguous parts stay class-balanced
    cut = len(x) - held_out
    return (x[:cut], y[:cut]), (x[cut:], y[cut:])


def unseen_training_images(config, data: Optional[ImageDataset] = None, size: Optional[int] = None) -> Images:
    """Training images of a supernet run that its weights never trained on (the first ``size``), the
    split selection scores on: the run's held-out part (:func:`split_images`) or, when it held out
    none, the training images beyond its ``train_size``. A :class:`ConfigError` when there are none."""
    data = downsample(data if data is not None else load_dataset(config.dataset), config.image_size)
    _, (x, y) = split_images(config, data)
    if not len(x) and config.train_size is not None:
        x, y = mixed(data.x_train, data.y_train)
        x, y = x[int(config.train_size):], y[int(config.train_size):]
    if not len(x):
        raise ConfigError("the supernet run trained on all of its training images, leaving none unseen to score "
                          "architectures on: train it with --held-out-fraction or a smaller --train-size "
                          "(or ask for the test split, --split test)")
    return (x[:size], y[:size]) if size is not None else (x, y)
