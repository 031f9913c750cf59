"""The one training loop of every one-shot method; what happens to a batch is a pluggable step.

One epoch: the data sampler's index list is shuffled and cut into global batches; each rank takes
its contiguous shard of every batch (and, for steps that hold out part of the training images, such
as DARTS' alpha half, a shard of a held-out batch) and hands it to the training step
(:mod:`nastk.oneshot.steps`: single path = SPOS / PA&DA, bilevel DARTS, or a user's own), which
runs forward and backward passes and its optimizers. The data sampler then observes the step's
logits. After every epoch the run folder gets an atomic checkpoint (weights, architecture
parameters, the step's optimizers / schedulers / samplers, the data sampler, history) and one JSON
line in ``metrics.jsonl``. Every random stream is derived from (seed, epoch), so ``resume``
continues exactly as an uninterrupted run would. The loss and the logged metrics are passed in
(default: cross-entropy and top-1 accuracy).

Run folder: ``config.json`` (the :class:`OneShotConfig`), ``checkpoint.pt``, ``metrics.jsonl``,
``summary.json``.
"""
from __future__ import annotations

import json
import time
import warnings
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from nastk.datasets import ImageDataset
from nastk.devices import HOST, Device, model_device, resolve_device
from nastk.errors import ConfigError, RunError
from nastk.oneshot.context import StepContext, contiguous_part, seed_of
from nastk.oneshot.splits import split_images
from nastk.datasets import downsample, load_dataset, mixed
from nastk.oneshot.datamodules import correct_percent, make_data_module  # noqa: F401 (correct_percent re-exported)
from nastk.oneshot.ddp import Distributed
from nastk.oneshot.recalibration import recalibrate_bn
from nastk.oneshot.samplers import make_samplers, sampler_pair
from nastk.oneshot.steps import LR_SCHEDULES, STEPS, Batch, TrainingStep, make_step
from nastk.paths import append_lines, atomic_write
from nastk.options import Bool, Float, Int, Items, Mapping as MappingValue, Text, declared
from nastk.plain_data import plain
from nastk.run_folder import Run
from nastk.space import get_space
from nastk.supernet import Supernet

CHECKPOINT, METRICS = "checkpoint.pt", "metrics.jsonl"
CHECKPOINT_FORMAT = 2
#: checkpoint formats this version reads (1: single-path runs before training steps existed)
READABLE_FORMATS = (1, 2)
Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: a metric: (logits, targets) -> the sum over the batch (the loop divides by the examples)
Metric = Callable[[torch.Tensor, torch.Tensor], float]




