"""Super-resolution images that ship inside installed packages (offline; methods.md 11A CPU plan).

Three disjoint sets of whole natural images, RGB in [0, 1]:

* ``train`` -- cut into ``patch`` x ``patch`` high-resolution patches (:func:`load_sr_patches`, the dataset
  ``skimage-sr``): the supernet's trained and held-out (alpha) patches; the ``image_pairs`` data module makes the
  low-resolution inputs (``downscale bicubic``) and scores PSNR (``psnr y``, ``border 4``);
* ``select`` -- whole images that selection (picking among architectures) scores on: held out from all training,
  weights and alpha alike (a search's ``held_out`` images, :func:`scoring_images`);
* ``test`` -- whole images ("Set5-like": astronaut, chelsea, coffee, rocket, grace_hopper), reported only.

Sources: scikit-image's ``skimage.data`` (no download for the images used here), scikit-learn's sample images and
matplotlib's ``grace_hopper.jpg``.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from nastk.datasets import ImageDataset
from nastk.errors import ConfigError, MissingDataError

#: the split of every image, by name
TRAIN_IMAGES = ("hubble_deep_field", "immunohistochemistry", "motorcycle_left", "retina", "flower")
SELECT_IMAGES = ("china", "motorcycle_right")
TEST_IMAGES = ("astronaut", "chelsea", "coffee", "rocket", "grace_hopper")
SPLITS = {"train": TRAIN_IMAGES, "select": SELECT_IMAGES, "test": TEST_IMAGES}
#: default patch size and stride of the training patches (high resolution)
PATCH, STRIDE = 32, 48
#: the dataset of the training patches (:func:`load_sr_patches`)
DATASET = "skimage-sr"
#: the whole images a network trained on :data:`DATASET` is scored on, by an evaluator's split
SCORING_SPLITS = {"held_out": "select", "test": "test"}


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load():
        import skimage.data

        return getattr(skimage.data, name)()
    return load


def _motorcycle(side: int) -> Callable[[], np.ndarray]:
    def load():
        import skimage.data

        return skimage.data.stereo_motorcycle()[side]
    return load


def _retina() -> np.ndarray:
    import skimage.data

    image = skimage.data.retina()
    return image[256:1156, 256:1156]  # the fundus inside its black border


def _sklearn(index: int) -> Callable[[], np.ndarray]:
    def load():
        from sklearn.datasets import load_sample_images

        return load_sample_images().images[index]
    return load


def _grace_hopper() -> np.ndarray:
    import matplotlib.cbook
    import matplotlib.image

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as handle:
        return np.asarray(matplotlib.image.imread(handle, format="jpg"))


SOURCES: Dict[str, Callable[[], np.ndarray]] = {
    "hubble_deep_field": _skimage("hubble_deep_field"), "immunohistochemistry": _skimage("immunohistochemistry"),
    "motorcycle_left": _motorcycle(0), "motorcycle_right": _motorcycle(1), "retina": _retina,
    "flower": _sklearn(1), "china": _sklearn(0), "astronaut": _skimage("astronaut"), "chelsea": _skimage("chelsea"),
    "coffee": _skimage("coffee"), "rocket": _skimage("rocket"), "grace_hopper": _grace_hopper}


def load_image(name: str) -> torch.Tensor:
    """One image as a ``(3, H, W)`` float tensor in [0, 1]."""
    if name not in SOURCES:
        raise ConfigError(f"unknown SR image {name!r}; known: {', '.join(SOURCES)}")
    try:
        image = SOURCES[name]()
    except (ImportError, OSError, ValueError) as error:
        raise MissingDataError(f"SR image {name!r} cannot be loaded ({type(error).__name__}: {error}); it ships with "
                               f"scikit-image / scikit-learn / matplotlib (pip install scikit-image)") from None
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] < 3:
        raise MissingDataError(f"SR image {name!r} is not an RGB image (shape {image.shape})")
    scale = 255.0 if image.dtype == np.uint8 else 1.0
    return torch.from_numpy(np.ascontiguousarray(image[..., :3], dtype=np.float32) / scale).permute(2, 0, 1).contiguous()


def whole_images(split: str, multiple: int = 4) -> List[Tuple[str, torch.Tensor]]:
    """``[(name, image)]`` of a split, each cropped to a multiple of ``multiple`` pixels (the SR scale)."""
    if split not in SPLITS:
        raise ConfigError(f"unknown SR image split {split!r}; known: {', '.join(SPLITS)}")
    images = []
    for name in SPLITS[split]:
        image = load_image(name)
        h, w = image.shape[1] // multiple * multiple, image.shape[2] // multiple * multiple
        images.append((name, image[:, :h, :w]))
    return images


def scoring_images(dataset: str, split: str, multiple: int) -> Optional[List[Tuple[str, torch.Tensor]]]:
    """The whole images that score a network trained on ``dataset`` for an evaluator's ``split`` (``held_out``: the
    ``select`` images, never trained on; ``test``: the test images, reported only), cropped to a multiple of the
    scale; None for a dataset without whole images (then its patches are what there is to score)."""
    if dataset != DATASET:
        return None
    if split not in SCORING_SPLITS:
        raise ConfigError(f"unknown scoring split {split!r}; known: {', '.join(SCORING_SPLITS)}")
    return whole_images(SCORING_SPLITS[split], multiple)


def patches(image: torch.Tensor, size: int, stride: int) -> torch.Tensor:
    """Every ``size`` x ``size`` patch of ``image`` at ``stride`` (top-left origin)."""
    tiles = image.unfold(1, size, stride).unfold(2, size, stride)  # (3, rows, cols, size, size)
    return tiles.permute(1, 2, 0, 3, 4).reshape(-1, 3, size, size)


def load_sr_patches(patch: int = PATCH, stride: int = STRIDE, test_stride: int = 96) -> ImageDataset:
    """The ``skimage-sr`` dataset: training patches of the ``train`` images (label = source image), and patches of
    the ``test`` images (monitoring only; reports score whole images, :func:`whole_images`)."""
    if patch < 8 or stride < 1:
        raise ConfigError(f"patch must be at least 8 and stride at least 1, got {patch} and {stride}")

    def cut(split, step):
        xs, ys = [], []
        for label, (_, image) in enumerate(whole_images(split, multiple=1)):
            tiles = patches(image, patch, step)
            xs.append(tiles)
            ys.append(torch.full((len(tiles),), label, dtype=torch.long))
        return torch.cat(xs), torch.cat(ys)

    (x_train, y_train), (x_test, y_test) = cut("train", stride), cut("test", test_stride)
    return ImageDataset(f"{DATASET}-{patch}px", x_train, y_train, x_test, y_test, num_classes=len(TRAIN_IMAGES))


@torch.no_grad()
def score_whole_images(model: torch.nn.Module, images: List[Tuple[str, torch.Tensor]], data_module,
                       device=None) -> Dict[str, float]:
    """Per image, the data module's score (Y-channel PSNR for ``image_pairs`` with ``psnr y``) of ``model``'s
    super-resolved low-resolution copy (the data module's own pair), computed on ``device`` (None: where the
    model is)."""
    from nastk.devices import resolve_device

    device = resolve_device(device, model)
    model.eval()
    scores = {}
    for name, image in images:
        low, high = data_module.monitor(image[None].to(device), None)
        scores[name] = float(data_module.score(model(low), high))
    return scores


def mean_score(model: torch.nn.Module, images: List[Tuple[str, torch.Tensor]], data_module, device=None) -> float:
    """The mean over ``images`` of :func:`score_whole_images` (each image weighs the same, as SR papers average)."""
    scores = score_whole_images(model, images, data_module, device)
    return float(np.mean(list(scores.values())))
