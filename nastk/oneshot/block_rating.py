"""BossNAS' architecture rating (methods.md 10.3): per-block path ratings, their sum over blocks as a
ranking of the whole space, greedy block-by-block selection, and the correlation report.

A *block rating* maps each candidate path of one block (its layers' options, written ``"64:40"``) to a
loss, lower = better. A network's rating is the sum over blocks of its paths' losses, each shifted by
+4 (BossNAS' head reports ``-2 cos`` per view, so a raw block loss lies in [-4, 4]; the released
ranking script adds 4 per block and rounds to 4 decimals). :func:`aggregate` does exactly that, so
BossNAS' released ratings reproduce its README's correlations (:func:`shipped_rating_report`), and a
rating nastk trains (:func:`rate_block`) becomes a ranking of all 32,768 NATS size networks the same way.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from nastk.errors import ConfigError
from nastk.run_folder import BLOCKWISE_RESULT

#: BossNAS' shift per block (the head's -2 cos per view -> 2 - 2 cos, summed over both views)
BLOCK_OFFSET = 4.0
#: BossNAS' ranking script rounds the summed loss to this many decimals
DECIMALS = 4
#: the README's NATS Ss CIFAR-10 numbers (methods.md 10.4), magnitudes
PUBLISHED = {"kendall_tau": 0.53, "spearman_rho": 0.73, "pearson_r": 0.72}


def path_key(channels: Sequence[int], layers: Sequence[int]) -> str:
    """The key of a network's path through one block: its layers' channel counts joined by ``:``."""
    return ":".join(str(int(channels[i])) for i in layers)


def aggregate(block_ratings: Sequence[Mapping[str, float]], networks: Sequence[Sequence[int]],
              blocks: Sequence[Sequence[int]], offset: float = BLOCK_OFFSET,
              decimals: Optional[int] = DECIMALS) -> np.ndarray:
    """Each network's rating: the sum over blocks of (its path's block loss + ``offset``), rounded to
    ``decimals`` (None: unrounded). ``networks`` are channel tuples; a path without a rating is an error."""
    if len(block_ratings) != len(blocks):
        raise ConfigError(f"{len(block_ratings)} block ratings for {len(blocks)} blocks")
    total = np.zeros(len(networks))
    for ratings, layers in zip(block_ratings, blocks):
        try:
            total += np.array([ratings[path_key(net, layers)] + offset for net in networks])
        except KeyError as error:
            raise ConfigError(f"block with layers {tuple(layers)} has no rating for path {error.args[0]}") from None
    return np.round(total, decimals) if decimals is not None else total


def greedy_selection(block_ratings: Sequence[Mapping[str, float]]) -> List[str]:
    """BossNAS' choice: the lowest-loss path of every block, in block order (ties: the first key)."""
    return [min(ratings, key=lambda k: (ratings[k], k)) for ratings in block_ratings]


def correlations(scores: Sequence[float], truth: Sequence[float]) -> Dict[str, float]:
    """Kendall tau-b, Spearman rho and Pearson r (scipy) of ``scores`` against ``truth``."""
    from scipy import stats

    scores, truth = np.asarray(scores, float), np.asarray(truth, float)
    return {"kendall_tau": float(stats.kendalltau(scores, truth)[0]),
            "spearman_rho": float(stats.spearmanr(scores, truth)[0]),
            "pearson_r": float(stats.pearsonr(scores, truth)[0])}


def channel_count(networks: Sequence[Sequence[int]]) -> np.ndarray:
    """The trivial baseline: total channels c0 + ... + c4 (higher = better)."""
    return np.array([float(sum(net)) for net in networks])


