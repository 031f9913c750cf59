"""The one training loop of every one-shot strategy: a supernet, a path sampler and a data sampler.

One epoch: the data sampler's index list is shuffled and cut into global batches; each step the
path sampler picks a path (the same on every rank), each rank trains on its contiguous shard of the
batch, DDP averages the gradients, the global gradient norm is clipped and SGD steps; then both
samplers observe the step. The cosine learning rate steps once per epoch. After every epoch the
run folder gets an atomic checkpoint (weights, optimizer, scheduler, samplers, history) and one JSON
line in ``metrics.jsonl``. Every random stream is derived from (seed, epoch), so ``resume``
continues exactly as an uninterrupted run would.

Run folder: ``config.json`` (the :class:`OneShotConfig`), ``checkpoint.pt``, ``metrics.jsonl``,
``summary.json``.
"""
from __future__ import annotations

import contextlib
import json
import math
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from nastk.datasets import ImageDataset
from nastk.errors import ConfigError, RunError
from nastk.oneshot.data import crop_flip, crop_flip_params, load_images, mixed
from nastk.oneshot.distributed import Distributed
from nastk.oneshot.samplers import draw_paths, make_samplers, tau_schedule
from nastk.paths import atomic_write
from nastk.run import Run
from nastk.space import get_space
from nastk.supernet import Supernet

CHECKPOINT, METRICS = "checkpoint.pt", "metrics.jsonl"
CHECKPOINT_FORMAT = 1


