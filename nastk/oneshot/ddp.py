"""Data-parallel training under ``torchrun``: process group, device per rank, DDP wrapping, gathering.

Outside ``torchrun`` (no ``WORLD_SIZE`` > 1 in the environment) everything degrades to a single
process. Single-path supernets leave most parameters unused at each step, so DDP runs with
``find_unused_parameters=True``; parameters unused on every rank keep ``grad = None``, exactly as in
a single process. Every rank must run the same path at each step: path samplers are seeded
identically on all ranks, and only the data is sharded.
"""
from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from typing import Any, List

import torch
import torch.distributed as dist

from nastk.devices import Device, model_device, resolve_device


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls, device: Device = None) -> "Distributed":
        """Join the process group ``torchrun`` describes (gloo on CPU, nccl on CUDA; ``None``: torch's
        default device decides, see :func:`nastk.devices.resolve_device`)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if resolve_device(device).type == "cuda" else "gloo")
            atexit.register(_leave_process_group)
        return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, requested: Device) -> torch.device:
        """One GPU per process under torchrun (``cuda`` becomes ``cuda:LOCAL_RANK``); ``None``: torch's
        default device (:func:`nastk.devices.resolve_device`)."""
        device = resolve_device(requested)
        if self.world > 1 and device.type == "cuda" and device.index is None:
            return torch.device("cuda", self.local_rank)
        return device

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        if self.world <= 1:
            return model
        device_ids = [model_device(model).index] if model_device(model).type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=True)

    def gather(self, obj: Any) -> List[Any]:
        """Every rank's ``obj``, in rank order (``[obj]`` in a single process)."""
        if self.world <= 1:
            return [obj]
        out: List[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def all_reduce_mean(self, tensors: List[torch.Tensor]) -> List[torch.Tensor]:
        """The rank average of each tensor (the tensors themselves in a single process).

        For gradients taken outside the DDP-wrapped model (architecture parameters, unrolled steps).
        """
        if self.world <= 1:
            return tensors
        for tensor in tensors:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
            tensor.div_(self.world)
        return tensors

    def average_gradients(self, parameters: List[torch.nn.Parameter]) -> None:
        """Average ``.grad`` of ``parameters`` over ranks in one flattened all-reduce.

        A parameter whose gradient is None on every rank stays None (as in one process); one used on
        some rank only counts zeros elsewhere, as DDP does.
        """
        if self.world <= 1 or not parameters:
            return
        device = parameters[0].device
        used = torch.tensor([p.grad is not None for p in parameters], dtype=torch.float32, device=device)
        dist.all_reduce(used, op=dist.ReduceOp.MAX)
        chosen = [p for p, u in zip(parameters, used.tolist()) if u]
        if not chosen:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in chosen]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat.div_(self.world)
        offset = 0
        for p in chosen:
            n = p.numel()
            p.grad = flat[offset:offset + n].view_as(p).clone()
            offset += n

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def _leave_process_group() -> None:
    """Destroy the process group before the interpreter exits: a gloo group left to the C++ teardown
    can abort the process ("terminate called without an active exception") after the work is done."""
    if dist.is_initialized():
        dist.destroy_process_group()
