"""Where tensors go: device names checked before any work (one clear line instead of a CUDA assertion
mid-run), and the rule for code below the command line that is not told a device.

Only the CLI (``--device``) has a default. Every other model path takes ``device``, and ``None`` there
means *where the model is*, never a silent CPU: the device of the model's parameters
(:func:`model_device`), or, for code that builds or loads a model, torch's default device
(``torch.set_default_device``; the CPU unless a caller set another), where the model would be built
anyway (:func:`resolve_device`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Union

from nastk.errors import ConfigError

if TYPE_CHECKING:  # torch loads inside the functions: the CLI imports check_device to build its flags
    import torch

#: what a ``device`` argument accepts
Device = Union[str, "torch.device", None]

#: The CPU, named where nastk means it whatever the run's device: data sets load there, seeded
#: ``torch.Generator`` draws happen there (the same numbers on every device), exported files are written
#: from there. Never a default for a model path.
HOST = "cpu"


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


def model_device(model: "torch.nn.Module") -> "torch.device":
    """The device of ``model``'s first parameter (or buffer); torch's default device for a model holding
    neither, since such a model runs wherever its input is."""
    import torch

    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.get_default_device()


def resolve_device(device: Device, model: Optional["torch.nn.Module"] = None) -> "torch.device":
    """``device`` as a ``torch.device``; ``None``: where ``model`` is (:func:`model_device`), or without a
    model, torch's default device (where a model built now lands)."""
    import torch

    if device is not None:
        return torch.device(device)
    return model_device(model) if model is not None else torch.get_default_device()
