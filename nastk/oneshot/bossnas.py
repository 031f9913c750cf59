"""BossNAS' block-wise self-supervised supernet training with ensemble bootstrapping (methods.md 10.2).

One block of the supernet trains at a time (a stage of :mod:`nastk.oneshot.stages`; earlier blocks run
their chosen paths, the block's own decisions are sampled). Per iteration, on two augmented views
``v1, v2`` of every image (the ``two_views`` data module):

* K paths are drawn afresh (the ``fair`` path sampler: every allowed option of every decision exactly
  once per K = options paths, as BossNAS samples the NATS space; any other sampler: K draws of it);
* the target is the **ensemble** ``t(v) = mean_p normalize(g'_p(v))`` of the EMA target network's
  projections over the same K paths (no gradients);
* every path's online prediction ``q_p(v) = h(g_p(v))`` is trained on
  ``loss_p = l(q_p(v1), t(v2)) + l(q_p(v2), t(v1))``, ``l = 2 - 2 cos`` (BYOL's normalised MSE); the
  path losses are **summed** and divided by ``update_interval``, backpropagated at once;
* every ``update_interval`` iterations: one optimizer step (LARS or SGD; BN and biases without weight
  decay or LARS scaling), then the EMA update ``m = 1 - (1 - m0)(cos(pi k / K) + 1) / 2`` of the target.

``g_p`` = backbone up to the block's end (``supernet(x, block=k)``) + a width adapter (1x1 conv + BN to
``adapter_width``, one per output shape of the block; a depthwise conv of kernel = stride first where
the block's output is larger than the adapter's size) + global average pool + projector
(``fc, BN1d, ReLU, fc``); ``h`` = predictor of the same form. The cosine learning rate with linear
warm-up and the EMA schedule restart in every block (a new step per stage), as BossNAS restarts them.
Earlier blocks keep training (BossNAS' default; ``freeze_previous_blocks`` stops that).

:func:`search` runs the whole method (``nastk supernet train --stages blockwise``): a stage schedule of one
choosing stage per block (:func:`blockwise_stages`), so the loop trains block 0, the step rates its paths
(:meth:`BossNASStep.choose`, :mod:`nastk.oneshot.block_rating`; rank 0 only under ``torchrun``), the best is
fixed, block 1 trains on it, ...; bossnas.json gets every block's rating, the choices and the architecture.
"""
from __future__ import annotations

import copy
import itertools
import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from nastk.devices import HOST
from nastk.errors import ConfigError
from nastk.oneshot.samplers import PathSampler
from nastk.oneshot.steps import Batch, StepOutput, TrainingStep
from nastk.options import Bool, Float, Int, Option, Text
from nastk.run_folder import BLOCKWISE_RESULT

#: StepContext.rng stream of the step's own draws (K paths when the sampler has no sample_many)
PATH_STREAM = 13
OPTIMIZERS = ("lars", "sgd")


# --- the optimizer ------------------------------------------------------------------------------------
class LARS(torch.optim.Optimizer):
    """SGD with momentum and a layer-wise trust ratio ``eta ||w|| / (||g|| + wd ||w||)`` (You et al.),
    as BossNAS' OpenSelfSup LARS; parameter groups with ``lars=False`` (BN, biases) get plain SGD
    without weight decay. Parameters without a gradient are skipped (momentum untouched)."""

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0, eta: float = 0.001):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, lars=True))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d_p = p.grad
                if group["lars"]:
                    d_p = d_p.add(p, alpha=group["weight_decay"])
                    w_norm, g_norm = torch.norm(p), torch.norm(p.grad)
                    trust = torch.where((w_norm > 0) & (g_norm > 0),
                                        group["eta"] * w_norm / (g_norm + group["weight_decay"] * w_norm),
                                        torch.ones_like(w_norm))
                    d_p = d_p.mul(trust)
                state = self.state[p]
                buffer = state.get("momentum_buffer")
                if buffer is None:
                    buffer = state["momentum_buffer"] = torch.clone(d_p).detach()
                else:
                    buffer.mul_(group["momentum"]).add_(d_p)
                p.add_(buffer, alpha=-group["lr"])


