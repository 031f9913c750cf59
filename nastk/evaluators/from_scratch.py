"""Train-from-scratch evaluation: build the architecture, train it briefly, measure its held-out score.

The training split is divided once into train and validation parts, so strategies select on
validation accuracy; the search's winner is then retrained on all training data for longer and
reported on the untouched test split (:meth:`TrainingEvaluator.final_metrics`).

What is trained and scored comes from the space (:attr:`~nastk.space.SearchSpace.TRAINING_DATA`) and its data
module: image classifiers train with cross-entropy on labelled images (``--dataset``, default digits) and score
top-1 accuracy; the ``sr`` space's super-resolution networks train with L1 on (low, high)-resolution pairs of the
skimage-sr patches and score the PSNR (dB) of whole images: the held-out ``select`` images (never trained on) for
the search, the test images for the winner (:func:`nastk.quantization.sr_data.scoring_images`).
"""
from __future__ import annotations

import time
import zlib
from typing import TYPE_CHECKING, Any, Dict, Optional

from nastk.architecture import Architecture
from nastk.errors import ConfigError
from nastk.evaluator import Evaluator, Result
from nastk.options import Float, Int, Option, Text
from nastk.space import SearchSpace

if TYPE_CHECKING:  # torch loads when an evaluator is made, not when the CLI reads the options below
    from nastk.datasets import ImageDataset
    from nastk.standalone_training import TrainingConfig

#: what a space without :attr:`~nastk.space.SearchSpace.TRAINING_DATA` trains on by default
DEFAULT_DATASET = "digits"


def training_data(space: SearchSpace) -> Dict[str, Any]:
    """The space's training data (dataset, data module and its options); labelled digits for an image classifier."""
    declared = space.TRAINING_DATA or {}
    return {"dataset": declared.get("dataset", DEFAULT_DATASET), "data": declared.get("data", "labelled"),
            "data_options": dict(declared.get("data_options") or {})}


