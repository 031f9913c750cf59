"""A search's winner as a model that runs where nastk is not installed.

``nastk export --run-dir D`` builds the run's best architecture with the run's build options and,
when the run's evaluator retrained the winner (the train evaluator does), loads those weights
(``winner.pt``, written when the search finished). TorchScript (the default) is traced on an input
of the run's dataset's shape and loaded back with ``torch.jit.load`` to check that it reproduces the
model's outputs; ``state-dict`` writes the architecture string, the build options and the weights.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Dict, Tuple

from nastk.errors import ConfigError, RunError
from nastk.paths import atomic_write
from nastk.runs import RunView

WINNER = "winner.pt"
#: Input shape (channels, height, width) and classes of each dataset a run can name.
DATASETS: Dict[str, Tuple[Tuple[int, int, int], int]] = {
    "digits": ((3, 16, 16), 10), "cifar10": ((3, 32, 32), 10), "cifar10-valid": ((3, 32, 32), 10),
    "cifar100": ((3, 32, 32), 100), "ImageNet16-120": ((3, 16, 16), 120)}


def save_winner(directory: Path, arch: str, model) -> Path:
    """The retrained winner's weights in the run folder (atomically; the architecture alongside)."""
    import torch

    path = Path(directory) / WINNER
    state = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
    with atomic_write(path, "wb") as handle:
        torch.save({"arch": arch, "state_dict": state}, handle)
    return path


def winner_model(run: RunView):
    """The run's best architecture as a network, with its retrained weights when the run kept them;
    returns (model, description)."""
    import torch

    from nastk.space import get_space

    if run.best_arch is None:
        raise RunError(f"run {run.directory} has no evaluations to export")
    space = get_space(run.config["space"])
    space.require("build")  # a space without networks has nothing to export
    arch = space.from_str(run.best_arch)
    evaluator = run.config["evaluator"]
    dataset = evaluator.get("dataset") or "cifar10"
    if dataset not in DATASETS:
        raise ConfigError(f"unknown input shape for dataset {dataset!r}; known: {', '.join(DATASETS)}")
    input_shape, classes = DATASETS[dataset]
    build = dict(evaluator.get("build") or {})
    model = space.build(arch, classes, **build)
    weights = "initialised (the run's evaluator did not retrain the winner)"
    saved = run.directory / WINNER
    if saved.is_file():
        try:
            held = torch.load(saved, map_location="cpu", weights_only=True)
            if held.get("arch") != run.best_arch:
                raise RunError(f"{saved} holds {held.get('arch')}, not the run's best architecture")
            model.load_state_dict(held["state_dict"])
        except RunError:
            raise
        except Exception as error:
            raise RunError(f"cannot load the winner's weights {saved}: {str(error).splitlines()[0]}") from None
        weights = f"retrained by the run ({evaluator.get('final_epochs')} epochs on {dataset})"
    model.eval()
    info = {"space": space.name, "arch": run.best_arch, "build": build, "num_classes": classes,
            "input_shape": list(input_shape), "dataset": dataset, "weights": weights,
            "objective": run.best_objective, "run": str(run.directory)}
    return model, info


def export(run: RunView, out, fmt: str = "torchscript") -> Dict[str, Any]:
    """Write the winner to ``out``; returns what was written (and, for TorchScript, the check)."""
    import torch

    if fmt not in ("torchscript", "state-dict"):
        raise ConfigError(f"unknown export format {fmt!r}; use torchscript or state-dict")
    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder; give a file name such as {out / 'model.pt'}")
    model, info = winner_model(run)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "state-dict":
        with atomic_write(out, "wb") as handle:
            torch.save({**info, "state_dict": model.state_dict()}, handle)
        return {**info, "file": str(out), "format": fmt}
    example = torch.randn(2, *info["input_shape"], generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), warnings.catch_warnings():
        # torch >= 2.10 marks TorchScript deprecated in favour of torch.export; it is still the format
        # that loads with a bare `torch.jit.load`, so it stays the default while torch ships it.
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(model, example)
        with atomic_write(out, "wb") as handle:
            torch.jit.save(traced, handle, _extra_files={"nastk.json": json.dumps(info)})
        loaded = torch.jit.load(str(out), map_location="cpu")
        difference = float((loaded(example) - model(example)).abs().max())
    return {**info, "file": str(out), "format": fmt, "check_max_abs_difference": difference}