@dataclass
class OneShotConfig:
    """Everything that defines a supernet training run (defaults: PA&DA's NB201 recipe, methods.md 1.3)."""

    space: str = "nb201"
    dataset: str = "cifar10"
    sampler: str = "uniform"
    sampler_options: Dict[str, Any] = field(default_factory=dict)
    supernet: Dict[str, Any] = field(default_factory=lambda: {"C": 16, "N": 5})
    epochs: int = 250
    train_size: Optional[int] = None
    batch_size: int = 256
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 2.5e-4
    nesterov: bool = False
    grad_clip: float = 5.0
    #: micro-batches per rank and step, gradients averaged (one process with k micro-batches computes
    #: what k DDP ranks compute)
    accumulate: int = 1
    augment: bool = True
    #: test-split images used to monitor supernet accuracy (random path per batch) after each epoch
    valid_size: int = 500
    eval_batch_size: int = 500
    seed: int = 0

    def __post_init__(self):
        for name in ("epochs", "batch_size", "accumulate"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.train_size is not None and int(self.train_size) < 1:
            raise ConfigError(f"train_size must be at least 1, got {self.train_size}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")

    def to_dict(self) -> Dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "OneShotConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown supernet training option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**data)


def build_supernet(config: OneShotConfig, num_classes: int):
    space = get_space(config.space)
    space.require("supernet")
    return space.supernet(num_classes, **config.supernet)


def contiguous_part(batch, part: int, parts: int):
    """Part ``part`` of ``parts`` contiguous, near-equal chunks: a rank's shard or a micro-batch."""
    return batch[len(batch) * part // parts:len(batch) * (part + 1) // parts]


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


class OneShotTrainer:
    """Trains a supernet with pluggable samplers; ``fit`` runs (or resumes) the remaining epochs.

    A path sampler's path is one option index per decision (single-path and elastic supernets) or
    a ``(decisions, options)`` weight tensor (weighted-mixture mode, DARTS-like samplers).
    ``callbacks`` are called as ``callback(trainer, record)`` after each epoch's checkpoint (e.g. to
    measure gradient variance). ``config.batch_size`` is the global batch over all ranks.
    """

    def __init__(self, config: OneShotConfig, run_dir=None, device="cpu", dist: Optional[Distributed] = None,
                 data: Optional[ImageDataset] = None, progress: bool = True,
                 callbacks: Sequence[Callable[["OneShotTrainer", Dict[str, Any]], None]] = (),
                 supernet: Optional[Supernet] = None):
        self.config = config
        self.dist = dist or Distributed()
        self.device = self.dist.device(str(device))
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.progress, self.callbacks = progress, list(callbacks)
        data = data if data is not None else load_images(config.dataset)
        x, y = mixed(data.x_train, data.y_train, config.train_size)
        self.x, self.y = x.to(self.device), y.to(self.device)
        self.x_valid, self.y_valid = mixed(data.x_test, data.y_test, config.valid_size or 0)
        self.num_classes = data.num_classes
        torch.manual_seed(config.seed)
        if supernet is None:  # a given supernet: e.g. a few-shot sub-supernet from Supernet.split
            supernet = build_supernet(config, data.num_classes)
        self.supernet = supernet.to(self.device)
        self.model = self.dist.wrap(self.supernet)
        self.path_sampler, self.data_sampler = make_samplers(
            config.sampler, self.supernet, len(self.x), config.seed, config.sampler_options)
        self.optimizer = torch.optim.SGD(self.supernet.parameters(), lr=config.lr, momentum=config.momentum,
                                         weight_decay=config.weight_decay, nesterov=config.nesterov)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=config.epochs, eta_min=0.0)
        self.epoch = 0
        self.history: List[Dict[str, Any]] = []

    # --- one step -------------------------------------------------------------------------------
    def activate(self, path) -> None:
        if isinstance(path, torch.Tensor):
            self.supernet.set_mixture(path)
        else:
            self.supernet.set_active(path)

    def forward_backward(self, indices: torch.Tensor, path, augment: Optional[torch.Tensor] = None):
        """Run ``path`` on training examples ``indices`` and back-propagate the mean CE.

        The examples are processed in ``config.accumulate`` contiguous micro-batches whose mean-CE
        gradients are averaged, exactly as ranks are under DDP (BatchNorm statistics per micro-batch).
        Leaves the gradients in ``.grad`` (the optimizer does not step); returns the detached logits,
        the targets and the loss. Also used to measure gradient variance at fixed weights.
        """
        self.activate(path)
        self.supernet.zero_grad(set_to_none=True)
        pieces = self.config.accumulate
        outputs, total = [], 0.0
        for piece in range(pieces):
            part = contiguous_part(indices, piece, pieces).to(self.x.device)
            x, y = self.x[part], self.y[part]
            if augment is not None:
                x = crop_flip(x, contiguous_part(augment, piece, pieces))
            last = piece == pieces - 1
            with (self.model.no_sync() if self.dist.world > 1 and not last else contextlib.nullcontext()):
                logits = self.model(x)
                loss = F.cross_entropy(logits, y) / pieces
                loss.backward()
            outputs.append((logits.detach(), y))
            total += loss.detach()
        return torch.cat([o[0] for o in outputs]), torch.cat([o[1] for o in outputs]), total

    # --- one epoch ------------------------------------------------------------------------------
    def _global_batches(self, epoch: int) -> List[torch.Tensor]:
        order = torch.as_tensor(self.data_sampler.epoch_indices(), dtype=torch.long)
        order = order[torch.randperm(len(order), generator=torch.Generator().manual_seed(_seed(self.config.seed, epoch, 3)))]
        batches = list(order.split(self.config.batch_size))
        # every micro-batch of every rank needs at least one example
        return [b for b in batches if len(b) >= self.dist.world * self.config.accumulate]

    def train_epoch(self, epoch: int) -> Dict[str, Any]:
        config = self.config
        self.path_sampler.start_epoch(epoch)
        self.data_sampler.start_epoch(epoch)
        augment_rng = torch.Generator().manual_seed(_seed(config.seed, epoch, 4))
        batches = self._global_batches(epoch)
        self.model.train()
        width = self.supernet.allowed.shape[1]
        op_counts = np.zeros(width, dtype=np.int64)
        totals = np.zeros(3)  # loss sum, correct, examples (this rank)
        bar = _bar(len(batches), f"epoch {epoch + 1}/{config.epochs}", self.progress and self.dist.is_main)
        for batch in batches:
            path = self.path_sampler.sample()
            if not isinstance(path, torch.Tensor):
                op_counts += np.bincount(path, minlength=width)
            augment = crop_flip_params(len(batch), augment_rng) if config.augment else None
            local = contiguous_part(batch, self.dist.rank, self.dist.world)
            logits, targets, loss = self.forward_backward(
                local, path, contiguous_part(augment, self.dist.rank, self.dist.world) if augment is not None else None)
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.supernet.parameters(), config.grad_clip)
            self.optimizer.step()
            self.path_sampler.observe_step(self.supernet, path)
            self.data_sampler.observe_batch(local.numpy(), logits, targets)
            totals += (float(loss) * len(local), float((logits.argmax(1) == targets).sum()), len(local))
            if bar:
                bar.update(1)
                bar.set_postfix(loss=f"{float(loss):.3f}")
        if bar:
            bar.close()
        self.data_sampler.end_epoch(epoch, config.epochs, self.dist.gather)
        self.path_sampler.end_epoch(epoch, config.epochs, self.dist.gather)
        loss_sum, correct, seen = np.sum(self.dist.gather(totals), axis=0)
        return {"train_loss": loss_sum / max(seen, 1), "train_acc": 100.0 * correct / max(seen, 1),
                "steps": len(batches), "images": int(seen), "op_counts": op_counts.tolist()}

    @torch.no_grad()
    def validate(self, epoch: int) -> Optional[float]:
        """Supernet accuracy with a uniformly random path per batch (monitoring only)."""
        if not len(self.x_valid):
            return None
        self.supernet.eval()
        rng = np.random.default_rng([self.config.seed, epoch, 2])
        uniform = self.supernet.allowed / self.supernet.allowed.sum(axis=1, keepdims=True)
        correct = 0
        for start in range(0, len(self.x_valid), self.config.eval_batch_size):
            self.supernet.set_active(draw_paths(uniform, rng, 1)[0])
            x = self.x_valid[start:start + self.config.eval_batch_size].to(self.device)
            y = self.y_valid[start:start + self.config.eval_batch_size].to(self.device)
            correct += int((self.supernet(x).argmax(1) == y).sum())
        return 100.0 * correct / len(self.x_valid)

    # --- the run ----------------------------------------------------------------------------------
    def fit(self) -> List[Dict[str, Any]]:
        """Train the remaining epochs (all of them unless :meth:`load_checkpoint` ran first)."""
        for epoch in range(self.epoch, self.config.epochs):
            started = time.perf_counter()
            lr = self.optimizer.param_groups[0]["lr"]
            record: Dict[str, Any] = {"epoch": epoch, "lr": lr}
            record.update(self.train_epoch(epoch))
            record["valid_acc"] = self.validate(epoch)
            self.scheduler.step()
            record["tau"] = tau_schedule(epoch, self.config.epochs)
            record.update(self.path_sampler.summary())
            record.update(self.data_sampler.summary())
            if self.dist.world > 1:
                record["replica_spread"] = self._replica_spread()
            record["epoch_s"] = round(time.perf_counter() - started, 3)
            record["images_per_s"] = round(record["images"] / record["epoch_s"], 1)
            self.history.append(_plain(record))
            self.epoch = epoch + 1
            self.save_checkpoint()
            if self.progress and self.dist.is_main:
                _bar_write(f"epoch {epoch + 1}/{self.config.epochs}  loss {record['train_loss']:.4f}  "
                           f"train acc {record['train_acc']:.2f}  valid acc {_or_nan(record['valid_acc']):.2f}  "
                           f"{record['epoch_s']:.1f} s")
            for callback in self.callbacks:
                callback(self, self.history[-1])
        return self.history

    def _replica_spread(self) -> float:
        """Max - min over ranks of a float64 checksum of all weights (0 when replicas are identical)."""
        checksum = sum(float(p.detach().double().sum() + p.detach().double().abs().sum()) for p in self.supernet.parameters())
        sums = self.dist.gather(checksum)
        if max(sums) != min(sums):
            warnings.warn(f"supernet replicas differ across ranks (checksums {sums})")
        return max(sums) - min(sums)

    # --- checkpoints ------------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Optional[Path]:
        return self.run_dir / CHECKPOINT if self.run_dir else None

    def save_checkpoint(self) -> None:
        if self.run_dir is None or not self.dist.is_main:
            self.dist.barrier()
            return
        state = {"format": CHECKPOINT_FORMAT, "epoch": self.epoch, "config": self.config.to_dict(),
                 "num_classes": self.num_classes, "model": self.supernet.state_dict(), "allowed": self.supernet.allowed.tolist(),
                 "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                 "path_sampler": self.path_sampler.state_dict(), "data_sampler": self.data_sampler.state_dict(),
                 "history": self.history}
        with atomic_write(self.checkpoint_path) as handle:
            torch.save(state, handle)
        with open(self.run_dir / METRICS, "a") as handle:
            handle.write(json.dumps(self.history[-1]) + "\n")
        self.dist.barrier()

    def load_checkpoint(self) -> bool:
        """Restore the run folder's checkpoint, if any; returns whether there was one."""
        if self.checkpoint_path is None or not self.checkpoint_path.is_file():
            return False
        state = read_checkpoint(self.checkpoint_path, self.device)
        self.supernet.load_state_dict(state["model"])
        self.supernet.allowed = np.array(state["allowed"], dtype=bool)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.path_sampler.load_state_dict(state["path_sampler"])
        self.data_sampler.load_state_dict(state["data_sampler"])
        self.history, self.epoch = list(state["history"]), int(state["epoch"])
        if self.dist.is_main:  # metrics.jsonl may hold a line past the checkpoint (killed in between)
            with atomic_write(self.run_dir / METRICS, "w") as handle:
                handle.write("".join(json.dumps(record) + "\n" for record in self.history))
        self.dist.barrier()
        return True


