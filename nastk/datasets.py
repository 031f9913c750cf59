"""Image datasets that need no download (scikit-learn's digits, the shared CIFAR-10 subset), and what
every trainer does to them: a fixed class-mixed order, average-pooling to a smaller size, crop-and-flip.

Every loader returns a :class:`ImageDataset` of float tensors in NCHW layout, normalised per channel,
so networks of any space can consume them directly. CIFAR-100 and ImageNet16-120 images are not
available offline; asking for them raises a clear error.

The shared CIFAR-10 subset is stored sorted by class, so a "first N" subset would hold two
classes and an evaluation batch would hold a few; with batch-statistics BatchNorm (PA&DA's
supernet) that would change every accuracy. Subsets and evaluation sets therefore go through a
fixed permutation (:func:`mixed`) that does not depend on the run's seed.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import torch

from nastk.devices import HOST
from nastk.errors import ConfigError, CorruptDataError, MissingDataError, UnknownNameError
from nastk.paths import data_file, verify_sha256
from nastk.readers import ImageArrays, read_image_set

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
#: the shared CIFAR-10 subset and its sha256 (from the data folder's README)
CIFAR10_SUBSET = "images/cifar10_subset_5k1k.npz"
CIFAR10_SUBSET_SHA256 = "a3dbf539be1dbca1917e145e42e5654752bbe6d4747006c0c1233e0d336a9b1c"


@dataclass
class ImageDataset:
    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int

    @property
    def input_size(self) -> int:
        return int(self.x_train.shape[-1])

    def batch(self, size: int, seed: int = 0, split: str = "train"):
        """A fixed random batch (for zero-cost proxies): the same for the same seed."""
        x, y = (self.x_train, self.y_train) if split == "train" else (self.x_test, self.y_test)
        generator = torch.Generator().manual_seed(seed)
        index = torch.randperm(len(x), generator=generator, device=HOST)[:size]
        return x[index], y[index]


def _normalise(x: np.ndarray, mean, std) -> torch.Tensor:
    tensor = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    mean = torch.tensor(mean, dtype=torch.float32, device=tensor.device).view(1, -1, 1, 1)
    std = torch.tensor(std, dtype=torch.float32, device=tensor.device).view(1, -1, 1, 1)
    return (tensor - mean) / std


def load_digits(test_fraction: float = 0.25, seed: int = 0, size: int = 16) -> ImageDataset:
    """scikit-learn's 1,797 8x8 digits, upsampled to ``size`` px and repeated to 3 channels."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    images = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)
    images = torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    images = images.repeat(1, 3, 1, 1).numpy()
    mean, std = float(images.mean()), float(images.std())
    x = _normalise(images, (mean,) * 3, (std,) * 3)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_test = int(round(len(x) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return ImageDataset("digits", x[train], y[train], x[test], y[test], num_classes=10)


def load_cifar10_subset(data_root: Optional[str] = None) -> ImageDataset:
    """The shared real CIFAR-10 subset (5,000 train + 1,000 test), with the standard normalisation."""
    path = data_file(CIFAR10_SUBSET, data_root)
    verify_sha256(path, CIFAR10_SUBSET_SHA256)  # the shared file as published (any flipped bit is caught)
    images = read_image_set(path, "shared CIFAR-10 subset")
    if images.num_classes != 10:
        raise CorruptDataError(f"shared CIFAR-10 subset {path} holds {images.num_classes} classes, not 10")
    return image_dataset("cifar10", images)


def image_dataset(name: str, images: ImageArrays) -> ImageDataset:
    """Checked uint8 NHWC images (:func:`nastk.readers.read_image_set`) as a normalised NCHW dataset."""
    to_nchw = lambda x: _normalise(x.transpose(0, 3, 1, 2).astype(np.float32) / 255.0,  # noqa: E731
                                   CIFAR10_MEAN, CIFAR10_STD)
    return ImageDataset(name, to_nchw(images.x_train), torch.from_numpy(images.y_train.astype(np.int64)),
                        to_nchw(images.x_test), torch.from_numpy(images.y_test.astype(np.int64)),
                        num_classes=images.num_classes)


def _unavailable(name: str) -> Callable[..., ImageDataset]:
    def loader(*_args, **_kwargs):
        raise MissingDataError(
            f"{name} images are not available offline (only the NB201 result tables are); "
            "use 'cifar10' (the shared 5k/1k subset) or 'digits'"
        )

    return loader


def _skimage_sr(**options) -> ImageDataset:
    from nastk.quantization.sr_data import load_sr_patches  # super-resolution patches (QuantNAS); needs scikit-image

    return load_sr_patches(**options)


LOADERS: Dict[str, Callable[..., ImageDataset]] = {
    "digits": load_digits,
    "skimage-sr": _skimage_sr,
    "cifar10": load_cifar10_subset,
    "cifar100": _unavailable("CIFAR-100"),
    "ImageNet16-120": _unavailable("ImageNet16-120"),
}


def load_dataset(name: str, **options) -> ImageDataset:
    """A named dataset (:data:`LOADERS`), or an ``.npz`` in the CIFAR subset's layout (``x_train``/``x_test``
    uint8 NHWC, ``y_train``/``y_test``), e.g. the full CIFAR-10 for ``--full`` runs."""
    if name.endswith(".npz"):
        path = Path(name).expanduser()
        if not path.is_file():
            raise MissingDataError(f"image file {path} not found")
        return image_dataset(path.stem, read_image_set(path))  # archive, keys, dtypes, shapes and labels checked
    if name not in LOADERS:
        raise UnknownNameError(f"unknown dataset {name!r}; known: {', '.join(LOADERS)}")
    return LOADERS[name](**options)


DATA_SEED = 0


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
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(DATA_SEED), device=HOST)
    if size is not None:
        order = order[:size]
    return x[order], y[order]


def crop_flip_params(n: int, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Random (dy, dx, flip) for ``n`` images, drawn for a whole global batch so that every rank
    (and a single process) augments an image the same way."""
    shifts = torch.randint(0, 2 * padding + 1, (n, 2), generator=generator, device=generator.device)
    flips = (torch.rand(n, 1, generator=generator, device=generator.device) < 0.5).long()
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

