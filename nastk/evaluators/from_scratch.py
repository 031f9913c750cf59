"""Train-from-scratch evaluation: build the architecture, train it briefly, measure validation accuracy.

The training split is divided once into train and validation parts, so strategies select on
validation accuracy; the search's winner is then retrained on all training data for longer and
reported on the untouched test split (:meth:`TrainingEvaluator.final_metrics`).
"""
from __future__ import annotations

import time
import zlib
from typing import TYPE_CHECKING, Any, Dict, Optional

from nastk.architecture import Architecture
from nastk.evaluator import Evaluator, Result
from nastk.options import Float, Int, Option, Text
from nastk.space import SearchSpace

if TYPE_CHECKING:  # torch loads when an evaluator is made, not when the CLI reads the options below
    from nastk.datasets import ImageDataset
    from nastk.standalone_training import TrainingConfig


class TrainingEvaluator(Evaluator):
    """Each candidate trained briefly from scratch; the winner retrained longer and tested."""

    objective = "accuracy"
    builds_networks = True
    retrains_winner = True
    OPTIONS = (Option("dataset", Text(), "training images: digits (scikit-learn, offline) or cifar10 (the shared subset)"),
               Option("epochs", Int(minimum=1), "training epochs per candidate"),
               Option("final_epochs", Int(minimum=1), "epochs to retrain the winner on all training data"),
               Option("batch_size", Int(minimum=1), "training batch size"),
               Option("lr", Float(above=0), "SGD learning rate (cosine schedule, NB201's recipe)"))

    def __init__(self, space: SearchSpace, dataset: str = "digits", epochs: int = 3, final_epochs: int = 12,
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
        self.data: ImageDataset = load_dataset(dataset)
        n_valid = int(len(self.data.x_train) * valid_fraction)
        self.x_fit, self.y_fit = self.data.x_train[n_valid:], self.data.y_train[n_valid:]
        self.x_valid, self.y_valid = self.data.x_train[:n_valid], self.data.y_train[:n_valid]
        self._final_model = None

    def _seed_for(self, arch: Architecture) -> int:
        """A per-architecture seed, so an architecture's result does not depend on evaluation order."""
        return (self.seed * 1_000_003 + zlib.crc32(arch.to_str().encode())) % (2**31)

    def _trained(self, arch: Architecture, x, y, config: TrainingConfig):
        import torch

        from nastk.standalone_training import train_model

        seed = self._seed_for(arch)
        torch.manual_seed(seed)
        model = self.space.build(arch, self.data.num_classes, **self.build_options)
        loss = train_model(model, x, y, config, device=self.device, seed=seed)
        return model, loss

    def evaluate(self, arch: Architecture) -> Result:
        from nastk.standalone_training import accuracy

        started = time.perf_counter()
        model, loss = self._trained(arch, self.x_fit, self.y_fit, self.config)
        metrics = {"accuracy": accuracy(model, self.x_valid, self.y_valid, self.device), "train_loss": loss}
        return Result(metrics, cost_s=time.perf_counter() - started, objective="accuracy",
                      protocol={"dataset": self.data.name, "split": "valid", "epochs": self.config.epochs})

    def final_metrics(self, arch: Architecture) -> Dict[str, float]:
        from nastk.standalone_training import accuracy

        model, _ = self._trained(arch, self.data.x_train, self.data.y_train, self.final_config)
        self._final_model = model
        return {"test_accuracy": accuracy(model, self.data.x_test, self.data.y_test, self.device),
                "final_epochs": self.final_config.epochs}

    def final_model(self):
        return self._final_model

    def describe(self) -> Dict[str, Any]:
        return {"evaluator": "train", "objective": f"{self.data.name} validation accuracy after {self.config.epochs} epochs",
                "dataset": self.data.name, "epochs": self.config.epochs,
                "final_epochs": self.final_config.epochs, "build": self.build_options, "device": str(self.device)}
