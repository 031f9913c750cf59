"""A trained supernet as an evaluator for any query strategy: an architecture's accuracy with inherited
weights (``--evaluator supernet:RUN_DIR``).

The images are the held-out ones ``nastk supernet rank`` scores on (the first ``eval_size`` of the
run's dataset's test split in nastk's fixed order) in batches of 500 like the ranking's (the
supernet's BatchNorm uses batch statistics, so the batch size matters), so a search over a supernet
and a ranking of it see the same numbers. The cost is the measured time of the forward passes.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, Optional

from nastk.architecture import Architecture
from nastk.errors import ConfigError
from nastk.evaluator import Evaluator, Result
from nastk.options import Int, Option


class SupernetEvaluator(Evaluator):
    """Inherited-weight accuracy in a trained supernet (``nastk supernet train``)."""

    objective = "accuracy"
    target, target_metavar = "run_dir", "RUN_DIR"
    reports_benchmark = True
    OPTIONS = (Option("eval_size", Int(minimum=1), "held-out images scored per architecture (supernet rank's)"),
               Option("eval_batch_size", Int(minimum=1), "images per forward pass (BN uses batch statistics)"))

    def __init__(self, space, run_dir, eval_size: Optional[int] = 1000, eval_batch_size: int = 500, seed: int = 0,
                 device="cpu"):
        from nastk.oneshot.data import downsample, load_images, mixed
        from nastk.oneshot.trainer import load_trained

        self.run_dir, self.device, self.batch_size = Path(run_dir), device, eval_batch_size
        self.supernet, self.config, self.epoch = load_trained(self.run_dir, device)
        if self.config.space != space.name:
            raise ConfigError(f"the supernet in {self.run_dir} is over space {self.config.space!r}, "
                              f"not the searched space {space.name!r}")
        data = downsample(load_images(self.config.dataset), self.config.image_size)
        self.x, self.y = mixed(data.x_test, data.y_test, eval_size)

    def evaluate(self, arch: Architecture) -> Result:
        from nastk.oneshot.ranking import inherited_accuracies

        started = time.perf_counter()
        accuracy = float(inherited_accuracies(self.supernet, [arch], self.x, self.y, device=self.device,
                                              batch_size=self.batch_size)[0])
        return Result({"accuracy": accuracy}, cost_s=time.perf_counter() - started, objective="accuracy",
                      protocol={"supernet": str(self.run_dir), "epoch": self.epoch, "images": len(self.x),
                                "dataset": self.config.dataset, "split": "test"})

    def describe(self) -> Dict[str, Any]:
        return {"evaluator": "supernet", "objective": f"inherited-weight accuracy on {len(self.x)} held-out "
                f"{self.config.dataset} images (supernet {self.run_dir}, epoch {self.epoch})",
                "run_dir": str(self.run_dir), "device": str(self.device)}
