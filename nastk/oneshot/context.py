"""What a training step may touch: the data, the models and DDP-safe forward / backward primitives.

A step never calls the supernet or ``loss.backward()`` directly; it goes through a
:class:`StepContext`, so the same step is correct in one process and under ``torchrun``:

* :meth:`StepContext.forward` always runs through the (DDP-)wrapped model, so buffers are
  broadcast from rank 0 as DDP does, and ``**mode`` reaches the model's ``forward`` (a block index,
  ``generator=True``, ...);
* :meth:`StepContext.backward` accumulates gradients locally (any number of paths or micro-batches
  per batch); the call with ``last=True`` averages the gradients of the step's models over ranks
  once, so an optimizer step after it sees what one process with ``accumulate`` = ranks would see;
* :meth:`StepContext.wrap` registers a second model a step owns (a discriminator, an EMA teacher)
  under the same rules.

Gradient averaging is explicit (one flattened all-reduce per sync) instead of DDP's backward hooks:
hooks fire once per backward and cannot know that a step will run three more paths before its
optimizer step. A parameter no rank used keeps ``grad = None``, exactly as in one process, so SGD's
momentum and weight decay skip it.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, List, Optional, Tuple

import numpy as np
import torch
from torch import nn

from nastk.oneshot.ddp import Distributed


def contiguous_part(batch, part: int, parts: int):
    """Part ``part`` of ``parts`` contiguous, near-equal chunks: a rank's shard or a micro-batch."""
    return batch[len(batch) * part // parts:len(batch) * (part + 1) // parts]


def seed_of(*parts: int) -> int:
    """One 32-bit seed from a tuple of integers (seed, epoch, stream, ...)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


class StepContext:
    """The loop's side of a step: data on the device, wrapped models, seeded streams, the dist handle.

    Made by the trainer; a step keeps it as ``self.context``. ``config`` is the run's
    :class:`~nastk.oneshot.trainer.OneShotConfig`; ``loss`` the task loss (default cross-entropy).
    """

    def __init__(self, trainer):
        self._trainer = trainer
        self.config = trainer.config
        self.dist: Distributed = trainer.dist
        self.device: torch.device = trainer.device
        self.supernet = trainer.supernet
        self.model = trainer.model
        self.loss = trainer.loss
        self.num_classes = trainer.num_classes
        #: every model whose gradients a step's backward averages: the supernet, then wrapped extras
        self._models: List[Tuple[nn.Module, nn.Module]] = [(self.supernet, self.model)]
        self.epoch = 0

    # --- what the step reads ---------------------------------------------------------------------
    @property
    def path_sampler(self):
        return self._trainer.path_sampler

    @property
    def train_size(self) -> int:
        """How many training images the loop trains on (schedules per step, calibration sets)."""
        return len(self._trainer.x)

    def rng(self, stream: int, epoch: Optional[int] = None) -> np.random.Generator:
        """A numpy generator seeded from (run seed, epoch, stream): identical on every rank, and
        the same after a resume. Streams 0-9 are the loop's; steps use 10 and up."""
        return np.random.default_rng(seed_of(self.config.seed, self.epoch if epoch is None else epoch, stream))

    def torch_generator(self, stream: int, epoch: Optional[int] = None) -> torch.Generator:
        """A CPU torch generator seeded like :meth:`rng` (noise, dropout masks drawn on the CPU)."""
        return torch.Generator().manual_seed(seed_of(self.config.seed, self.epoch if epoch is None else epoch, stream))

    def examples(self, indices: torch.Tensor, augment: Optional[torch.Tensor] = None, held_out: bool = False):
        """Training (or held-out) images ``indices`` on the device, augmented when ``augment`` is given."""
        return self._trainer.examples(indices, augment, held_out)

    def micro_batches(self, indices: torch.Tensor, augment: Optional[torch.Tensor] = None,
                      held_out: bool = False) -> Iterator[Tuple[torch.Tensor, torch.Tensor, bool]]:
        """``(x, y, last)`` for each of the run's ``accumulate`` micro-batches of this rank's shard.

        Scale each micro-batch's mean loss by ``1 / config.accumulate`` (as :meth:`forward_backward`
        does), so the accumulated gradient is the mean over micro-batches.
        """
        pieces = self.config.accumulate
        for piece in range(pieces):
            part_augment = contiguous_part(augment, piece, pieces) if augment is not None else None
            x, y = self.examples(contiguous_part(indices, piece, pieces), part_augment, held_out)
            yield x, y, piece == pieces - 1

    def activate(self, path) -> None:
        """Single path (one option per decision) or mixture (a ``(decisions, options)`` weight tensor)."""
        if isinstance(path, torch.Tensor):
            self.supernet.set_mixture(path)
        else:
            self.supernet.set_active(path)

    # --- models ------------------------------------------------------------------------------------
    def wrap(self, module: nn.Module) -> nn.Module:
        """Move a step's own model (a discriminator, a teacher) to the device and wrap it for DDP;
        its gradients are then averaged by :meth:`backward` like the supernet's. Returns the wrapper
        (call it through :meth:`forward` with ``model=``, or directly: both are safe)."""
        module = module.to(self.device)
        wrapped = self.dist.wrap(module)
        self._models.append((module, wrapped))
        return wrapped

    def _unwrapped(self, model: Optional[nn.Module]) -> List[nn.Module]:
        if model is None:
            return [m for m, _ in self._models]
        models = model if isinstance(model, (list, tuple)) else [model]
        inner = {id(w): m for m, w in self._models}
        return [inner.get(id(m), getattr(m, "module", m)) for m in models]

    def zero_grad(self, model=None) -> None:
        """Clear the gradients (to None) of ``model`` (one, a list, default every registered model)."""
        for module in self._unwrapped(model):
            module.zero_grad(set_to_none=True)

    def forward(self, x: torch.Tensor, path=None, model: Optional[nn.Module] = None, **mode):
        """Run ``x`` through the wrapped supernet (after :meth:`activate` of ``path``, if given) or
        through ``model`` (a module returned by :meth:`wrap`); ``mode`` keywords go to ``forward``."""
        if path is not None:
            self.activate(path)
        wrapped = self.model if model is None else model
        with self._no_sync(wrapped):
            return wrapped(x, **mode)

    def _no_sync(self, wrapped: nn.Module):
        # DDP's own reduction is never used (see the module docstring): forwards run in no_sync,
        # so DDP neither expects a backward nor all-reduces inside one.
        return wrapped.no_sync() if self.dist.world > 1 and hasattr(wrapped, "no_sync") else contextlib.nullcontext()

    def backward(self, loss: torch.Tensor, last: bool = True, model=None) -> None:
        """Accumulate ``loss``'s gradients; with ``last`` (the batch's final backward before an
        optimizer step), average the gradients of ``model`` (default every registered model) over
        ranks. Call it with ``last=False`` for every earlier path or micro-batch of the batch."""
        loss.backward()
        if last:
            self.sync_gradients(model)

    def sync_gradients(self, model=None) -> None:
        """Average ``.grad`` over ranks (no-op in one process); parameters no rank used stay None."""
        if self.dist.world <= 1:
            return
        parameters = [p for module in self._unwrapped(model) for p in module.parameters() if p.requires_grad]
        self.dist.average_gradients(parameters)

    def forward_backward(self, indices: torch.Tensor, augment: Optional[torch.Tensor] = None, path=None,
                         last: bool = True):
        """The plain step body: the active path (or ``path``) on this rank's examples, in
        ``accumulate`` micro-batches, mean loss backward; gradients left in ``.grad`` (synchronised
        when ``last``). Returns the detached outputs, the targets and the loss."""
        if path is not None:
            self.activate(path)
        pieces = self.config.accumulate
        outputs, targets, total = [], [], 0.0
        for x, y, last_piece in self.micro_batches(indices, augment):
            out = self.forward(x)
            loss = self.loss(out, y) / pieces
            self.backward(loss, last=last and last_piece)
            outputs.append(out.detach())
            targets.append(y)
            total += loss.detach()
        return torch.cat(outputs), torch.cat(targets), total
