"""Torch device names checked before any work: one clear line instead of a CUDA assertion mid-run."""
from __future__ import annotations

from nastk.errors import ConfigError


def check_device(name: str) -> str:
    """``name`` if torch can run on it here; otherwise a :class:`ConfigError` saying why not.

    Accepts what ``torch.device`` accepts (``cpu``, ``cuda``, ``cuda:1``, ``mps``, ...). ``cuda``
    without an index is fine on any machine with at least one GPU (under torchrun it becomes
    ``cuda:LOCAL_RANK``).
    """
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"--device {name!r} is not a torch device (cpu, cuda, cuda:N, mps)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise ConfigError(f"--device {name}: CUDA is not available here ({why}); use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(f"--device {name}: MPS is not available here; use --device cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"--device {name}: device type {device.type!r} is not supported by nastk (cpu, cuda, mps)")
    return name
