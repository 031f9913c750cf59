"""A trained supernet as an evaluator for any query strategy: an architecture's accuracy with inherited
weights (``--evaluator supernet:RUN_DIR``).

A search selects by this accuracy, so by default it is measured on training images of the run's
dataset that the supernet's weights never trained on (:func:`nastk.oneshot.splits.unseen_training_images`:
the run's held-out part, or the images beyond its ``train_size``), never on the test split. The
winner's inherited-weight accuracy on the test images is reported beside (:meth:`final_metrics`), not
optimised. ``split test`` scores the test images instead, said so in the protocol and description.

Images are taken in nastk's fixed order (the first ``eval_size``) and run in batches of 500 like
``nastk supernet rank``'s (a supernet's BatchNorm may use batch statistics, so the batch size matters),
so a search over a supernet and a ranking of it on the same split see the same numbers. Supernets
whose BatchNorm tracks running statistics (the MobileNet spaces; BigNAS trains them with momentum 0)
are recalibrated per architecture on ``bn_calibration`` batches of the images the run trained on: by
default as many as ``supernet rank`` and ``nastk export`` use
(:func:`nastk.oneshot.ranking.default_bn_calibration`, OFA's 2000 images), resolved when the run
config is written and recorded there and in every result's protocol; supernets whose BatchNorm uses
batch statistics (NB201's) get none. The cost is the measured time of the forward passes.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, Optional

from nastk.architecture import Architecture
from nastk.errors import ConfigError
from nastk.evaluator import Evaluator, Result
from nastk.options import Int, Option, Text

#: the splits an architecture can be scored on
SPLITS = ("held_out", "test")


class SupernetEvaluator(Evaluator):
    """Inherited-weight accuracy in a trained supernet (``nastk supernet train``)."""

    objective = "accuracy"
    target, target_metavar = "run_dir", "RUN_DIR"
    reports_benchmark = True
    OPTIONS = (Option("eval_size", Int(minimum=1), "images scored per architecture (as supernet rank's --eval-size)"),
               Option("eval_batch_size", Int(minimum=1), "images per forward pass (BN uses batch statistics)"),
               Option("split", Text(choices=SPLITS, nullable=False), "images the search selects by: held_out = the "
                      "run's training images its weights never trained on; test = the test images (selection on "
                      "the test split)"),
               Option("bn_calibration", Int(minimum=0), "recalibrate tracked BatchNorm statistics on this many "
                      "batches of the run's training images per architecture (0: none; default: enough batches for "
                      "2000 images when the supernet's BatchNorm tracks running statistics, else 0)"),
               Option("bn_recipe", Text(choices=("cumulative", "exact"), nullable=False), "BN recalibration: "
                      "cumulative (BigNAS) or exact (OFA)"))
    #: what a run config written before these options existed used
    UNRECORDED_DEFAULTS = {"split": "test", "bn_calibration": 0}

    def __init__(self, space, run_dir, eval_size: Optional[int] = 1000, eval_batch_size: int = 500,
                 split: str = "held_out", bn_calibration: Optional[int] = None, bn_recipe: str = "cumulative", seed: int = 0,
                 device=None):
        """``device`` None: torch's default device (:func:`nastk.devices.resolve_device`)."""
        from nastk.devices import resolve_device
        from nastk.oneshot.splits import unseen_training_images
        from nastk.datasets import downsample, load_dataset, mixed
        from nastk.oneshot.ranking import calibration_batches, default_bn_calibration
        from nastk.oneshot.trainer import load_trained

        if split not in SPLITS:
            raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        self.run_dir, self.device, self.batch_size, self.split = Path(run_dir), resolve_device(device), eval_batch_size, split
        self.supernet, self.config, self.epoch = load_trained(self.run_dir, device)
        from nastk.oneshot.datamodules import make_data_module

        self.data_module = make_data_module(self.config.data, self.config.data_options)
        if self.data_module.name != "labelled":  # images and labels are what this evaluator feeds the supernet
            raise ConfigError(f"the supernet evaluator scores labelled images; {self.run_dir} was trained on "
                              f"{self.config.data} data")
        if self.config.space != space.name:
            raise ConfigError(f"the supernet in {self.run_dir} is over space {self.config.space!r}, "
                              f"not the searched space {space.name!r}")
        data = downsample(load_dataset(self.config.dataset), self.config.image_size)
        self.x_test, self.y_test = mixed(data.x_test, data.y_test, eval_size)
        if split == "test":
            self.x, self.y = self.x_test, self.y_test
        else:
            self.x, self.y = unseen_training_images(self.config, data, eval_size)
        if bn_calibration is None:
            bn_calibration = default_bn_calibration(self.supernet, self.config)
        self.recipe = bn_recipe
        self.calibration = calibration_batches(self.config, data, bn_calibration) or None

    @classmethod
    def settle_config(cls, space, config: Dict[str, Any]) -> None:
        """``bn_calibration`` left at its default becomes the number of batches it stands for with this
        supernet, so the run config records what every evaluation (and ``nastk export``) uses."""
        from nastk.devices import HOST
        from nastk.oneshot.trainer import CHECKPOINT, load_trained

        # a folder without a checkpoint is refused when the evaluator is built, with its own one-line message
        if config.get("bn_calibration") is None and (Path(config[cls.target]) / CHECKPOINT).is_file():
            from nastk.oneshot.ranking import default_bn_calibration

            supernet, trained, _ = load_trained(config[cls.target], HOST)  # read for its BatchNorm kind only
            config["bn_calibration"] = default_bn_calibration(supernet, trained)

    @classmethod
    def fingerprint(cls, config: Dict[str, Any]):
        """The supernet checkpoint's sha256: retraining or replacing the supernet changes every score."""
        from nastk.oneshot.trainer import CHECKPOINT
        from nastk.paths import sha256_of

        path = Path(config[cls.target]) / CHECKPOINT
        return f"sha256:{sha256_of(path)}" if path.is_file() else None

    @classmethod
    def from_config(cls, space, config: Dict[str, Any], seed: int = 0, *, device) -> Evaluator:
        """The supernet's inherited-weight score; a finished BossNAS search (``bossnas.json``) is scored by its
        summed block rating instead (:class:`~nastk.oneshot.block_rating.BossNASEvaluator`): self-supervised
        weights have no classifier to score with."""
        from nastk.oneshot.block_rating import rating_evaluator

        rating = rating_evaluator(space, config.get(cls.target))
        if rating is not None:
            return rating
        return super().from_config(space, {**cls.UNRECORDED_DEFAULTS, **config}, seed=seed, device=device)

    def _accuracy(self, arch: Architecture, x, y) -> float:
        from nastk.oneshot.ranking import inherited_accuracies
        from nastk.oneshot.steps import STEPS

        return float(inherited_accuracies(self.supernet, [arch], x, y, device=self.device, batch_size=self.batch_size,
                                          calibration=self.calibration, recipe=self.recipe,
                                          score=STEPS.get(self.config.step).score or self.data_module.score)[0])

    def _protocol(self) -> Dict[str, Any]:
        protocol = {"supernet": str(self.run_dir), "epoch": self.epoch, "images": len(self.x),
                    "dataset": self.config.dataset, "split": self.split}
        if self.calibration:
            protocol["bn_calibration"] = {"recipe": self.recipe, "batches": len(self.calibration),
                                          "images": sum(len(batch) for batch in self.calibration)}
        return protocol

    def evaluate(self, arch: Architecture) -> Result:
        started = time.perf_counter()
        accuracy = self._accuracy(arch, self.x, self.y)
        return Result({"accuracy": accuracy}, cost_s=time.perf_counter() - started, objective="accuracy",
                      protocol=self._protocol())

    def final_metrics(self, arch: Architecture) -> Dict[str, float]:
        """The winner's inherited-weight accuracy on the test images: reported, never optimised (under
        ``supernet_test_accuracy`` too, which a benchmark's ground-truth ``test_accuracy`` leaves)."""
        accuracy = self._accuracy(arch, self.x_test, self.y_test)
        return {"test_accuracy": accuracy, "supernet_test_accuracy": accuracy, "test_images": len(self.x_test)}

    def describe(self) -> Dict[str, Any]:
        images = (f"{len(self.x)} {self.config.dataset} test images (the test split)" if self.split == "test" else
                  f"{len(self.x)} held-out {self.config.dataset} training images (never trained on)")
        return {"evaluator": "supernet", "objective": f"inherited-weight accuracy on {images} "
                f"(supernet {self.run_dir}, epoch {self.epoch})", "split": self.split,
                "report": f"inherited-weight accuracy on {len(self.x_test)} {self.config.dataset} test images",
                "run_dir": str(self.run_dir), "device": str(self.device),
                "bn_calibration": ({"recipe": self.recipe, "batches": len(self.calibration),
                                    "images": sum(len(batch) for batch in self.calibration)} if self.calibration else None)}
