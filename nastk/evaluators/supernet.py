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

What the score is comes from the run's data module (:mod:`nastk.oneshot.datamodules`): the top-1 accuracy of
``labelled`` images, the PSNR (dB) of ``image_pairs`` (super-resolution: QuantNAS' ``sr`` space). Image pairs are
scored one whole image at a time (:func:`nastk.quantization.sr_data.score_whole_images`, the mean over images): for
the ``skimage-sr`` dataset the ``select`` images, held out from all training, weights and alpha alike
(``split held_out``), and the test images reported beside (``split test`` selects on those); for another dataset
its unseen training patches and test patches. Those children keep the supernet's BatchNorm statistics unless
``bn_calibration`` asks otherwise (QuantNAS scores them so), and their costs (``--objectives ...,bitops``) are
the trained network's (:meth:`SupernetEvaluator.network_options`: the data's scale, the supernet's width).
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
    """Inherited-weight score (accuracy, or PSNR for image pairs) in a trained supernet (``nastk supernet train``)."""

    objective = "accuracy"  # an instance scores what its run's data module scores (``score_name``)
    target, target_metavar = "run_dir", "RUN_DIR"
    reports_benchmark = True
    OPTIONS = (Option("eval_size", Int(minimum=1), "images scored per architecture (as supernet rank's --eval-size)"),
               Option("eval_batch_size", Int(minimum=1), "images per forward pass (BN uses batch statistics)"),
               Option("split", Text(choices=SPLITS, nullable=False), "images the search selects by: held_out = the "
                      "run's training images its weights never trained on (super-resolution on skimage-sr: the "
                      "held-out select images); test = the test images (selection on the test split)"),
               Option("bn_calibration", Int(minimum=0), "recalibrate tracked BatchNorm statistics on this many "
                      "batches of the run's training images per architecture (0: none; default: enough batches for "
                      "2000 images when the supernet's BatchNorm tracks running statistics, else 0; image pairs: 0)"),
               Option("bn_recipe", Text(choices=("cumulative", "exact"), nullable=False), "BN recalibration: "
                      "cumulative (BigNAS) or exact (OFA)"))
    #: what a run config written before these options existed used
    UNRECORDED_DEFAULTS = {"split": "test", "bn_calibration": 0}

    def __init__(self, space, run_dir, eval_size: Optional[int] = 1000, eval_batch_size: int = 500,
                 split: str = "held_out", bn_calibration: Optional[int] = None, bn_recipe: str = "cumulative", seed: int = 0,
                 device=None):
        """``device`` None: torch's default device (:func:`nastk.devices.resolve_device`)."""
        from nastk.datasets import mixed
        from nastk.devices import resolve_device
        from nastk.oneshot.datamodules import make_data_module
        from nastk.oneshot.ranking import calibration_batches
        from nastk.oneshot.splits import unseen_training_images
        from nastk.oneshot.trainer import load_trained

        if split not in SPLITS:
            raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        self.run_dir, self.device, self.batch_size, self.split = Path(run_dir), resolve_device(device), eval_batch_size, split
        self.supernet, self.config, self.epoch = load_trained(self.run_dir, device)
        self.data_module = make_data_module(self.config.data, self.config.data_options)
        if self.data_module.score_name is None:
            raise ConfigError(f"the supernet evaluator scores children by their run's data module; {self.run_dir} was "
                              f"trained on {self.config.data} data, which defines no score")
        if self.config.space != space.name:
            raise ConfigError(f"the supernet in {self.run_dir} is over space {self.config.space!r}, "
                              f"not the searched space {space.name!r}")
        self.space, self.objective = space, self.data_module.score_name
        self.labelled = self.data_module.name == "labelled"  # labels to score against; else the images are targets
        if bn_calibration is None:
            bn_calibration = default_calibration(self.supernet, self.config)
        self.recipe = bn_recipe
        whole = None if self.labelled else self._whole_images(eval_size)
        data = self._data() if bn_calibration or whole is None else None
        if self.labelled:
            self.x_test, self.y_test = mixed(data.x_test, data.y_test, eval_size)
            self.x, self.y = (self.x_test, self.y_test) if split == "test" else unseen_training_images(self.config, data,
                                                                                                       eval_size)
            self.images, self.test_images = len(self.x), len(self.x_test)
        else:
            self.held_out_set, self.test_set = whole or self._patches(data, eval_size)
            self.scored_set = self.test_set if split == "test" else self.held_out_set
            self.images, self.test_images = len(self.scored_set), len(self.test_set)
        # as the network takes them: the low-resolution copies of image pairs
        calibration = calibration_batches(self.config, data, bn_calibration) if bn_calibration else []
        self.calibration = calibration or None

    def _data(self):
        from nastk.datasets import downsample, load_dataset

        return downsample(load_dataset(self.config.dataset), self.config.image_size)

    def _whole_images(self, eval_size: Optional[int]):
        """(held-out, test) whole images of the run's dataset when it has them (skimage-sr), else None."""
        from nastk.quantization.sr_data import scoring_images

        scale = getattr(self.data_module, "scale", 1)
        held_out = scoring_images(self.config.dataset, "held_out", scale)
        if held_out is None:
            return None
        return held_out[:eval_size], scoring_images(self.config.dataset, "test", scale)[:eval_size]

    def _patches(self, data, eval_size: Optional[int]):
        """(held-out, test) images of a dataset without whole images: its unseen training patches and test patches."""
        from nastk.datasets import mixed
        from nastk.oneshot.splits import unseen_training_images

        x, _ = unseen_training_images(self.config, data, eval_size)
        x_test, _ = mixed(data.x_test, data.y_test, eval_size)
        return [(f"patch{i}", image) for i, image in enumerate(x)], [(f"test{i}", image) for i, image in enumerate(x_test)]

    @classmethod
    def settle_config(cls, space, config: Dict[str, Any]) -> None:
        """``bn_calibration`` left at its default becomes the number of batches it stands for with this
        supernet, so the run config records what every evaluation (and ``nastk export``) uses."""
        from nastk.devices import HOST
        from nastk.oneshot.trainer import CHECKPOINT, load_trained

        # a folder without a checkpoint is refused when the evaluator is built, with its own one-line message
        if config.get("bn_calibration") is None and (Path(config[cls.target]) / CHECKPOINT).is_file():
            supernet, trained, _ = load_trained(config[cls.target], HOST)  # read for its BatchNorm kind only
            config["bn_calibration"] = default_calibration(supernet, trained)

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

    def _score(self, arch: Architecture, test: bool = False) -> float:
        """``arch``'s inherited-weight score on the images selection reads (``test``: on the test images)."""
        from nastk.oneshot.ranking import activate, inherited_accuracies
        from nastk.oneshot.steps import STEPS
        from nastk.quantization.sr_data import mean_score

        if self.labelled:
            x, y = (self.x_test, self.y_test) if test else (self.x, self.y)
            return float(inherited_accuracies(self.supernet, [arch], x, y, device=self.device, batch_size=self.batch_size,
                                              calibration=self.calibration, recipe=self.recipe,
                                              score=STEPS.get(self.config.step).score or self.data_module.score)[0])
        self.supernet.to(self.device)
        activate(self.supernet, arch, self.calibration, self.recipe)
        return mean_score(self.supernet, self.test_set if test else self.scored_set, self.data_module, self.device)

    def _protocol(self) -> Dict[str, Any]:
        protocol = {"supernet": str(self.run_dir), "epoch": self.epoch, "images": self.images,
                    "dataset": self.config.dataset, "split": self.split}
        if not self.labelled:
            protocol.update(score=self._score_text(), scored=[name for name, _ in self.scored_set][:20])
        if self.calibration:
            protocol["bn_calibration"] = {"recipe": self.recipe, "batches": len(self.calibration),
                                          "images": sum(len(batch) for batch in self.calibration)}
        return protocol

    def evaluate(self, arch: Architecture) -> Result:
        started = time.perf_counter()
        score = self._score(arch)
        return Result({self.objective: score}, cost_s=time.perf_counter() - started, objective=self.objective,
                      protocol=self._protocol())

    def final_metrics(self, arch: Architecture) -> Dict[str, float]:
        """The winner's inherited-weight score on the test images: reported, never optimised (an accuracy under
        ``supernet_test_accuracy`` too, which a benchmark's ground-truth ``test_accuracy`` leaves; a PSNR as
        ``test_psnr``)."""
        score = self._score(arch, test=True)
        if self.labelled:
            return {"test_accuracy": score, "supernet_test_accuracy": score, "test_images": self.test_images}
        return {f"test_{self.objective}": score, "test_images": self.test_images}

    def network_options(self) -> Optional[Dict[str, Any]]:
        """For image pairs, the trained network's: the data's scale and the supernet options the space's ``cost()``
        takes (the sr space: ``scale``, ``C``); None for labelled images (the costs of the network the dataset
        describes, as before)."""
        if self.labelled:
            return None
        import inspect

        taken = inspect.signature(self.space.cost).parameters
        options = {**self.config.supernet, "scale": getattr(self.data_module, "scale", None)}
        return {name: value for name, value in options.items() if name in taken and value is not None}

    def _score_text(self) -> str:
        what = {"psnr": "PSNR"}.get(self.objective, self.objective)
        options = self.config.data_options
        if options.get("psnr") == "y":
            what = f"Y-channel {what} ({options.get('border', 4)}-px border)"
        return f"{what} in {self.data_module.score_unit}" if self.data_module.score_unit else what

    def _images_text(self, test: bool) -> str:
        if self.labelled:
            count = self.test_images if test else self.images
            if test or self.split == "test":
                return f"{count} {self.config.dataset} test images" + ("" if test else " (the test split)")
            return f"{count} held-out {self.config.dataset} training images (never trained on)"
        images = self.test_set if test else self.scored_set
        names = ", ".join(name for name, _ in images[:6]) + (", ..." if len(images) > 6 else "")
        if test or self.split == "test":
            return f"{len(images)} {self.config.dataset} test images ({names})" + ("" if test else ", the test split")
        return f"{len(images)} held-out {self.config.dataset} images never trained on ({names})"

    def describe(self) -> Dict[str, Any]:
        score = "accuracy" if self.labelled else self._score_text()
        return {"evaluator": "supernet", "objective": f"inherited-weight {score} on {self._images_text(False)} "
                f"(supernet {self.run_dir}, epoch {self.epoch})", "split": self.split,
                "report": f"inherited-weight {score} on {self._images_text(True)}",
                "score": self.objective, "unit": self.data_module.score_unit,
                "run_dir": str(self.run_dir), "device": str(self.device),
                "bn_calibration": ({"recipe": self.recipe, "batches": len(self.calibration),
                                    "images": sum(len(batch) for batch in self.calibration)} if self.calibration else None)}


def default_calibration(supernet, config) -> int:
    """Recalibration batches a child gets by default (:func:`~nastk.oneshot.ranking.default_bn_calibration`, the
    rule ``supernet rank`` and ``nastk export`` follow too): OFA's for labelled images; none for image pairs
    (QuantNAS scores a child with the supernet's own statistics)."""
    from nastk.oneshot.ranking import default_bn_calibration

    return default_bn_calibration(supernet, config)