def shipped_rating_report() -> Dict[str, object]:
    """BossNAS' released NATS Ss CIFAR-10 block ratings, aggregated by :func:`aggregate`, against the
    90-epoch table (all 32,768 networks): tau / rho / r of the (negated) rating, unrounded too, the
    channel-count baseline on the same networks, each block's rating alone, and the greedy choice."""
    from nastk.benchmarks.nats_sss import BOSSNAS_BLOCKS, arch_at, default_table, index_of, shipped_block_ratings
    from nastk.space import get_space

    space = get_space("nats-sss")
    networks = [space.channels(arch) for arch in space.enumerate()]
    truth = default_table().test90
    ratings = shipped_block_ratings()
    rating = aggregate(ratings, networks, BOSSNAS_BLOCKS)
    per_block = []
    for block, layers in enumerate(BOSSNAS_BLOCKS):
        alone = aggregate([ratings[block]], networks, [layers], decimals=None)
        per_block.append({"block": block, "layers": [f"c{i}" for i in layers], "paths": len(ratings[block]),
                          **correlations(-alone, truth)})
    choice = greedy_selection(ratings)
    chosen = space.from_str(":".join(choice))
    best = int(np.argmin(rating))
    return {"networks": len(networks),
            "bossnas": correlations(-rating, truth),
            "bossnas_unrounded": correlations(-aggregate(ratings, networks, BOSSNAS_BLOCKS, decimals=None), truth),
            "channel_count": correlations(channel_count(networks), truth),
            "per_block": per_block,
            "greedy_choice": {"arch": space.to_str(chosen), "test90": float(truth[index_of(chosen)]),
                              "percentile": float(100.0 * np.mean(truth <= truth[index_of(chosen)]))},
            "lowest_rating": {"arch": space.to_str(arch_at(best)), "rating": float(rating[best]),
                              "test90": float(truth[best])},
            "optimum": float(truth.max()), "space_mean": float(truth.mean()),
            "published": PUBLISHED}


def report_lines(report: Mapping[str, object]) -> List[str]:
    """The shipped-rating report as a markdown table and notes (what ``nastk reproduce bossnas`` prints)."""
    def row(name, values, published=None):
        cells = [f"{values[k]:+.4f}" for k in ("kendall_tau", "spearman_rho", "pearson_r")]
        return f"| {name} | " + " | ".join(cells) + f" | {published or ''} |"

    lines = [f"BossNAS ratings (released, NATS Ss CIFAR-10) vs the 90-epoch table, {report['networks']} networks",
             "", "| scorer (higher = better) | Kendall tau | Spearman rho | Pearson r | published |",
             "|---|---|---|---|---|",
             row("BossNAS rating (negated sum, rounded as released)", report["bossnas"], "0.53 / 0.73 / 0.72"),
             row("BossNAS rating, unrounded", report["bossnas_unrounded"]),
             row("total channel count c0+...+c4 (trivial baseline)", report["channel_count"])]
    for block in report["per_block"]:
        lines.append(row(f"block {block['block']} alone ({', '.join(block['layers'])}; {block['paths']} paths)", block))
    greedy, lowest = report["greedy_choice"], report["lowest_rating"]
    lines += ["", f"greedy block-by-block choice: {greedy['arch']} -> {greedy['test90']:.2f}% "
                  f"(at or above {greedy['percentile']:.1f}% of the space; optimum {report['optimum']:.2f}, "
                  f"mean {report['space_mean']:.2f})",
              f"lowest summed rating: {lowest['arch']} (rating {lowest['rating']:.4f}) -> {lowest['test90']:.2f}%"]
    return lines