def read_checkpoint(path: Path, device="cpu") -> Dict[str, Any]:
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # torn or foreign file
        raise RunError(f"cannot read supernet checkpoint {path}: {error}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise RunError(f"{path} is not a nastk supernet checkpoint (format {CHECKPOINT_FORMAT})")
    return state


def train(config: OneShotConfig, run_dir, resume: bool = False, device="cpu", progress: bool = True,
          data: Optional[ImageDataset] = None, callbacks=()) -> Dict[str, Any]:
    """Train (or resume) a supernet into ``run_dir``; works as is under ``torchrun``. Returns the summary."""
    dist = Distributed.from_env(str(device))
    run = Run(run_dir, config.to_dict(), resume=resume) if dist.is_main else None
    dist.barrier()
    trainer = OneShotTrainer(config, run_dir, device, dist, data, progress, callbacks)
    if resume:
        trainer.load_checkpoint()
    resumed_from = trainer.epoch
    trainer.fit()
    last = trainer.history[-1]
    summary = {"run_dir": str(run_dir), "space": config.space, "sampler": config.sampler, "epochs": config.epochs,
               "resumed_from_epoch": resumed_from, "world_size": dist.world, "device": str(trainer.device),
               "train_size": len(trainer.x), "final_train_loss": last["train_loss"], "final_train_acc": last["train_acc"],
               "final_valid_acc": last["valid_acc"], "train_wall_s": round(sum(r["epoch_s"] for r in trainer.history), 3),
               **{k: last[k] for k in ("op_probs", "data_unique_fraction") if k in last}}
    if run is not None:
        run.write_summary(summary)
    return summary


def load_trained(run_dir, device="cpu"):
    """The supernet of a run folder with its latest weights, and the run's config and epoch."""
    run_dir = Path(run_dir)
    if not (run_dir / CHECKPOINT).is_file():
        raise RunError(f"{run_dir} holds no supernet checkpoint ({CHECKPOINT}); train one with 'nastk supernet train'")
    state = read_checkpoint(run_dir / CHECKPOINT, device)
    config = OneShotConfig.from_dict(state["config"])
    supernet = build_supernet(config, int(state["num_classes"])).to(device)
    supernet.load_state_dict(state["model"])
    supernet.allowed = np.array(state["allowed"], dtype=bool)
    return supernet, config, int(state["epoch"])


def _plain(record: Dict[str, Any]) -> Dict[str, Any]:
    """JSON-able values (numpy scalars to floats, NaN kept out)."""
    out = {}
    for key, value in record.items():
        if isinstance(value, (np.floating, float)):
            value = float(value) if math.isfinite(value) else None
        elif isinstance(value, np.integer):
            value = int(value)
        out[key] = value
    return out


def _or_nan(value) -> float:
    return float("nan") if value is None else value


def _bar(total: int, description: str, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=description, leave=False, dynamic_ncols=True, disable=None)  # None: only on a terminal


def _bar_write(line: str) -> None:
    from tqdm import tqdm

    tqdm.write(line, file=sys.stderr)