@dataclass
class OneShotConfig:
    """Everything that defines a supernet training run (defaults: PA&DA's NB201 recipe, methods.md 1.3)."""

    space: str = "nb201"
    dataset: str = "cifar10"
    sampler: str = "uniform"
    sampler_options: Dict[str, Any] = field(default_factory=dict)
    #: what the examples are (nastk.oneshot.datamodules): labelled, two_views, image_pairs, or a registered one
    data: str = "labelled"
    data_options: Dict[str, Any] = field(default_factory=dict)
    #: the training step (nastk.oneshot.steps): single_path (SPOS, PA&DA) or darts
    step: str = "single_path"
    step_options: Dict[str, Any] = field(default_factory=dict)
    #: share of the training images held out from weight training (None: the step's own, 0.5 for darts,
    #: 0 for single_path); the held-out images are the validation split of DARTS-PT, GM-NAS and RSPS
    held_out_fraction: Optional[float] = None
    #: options of the space's ``supernet()`` (NB201: C, N; DARTS: C, layers); missing ones take the space's defaults
    supernet: Dict[str, Any] = field(default_factory=dict)
    #: average-pool the images to this size (None: as stored), a cheaper stand-in for CPU runs
    image_size: Optional[int] = None
    epochs: int = 250
    train_size: Optional[int] = None
    batch_size: int = 256
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 2.5e-4
    nesterov: bool = False
    #: weight learning-rate schedule per epoch, from lr to lr_min: cosine, or sharpDARTS' cosine_power
    lr_schedule: str = "cosine"
    lr_min: float = 0.0
    lr_power: float = 10.0
    grad_clip: float = 5.0
    #: micro-batches per rank and step, gradients averaged (one process with k micro-batches computes
    #: what k DDP ranks compute)
    accumulate: int = 1
    augment: bool = True
    #: test-split images used to monitor supernet accuracy (random path per batch) after each epoch
    valid_size: int = 500
    eval_batch_size: int = 500
    seed: int = 0
    #: training batches (of eval_batch_size images) that recalibrate tracked BatchNorm statistics of each
    #: monitored path before it is scored (0: none; supernets trained with BN momentum 0, as BigNAS does,
    #: need it, or their monitored accuracy is chance)
    bn_recalibration: int = 0
    #: a stage schedule (nastk.oneshot.stages): [{name, epochs, overrides, allowed, trainable, sort_channels}, ...];
    #: empty: one stage of ``epochs``
    stages: List[Dict[str, Any]] = field(default_factory=list)

    def __post_init__(self):
        for name, value_type in FIELD_TYPES.items():  # types and ranges of every field, one line each
            value = getattr(self, name)
            if value is None and name not in OPTIONAL_FIELDS:
                raise ConfigError(f"supernet training option {name} must be {value_type.describe()}, got None")
            setattr(self, name, value_type.check(name, value))
        self.step_options = check_step_options(self.step, self.step_options)
        make_data_module(self.data, self.data_options)  # an unknown module or option fails here
        if self.stages:
            from nastk.oneshot.stages import stages_from

            stages_from(self.stages)  # every stage checked here (its own config when the run starts)
        if self.image_size is not None and int(self.image_size) < 1:
            raise ConfigError(f"image_size must be at least 1, got {self.image_size}")
        if self.train_size is not None and int(self.train_size) < 1:
            raise ConfigError(f"train_size must be at least 1, got {self.train_size}")
        if self.held_out_fraction is not None and not 0 <= float(self.held_out_fraction) < 1:
            raise ConfigError(f"held_out_fraction must be in [0, 1), got {self.held_out_fraction}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        if not 0 <= self.lr_min <= self.lr:
            raise ConfigError(f"lr_min must be in [0, lr={self.lr}], got {self.lr_min}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"unknown lr_schedule {self.lr_schedule!r}; known: {', '.join(LR_SCHEDULES)}")
        if not self.lr_power >= 1:
            raise ConfigError(f"lr_power must be at least 1, got {self.lr_power}")
        sampler_pair(self.sampler)  # a preset or a path sampler's name; unknown ones fail here, with the known ones

    def to_dict(self) -> Dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: Dict[str, Any], source: str = "") -> "OneShotConfig":
        if not isinstance(data, dict):
            raise ConfigError(f"supernet training options{' in ' + source if source else ''} must be a mapping")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            where = f" in {source}" if source else ""
            raise ConfigError(f"unknown supernet training option(s) {', '.join(map(str, unknown))}{where}; "
                              f"known: {', '.join(sorted(known))}")
        return cls(**data)

    @classmethod
    def upgraded(cls, saved: Dict[str, Any]) -> Dict[str, Any]:
        """A run config written before later options existed, with those options at their defaults
        (what the run trained with), so it resumes."""
        return {**asdict(cls()), **saved} if isinstance(saved, dict) else saved

    @classmethod
    def for_step(cls, step: str = "single_path", **options) -> "OneShotConfig":
        """A config that starts from ``step``'s recipe (DARTS' search settings for ``darts``, BigNAS'
        for ``sandwich``); ``options`` override it."""
        return cls.from_dict({**asdict(cls()), **step_recipe(step), "step": step, **options})


#: the type and range of every OneShotConfig field: flags, config files and Python all go through it
FIELD_TYPES = {
    "space": Text(), "dataset": Text(), "sampler": Text(), "sampler_options": MappingValue(), "step": Text(),
    "step_options": MappingValue(), "held_out_fraction": Float(minimum=0, below=1), "supernet": MappingValue(),
    "image_size": Int(minimum=1), "epochs": Int(minimum=1), "train_size": Int(minimum=1), "batch_size": Int(minimum=1),
    "lr": Float(above=0), "momentum": Float(minimum=0, below=1), "weight_decay": Float(minimum=0), "nesterov": Bool(),
    "lr_schedule": Text(choices=LR_SCHEDULES), "lr_min": Float(minimum=0), "lr_power": Float(minimum=1),
    "grad_clip": Float(minimum=0), "accumulate": Int(minimum=1), "augment": Bool(), "valid_size": Int(minimum=0),
    "eval_batch_size": Int(minimum=1), "seed": Int(minimum=0), "bn_recalibration": Int(minimum=0),
    "stages": Items(), "data": Text(), "data_options": MappingValue()}
#: fields that may be None (meaning: the step's share, the stored size, every image)
OPTIONAL_FIELDS = ("held_out_fraction", "image_size", "train_size")


def step_recipe(step: str) -> Dict[str, Any]:
    """The run settings a step starts from (its ``RECIPE``), e.g. DARTS' search recipe."""
    return dict(getattr(STEPS.get(step), "RECIPE", {}) or {})


def check_step_options(step: str, options: Dict[str, Any]) -> Dict[str, Any]:
    """``options`` checked against what ``step`` declares (``OPTIONS``): unknown names and bad values are one
    line. A step that declares nothing gets its options unchecked (its constructor decides)."""
    declarations = {option.name: option for option in declared(STEPS.get(step))}
    if not declarations:
        return dict(options)
    unknown = sorted(set(options) - set(declarations))
    if unknown:
        raise ConfigError(f"training step {step!r} has no option(s) {', '.join(unknown)}; "
                          f"its options: {', '.join(sorted(declarations))}")
    return {name: declarations[name].check(value, f"the options of step {step}") for name, value in options.items()}


def build_supernet(config: OneShotConfig, num_classes: Optional[int] = None):
    """The space's supernet with the config's options; an option it does not take is one clear error.
    ``num_classes`` is passed only when given (a generator or a self-supervised backbone has no classes)."""
    space = get_space(config.space)
    space.require("supernet")
    declarations = {option.name: option for option in space.supernet_options()}
    if declarations:
        unknown = sorted(set(config.supernet) - set(declarations))
        if unknown:
            raise ConfigError(f"the {space.name} supernet has no option {unknown[0]!r} (its options: "
                              f"{', '.join(declarations)}; given: {', '.join(sorted(config.supernet))})")
        for name, value in config.supernet.items():
            declarations[name].check(value, f"the {space.name} supernet options")
    try:
        return space.supernet(**({} if num_classes is None else {"num_classes": num_classes}), **config.supernet)
    except TypeError as error:
        if "unexpected keyword argument" not in str(error):
            raise
        option = str(error).split("unexpected keyword argument")[-1].strip(" '\"")
        raise ConfigError(f"the {space.name} supernet has no option {option!r} (given: {', '.join(sorted(config.supernet))})") from None


class OneShotTrainer:
    """Trains a supernet with a pluggable step; ``fit`` runs (or resumes) the remaining epochs.

    ``loss(logits, targets)`` is what steps minimise (default cross-entropy) and ``metrics`` maps
    names to per-batch sums logged as ``train_<name>`` / ``valid_<name>`` (default top-1 accuracy).
    ``callbacks`` are called as ``callback(trainer, record)`` after each epoch's checkpoint (e.g. to
    measure gradient variance). ``config.batch_size`` is the global batch over all ranks. A given
    ``supernet`` (e.g. a few-shot sub-supernet from :meth:`Supernet.split`) is trained instead of a
    new one. ``device`` None: the given supernet's device, else torch's default device.
    """

    def __init__(self, config: OneShotConfig, run_dir=None, device: Device = None, dist: Optional[Distributed] = None,
                 data: Optional[ImageDataset] = None, progress: bool = True,
                 callbacks: Sequence[Callable[["OneShotTrainer", Dict[str, Any]], None]] = (),
                 supernet: Optional[Supernet] = None, loss: Optional[Loss] = None,
                 metrics: Optional[Mapping[str, Metric]] = None):
        self.config = config
        self.dist = dist or Distributed()
        # None: where a given supernet is, else where a new one is built (nastk.devices)
        self.device = self.dist.device(model_device(supernet) if device is None and supernet is not None else device)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        #: what the epoch lines name first (a few-shot leaf, a stage), so a log says whose epoch it was
        self.label = ""
        self.progress, self.callbacks = progress, list(callbacks)
        board = tensorboard_callback(self.run_dir)  # training curves for TensorBoard, when it is installed
        if board is not None:
            self.callbacks.append(board)
        self.data_module = make_data_module(config.data, config.data_options)
        self.loss: Loss = loss or self.data_module.loss
        self.metrics: Dict[str, Metric] = dict(self.data_module.default_metrics() if metrics is None else metrics)
        data = downsample(data if data is not None else load_dataset(config.dataset), config.image_size)
        (x, y), (x_held, y_held) = split_images(config, data)
        self.x, self.y = x.to(self.device), y.to(self.device)
        self.x_held, self.y_held = x_held.to(self.device), y_held.to(self.device)
        self.x_valid, self.y_valid = mixed(data.x_test, data.y_test, config.valid_size or 0)
        self.num_classes = data.num_classes
        torch.manual_seed(config.seed)
        if supernet is None:
            supernet = build_supernet(config, data.num_classes)
        self.supernet = supernet.to(self.device)
        self.model = self.dist.wrap(self.supernet)
        self.path_sampler, self.data_sampler = make_samplers(
            config.sampler, self.supernet, len(self.x), config.seed, config.sampler_options)
        self.context = StepContext(self)
        self.step: TrainingStep = make_step(self.context)
        if self.step.needs_held_out and not len(self.x_held):
            fraction = config.held_out_fraction if config.held_out_fraction is not None else type(self.step).held_out_fraction
            raise ConfigError(f"the {config.step} step learns on held-out training images, and this run holds out none "
                              f"(held-out fraction {fraction:g} of {len(self.x) + len(self.x_held)} training images); "
                              f"hold out some with --held-out-fraction (e.g. 0.5) and a --train-size of at least 2")
        self.epoch = 0
        self.history: List[Dict[str, Any]] = []

    # --- what steps call ------------------------------------------------------------------------
    def activate(self, path) -> None:
        """Single path (one option per decision) or mixture (a ``(decisions, options)`` weight tensor)."""
        if isinstance(path, torch.Tensor):
            self.supernet.set_mixture(path)
        else:
            self.supernet.set_active(path)

    def examples(self, indices: torch.Tensor, augment: Optional[torch.Tensor] = None, held_out: bool = False):
        """Training (or held-out) images ``indices`` on the device, augmented when ``augment`` is given."""
        xs, ys = (self.x_held, self.y_held) if held_out else (self.x, self.y)
        indices = indices.to(xs.device)
        return self.data_module.examples(xs[indices], ys[indices], augment)

    def forward_backward(self, indices: torch.Tensor, augment: Optional[torch.Tensor] = None):
        """Zero the gradients, then :meth:`StepContext.forward_backward` on the active path: the
        ``accumulate`` micro-batches' mean-loss gradients, averaged over ranks. Used to measure
        gradient variance at fixed weights."""
        self.context.zero_grad()
        return self.context.forward_backward(indices, augment)

    # --- one epoch ------------------------------------------------------------------------------
    def _global_batches(self, epoch: int) -> List[torch.Tensor]:
        """The epoch's batches of example indices, drawn on the host (the same on every device; examples()
        moves each to the data's device)."""
        order = torch.as_tensor(self.data_sampler.epoch_indices(), dtype=torch.long, device=HOST)
        generator = torch.Generator(HOST).manual_seed(seed_of(self.config.seed, epoch, 3))
        order = order[torch.randperm(len(order), generator=generator, device=HOST)]
        batches = list(order.split(self.config.batch_size))
        # every micro-batch of every rank needs at least one example
        return [b for b in batches if len(b) >= self.dist.world * self.config.accumulate]

    def _held_out_batches(self, epoch: int, count: int) -> List[Optional[torch.Tensor]]:
        """One held-out batch per step: shuffled passes over the held-out images, as many as needed."""
        if not len(self.x_held):
            return [None] * count
        size = min(self.config.batch_size, len(self.x_held))
        generator = torch.Generator().manual_seed(seed_of(self.config.seed, epoch, 5))
        passes = -(-count * size // len(self.x_held))
        order = torch.cat([torch.randperm(len(self.x_held), generator=generator, device=HOST) for _ in range(passes)])
        return [order[i * size:(i + 1) * size] for i in range(count)]

    def _shard(self, batch: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        return None if batch is None else contiguous_part(batch, self.dist.rank, self.dist.world)

    def train_epoch(self, epoch: int) -> Dict[str, Any]:
        config = self.config
        self.context.epoch = epoch
        self.step.start_epoch(epoch)
        self.data_sampler.start_epoch(epoch)
        augment_rng = torch.Generator().manual_seed(seed_of(config.seed, epoch, 4))
        held_augment_rng = torch.Generator().manual_seed(seed_of(config.seed, epoch, 6))
        batches = self._global_batches(epoch)
        held_batches = self._held_out_batches(epoch, len(batches))
        self.model.train()
        op_counts = np.zeros(self.supernet.allowed.shape[1], dtype=np.int64)
        totals = np.zeros(2 + len(self.metrics))  # loss sum, examples, metric sums (this rank)
        step_metrics: Dict[str, float] = {}  # sums over examples of the step's own metrics (this rank)
        bar = _bar(len(batches), f"{self.label}epoch {epoch + 1}/{config.epochs}", self.progress and self.dist.is_main)
        for batch, held in zip(batches, held_batches):
            augment = self.data_module.augment_params(len(batch), augment_rng) if config.augment else None
            held_augment = (self.data_module.augment_params(len(held), held_augment_rng)
                            if config.augment and held is not None else None)
            local = self._shard(batch)
            out = self.step.step(Batch(local, self._shard(augment), self._shard(held), self._shard(held_augment), epoch))
            for path in ([out.path] if out.path is not None else []) + list(out.paths):
                op_counts += np.bincount(path, minlength=len(op_counts))
            classified = out.logits is not None and out.targets is not None
            if classified:
                self.data_sampler.observe_batch(local.numpy(), out.logits, out.targets)
            totals += [float(out.loss) * len(local), len(local)] + [
                m(out.logits, out.targets) if classified else 0.0 for m in self.metrics.values()]
            for name, value in out.metrics.items():
                step_metrics[name] = step_metrics.get(name, 0.0) + float(value) * len(local)
            if bar:
                bar.update(1)
                bar.set_postfix(loss=f"{float(out.loss):.3f}")
        if bar:
            bar.close()
        self.data_sampler.end_epoch(epoch, config.epochs, self.dist.gather)
        self.step.end_epoch(epoch, config.epochs, self.dist.gather)
        summed = np.sum(self.dist.gather(totals), axis=0)
        seen = max(summed[1], 1)
        record = {"train_loss": summed[0] / seen}
        record.update({f"train_{name}": value / seen for name, value in zip(self.metrics, summed[2:])})
        ranks = self.dist.gather(step_metrics)  # one collective, whatever metrics each rank reported
        for name in sorted({name for metrics in ranks for name in metrics}):
            record[f"train_{name}"] = sum(metrics.get(name, 0.0) for metrics in ranks) / seen
        record.update({"steps": len(batches), "images": int(summed[1]), "op_counts": op_counts.tolist()})
        return record

    @torch.no_grad()
    def validate(self, epoch: int) -> Dict[str, Optional[float]]:
        """Supernet metrics on the monitoring images, the step's validation path per batch (monitoring only).

        With ``config.bn_recalibration`` each path's tracked BatchNorm statistics are first re-estimated
        on that many training batches; the supernet's buffers are restored afterwards, so monitoring
        never changes training.
        """
        if not len(self.x_valid) or not self.metrics or self.data_module.monitor(self.x_valid[:1], self.y_valid[:1]) is None:
            return {f"test_{name}": None for name in self.metrics}  # nothing to score (e.g. two views)
        size = self.config.eval_batch_size
        calibration = [self.x[s:s + size] for s in range(0, min(len(self.x), self.config.bn_recalibration * size), size)]
        buffers = {name: b.clone() for name, b in self.supernet.named_buffers()} if calibration else {}
        self.supernet.eval()
        rng = np.random.default_rng([self.config.seed, epoch, 2])
        sums = np.zeros(len(self.metrics))
        for start in range(0, len(self.x_valid), size):
            self.activate(self.step.validation_path(rng))
            if calibration:
                recalibrate_bn(self.supernet, calibration, recipe="cumulative")
            pair = self.data_module.monitor(self.x_valid[start:start + size].to(self.device),
                                            self.y_valid[start:start + size].to(self.device))
            outputs = self.supernet(pair[0])
            sums += [m(outputs, pair[1]) for m in self.metrics.values()]
        for name, buffer in self.supernet.named_buffers():
            if name in buffers:
                buffer.copy_(buffers[name])
        return {f"test_{name}": value / len(self.x_valid) for name, value in zip(self.metrics, sums)}

    @torch.no_grad()
    def held_out_quality(self, path, batch_size: Optional[int] = None) -> Tuple[float, float]:
        """(accuracy %, mean loss) of a path or mixture (as :meth:`activate` takes) on the held-out
        images: the validation split DARTS-PT and GM-NAS select with. BatchNorm uses batch statistics
        (train mode, as DARTS-PT evaluates), and its running buffers are left as they were."""
        if not len(self.x_held):
            raise ConfigError("this run holds out no training images to select on; train with a bilevel step "
                              "(darts) or set held_out_fraction")
        buffers = {name: b.clone() for name, b in self.supernet.named_buffers()}
        self.supernet.train()
        self.activate(path)
        size = int(batch_size or self.config.eval_batch_size)
        score = self.score
        if score is None or self.data_module.monitor(self.x_held[:1], self.y_held[:1]) is None:
            raise ConfigError(f"neither the {self.config.step} step nor the {self.config.data} data defines a "
                              f"score to select held-out examples by")
        hits = loss = 0.0
        for start in range(0, len(self.x_held), size):
            pair = self.data_module.monitor(self.x_held[start:start + size], self.y_held[start:start + size])
            outputs, targets = self.supernet(pair[0]), pair[1]
            hits += score(outputs, targets)
            loss += float(self.loss(outputs, targets)) * len(targets)
        for name, buffer in self.supernet.named_buffers():
            buffer.copy_(buffers[name])
        return hits / len(self.x_held), loss / len(self.x_held)

    @property
    def score(self):
        """What selection maximises: the step's ``score``, else the data module's (top-1, PSNR)."""
        return self.step.score or self.data_module.score

    # --- the run ----------------------------------------------------------------------------------
    def fit(self, until: Optional[int] = None) -> List[Dict[str, Any]]:
        """Train the remaining epochs (all of them unless :meth:`load_checkpoint` ran first).

        ``until``: stop after that many epochs of the schedule (a stage of a few-shot split schedule,
        the tuning between two DARTS-PT decisions); the schedule still spans ``config.epochs``.
        """
        end = self.config.epochs if until is None else min(int(until), self.config.epochs)
        for epoch in range(self.epoch, end):
            started = time.perf_counter()
            record: Dict[str, Any] = {"epoch": epoch, "lr": self.step.lr()}
            record.update(self.train_epoch(epoch))
            record.update(self.validate(epoch))
            record.update(self.step.summary())
            record.update(self.data_sampler.summary())
            if self.dist.world > 1:
                record["replica_spread"] = self._replica_spread()
            record["epoch_s"] = round(time.perf_counter() - started, 3)
            record["images_per_s"] = round(record["images"] / record["epoch_s"], 1)
            self.history.append(plain(record, nonfinite_as_none=True))
            self.epoch = epoch + 1
            self.save_checkpoint()
            if self.progress and self.dist.is_main:
                metrics = "".join(f"  {key.replace('_', ' ')} {record[key]:.2f}" for key in record
                                  if key.startswith(("train_", "test_")) and key != "train_loss" and record[key] is not None)
                left = (end - epoch - 1) * record["epoch_s"]
                _bar_write(f"{self.label}epoch {epoch + 1}/{self.config.epochs}  loss {record['train_loss']:.4f}{metrics}  "
                           f"{record['epoch_s']:.1f} s" + (f", about {left:.0f} s left" if left else ""))
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
                 "step": self.step.state_dict(), "data_sampler": self.data_sampler.state_dict(), "history": self.history}
        with atomic_write(self.checkpoint_path) as handle:
            torch.save(state, handle)
        append_lines(self.run_dir / METRICS, json.dumps(self.history[-1]))  # rewritten from the history on resume
        self.dist.barrier()

    def load_checkpoint(self, path: Optional[Path] = None, keep_mask: bool = False) -> bool:
        """Restore the run folder's checkpoint (or ``path``, e.g. a few-shot parent's), if any; returns
        whether there was one. ``keep_mask``: keep this supernet's allowed options (a child inherits
        its parent's weights, optimizer and sampler states but not its mask)."""
        path = self.checkpoint_path if path is None else Path(path)
        if path is not None and path.exists() and not path.is_file():
            raise RunError(f"cannot resume from {path}: it is a folder, not a checkpoint file")
        if path is None or not path.is_file():
            if path is not None and path == self.checkpoint_path:
                _no_epochs_without_checkpoint(self.run_dir)
            return False
        state = read_checkpoint(path, self.device)
        if "arch_logits" in state["model"] and self.supernet.arch_logits is None:
            raise RunError(f"{path} holds architecture parameters this supernet does not have")
        self.supernet.load_state_dict(state["model"])
        if not keep_mask:
            self.supernet.allowed = np.array(state["allowed"], dtype=bool)
        self.step.load_state_dict(state["step"])
        self.data_sampler.load_state_dict(state["data_sampler"])
        self.history, self.epoch = list(state["history"]), int(state["epoch"])
        if self.dist.is_main:  # metrics.jsonl may hold a line past the checkpoint (killed in between)
            with atomic_write(self.run_dir / METRICS, "w") as handle:
                handle.write("".join(json.dumps(record) + "\n" for record in self.history))
        self.dist.barrier()
        return True


def _no_epochs_without_checkpoint(run_dir: Path) -> None:
    """A run folder whose ``metrics.jsonl`` records finished epochs had a checkpoint after each of them
    (it is written first); without it, resuming would retrain from epoch 0 and record epochs twice."""
    metrics = run_dir / METRICS
    try:
        epochs = sum(1 for line in metrics.read_bytes().splitlines() if line.strip()) if metrics.is_file() else 0
    except OSError:
        epochs = 0
    if epochs:
        raise RunError(f"cannot resume {run_dir}: its {CHECKPOINT} is missing, though {METRICS} records {epochs} "
                       f"finished epoch(s); retraining from epoch 0 would record them twice (restore the checkpoint, "
                       f"or train into a new --run-dir)")


def read_checkpoint(path: Path, device: Device = None) -> Dict[str, Any]:
    """A supernet checkpoint's state, its tensors on ``device`` (``None``: torch's default device)."""
    try:
        state = torch.load(path, map_location=resolve_device(device), weights_only=True)
    except Exception as error:  # torn or foreign file
        raise RunError(f"cannot read supernet checkpoint {path}: {error}") from None
    if not isinstance(state, dict) or state.get("format") not in READABLE_FORMATS:
        raise RunError(f"{path} is not a nastk supernet checkpoint (format {CHECKPOINT_FORMAT})")
    if state["format"] == 1:  # single-path runs kept the step's state at the top level
        state["step"] = {key: state[key] for key in ("optimizer", "scheduler", "path_sampler")}
    return state


def train(config: OneShotConfig, run_dir, resume: bool = False, device: Device = None, progress: bool = True,
          data: Optional[ImageDataset] = None, callbacks=()) -> Dict[str, Any]:
    """Train (or resume) a supernet into ``run_dir``; works as is under ``torchrun``. Returns the summary."""
    dist = Distributed.from_env(device)
    if config.stages:
        from nastk.oneshot.stages import stages_from, train_stages

        return train_stages(config, stages_from(config.stages), run_dir, resume, device, progress, dist, data, callbacks)
    # the trainer validates everything (supernet and step options, data) before the run folder is made
    trainer = OneShotTrainer(config, run_dir, device, dist, data, progress, callbacks)
    run = Run(run_dir, config.to_dict(), resume=resume, upgrade=OneShotConfig.upgraded,
              upgrade_adds_fields=True) if dist.is_main else None
    with run if run is not None else nullcontext():  # the folder's lock is released however training ends
        return _train_in(trainer, run, config, run_dir, resume, dist)


def _train_in(trainer: "OneShotTrainer", run: Optional[Run], config: OneShotConfig, run_dir, resume: bool,
              dist: Distributed) -> Dict[str, Any]:
    dist.barrier()
    if resume:
        trainer.load_checkpoint()
    resumed_from = trainer.epoch
    trainer.fit()
    last = trainer.history[-1]
    summary = {"run_dir": str(run_dir), "space": config.space, "step": config.step, "sampler": config.sampler, "epochs": config.epochs,
               "resumed_from_epoch": resumed_from, "world_size": dist.world, "device": str(trainer.device),
               "train_size": len(trainer.x), "final_train_loss": last["train_loss"], "final_train_acc": last.get("train_acc"),
               "final_test_acc": last.get("test_acc"), "train_wall_s": round(sum(r["epoch_s"] for r in trainer.history), 3),
               **{k: last[k] for k in ("op_probs", "data_unique_fraction", "arch") if k in last}}
    if run is not None:
        run.write_summary(summary)
    return summary


def load_trained(run_dir, device: Device = None):
    """The supernet of a run folder with its latest weights on ``device`` (``None``: torch's default
    device), and the run's config and epoch."""
    run_dir, device = Path(run_dir), resolve_device(device)
    if not (run_dir / CHECKPOINT).is_file():
        raise RunError(f"{run_dir} holds no supernet checkpoint ({CHECKPOINT}); train one with 'nastk supernet train'")
    state = read_checkpoint(run_dir / CHECKPOINT, device)
    config = OneShotConfig.from_dict(state["config"])
    supernet = build_supernet(config, int(state["num_classes"])).to(device)
    if "arch_logits" in state["model"]:
        supernet.init_arch_parameters()
    supernet.load_state_dict(state["model"])
    supernet.allowed = np.array(state["allowed"], dtype=bool)
    return supernet, config, int(state["epoch"])


#: where a run folder's TensorBoard event files go (``tensorboard --logdir RUN_DIR/tensorboard``)
TENSORBOARD = "tensorboard"


def tensorboard_callback(run_dir: Optional[Path]):
    """An epoch callback writing every numeric metric of the epoch record (and PA&DA's op
    probabilities) as TensorBoard scalars into ``<run_dir>/tensorboard``, or None when there is no run
    folder, ``torch.utils.tensorboard`` is not importable (the optional ``tensorboard`` package) or
    ``NASTK_TENSORBOARD=0``: never required, the run's truth stays ``metrics.jsonl``. Each epoch opens
    and closes its writer (one small event file per epoch), so nothing stays open between epochs."""
    import os

    if run_dir is None or os.environ.get("NASTK_TENSORBOARD", "1") == "0":
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # ModuleNotFoundError (no tensorboard package) or a broken install: no event files
        return None

    def write(trainer: "OneShotTrainer", record: Dict[str, Any]) -> None:
        if not trainer.dist.is_main:
            return
        step = int(record["epoch"]) + 1
        with SummaryWriter(str(Path(run_dir) / TENSORBOARD)) as writer:
            for key, value in record.items():
                if key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    writer.add_scalar(key, value, step)
            for index, value in enumerate(record.get("op_probs") or []):
                writer.add_scalar(f"op_probs/{index}", value, step)

    return write


def _bar(total: int, description: str, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=description, leave=False, dynamic_ncols=True, disable=None)  # None: only on a terminal


def _bar_write(line: str) -> None:
    from nastk.log import LOGGER

    LOGGER.info(line)