def split_decay(parameters: Sequence[nn.Parameter]) -> List[Dict[str, Any]]:
    """Weights (decayed, LARS-scaled) apart from BN parameters and biases (neither), BossNAS' grouping."""
    return [{"params": [p for p in parameters if p.dim() > 1]},
            {"params": [p for p in parameters if p.dim() <= 1], "weight_decay": 0.0, "lars": False}]


# --- fair path sampling ---------------------------------------------------------------------------------
class FairPathSampler(PathSampler):
    """FairNAS / BossNAS fair sampling: ``sample_many(K)`` gives K paths in which every allowed option of
    every decision appears equally often (exactly once when K = its number of options), each decision's
    options in an independent random order. A decision with one allowed option (a chosen earlier block)
    keeps it. ``sample()`` is the first path of a fresh fair set."""

    name = "fair"

    def sample_many(self, count: int, rng: Optional[np.random.Generator] = None) -> List[Tuple[int, ...]]:
        rng = self.rng if rng is None else rng
        columns = []
        for row in self.allowed:
            options = np.flatnonzero(row)
            tiled = np.concatenate([rng.permutation(options) for _ in range(-(-count // len(options)))])[:count]
            columns.append(tiled)
        return [tuple(int(c[k]) for c in columns) for k in range(count)]

    def sample(self) -> Tuple[int, ...]:
        return self.sample_many(1)[0]


# --- the Siamese heads ----------------------------------------------------------------------------------
def mlp(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    """BYOL's projector / predictor form: fc, BN1d, ReLU, fc (biases on)."""
    return nn.Sequential(nn.Linear(inputs, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=False),
                         nn.Linear(hidden, outputs))


def adapter_key(channels: int, factor: int) -> str:
    return f"c{channels}_s{factor}"


class SiameseHead(nn.Module):
    """Width adapters (one per output shape of the block) + global average pool + projector."""

    def __init__(self, outputs: Sequence[Tuple[int, int]], adapter_width: int, hidden: int, projection: int):
        super().__init__()
        adapters = {}
        for channels, factor in outputs:
            layers: List[nn.Module] = []
            if factor > 1:  # HyTra: a depthwise conv (kernel = stride) brings the map to the adapter's size
                layers.append(nn.Conv2d(channels, channels, factor, stride=factor, groups=channels, bias=False))
            layers += [nn.Conv2d(channels, adapter_width, 1, bias=False), nn.BatchNorm2d(adapter_width)]
            adapters[adapter_key(channels, factor)] = nn.Sequential(*layers)
        self.adapters = nn.ModuleDict(adapters)
        self.factors = dict(outputs)
        self.projector = mlp(adapter_width, hidden, projection)

    def forward(self, features: torch.Tensor, factor: int = 1) -> torch.Tensor:
        key = adapter_key(features.shape[1], factor)
        if key not in self.adapters:
            raise ConfigError(f"the block's output shape {tuple(features.shape[1:])} has no width adapter "
                              f"(adapters: {', '.join(self.adapters)})")
        pooled = F.adaptive_avg_pool2d(self.adapters[key](features), 1).flatten(1)
        return self.projector(pooled)


def byol_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BYOL's normalised MSE ``2 - 2 cos``, averaged over the batch."""
    return (2 - 2 * F.cosine_similarity(prediction, target, dim=-1)).mean()


def block_outputs(supernet, block: int) -> List[Tuple[int, int]]:
    """(channels, down-sampling factor to the adapter's size) of every output the block can have."""
    outputs = getattr(supernet, "block_outputs", None)
    if outputs is None:
        raise ConfigError(f"{type(supernet).__name__} does not define block_outputs(block): BossNAS needs "
                          f"the output shapes of each block (and forward(x, block=k))")
    return list(outputs(block))


def output_factor(supernet, features: torch.Tensor) -> int:
    """The adapter's down-sampling factor for a block output (1 unless the supernet says otherwise)."""
    factor = getattr(supernet, "adapter_factor", None)
    return int(factor(features)) if factor is not None else 1


# --- the step -------------------------------------------------------------------------------------------
class BossNASStep(TrainingStep):
    """Ensemble bootstrapping on one block (module docstring). ``block`` is the stage's block."""

    name = "bossnas"
    OPTIONS = (Option("block", Int(minimum=0), "the supernet block this stage trains (0 = the first)"),
               Option("paths", Int(minimum=1), "K: paths per iteration (fair sampling: the number of options, 8 "
                      "for NATS; HyTra: 4)"),
               Option("update_interval", Int(minimum=1), "iterations per optimizer step (gradient accumulation; "
                      "BossNAS: 4 NATS, 8 HyTra)"),
               Option("base_momentum", Float(minimum=0, below=1), "m0 of the target's EMA (cosine-increased to 1)"),
               Option("optimizer", Text(choices=OPTIMIZERS), "lars (BossNAS) or sgd"),
               Option("warmup_epochs", Float(minimum=0), "linear learning-rate warm-up at the block's start"),
               Option("adapter_width", Int(minimum=1), "channels of the width adapters (BossNAS: 2048)"),
               Option("hidden", Int(minimum=1), "hidden width of projector and predictor (BossNAS: 4096)"),
               Option("projection", Int(minimum=1), "projection width (BossNAS: 256)"),
               Option("freeze_previous_blocks", Bool(), "earlier blocks stop training (BossNAS: they keep training)"),
               Option("head_seed", Int(minimum=0), "seed of the heads' initial weights (default: the run's seed)"),
               Option("rating_batches", Int(minimum=1), "rating (after the block's stage, --stages blockwise): "
                      "batches of held-out training images every path is rated on"),
               Option("rating_batch_size", Int(minimum=1), "rating: images per held-out batch"),
               Option("rating_calibration_size", Int(minimum=1), "rating: stored training images every path's BN "
                      "statistics are re-estimated on"),
               Option("rating_seed", Int(minimum=0), "rating: seed of the two views drawn once per image"))
    #: BossNAS' NATS recipe (methods.md 10.2) at a CPU-sized batch: LARS lr 0.48 at batch 4,096 scaled linearly
    RECIPE = {"data": "two_views", "lr": 0.03, "momentum": 0.9, "weight_decay": 1e-6, "batch_size": 64,
              "grad_clip": 0.0, "valid_size": 0, "sampler": "fair"}

    def __init__(self, context, block: int = 0, paths: int = 8, update_interval: int = 4, base_momentum: float = 0.99,
                 optimizer: str = "lars", warmup_epochs: float = 0.0, adapter_width: int = 256, hidden: int = 512,
                 projection: int = 128, freeze_previous_blocks: bool = False, head_seed: Optional[int] = None,
                 rating_batches: int = 2, rating_batch_size: int = 256, rating_calibration_size: int = 256,
                 rating_seed: int = 0, **options):
        from nastk.oneshot.block_rating import RatingOptions

        super().__init__(context, **options)
        #: how :meth:`choose` rates the block's paths
        self.rating = RatingOptions(batches=rating_batches, batch_size=rating_batch_size,
                                    calibration_size=rating_calibration_size, seed=rating_seed)
        config, supernet = context.config, context.supernet
        if config.data != "two_views":
            raise ConfigError(f"the bossnas step trains on two augmented views of each image: use --data two_views "
                              f"(got {config.data!r})")
        blocks = getattr(supernet, "blocks", None)
        if blocks is None:
            raise ConfigError(f"{type(supernet).__name__} has no blocks: BossNAS needs a block-wise supernet "
                              f"(nats-sss, hytra)")
        if not 0 <= int(block) < len(blocks):
            raise ConfigError(f"block {block} out of range 0..{len(blocks) - 1}")
        if optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {optimizer!r}; known: {', '.join(OPTIMIZERS)}")
        self.block, self.paths, self.update_interval = int(block), int(paths), int(update_interval)
        self.base_momentum, self.warmup_epochs = float(base_momentum), float(warmup_epochs)
        if freeze_previous_blocks:
            freeze_before(supernet, self.block)
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(config.seed if head_seed is None else int(head_seed))
        head = SiameseHead(block_outputs(supernet, self.block), adapter_width, hidden, projection)
        predictor = mlp(projection, hidden, projection)
        torch.random.set_rng_state(generator_state)
        self.head, self.predictor = context.wrap(head), context.wrap(predictor)
        self._head, self._predictor = head.to(context.device), predictor.to(context.device)
        #: the EMA target: backbone and head, never trained by gradients
        self.target = copy.deepcopy(supernet).requires_grad_(False)
        self.target_head = copy.deepcopy(self._head).requires_grad_(False)
        trained = [p for p in supernet.weights() if p.requires_grad] + list(self._head.parameters()) \
            + list(self._predictor.parameters())
        groups = split_decay(trained)
        if optimizer == "lars":
            self.optimizer = LARS(groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
        else:
            for group in groups:
                group.pop("lars", None)
            self.optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum,
                                             weight_decay=config.weight_decay)
        self.iteration = 0  # iterations since the block started (optimizer steps = iteration // update_interval)
        self.updates = 0
        self.steps_per_epoch = max(1, -(-context.train_size // config.batch_size))
        self.epoch = 0

    # --- schedules (per optimizer step, restarting in every block) ---
    def progress(self) -> float:
        """Share of the block's optimizer steps done."""
        total = max(1, self.context.config.epochs * self.steps_per_epoch // self.update_interval)
        return min(1.0, self.updates / total)

    def lr_now(self) -> float:
        config = self.context.config
        warmup = self.warmup_epochs * self.steps_per_epoch / self.update_interval
        if warmup and self.updates < warmup:
            return config.lr * (self.updates + 1) / warmup
        return config.lr_min + (config.lr - config.lr_min) * (1 + math.cos(math.pi * self.progress())) / 2

    def momentum_now(self) -> float:
        return 1 - (1 - self.base_momentum) * (math.cos(math.pi * self.progress()) + 1) / 2

    # --- the step ---
    def start_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.context.path_sampler.start_epoch(epoch)
        self.rng = self.context.rng(PATH_STREAM)

    def sample_paths(self) -> List[Tuple[int, ...]]:
        """K paths: distinct ones of the block's restricted list where the supernet has one (HyTra), else the
        run's path sampler (``fair``: every option once per decision)."""
        supernet, sampler = self.context.supernet, self.context.path_sampler
        if hasattr(supernet, "block_paths"):
            listed = block_paths(supernet, self.block)
            if self.paths > len(listed):
                raise ConfigError(f"block {self.block} has {len(listed)} paths, fewer than paths={self.paths}")
            base = [int(np.flatnonzero(row)[0]) for row in supernet.allowed]
            chosen = self.rng.choice(len(listed), size=self.paths, replace=False)
            out = []
            for index in chosen:
                path = list(base)
                for d, option in zip(supernet.blocks[self.block], listed[int(index)]):
                    path[d] = int(option)
                out.append(tuple(path))
            return out
        if hasattr(sampler, "sample_many"):
            return sampler.sample_many(self.paths)
        return [tuple(sampler.sample()) for _ in range(self.paths)]

    def project(self, supernet, head, x: torch.Tensor, path, online: bool) -> torch.Tensor:
        """Backbone to the block's end, adapter, projector: through the context (online) or directly (target)."""
        if online:
            features = self.context.forward(x, path=path, block=self.block)
            return self.context.forward(features, model=head, factor=output_factor(supernet, features))
        supernet.set_active(path)
        features = supernet(x, block=self.block)
        return head(features, output_factor(supernet, features))

    @torch.no_grad()
    def ensemble_target(self, views, paths) -> List[torch.Tensor]:
        """t(v) for both views: mean over the paths of the L2-normalised target projections."""
        self.target.train()
        self.target_head.train()
        return [torch.stack([F.normalize(self.project(self.target, self.target_head, v, p, False), dim=-1)
                             for p in paths]).mean(0) for v in views]

    def step(self, batch: Batch) -> StepOutput:
        context = self.context
        paths = self.sample_paths()
        pieces = context.config.accumulate
        will_update = (self.iteration + 1) % self.update_interval == 0
        if self.iteration % self.update_interval == 0:
            context.zero_grad()
        total = 0.0
        for (v1, v2), _, last_piece in context.micro_batches(batch.indices, batch.augment):
            t1, t2 = self.ensemble_target((v1, v2), paths)
            for k, path in enumerate(paths):
                q1 = context.forward(self.project(context.supernet, self.head, v1, path, True), model=self.predictor)
                q2 = context.forward(self.project(context.supernet, self.head, v2, path, True), model=self.predictor)
                loss = byol_loss(q1, t2) + byol_loss(q2, t1)
                last = will_update and last_piece and k == len(paths) - 1
                context.backward(loss / (self.update_interval * pieces), last=last)
                total += float(loss.detach()) / pieces
        self.iteration += 1
        if will_update:
            self._update()
        return StepOutput(torch.tensor(total / len(paths), device=HOST), paths=paths,  # a logged number
                          metrics={"path_loss": total / len(paths), "ema_momentum": self.momentum_now()})

    def _update(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_now()
        self.optimizer.step()
        self.updates += 1
        m = self.momentum_now()
        with torch.no_grad():
            for target, online in ((self.target, self.context.supernet), (self.target_head, self._head)):
                for t, o in zip(target.parameters(), online.parameters()):
                    t.mul_(m).add_(o.detach(), alpha=1 - m)

    def end_epoch(self, epoch: int, epochs: int, gather) -> None:
        """Accumulated gradients never cross a checkpoint: a partial accumulation is applied now."""
        if self.iteration % self.update_interval:
            self.context.sync_gradients()
            self._update()
            self.iteration = 0

    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def summary(self) -> Dict[str, Any]:
        return {"block": self.block, "optimizer_steps": self.updates}

    @staticmethod
    def choose(folder, device=None, data=None) -> Dict[str, Any]:
        """A finished block stage's choice (``Stage.choose``): every path of the block rated from the stage's
        checkpoint with the step's rating options, the lowest kept (:func:`~nastk.oneshot.block_rating.rate_stage`)."""
        from nastk.oneshot.block_rating import rate_stage

        return rate_stage(folder, device=device, data=data)

    def state_dict(self) -> Dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "head": self._head.state_dict(),
                "predictor": self._predictor.state_dict(), "target": self.target.state_dict(),
                "target_head": self.target_head.state_dict(), "iteration": self.iteration, "updates": self.updates,
                "path_sampler": self.context.path_sampler.state_dict()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self._head.load_state_dict(state["head"])
        self._predictor.load_state_dict(state["predictor"])
        self.target.load_state_dict(state["target"])
        self.target_head.load_state_dict(state["target_head"])
        self.iteration, self.updates = int(state["iteration"]), int(state["updates"])
        self.context.path_sampler.load_state_dict(state["path_sampler"])


def freeze_before(supernet, block: int) -> None:
    """``freeze_previous_blocks``: every weight of the stem and of earlier blocks' layers stops training."""
    frozen = getattr(supernet, "modules_before", None)
    if frozen is None:
        raise ConfigError(f"{type(supernet).__name__} cannot freeze earlier blocks (no modules_before(block))")
    for module in frozen(block):
        module.requires_grad_(False)


# --- block-wise search: train, rate, fix, next block ------------------------------------------------------
def blockwise_stages(config) -> List[Dict[str, Any]]:
    """BossNAS' schedule for ``config``'s space (``--stages blockwise``): one stage per block, ``config.epochs``
    epochs each, the bossnas step on that block, ending with its rating (``choose``), so every later block trains
    on the earlier blocks' chosen paths. A step other than bossnas or a space without blocks is one line."""
    from nastk.oneshot.trainer import build_supernet

    if config.step != "bossnas":
        raise ConfigError(f"--stages blockwise is BossNAS' block-by-block search: it trains with --step bossnas, "
                          f"not {config.step!r}")
    if "block" in config.step_options:
        raise ConfigError("--stages blockwise trains every block in turn; leave out the step option block")
    if config.data != "two_views":
        raise ConfigError(f"the bossnas step trains on two augmented views of each image: use --data two_views "
                          f"(got {config.data!r})")
    if not config.held_out_fraction:
        raise ConfigError("BossNAS rates every block's paths on held-out training images; --held-out-fraction 0 "
                          "leaves none (e.g. 0.2)")
    blocks = getattr(build_supernet(config), "blocks", None)
    if not blocks:
        raise ConfigError(f"--stages blockwise needs a supernet made of blocks (nats-sss, hytra); the {config.space} "
                          f"supernet has none")
    return [{"name": f"block{k}", "epochs": config.epochs, "choose": True,
             "overrides": {"step_options": {**config.step_options, "block": k}}} for k in range(len(blocks))]


def is_blockwise(config) -> bool:
    """Whether ``config`` is a block-wise BossNAS search (its stages choose block by block)."""
    return config.step == "bossnas" and any(stage.get("choose") for stage in config.stages)


#: share of the training images a block-wise search holds out to rate paths on, unless the config says
HELD_OUT_FRACTION = 0.2


def blockwise(config, epochs_per_block: Optional[int] = None):
    """``config`` with BossNAS' block-wise schedule (:func:`blockwise_stages`), unless it already is one;
    ``epochs_per_block`` (default ``config.epochs``) is every block's length; ``held_out_fraction``
    defaults to :data:`HELD_OUT_FRACTION` (the rating images)."""
    from dataclasses import replace

    if epochs_per_block is not None:
        config = replace(config, epochs=int(epochs_per_block))
    if config.held_out_fraction is None:
        config = replace(config, held_out_fraction=HELD_OUT_FRACTION)
    schedule = blockwise_stages(replace(config, stages=[]))
    if not config.stages:
        return replace(config, stages=schedule)
    expected = [(s["name"], True, s["overrides"]["step_options"]["block"]) for s in schedule]
    given = [(s.get("name"), s.get("choose"), (s.get("overrides") or {}).get("step_options", {}).get("block"))
             for s in config.stages]
    if given != expected:  # a config file's own schedule may differ in anything else (epochs per block, ...)
        raise ConfigError(f"a BossNAS search's stages are one choosing stage per block, "
                          f"{', '.join(name for name, _, _ in expected)}, each training its block; this config "
                          f"has other stages")
    return config


def search(config, run_dir, epochs_per_block: Optional[int] = None, resume: bool = False, device=None,
           progress: bool = True, data=None) -> Dict[str, Any]:
    """BossNAS on ``config``'s space, what ``nastk supernet train --stages blockwise`` runs: every block trained
    (a stage each, :func:`nastk.oneshot.trainer.train`), rated (the step's rating options) and fixed in turn.

    Writes ``<run>/stage<k>-block<k>/choice.json`` per block (ratings of every path, the choice) and
    ``<run>/bossnas.json`` (ratings, choices, the architecture); works as is under ``torchrun`` (every rank
    trains, rank 0 rates, all continue with its choice). Resumes inside a block and skips finished blocks
    and ratings. Returns bossnas.json's content plus the training summary (``train``)."""
    from nastk.oneshot.stages import CHOICE, stage_folder, stages_from
    from nastk.oneshot.trainer import build_supernet, train
    from nastk.paths import atomic_write
    from nastk.readers import read_json
    from nastk.errors import RunError
    from nastk.oneshot.ddp import Distributed

    config = blockwise(config, epochs_per_block)
    trained = train(config, run_dir, resume=resume, device=device, progress=progress, data=data)
    supernet = build_supernet(config)
    records = [read_json(stage_folder(run_dir, k, stage) / CHOICE, "block rating", RunError)
               for k, stage in enumerate(stages_from(config.stages))]
    texts = {name: options[0] for record in records for name, options in record["chosen"].items()}
    path = [d.options.index(texts[d.name]) for d in supernet.decisions]
    summary = {"blocks": len(records), "ratings": [r["ratings"] for r in records],
               "chosen": [r["chosen"] for r in records], "arch": supernet.space.to_str(supernet.arch_of_path(path))}
    if Distributed.from_env(device).is_main:
        with atomic_write(Path(run_dir) / BLOCKWISE_RESULT, "w") as handle:
            json.dump(summary, handle, indent=1)
    return {**summary, "train": trained,
            "rating_wall_s": round(sum(r.get("rating_wall_s", 0.0) for r in records), 3)}


def block_paths(supernet, block: int) -> List[Tuple[int, ...]]:
    """Every candidate path of ``block``: one option per decision of the block (the supernet's restricted
    list where it has one, HyTra; else every combination of the allowed options, NATS: 8^layers)."""
    custom = getattr(supernet, "block_paths", None)
    if custom is not None:
        return [tuple(p) for p in custom(block)]
    decisions = supernet.blocks[block]
    return list(itertools.product(*[np.flatnonzero(supernet.allowed[d]).tolist() for d in decisions]))
