"""Feature networks for FID / IS / KID without downloaded weights (methods.md 5.7).

Inception weights cannot be downloaded here, so the generative metrics read the features of a small
classifier trained in the project on the same data (digits: 2 conv + FC(64), 64-d penultimate
features). The trained weights are cached with their sha256 (a damaged or altered cache is retrained,
never used), and every metric carries the feature network's name, so ``fid[digits-cnn,n=600]`` is
never mistaken for an Inception FID. A user who has Inception (or any) weights as a TorchScript file
gets them through :class:`ScriptedFeatures` (nothing is downloaded).

Images here are GAN images: float tensors in [-1, 1], NCHW (digits: 1 x 8 x 8; CIFAR: 3 x 32 x 32).
"""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from nastk.devices import HOST, resolve_device
from nastk.errors import ConfigError, CorruptDataError, MissingDataError, UnknownNameError
from nastk.paths import atomic_write, cache_root, note, sha256_of, write_cache

#: per-channel statistics of the shared CIFAR-10 subset's normalisation (nastk.datasets)
from nastk.datasets import CIFAR10_MEAN, CIFAR10_STD, load_dataset

GAN_DATASETS = ("digits", "cifar10")


@dataclass
class GanImages:
    """Real images of a data set in the generator's range [-1, 1], with labels (the feature net's)."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    @property
    def shape(self) -> Tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])

    def as_dataset(self):
        """The images as a :class:`~nastk.datasets.ImageDataset` (what the one-shot trainer takes)."""
        from nastk.datasets import ImageDataset

        return ImageDataset(self.name, self.x_train, self.y_train, self.x_test, self.y_test, num_classes=10)


def gan_images(name: str) -> GanImages:
    """``digits`` (sklearn, 1 x 8 x 8, 1,348 train / 449 test) or ``cifar10`` (the shared 5k/1k subset,
    3 x 32 x 32), loaded through :func:`nastk.datasets.load_dataset` and mapped to [-1, 1]."""
    if name not in GAN_DATASETS:
        raise UnknownNameError(f"unknown GAN data set {name!r}; known: {', '.join(GAN_DATASETS)}")
    if name == "digits":
        data = load_dataset("digits", size=8)
        low = float(min(data.x_train.min(), data.x_test.min()))
        high = float(max(data.x_train.max(), data.x_test.max()))
        scale = lambda x: (x[:, :1] - low) / (high - low) * 2 - 1  # noqa: E731 (the 0..16 pixel range)
    else:
        data = load_dataset("cifar10")
        mean = torch.tensor(CIFAR10_MEAN, device=HOST).view(1, 3, 1, 1)  # where load_dataset's images are
        std = torch.tensor(CIFAR10_STD, device=HOST).view(1, 3, 1, 1)
        scale = lambda x: ((x * std + mean) * 2 - 1).clamp(-1, 1)  # noqa: E731
    return GanImages(name, scale(data.x_train).contiguous(), data.y_train, scale(data.x_test).contiguous(), data.y_test)


class FeatureCNN(nn.Module):
    """The in-project classifier: 2 conv blocks + FC(features) + linear head; ``features`` is the
    pre-activation of the FC layer (full-rank covariances, no dead ReLU units)."""

    def __init__(self, channels: int, size: int, classes: int = 10, width: int = 32, features: int = 64):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
        self.fc = nn.Linear(2 * width * (size // 4) ** 2, features)
        self.head = nn.Linear(features, classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.features(x)))


#: the recipe of each data set's feature net (part of the cache key: another recipe is another net)
RECIPES = {"digits": {"width": 32, "features": 64, "epochs": 40, "lr": 2e-3, "batch": 64, "shift": 1, "seed": 0},
           "cifar10": {"width": 48, "features": 64, "epochs": 30, "lr": 2e-3, "batch": 128, "shift": 3, "seed": 0}}


class FeatureExtractor:
    """A trained feature network: ``features(x)`` (n x d float64 numpy) and ``probabilities(x)`` (n x classes).

    ``name`` (e.g. ``digits-cnn``) goes into every metric name; ``sha256`` identifies the weights (the
    reference-statistics cache records it, so statistics of another net are never reused).
    """

    def __init__(self, name: str, network: nn.Module, sha256: str, test_accuracy: Optional[float] = None,
                 device=None, batch_size: int = 500):
        self.name, self.sha256, self.test_accuracy = name, sha256, test_accuracy
        self.device = resolve_device(device, network)  # None: where the network is
        self.network = network.to(self.device).eval()
        for parameter in self.network.parameters():
            parameter.requires_grad_(False)
        self.batch_size = batch_size

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x

    @torch.no_grad()
    def _run(self, x: torch.Tensor, method: str) -> np.ndarray:
        out = []
        for start in range(0, len(x), self.batch_size):
            batch = self._prepare(x[start:start + self.batch_size].to(self.device, torch.float32))
            out.append(getattr(self.network, method)(batch).double().cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, 0))

    def features(self, x: torch.Tensor) -> np.ndarray:
        return self._run(x, "features")

    def probabilities(self, x: torch.Tensor) -> np.ndarray:
        return torch.softmax(torch.from_numpy(self._run(x, "forward")), dim=1).numpy()


def _shift(x: torch.Tensor, pixels: int, generator: torch.Generator) -> torch.Tensor:
    """Random translations by up to ``pixels`` (zero padding at the background value -1)."""
    if not pixels:
        return x
    size = x.shape[-1]
    padded = F.pad(x, (pixels,) * 4, value=-1.0)
    dx, dy = torch.randint(0, 2 * pixels + 1, (2,), generator=generator, device=HOST).tolist()
    return padded[..., dy:dy + size, dx:dx + size]


def train_feature_net(images: GanImages, recipe: dict, device=None) -> Tuple[FeatureCNN, float]:
    """Train the classifier on the training split (Adam, random shifts) on ``device`` (None: torch's default
    device); returns it and its test accuracy (%)."""
    device = resolve_device(device)
    torch.manual_seed(recipe["seed"])
    channels, size = images.shape[0], images.shape[1]
    net = FeatureCNN(channels, size, width=recipe["width"], features=recipe["features"]).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=recipe["lr"])
    generator = torch.Generator(HOST).manual_seed(recipe["seed"])  # shifts and batch order: the same on every device
    x, y = images.x_train.to(device), images.y_train.to(device)
    for _ in range(recipe["epochs"]):
        order = torch.randperm(len(x), generator=generator, device=HOST).to(device)
        for start in range(0, len(x), recipe["batch"]):
            index = order[start:start + recipe["batch"]]
            loss = F.cross_entropy(net(_shift(x[index], recipe["shift"], generator)), y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    net.eval()
    with torch.no_grad():
        accuracy = float((net(images.x_test.to(device)).argmax(1).cpu() == images.y_test).float().mean()) * 100
    return net.cpu(), accuracy


def _recipe_key(dataset: str, recipe: dict) -> str:
    return hashlib.sha256(json.dumps({"dataset": dataset, **recipe}, sort_keys=True).encode()).hexdigest()[:12]


def feature_extractor(dataset: str, device=None, cache: Optional[Path] = None) -> FeatureExtractor:
    """The data set's in-project feature net (``digits-cnn``, ``cifar10-cnn``): loaded from the cache when
    its sha256 matches the record beside it, else trained (seconds for digits) and cached; on ``device``
    (None: torch's default device, :func:`nastk.devices.resolve_device`)."""
    device = resolve_device(device)
    if dataset not in RECIPES:
        raise UnknownNameError(f"no in-project feature network for {dataset!r}; known: {', '.join(RECIPES)}")
    recipe = RECIPES[dataset]
    folder = Path(cache) if cache is not None else cache_root() / "gan_features"
    stem = f"{dataset}-cnn-{_recipe_key(dataset, recipe)}"
    weights, record = folder / f"{stem}.pt", folder / f"{stem}.json"
    images = gan_images(dataset)
    net = FeatureCNN(images.shape[0], images.shape[1], width=recipe["width"], features=recipe["features"])
    if weights.is_file() and record.is_file():
        try:
            saved = json.loads(record.read_text())
            if sha256_of(weights) != saved.get("sha256"):
                raise CorruptDataError(f"feature network cache {weights} fails its sha256")
            net.load_state_dict(torch.load(weights, map_location=HOST, weights_only=True))
            return FeatureExtractor(f"{dataset}-cnn", net, saved["sha256"], saved.get("test_accuracy"), device)
        except (CorruptDataError, OSError, ValueError, RuntimeError, KeyError) as error:
            note(f"retraining the {dataset} feature network ({error})")
    net, accuracy = train_feature_net(images, recipe, device)
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()

    def write():
        with atomic_write(weights) as handle:
            handle.write(data)
        with atomic_write(record, "w") as handle:
            handle.write(json.dumps({"sha256": digest, "test_accuracy": accuracy, "recipe": recipe}))

    write_cache(write, f"the {dataset} feature network", "it is retrained next time")
    return FeatureExtractor(f"{dataset}-cnn", net, digest, accuracy, device)


class ScriptedFeatures(FeatureExtractor):
    """User-supplied weights as a TorchScript file (e.g. Inception-v3 exported with its ``features`` and
    ``forward`` methods): images are resized to ``input_size`` and repeated to 3 channels if needed.
    Nothing is downloaded; without the file there are no Inception metrics."""

    def __init__(self, path, name: str = "inception", input_size: int = 299, device=None, batch_size: int = 100):
        path = Path(path)
        if not path.is_file():
            raise MissingDataError(f"feature network weights {path} not found (Inception metrics need a "
                                   f"user-supplied TorchScript file; nothing is downloaded)")
        import warnings

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is what such files are
                network = torch.jit.load(str(path), map_location=resolve_device(device))
        except Exception as error:
            raise CorruptDataError(f"cannot load feature network {path}: {type(error).__name__}") from None
        if not hasattr(network, "features"):
            raise ConfigError(f"feature network {path} has no 'features' method (it must return n x d features)")
        if input_size < 1:
            raise ConfigError(f"input_size must be positive, got {input_size}")
        self.input_size = int(input_size)
        super().__init__(name, network, sha256_of(path), None, device, batch_size)

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        if x.shape[-1] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        return x
