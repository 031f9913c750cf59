"""A search's winner, or a child of a trained supernet, as a model that runs where nastk is not installed.

Every kind of run exports (:mod:`nastk.run_views` reads them): a search its winner (``--top K``: its K best
distinct architectures, :func:`export_top`); a supernet, staged, few-shot or DARTS-PT folder what it
selected (:func:`export_oneshot`), with the inherited weights of the supernet it was selected from.

``nastk export --run-dir D`` builds the run's best architecture with the run's build options and,
when the run's evaluator retrained the winner (the train evaluator does), loads those weights
(``winner.pt``, written when the search finished). A search whose evaluator was ``supernet:RUN_DIR``
exports its winner with the weights it was scored with: the child extracted from that supernet
(:func:`supernet_child`). ``nastk export --run-dir SUPERNET_RUN --arch ARCH`` exports any child of a
supernet run the same way, without retraining.

A supernet child is ``supernet.extract(arch)``: a stand-alone network of its inherited weights (the
MobileNet spaces and QuantNAS' ``sr`` / ``qnas-nb201`` extract the network their space's ``build()`` makes, so
their state dicts load into it; other supernets a pinned copy, exported as TorchScript). When a classifier
supernet's BatchNorm tracks running statistics (the MobileNet spaces; BigNAS trains them with momentum 0, so
they hold nothing usable), the child's statistics are first recalibrated on the run's training images exactly
as ``supernet rank`` and the supernet evaluator do (:func:`nastk.oneshot.ranking.activate`, one default rule:
:func:`~nastk.oneshot.ranking.default_bn_calibration`), so the exported model reproduces the score they report;
super-resolution children keep the supernet's statistics, as the evaluator scores them. A super-resolution
network takes low-resolution images of any size (``input_shape`` records the training patches it was traced on)
and has no classes (``num_classes`` None).

Every export goes through :func:`write_model`: TorchScript (the default) is traced on an input of
the run's images' shape and loaded back with ``torch.jit.load`` to check that it reproduces the
model's outputs; ``state-dict`` writes the architecture string, the build options and the weights,
which the space's ``build(arch, num_classes, **build)`` loads.
"""
from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from nastk.devices import HOST
from nastk.errors import CapabilityError, ConfigError, NastkError, RunError
from nastk.paths import atomic_write, check_writable
from nastk.run_views import OneShotView, RunView

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


def winner_model(run: RunView, arch_text: Optional[str] = None, objective: Optional[float] = None):
    """The run's best architecture (or ``arch_text``, another of its trials) as a network, with the
    retrained weights when the run kept them for it (only its winner's are kept); returns (model, description)."""
    import torch

    from nastk.space import get_space

    if run.best_arch is None:
        raise RunError(f"run {run.directory} has no evaluations to export")
    winner = arch_text is None or arch_text == run.best_arch
    arch_text = run.best_arch if arch_text is None else arch_text
    objective = run.best_objective if winner and objective is None else objective
    evaluator = run.config["evaluator"]
    if evaluator.get("kind") == "supernet":  # the weights it was scored with, as it scored them
        model, info = supernet_child(evaluator["run_dir"], arch_text, evaluator.get("bn_calibration", 0),
                                     evaluator.get("bn_recipe") or "cumulative", device=HOST, space=run.config["space"])
        return model, {**info, "objective": objective, "run": str(run.directory)}
    space = get_space(run.config["space"])
    space.require("build")  # a space without networks has nothing to export
    arch = space.from_str(arch_text)
    dataset = evaluator.get("dataset") or "cifar10"
    build = dict(evaluator.get("build") or {})
    input_shape, classes = _network_io(space, dataset, build)
    model = space.build(arch, classes, **build)
    weights = "initialised (the run's evaluator did not retrain the winner)"
    saved = run.directory / WINNER
    if not winner:
        model.eval()
        weights = ("initialised (the run retrained only its winner; train this one to use it)"
                   if _retrains_winner(evaluator.get("kind")) else weights)
        return model, {"space": space.name, "arch": arch_text, "build": build, "num_classes": classes,
                       "input_shape": list(input_shape), "dataset": dataset, "weights": weights,
                       "objective": objective, "run": str(run.directory)}
    if not saved.is_file() and run.summary is not None and _retrains_winner(evaluator.get("kind")):
        raise RunError(f"{saved} is missing: the run finished and retrained its winner, whose weights it kept there; "
                       f"exporting without them would give an untrained network (restore the file, or rerun the "
                       f"search into a new --run-dir)")
    if saved.is_file():
        try:
            held = torch.load(saved, map_location=HOST, weights_only=True)
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