class TrainingEvaluator(Evaluator):
    """Each candidate trained briefly from scratch; the winner retrained longer and tested."""

    objective = "accuracy"  # an instance scores what the space's data module scores (``score_name``)
    builds_networks = True
    retrains_winner = True
    OPTIONS = (Option("dataset", Text(), "training images (default: the space's own, skimage-sr patches for sr, else "
                      "digits): digits (scikit-learn, offline) or cifar10 (the shared subset)"),
               Option("epochs", Int(minimum=1), "training epochs per candidate"),
               Option("final_epochs", Int(minimum=1), "epochs to retrain the winner on all training data"),
               Option("batch_size", Int(minimum=1), "training batch size"),
               Option("lr", Float(above=0), "SGD learning rate (cosine schedule, NB201's recipe)"))

    def __init__(self, space: SearchSpace, dataset: Optional[str] = None, epochs: int = 3, final_epochs: int = 12,
                 batch_size: int = 64, lr: float = 0.1, valid_fraction: float = 0.2, seed: int = 0,
                 device=None, build_options: Optional[Dict[str, Any]] = None):
        """``device`` None: torch's default device (:func:`nastk.devices.resolve_device`)."""
        from nastk.datasets import load_dataset
        from nastk.devices import resolve_device
        from nastk.standalone_training import TrainingConfig

        space.require("build")
        self.space, self.seed, self.device = space, seed, resolve_device(device)
        self.config = TrainingConfig(epochs=epochs, batch_size=batch_size, lr=lr)
        self.final_config = TrainingConfig(epochs=final_epochs, batch_size=batch_size, lr=lr)
        self.build_options = dict(build_options or {})
        self.data_module = self._data_module(space, dataset)
        self.objective, self.labelled = self.data_module.score_name, self.data_module.name == "labelled"
        self.dataset = dataset or training_data(space)["dataset"]
        self.data: ImageDataset = load_dataset(self.dataset)
        n_valid = int(len(self.data.x_train) * valid_fraction)
        whole = None if self.labelled else self._whole_images()
        fit = slice(None) if whole else slice(n_valid, None)  # whole held-out images: every patch trains
        self.x_fit, self.y_fit = self.data.x_train[fit], self.data.y_train[fit]
        self.x_valid, self.y_valid = self.data.x_train[:n_valid], self.data.y_train[:n_valid]
        if not self.labelled:
            self.held_out_set, self.test_set = whole or ([(f"patch{i}", x) for i, x in enumerate(self.x_valid)],
                                                         [(f"test{i}", x) for i, x in enumerate(self.data.x_test)])
        self._final_model = None

    def _data_module(self, space: SearchSpace, dataset: Optional[str]):
        """The space's data module; the build's options it shares (the sr space's ``scale``) made the same."""
        from nastk.oneshot.datamodules import DATA_MODULES, make_data_module
        from nastk.options import declared

        data = training_data(space)
        if space.TRAINING_DATA and dataset not in (None, data["dataset"]):
            raise ConfigError(f"the {space.name} space's networks train on {data['dataset']} ({data['data']}), not "
                              f"{dataset!r}: leave --dataset out")
        shared = {o.name for o in declared(DATA_MODULES.get(data["data"]))} & set(self.build_options)
        return make_data_module(data["data"], {**data["data_options"], **{k: self.build_options[k] for k in shared}})

    def _whole_images(self):
        """(held-out, test) whole images of the dataset when it has them (skimage-sr), else None."""
        from nastk.quantization.sr_data import scoring_images

        scale = getattr(self.data_module, "scale", 1)
        held_out = scoring_images(self.dataset, "held_out", scale)
        return None if held_out is None else (held_out, scoring_images(self.dataset, "test", scale))

    @classmethod
    def settle_config(cls, space, config: Dict[str, Any]) -> None:
        """The run config records the dataset the space trains on when none was named."""
        if config.get("dataset") is None:
            config["dataset"] = training_data(space)["dataset"]

    def _seed_for(self, arch: Architecture) -> int:
        """A per-architecture seed, so an architecture's result does not depend on evaluation order."""
        return (self.seed * 1_000_003 + zlib.crc32(arch.to_str().encode())) % (2**31)

    def _trained(self, arch: Architecture, x, y, config: TrainingConfig):
        import torch

        from nastk.standalone_training import train_model

        seed = self._seed_for(arch)
        torch.manual_seed(seed)
        model = self.space.build(arch, self.data.num_classes, **self.build_options)
        if self.labelled:
            return model, train_model(model, x, y, config, device=self.device, seed=seed)
        inputs, targets = self.data_module.monitor(x, y)  # (low-resolution, high-resolution) pairs of the patches
        return model, train_model(model, inputs, targets, config, device=self.device, seed=seed,
                                  loss=self.data_module.loss)

    def _score(self, model, test: bool = False) -> float:
        from nastk.quantization.sr_data import mean_score
        from nastk.standalone_training import accuracy

        if self.labelled:
            x, y = (self.data.x_test, self.data.y_test) if test else (self.x_valid, self.y_valid)
            return accuracy(model, x, y, self.device)
        return mean_score(model, self.test_set if test else self.held_out_set, self.data_module, self.device)

    def evaluate(self, arch: Architecture) -> Result:
        started = time.perf_counter()
        model, loss = self._trained(arch, self.x_fit, self.y_fit, self.config)
        metrics = {self.objective: self._score(model), "train_loss": loss}
        protocol = {"dataset": self.data.name, "split": "valid" if self.labelled else "held_out",
                    "epochs": self.config.epochs}
        if not self.labelled:
            protocol["scored"] = [name for name, _ in self.held_out_set][:20]
        return Result(metrics, cost_s=time.perf_counter() - started, objective=self.objective, protocol=protocol)

    def final_metrics(self, arch: Architecture) -> Dict[str, float]:
        model, _ = self._trained(arch, self.data.x_train, self.data.y_train, self.final_config)
        self._final_model = model
        return {f"test_{self.objective}": self._score(model, test=True), "final_epochs": self.final_config.epochs}

    def final_model(self):
        return self._final_model

    def network_options(self) -> Optional[Dict[str, Any]]:
        """For a space with its own training data (sr), the trained network's build options that its ``cost()``
        takes (``scale``, ``C``); None for image classifiers (the dataset's network, as before)."""
        if self.labelled:
            return None
        import inspect

        taken = inspect.signature(self.space.cost).parameters
        return {name: value for name, value in self.build_options.items() if name in taken}

    def describe(self) -> Dict[str, Any]:
        described = {"evaluator": "train", "objective": f"{self.data.name} validation accuracy after {self.config.epochs} "
                     f"epochs", "dataset": self.data.name, "epochs": self.config.epochs,
                     "final_epochs": self.final_config.epochs, "build": self.build_options, "device": str(self.device)}
        if not self.labelled:
            names = ", ".join(name for name, _ in self.held_out_set[:6]) + (", ..." if len(self.held_out_set) > 6 else "")
            described.update(
                objective=f"{self.objective} ({self.data_module.score_unit}) of {len(self.held_out_set)} held-out "
                f"images never trained on ({names}) after {self.config.epochs} epochs on {self.data.name}",
                score=self.objective, unit=self.data_module.score_unit,
                report=f"winner retrained {self.final_config.epochs} epochs, {len(self.test_set)} test images")
        return described