# --- rating a trained block (methods.md 10.3) ---------------------------------------------------------------
@dataclass
class RatingOptions:
    """How a trained block is rated: validation batches of held-out training images (two views drawn once
    with ``seed``), and the stored training batch every path's BN statistics are re-estimated on."""

    batches: int = 2
    batch_size: int = 256
    calibration_size: int = 256
    seed: int = 0

    def __post_init__(self):
        for name in ("batches", "batch_size", "calibration_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"rating option {name} must be a whole number >= 1, got {value!r}")


def _batch_norms(*modules):
    import torch.nn as nn

    return [m for module in modules for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def _views(x, seed: int):
    """Two crop + flip views of ``x``, drawn once from ``seed`` (cached augmentation, as BossNAS rates)."""
    import torch

    from nastk.datasets import crop_flip, crop_flip_params

    generator = torch.Generator().manual_seed(seed)
    return crop_flip(x, crop_flip_params(len(x), generator)), crop_flip(x, crop_flip_params(len(x), generator))


def rate_block(step, block: int, calibration, validation: Sequence, paths: Sequence[Sequence[int]],
               base_path: Sequence[int]) -> Dict[Tuple[int, ...], float]:
    """Every path's BossNAS rating on ``block`` (lower = better; the code's raw potential, 4 below the loss).

    For each path (its block decisions' options over ``base_path``): every BN's statistics are set to
    those of the stored training batch ``calibration`` (two views, momentum 1.0, train mode) in the online
    and target networks; then, in eval mode, each validation batch's two views give the online
    predictions q_p and target projections z_p. The ensemble is the mean of z_p over **all** paths, not
    normalised; ``loss_p = l(q_p(v1), t(v2)) + l(q_p(v2), t(v1))`` averaged over the batches."""
    import torch

    from nastk.oneshot.bossnas import byol_loss, output_factor

    decisions = step.context.supernet.blocks[block]
    online, target = step.context.supernet, step.target
    nets = ((online, step._head, step._predictor), (target, step.target_head, None))
    norms = _batch_norms(online, step._head, step._predictor, target, step.target_head)
    saved = [(bn, bn.momentum) for bn in norms]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = 1.0

    def run(backbone, head, predictor, x, path):
        backbone.set_active(path)
        features = backbone(x, block=block)
        z = head(features, output_factor(backbone, features))
        return predictor(z) if predictor is not None else z

    outputs = []  # per path: per batch (q1, q2, z1, z2)
    try:
        with torch.no_grad():
            for choice in paths:
                path = list(base_path)
                for d, option in zip(decisions, choice):
                    path[d] = int(option)
                for module in (online, step._head, step._predictor, target, step.target_head):
                    module.train()
                for backbone, head, predictor in nets:
                    run(backbone, head, predictor, torch.cat(calibration), path)
                for module in (online, step._head, step._predictor, target, step.target_head):
                    module.eval()
                per_batch = []
                for v1, v2 in validation:
                    q1, q2 = (run(online, step._head, step._predictor, v, path) for v in (v1, v2))
                    z1, z2 = (run(target, step.target_head, None, v, path) for v in (v1, v2))
                    per_batch.append((q1, q2, z1, z2))
                outputs.append(per_batch)
    finally:
        for bn, momentum in saved:
            bn.momentum = momentum
    losses = np.zeros(len(paths))
    for b in range(len(validation)):
        t1 = torch.stack([out[b][2] for out in outputs]).mean(0)
        t2 = torch.stack([out[b][3] for out in outputs]).mean(0)
        for p, out in enumerate(outputs):
            losses[p] += float(byol_loss(out[b][0], t2) + byol_loss(out[b][1], t1)) / len(validation)
    return {tuple(int(o) for o in choice): float(loss - BLOCK_OFFSET) for choice, loss in zip(paths, losses)}


def rate_stage(folder, block: Optional[int] = None, options: Optional[RatingOptions] = None, device=None,
               data=None) -> Dict[str, object]:
    """Rate every path of ``block`` (default: the block the stage trained) from a finished BossNAS stage folder
    (its checkpoint: weights, heads, target); returns ``{"ratings": {path key: potential}, "chosen":
    {decision: [option]}, ...}``. ``options`` default to the step's rating options (``rating_*``).

    Validation images are the run's held-out training images (never the test split); the calibration batch
    is the first ``calibration_size`` trained images, both with views drawn once from ``options.seed``."""
    from pathlib import Path

    from nastk.oneshot.bossnas import block_paths
    from nastk.oneshot.trainer import CHECKPOINT, OneShotConfig, OneShotTrainer, read_checkpoint
    import time

    started = time.perf_counter()
    state = read_checkpoint(Path(folder) / CHECKPOINT, device)
    config = OneShotConfig.from_dict(state["config"])
    trainer = OneShotTrainer(config, None, device, data=data, progress=False)
    trainer.supernet.load_state_dict(state["model"])
    trainer.supernet.allowed = np.array(state["allowed"], dtype=bool)
    trainer.step.load_state_dict(state["step"])
    options = options or trainer.step.rating
    block = trainer.step.block if block is None else int(block)
    if not len(trainer.x_held):
        raise ConfigError("BossNAS rates paths on held-out training images; this run holds out none "
                          "(set held_out_fraction)")
    held = trainer.x_held[:options.batches * options.batch_size]
    validation = [_views(held[s:s + options.batch_size], options.seed + 1 + s)
                  for s in range(0, len(held), options.batch_size)]
    calibration = _views(trainer.x[:options.calibration_size], options.seed)
    supernet = trainer.supernet
    base_path = [int(np.flatnonzero(row)[-1]) for row in supernet.allowed]
    paths = block_paths(supernet, block)
    rated = rate_block(trainer.step, block, calibration, validation, paths, base_path)
    decisions = [supernet.decisions[d] for d in supernet.blocks[block]]
    key = lambda choice: ":".join(d.options[o] for d, o in zip(decisions, choice))  # noqa: E731
    ratings = {key(choice): value for choice, value in rated.items()}
    best = min(rated, key=lambda c: (rated[c], c))
    return {"block": block, "ratings": ratings, "chosen": {d.name: [d.options[o]] for d, o in zip(decisions, best)},
            "paths": len(paths), "validation_images": len(held), "calibration_images": options.calibration_size,
            "rating_wall_s": round(time.perf_counter() - started, 3)}


# --- the summed rating as an evaluator: any query strategy can search by it ---------------------------------
def _evaluator_base():
    from nastk.evaluator import Evaluator

    return Evaluator


class BossNASEvaluator(_evaluator_base()):
    """``--evaluator bossnas:RUN_DIR``: a finished BossNAS search's summed block rating of any architecture of
    its space (``bossnas_score`` = minus the rating + 4 per block, higher = better), free to query, so every
    query strategy (and the benchmark's report beside it) can use BossNAS' ranking of the whole space."""

    objective = "bossnas_score"
    target, target_metavar = "run_dir", "RUN_DIR"
    reports_benchmark = True

    def __init__(self, space, run_dir, seed: int = 0, device=None):  # device unused: ratings are read, nothing runs
        from pathlib import Path

        from nastk.errors import RunError
        from nastk.readers import read_json

        path = Path(run_dir) / BLOCKWISE_RESULT
        if not path.is_file():
            raise RunError(f"{run_dir} holds no finished BossNAS search (bossnas.json); run one with "
                           f"nastk supernet train --step bossnas --stages blockwise")
        summary = read_json(path, "BossNAS search summary", RunError)
        if space.name != "nats-sss":
            raise ConfigError(f"the BossNAS rating evaluator ranks nats-sss architectures, not {space.name!r}")
        from nastk.benchmarks.nats_sss import BOSSNAS_BLOCKS

        self.space, self.ratings, self.blocks, self.run_dir = space, summary["ratings"], BOSSNAS_BLOCKS, str(run_dir)

    @classmethod
    def fingerprint(cls, config):
        from pathlib import Path

        from nastk.paths import sha256_of

        path = Path(config[cls.target]) / BLOCKWISE_RESULT
        return f"sha256:{sha256_of(path)}" if path.is_file() else None

    def evaluate(self, arch):
        from nastk.evaluator import Result

        rating = aggregate(self.ratings, [self.space.channels(arch)], self.blocks, decimals=None)[0]
        return Result({"bossnas_score": -float(rating)}, cost_s=0.0, objective="bossnas_score",
                      protocol={"bossnas": self.run_dir})

    def describe(self):
        return {"evaluator": "bossnas", "run_dir": self.run_dir}


def rating_evaluator(space, run_dir) -> Optional["BossNASEvaluator"]:
    """The rating evaluator of a run folder holding a finished BossNAS search (``bossnas.json``), else None:
    what ``supernet rank`` and ``--evaluator supernet:RUN_DIR`` score such a run by, since self-supervised
    weights have no classifier to score with."""
    from pathlib import Path

    return BossNASEvaluator(space, run_dir) if (Path(str(run_dir)) / BLOCKWISE_RESULT).is_file() else None