def _network_io(space, dataset: str, build: Dict[str, Any]) -> Tuple[Tuple[int, ...], Optional[int]]:
    """(input shape, classes) of the network a search built for ``dataset``: the table's (:data:`DATASETS`) for
    image classifiers; for a space with its own training data (sr), what the train evaluator's data module feeds
    the network (low-resolution patches) and no classes."""
    if space.TRAINING_DATA:
        from nastk.evaluators.from_scratch import TrainingEvaluator
        from nastk.oneshot.ranking import network_input

        trained = TrainingEvaluator(space, dataset, build_options=build, device=HOST)
        classes = int(trained.data.num_classes) if trained.labelled else None
        return tuple(network_input(trained.data_module, trained.data.x_train[:1]).shape[1:]), classes
    if dataset not in DATASETS:
        raise ConfigError(f"unknown input shape for dataset {dataset!r}; known: {', '.join(DATASETS)}")
    return DATASETS[dataset]


def _retrains_winner(kind) -> bool:
    from nastk.evaluators import evaluator_class

    try:
        return bool(evaluator_class(kind).retrains_winner)
    except NastkError:  # an evaluator this installation lacks: its run keeps what it kept
        return False


def supernet_child(run_dir, arch: str, bn_calibration: Optional[int] = None, bn_recipe: str = "cumulative",
                   *, device, space: Optional[str] = None):
    """The child ``arch`` (an architecture string) of the supernet run in ``run_dir`` as a stand-alone
    network with its inherited weights, BatchNorm statistics recalibrated on ``bn_calibration`` batches
    of the run's training images (None: :func:`~nastk.oneshot.ranking.default_bn_calibration`, the rule the
    supernet evaluator and ``supernet rank`` follow: OFA's 2000 images when a classifier's BatchNorm tracks
    statistics, else none); returns (model, description). ``build`` in the description is what the space's
    ``build()`` takes to make the model (the supernet's ``child_build_options()`` where it extracts such
    networks), ``input_shape`` what the network takes (image pairs: the low-resolution patches).
    ``space``: the space a search run searched (its winner must come from that supernet's space).
    ``device``: where the supernet is loaded and recalibrated (exports pass :data:`nastk.devices.HOST`)."""
    from nastk.errors import ArchitectureError, CapabilityError
    from nastk.datasets import downsample, load_dataset
    from nastk.oneshot.datamodules import make_data_module
    from nastk.oneshot.ranking import (activate, calibration_batches, default_bn_calibration, network_input,
                                       tracks_bn_statistics)
    from nastk.oneshot.recalibration import RECIPES
    from nastk.oneshot.trainer import load_trained

    if bn_recipe not in RECIPES:
        raise ConfigError(f"unknown BN recalibration recipe {bn_recipe!r}; known: {', '.join(RECIPES)}")
    supernet, config, epoch = load_trained(run_dir, device)
    if space is not None and supernet.space.name != space:
        raise RunError(f"the supernet {run_dir} is over space {supernet.space.name!r}, not the run's {space!r}")
    try:
        child = supernet.space.from_str(arch)
    except ArchitectureError as error:
        what = "--arch" if space is None else "the run's best architecture"
        raise ConfigError(f"{what} is not an architecture of the supernet's space {supernet.space.name}: {error}") from None
    data = downsample(load_dataset(config.dataset), config.image_size)
    tracked = tracks_bn_statistics(supernet)
    batches = default_bn_calibration(supernet, config) if bn_calibration is None else int(bn_calibration)
    calibration = calibration_batches(config, data, batches) if tracked else []
    activate(supernet, child, [b.to(device) for b in calibration], bn_recipe)
    try:
        model, inherited = supernet.extract(child).eval(), None
    except (CapabilityError, NotImplementedError) as error:  # a supernet that cannot run a child alone
        supernet.space.require("build")
        model = supernet.space.build(child, int(data.num_classes), **dict(config.supernet)).eval()
        inherited = f"a fresh, untrained network: the supernet cannot extract this child ({error})"
    child_build = getattr(supernet, "child_build_options", None)
    build = child_build() if inherited is None and child_build is not None else dict(config.supernet)
    classes = getattr(supernet, "num_classes", int(data.num_classes))
    taken = network_input(make_data_module(config.data, config.data_options), data.x_train[:1]).shape[1:]
    images = sum(len(batch) for batch in calibration)
    if calibration:
        statistics = (f"BatchNorm statistics recalibrated on {images} of its training images "
                      f"({len(calibration)} batches, {bn_recipe})")
    elif tracked:
        statistics = "BatchNorm statistics as the supernet left them (not recalibrated)"
    else:
        statistics = "BatchNorm uses batch statistics (nothing to recalibrate)"
    info = {"space": supernet.space.name, "arch": child.to_str(), "build": build,
            "num_classes": None if classes is None else int(classes), "input_shape": list(taken),
            "dataset": config.dataset, "image_size": config.image_size,
            "weights": inherited or f"inherited from the supernet {run_dir} (epoch {epoch}, not retrained); {statistics}",
            "supernet": str(run_dir), "epoch": epoch,
            "bn_calibration": {"batches": len(calibration), "images": images, "recipe": bn_recipe} if calibration else None}
    return model, info


