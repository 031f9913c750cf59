"""Training data for one-shot trainers: fixed subsets, class-mixed evaluation order, augmentation.

The shared CIFAR-10 subset is stored sorted by class, so a "first N" subset would hold two
classes and an evaluation batch would hold a few; with batch-statistics BatchNorm (PA&DA's
supernet) that would change every accuracy. Subsets and evaluation sets therefore go through a
fixed permutation that does not depend on the run's seed (every run and sampler sees the same data).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

import torch

from nastk.datasets import ImageDataset, image_dataset, load_dataset
from nastk.errors import ConfigError, MissingDataError
from nastk.readers import read_image_set

DATA_SEED = 0


def load_images(name: str) -> ImageDataset:
    """A dataset known to :func:`nastk.datasets.load_dataset`, or an ``.npz`` in the CIFAR subset's layout
    (``x_train``/``x_test`` uint8 NHWC, ``y_train``/``y_test``), e.g. the full CIFAR-10 for ``--full`` runs."""
    if not name.endswith(".npz"):
        return load_dataset(name)
    path = Path(name).expanduser()
    if not path.is_file():
        raise MissingDataError(f"image file {path} not found")
    return image_dataset(path.stem, read_image_set(path))  # archive, keys, dtypes, shapes and labels checked


def downsample(data: ImageDataset, size: Optional[int]) -> ImageDataset:
    """The images average-pooled to ``size`` x ``size`` (a cheaper stand-in, methods.md 0.5); ``None`` keeps them."""
    if size is None or size == data.input_size:
        return data
    if size < 1 or data.input_size % size:
        raise ConfigError(f"image_size must divide the images' size {data.input_size}, got {size}")
    pool = lambda x: torch.nn.functional.adaptive_avg_pool2d(x, size)  # noqa: E731
    return ImageDataset(f"{data.name}-{size}px", pool(data.x_train), data.y_train, pool(data.x_test), data.y_test,
                        data.num_classes)


def mixed(x: torch.Tensor, y: torch.Tensor, size: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """The first ``size`` examples (all by default) of a fixed, seed-independent permutation."""
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(DATA_SEED))
    if size is not None:
        order = order[:size]
    return x[order], y[order]


def crop_flip_params(n: int, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Random (dy, dx, flip) for ``n`` images, drawn for a whole global batch so that every rank
    (and a single process) augments an image the same way."""
    shifts = torch.randint(0, 2 * padding + 1, (n, 2), generator=generator)
    flips = (torch.rand(n, 1, generator=generator) < 0.5).long()
    return torch.cat([shifts, flips], dim=1)


def crop_flip(x: torch.Tensor, params: torch.Tensor, padding: int = 4) -> torch.Tensor:
    """Crop each zero-padded image (zero = the dataset mean after normalisation) at its (dy, dx) and
    flip it horizontally where asked; one gather, on any device."""
    n, channels, height, width = x.shape
    params = params.to(x.device)
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    rows = (params[:, 0:1] + torch.arange(height, device=x.device))[:, None, :, None]
    cols = params[:, 1:2] + torch.arange(width, device=x.device)
    cols = torch.where(params[:, 2:3].bool(), cols.flip(1), cols)[:, None, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    channel = torch.arange(channels, device=x.device)[None, :, None, None]
    return padded[batch, channel, rows, cols]


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

    data = downsample(data if data is not None else load_images(config.dataset), config.image_size)
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
    data = downsample(data if data is not None else load_images(config.dataset), config.image_size)
    _, (x, y) = split_images(config, data)
    if not len(x) and config.train_size is not None:
        x, y = mixed(data.x_train, data.y_train)
        x, y = x[int(config.train_size):], y[int(config.train_size):]
    if not len(x):
        raise ConfigError("the supernet run trained on all of its training images, leaving none unseen to score "
                          "architectures on: train it with --held-out-fraction or a smaller --train-size "
                          "(or ask for the test split, --split test)")
    return (x[:size], y[:size]) if size is not None else (x, y)
