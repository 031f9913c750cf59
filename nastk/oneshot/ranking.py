"""Rank architectures by their accuracy with a supernet's inherited weights, against a benchmark.

This is how one-shot methods are judged (PA&DA, methods.md 1.2): each architecture runs as a single
path of the trained supernet on held-out images, and the resulting order is compared with the
benchmark's ground truth by Kendall tau-b, Spearman rho and precision@k (:mod:`nastk.metrics`). A
space without a benchmark (the MobileNet spaces, the ``sr`` space) is ranked by the supernet's own scores alone.
A run whose data module scores something other than labels (image pairs: PSNR) is ranked by that score, exactly
as the supernet evaluator scores a search's children (:func:`evaluator_ranking`).

Supernets whose BatchNorm tracks running statistics have them recalibrated per architecture on
training batches first (:mod:`nastk.oneshot.recalibration`): by default on
:func:`default_bn_calibration` batches (OFA's 2000 images for classifiers, none for image pairs), the same
for ``supernet rank``, the supernet evaluator and ``nastk export``, which all activate a child through
:func:`activate`. PA&DA's supernet uses batch statistics and needs none.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from nastk.architecture import Architecture
from nastk.devices import resolve_device
from nastk.errors import ConfigError
from nastk.metrics import kendall_tau, precision_at_k, spearman_rho
from nastk.oneshot.recalibration import recalibrate_bn, tracked_norms
from nastk.progress import Progress
from nastk.space import SearchSpace

DEFAULT_KS = (5, 10, 20)
#: training images that recalibrate a child's tracked BatchNorm statistics by default (OFA's 2000)
DEFAULT_BN_IMAGES = 2000


@dataclass
class Ranking:
    """Architectures, their inherited-weight scores and, when the space has a benchmark, its truth
    (``truth`` None: ranked by the scores alone, no correlation). ``score``: what the scores measure (the run's
    data module's ``score_name``: accuracy, psnr), each row's ``supernet_<score>``; ``score_text`` says it in words."""

    archs: List[Architecture]
    scores: np.ndarray
    truth: Optional[np.ndarray]
    truth_protocol: Optional[str]
    kendall: Optional[float]
    spearman: Optional[float]
    precision: Dict[int, float]
    score: str = "accuracy"
    score_text: str = "inherited-weight accuracy"

    @property
    def score_key(self) -> str:
        return f"supernet_{self.score}"

    def to_dict(self) -> Dict:
        order = np.argsort(-self.scores, kind="stable")
        if self.truth is None:
            return {"n": len(self.archs), "truth": None,
                    "ranking": [{"rank": rank, "arch": self.archs[i].to_str(), self.score_key: float(self.scores[i])}
                                for rank, i in enumerate(order, start=1)]}
        true_rank = np.empty(len(self.truth), dtype=int)
        true_rank[np.argsort(-self.truth, kind="stable")] = np.arange(1, len(self.truth) + 1)
        return {
            "n": len(self.archs), "kendall": self.kendall, "spearman": self.spearman,
            "precision_at": {str(k): v for k, v in self.precision.items()}, "truth": self.truth_protocol,
            "ranking": [{"rank": rank, "arch": self.archs[i].to_str(), self.score_key: float(self.scores[i]),
                         "true_accuracy": float(self.truth[i]), "true_rank": int(true_rank[i])}
                        for rank, i in enumerate(order, start=1)],
        }


def sample_architectures(space: SearchSpace, count: int, seed: int) -> List[Architecture]:
    """``count`` distinct uniformly random architectures (the same list for the same seed)."""
    if count < 2:
        raise ConfigError(f"ranking needs at least 2 architectures, got {count}")
    rng = np.random.default_rng(seed)
    chosen: Dict[Architecture, None] = {}
    for _ in range(100 * count):
        chosen.setdefault(space.sample(rng))
        if len(chosen) == count:
            return list(chosen)
    raise ConfigError(f"could not draw {count} distinct architectures from {space.name}")


def benchmark_truth(space: SearchSpace, archs: Sequence[Architecture], dataset: str = "cifar10") -> Tuple[np.ndarray, str]:
    """Ground-truth accuracies from the space's benchmark (NB201: final 200-epoch test accuracy) and their protocol."""
    from nastk.benchmarks.registry import benchmark_for

    return benchmark_for(space.name).truth(archs, dataset)


def tracks_bn_statistics(supernet) -> bool:
    """Whether any BatchNorm of ``supernet`` keeps running statistics (then a child needs them recalibrated)."""
    return bool(tracked_norms(supernet))


def default_bn_calibration(supernet, config) -> int:
    """Recalibration batches (of the run's ``batch_size``) a child gets by default, the one rule ``supernet rank``,
    the supernet evaluator and ``nastk export`` follow: for labelled images, enough for :data:`DEFAULT_BN_IMAGES`
    training images when the supernet's BatchNorm tracks running statistics (a BigNAS supernet trained with
    momentum 0 holds none worth using), else 0; for any other data (image pairs: QuantNAS scores a child with the
    supernet's own statistics) 0."""
    if config.data != "labelled" or not tracks_bn_statistics(supernet):
        return 0
    return -(-DEFAULT_BN_IMAGES // int(config.batch_size))


def calibration_batches(config, data, batches: int) -> List[torch.Tensor]:
    """The first ``batches`` batches (the run's ``batch_size``) of the images a supernet run trained its
    weights on (:func:`nastk.oneshot.splits.split_images`) as the network takes them (the run's data module's
    input: the low-resolution copies of image pairs): what a child's BatchNorm is recalibrated on."""
    from nastk.oneshot.datamodules import make_data_module
    from nastk.oneshot.splits import split_images

    if not batches:
        return []
    (x_train, _), _ = split_images(config, data)
    module = make_data_module(config.data, config.data_options)
    images = x_train[: int(batches) * int(config.batch_size)].split(int(config.batch_size))
    return [network_input(module, batch) for batch in images]


def network_input(data_module, images: torch.Tensor) -> torch.Tensor:
    """What a network trained through ``data_module`` takes for ``images`` (labelled: the images; image pairs:
    their low-resolution copies; a module that monitors nothing: the images)."""
    pair = data_module.monitor(images, None)
    return images if pair is None else pair[0]


@torch.no_grad()
def activate(supernet, arch, calibration: Optional[Sequence[torch.Tensor]] = None, recipe: str = "cumulative"):
    """Make ``arch`` the supernet's active path and, with ``calibration`` batches (on its device),
    re-estimate the path's tracked BatchNorm statistics by ``recipe``; returns the path. The one way a
    child is prepared for scoring (:func:`inherited_accuracies`) and for export (``supernet.extract``
    then copies these statistics)."""
    path = supernet.set_active(arch)
    if calibration:
        recalibrate_bn(supernet, calibration, recipe)
    supernet.eval()
    return path


@torch.no_grad()
def inherited_accuracies(supernet, archs: Sequence[Architecture], x: torch.Tensor, y: torch.Tensor, device=None,
                         batch_size: int = 500, calibration: Optional[Sequence[torch.Tensor]] = None,
                         recipe: str = "cumulative", progress: bool = False,
                         score: Optional[Callable[[torch.Tensor, torch.Tensor], float]] = None) -> np.ndarray:
    """The mean ``score`` of every architecture as a path of ``supernet`` (default: the training steps'
    top-1 accuracy in percent; a run's own step's or data module's ``score``).

    With ``calibration`` (training batches), each path's tracked BatchNorm statistics are first
    re-estimated on them by ``recipe`` (:func:`nastk.oneshot.recalibration.recalibrate_bn`: ``cumulative``,
    BigNAS', or ``exact``, OFA's). ``device`` None: where ``supernet`` is.
    """
    if score is None:
        from nastk.oneshot.datamodules import correct_percent as score
    device = resolve_device(device, supernet)
    supernet.to(device)
    batches = [(x[s:s + batch_size].to(device), y[s:s + batch_size].to(device)) for s in range(0, len(x), batch_size)]
    calibration = [b.to(device) for b in calibration] if calibration else None
    accuracies = np.zeros(len(archs))
    bar = Progress(len(archs), "ranking", "architectures", enabled=progress)
    for i, arch in enumerate(archs):
        activate(supernet, arch, calibration, recipe)
        accuracies[i] = sum(score(supernet(xb), yb) for xb, yb in batches) / len(x)
        bar.update(best=float(accuracies[: i + 1].max()))
    bar.close()
    return accuracies


def rank(supernet, archs: Sequence[Architecture], x: torch.Tensor, y: torch.Tensor, truth: Optional[np.ndarray] = None,
         truth_protocol: Optional[str] = "", ks: Sequence[int] = DEFAULT_KS, **options) -> Ranking:
    """Score ``archs`` with inherited weights and compare with ``truth`` (same order); ``truth`` None
    (a space without a benchmark): the scores alone, no Kendall / Spearman / precision@k."""
    return ranking_of(archs, inherited_accuracies(supernet, archs, x, y, **options), truth, truth_protocol, ks)


def ranking_of(archs: Sequence[Architecture], scores: np.ndarray, truth: Optional[np.ndarray] = None,
               truth_protocol: Optional[str] = "", ks: Sequence[int] = DEFAULT_KS, **score) -> Ranking:
    """``archs`` ranked by any per-architecture ``scores`` (higher = better; inherited-weight accuracies,
    a BossNAS rating), compared with ``truth`` when there is one; ``score``: the Ranking's ``score`` and
    ``score_text`` (default: accuracy)."""
    scores = np.asarray(scores, dtype=float)
    if truth is None:
        return Ranking(list(archs), scores, None, None, None, None, {}, **score)
    truth = np.asarray(truth, dtype=float)
    precision = {k: precision_at_k(scores, truth, k) for k in ks if k <= len(archs)}
    return Ranking(list(archs), scores, truth, truth_protocol, kendall_tau(scores, truth),
                   spearman_rho(scores, truth), precision, **score)


def evaluator_ranking(space: SearchSpace, run_dir, archs: Sequence[Architecture], truth: Optional[np.ndarray] = None,
                      truth_protocol: Optional[str] = "", *, split: str = "test", eval_size: Optional[int] = None,
                      bn_calibration: Optional[int] = None, bn_recipe: str = "cumulative", device=None,
                      progress: bool = False) -> Tuple[Ranking, Dict]:
    """``archs`` ranked by what the supernet run's data module scores, exactly as the supernet evaluator
    (``--evaluator supernet:RUN_DIR``) scores a search's children: a super-resolution run's PSNR on whole
    images (``split`` held_out: the images selection reads; test: the test images), one image at a time, BatchNorm
    by the one default rule (:func:`default_bn_calibration`). Returns the ranking and what it scored (``images``:
    their names, or the images; ``calibration`` batches). A run whose data module defines no score is refused in
    one line by the evaluator."""
    from nastk.evaluators.supernet import SupernetEvaluator

    evaluator = SupernetEvaluator(space, run_dir, eval_size=eval_size, split=split, bn_calibration=bn_calibration,
                                  bn_recipe=bn_recipe, device=device)
    scores = np.zeros(len(archs))
    bar = Progress(len(archs), "ranking", "architectures", enabled=progress)
    for i, arch in enumerate(archs):
        scores[i] = evaluator.evaluate(arch).value
        bar.update(best=float(scores[: i + 1].max()))
    bar.close()
    ranking = ranking_of(archs, scores, truth, truth_protocol, score=evaluator.objective,
                         score_text=evaluator.describe()["objective"])
    images = evaluator.x if evaluator.labelled else [name for name, _ in evaluator.scored_set]
    return ranking, {"images": images, "calibration": list(evaluator.calibration or [])}