def export(run: RunView, out, fmt: str = "torchscript") -> Dict[str, Any]:
    """Write the run's winner to ``out``; returns what was written (and, for TorchScript, the check)."""
    _check_target(out, fmt)
    model, info = winner_model(run)
    return write_model(model, info, out, fmt)


def export_child(run_dir, arch: str, out, fmt: str = "torchscript", bn_calibration: Optional[int] = None,
                 bn_recipe: str = "cumulative") -> Dict[str, Any]:
    """Write the child ``arch`` of the supernet run in ``run_dir`` to ``out`` (:func:`supernet_child`)."""
    _check_target(out, fmt)
    model, info = supernet_child(run_dir, arch, bn_calibration, bn_recipe, device=HOST)
    return write_model(model, info, out, fmt)


def oneshot_candidates(view: OneShotView, top: Optional[int] = None) -> List[Dict[str, Any]]:
    """What a one-shot run selected, as (arch, weights folder, how it was selected) entries, best first.

    A supernet or staged run: its recorded selection (``supernet select``) or the argmax of its
    architecture parameters; a DARTS-PT folder: its selection, with the tuned supernet's weights; a
    few-shot tree: its chosen architecture from the leaf it came from, and with ``top`` the best
    candidate of each leaf by held-out accuracy (its leaf's weights). ``top`` on a run that selected one
    architecture is refused: rank children with ``nastk supernet rank`` and export them with ``--arch``."""
    if view.kind == "few-shot":
        selection = view.selections.get("selection.json")
        if not selection:
            raise RunError(f"few-shot run {view.directory} has no selection.json yet (it has not finished)")
        leaves = sorted(selection.get("leaves") or [], key=lambda e: -float(e.get("held_out_acc") or 0))
        chosen = [{"arch": e["arch"], "folder": view.directory / e["leaf"],
                   "selected": f"few-shot leaf {e['leaf']}: {e.get('rule', 'best candidate')}, held-out accuracy "
                               f"{e.get('held_out_acc')}"} for e in leaves]
        if top is None:
            chosen = [c for c in chosen if c["arch"] == selection["arch"]][:1]
        return chosen[:top] if top else chosen
    if top is not None and top > 1:
        raise ConfigError(f"--top {top}: {view.directory} ({view.kind}) selected one architecture; rank children "
                          f"with 'nastk supernet rank' and export each with --arch ARCH")
    arch = view.selected_arch
    if arch is None:
        raise ConfigError(f"{view.directory} is a supernet run folder: name the child to export with --arch ARCH "
                          f"(it has recorded no selection; 'nastk supernet select' or 'supernet rank' picks one)")
    source = next((name for name in ("selection.json", "selection-pt.json", "selection-argmax.json")
                   if view.selections.get(name, {}).get("arch") == arch), None)
    how = f"selected by {source}" if source else "the argmax of its architecture parameters (last epoch)"
    return [{"arch": arch, "folder": view.directory, "selected": how}]


def export_oneshot(view: OneShotView, out, fmt: str = "torchscript", top: Optional[int] = None,
                   bn_calibration: Optional[int] = None, bn_recipe: str = "cumulative") -> List[Dict[str, Any]]:
    """Write what a one-shot run selected (:func:`oneshot_candidates`) with its inherited weights:
    one file ``out``, or with ``top`` one file per candidate in the folder ``out``."""
    candidates = oneshot_candidates(view, top)
    targets = [Path(out)] if top is None else [Path(out) / f"top{i}-{_digest(c['arch'])}.pt"
                                               for i, c in enumerate(candidates, start=1)]
    for target in targets:
        _check_target(target, fmt)
    written = []
    for candidate, target in zip(candidates, targets):
        model, info = supernet_child(candidate["folder"], candidate["arch"], bn_calibration, bn_recipe, device=HOST)
        written.append(write_model(model, {**info, "selected": candidate["selected"], "run": str(view.directory)},
                                   target, fmt))
    return written


