"""Parameter and FLOP counts of any network, without training.

FLOPs are multiply-accumulates of convolutions and linear layers (the NAS-Bench-201 convention),
counted with forward hooks on one zero input, so they follow whatever a network actually executes.
"""
from __future__ import annotations

from typing import Dict

import torch
from torch import nn

from nastk.devices import model_device, resolve_device


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, input_size: int = 32, channels: int = 3) -> int:
    total = 0

    def conv_hook(module: nn.Conv2d, _inputs, output):
        nonlocal total
        kernel_ops = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
        total += output.numel() * (kernel_ops + (1 if module.bias is not None else 0))

    def linear_hook(module: nn.Linear, _inputs, output):
        nonlocal total
        total += output.numel() * (module.in_features + (1 if module.bias is not None else 0))

    handles = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
    device = model_device(model)
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, channels, input_size, input_size, device=device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return total


def model_cost(model: nn.Module, input_size: int = 32) -> Dict[str, float]:
    """``{"params_m": ..., "flops_m": ...}`` in millions."""
    return {"params_m": count_parameters(model) / 1e6, "flops_m": count_flops(model, input_size) / 1e6}


def measure_latency(model: nn.Module, input_shape, device=None, repeats: int = 20, warmup: int = 5) -> float:
    """Median wall time (ms) of one eval-mode forward pass of ``input_shape`` on ``device`` (None: where the
    model is), after ``warmup`` passes (the first passes of a new shape pay one-off kernel selection); CUDA
    work is synchronised before each clock read, so the time is the device's, not the launch's."""
    import statistics
    import time

    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats}, {warmup}")
    device = resolve_device(device, model)
    model = model.to(device).eval()
    x = torch.zeros(*input_shape, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = []
    with torch.no_grad():
        for i in range(warmup + repeats):
            sync()
            started = time.perf_counter()
            model(x)
            sync()
            if i >= warmup:
                times.append(1000.0 * (time.perf_counter() - started))
    return statistics.median(times)