def export_top(run: RunView, k: int, out_dir, fmt: str = "torchscript") -> List[Dict[str, Any]]:
    """Write the ``k`` best distinct architectures of a search run into the folder ``out_dir``
    (``top1-<hash>.pt`` ...), each as :func:`winner_model` builds it (only the winner has trained weights
    unless the run's evaluator scored supernet children)."""
    trials = run.top(k)
    if not trials:
        raise RunError(f"run {run.directory} has no feasible evaluations to export")
    targets = [Path(out_dir) / f"top{i}-{_digest(t.arch)}.pt" for i, t in enumerate(trials, start=1)]
    for target in targets:
        _check_target(target, fmt)
    written = []
    for rank, (trial, target) in enumerate(zip(trials, targets), start=1):
        model, info = winner_model(run, trial.arch, trial.result.value)
        written.append(write_model(model, {**info, "rank": rank}, target, fmt))
    return written


def _digest(arch: str) -> str:
    import hashlib

    return hashlib.sha1(arch.strip().encode()).hexdigest()[:10]


def _check_target(out, fmt: str) -> None:
    if fmt not in ("torchscript", "state-dict"):
        raise ConfigError(f"unknown export format {fmt!r}; use torchscript or state-dict")
    if Path(out).is_dir():
        raise ConfigError(f"--out {out} is a folder; give a file name such as {Path(out) / 'model.pt'}")
    check_writable(out)  # a read-only folder or a parent that is a file: refused before the model is built


def write_model(model, info: Dict[str, Any], out, fmt: str = "torchscript") -> Dict[str, Any]:
    """Write ``model`` (described by ``info``: space, arch, build, num_classes, input_shape, ...) to
    ``out``: the one export mechanism of every kind of run."""
    import torch

    _check_target(out, fmt)
    out = Path(out)
    if fmt == "state-dict":
        _check_rebuilds(model, info)
        with atomic_write(out, "wb") as handle:
            torch.save({**info, "state_dict": model.state_dict()}, handle)
        return {**info, "file": str(out), "format": fmt}
    example = torch.randn(2, *info["input_shape"], generator=torch.Generator(HOST).manual_seed(0), device=HOST)
    with torch.no_grad(), warnings.catch_warnings():
        # torch >= 2.10 marks TorchScript deprecated in favour of torch.export; it is still the format
        # that loads with a bare `torch.jit.load`, so it stays the default while torch ships it.
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            traced = torch.jit.trace(model, example)
            buffer = io.BytesIO()
            torch.jit.save(traced, buffer, _extra_files={"nastk.json": json.dumps(info)})
        except RuntimeError as error:  # a layer torch.jit cannot record (a Python autograd Function, say)
            alternative = "; --out-format state-dict writes its weights" if _rebuilds(model, info) else ""
            reason = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
            raise CapabilityError(f"this {info['space']} network does not trace as TorchScript: "
                                  f"{reason.split('. ')[0][:200]}{alternative}") from None
        with atomic_write(out, "wb") as handle:
            handle.write(buffer.getvalue())
        loaded = torch.jit.load(str(out), map_location=HOST)
        difference = float((loaded(example) - model(example)).abs().max())
    return {**info, "file": str(out), "format": fmt, "check_max_abs_difference": difference}


def _check_rebuilds(model, info: Dict[str, Any]) -> None:
    """A state dict is only useful if ``space.build(arch, num_classes, **build)`` takes it: checked
    before anything is written (a generic supernet child, a pinned copy of the whole supernet, is not
    such a network)."""
    if not _rebuilds(model, info):
        raise ConfigError(f"--format state-dict: the weights of this {info['space']} network do not load into the "
                          f"network the space's build() makes (a generic supernet child is a pinned copy of the whole "
                          f"supernet); export it as torchscript")


def _rebuilds(model, info: Dict[str, Any]) -> bool:
    """Whether ``model``'s state dict loads into the network ``space.build(arch, num_classes, **build)`` makes."""
    from nastk.space import get_space

    space = get_space(info["space"])
    try:
        space.require("build")
        rebuilt = space.build(space.from_str(info["arch"]), info["num_classes"], **info["build"])
        rebuilt.load_state_dict(model.state_dict())
    except Exception:
        return False
    return True
