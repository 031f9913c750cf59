"""Stage schedules: one-shot training as a chain of stages, each with its own epochs, step, allowed
options and trainable weights, resumable stage by stage.

A stage is what OFA calls a phase (kernel, depth, expand), BossNAS a block, few-shot NAS the time
between two splits. Stage ``i`` trains in ``<run>/stage<i>-<name>/`` with a fresh
:class:`~nastk.oneshot.trainer.OneShotTrainer` (its own optimizer and schedule, as OFA restarts each
phase), starting from the previous stage's final weights; a killed run resumes inside the stage it
was in, and finished stages are not trained again. ``<run>/checkpoint.pt`` is the last finished
stage's, so ``supernet rank``/``select``/``export`` and the supernet evaluator read a staged run like
any other.

``allowed`` restricts decisions by name pattern (``fnmatch``): ``{"*_kernel": ["3", "5", "7"],
"*_depth": ["4"]}`` keeps only those option texts (OFA's kernel phase at full depth);
``trainable`` freezes every weight whose parameter name matches none of its patterns;
``sort_channels`` runs the supernet's OFA channel sorting before the stage (a list of expand ratios
whose bands stay protected, ``[]`` for none).

``choose`` ends a stage with a decision: the stage's step (its ``choose(folder, device, data)``, e.g.
BossNAS rating every path of the block it trained) fixes the options of the decisions it trained, the
record goes to ``<stage folder>/choice.json``, and every later stage keeps those options. The choice is
made once, on rank 0 (other ranks read its file), and is made again only if the file is missing, so a
run killed between training and choosing resumes with the choice.
"""
from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from nastk.errors import ConfigError, RunError
from nastk.oneshot.trainer import CHECKPOINT, METRICS, OneShotConfig, OneShotTrainer, read_checkpoint
from nastk.paths import atomic_write, make_folder, write_file
from nastk.readers import read_json


@dataclass
class Stage:
    """One stage: its name, length and what differs from the run's config."""

    name: str
    epochs: int
    #: OneShotConfig fields this stage changes (step, step_options, lr, ...)
    overrides: Dict[str, Any] = field(default_factory=dict)
    #: ``{decision name pattern: [allowed option texts]}``
    allowed: Dict[str, List[str]] = field(default_factory=dict)
    #: parameter name patterns that train (empty: all)
    trainable: List[str] = field(default_factory=list)
    #: run the supernet's ``sort_channels(ratios)`` first (None: no sorting)
    sort_channels: Optional[List[float]] = None
    #: after training, the step chooses the options of the decisions it trained; later stages keep them
    choose: bool = False

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"a stage name is letters, digits, - and _, got {self.name!r}")
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ConfigError(f"stage {self.name}: epochs must be a whole number >= 1, got {self.epochs!r}")
        if not isinstance(self.overrides, dict):
            raise ConfigError(f"stage {self.name}: overrides must be a mapping of OneShotConfig fields")
        if not isinstance(self.allowed, dict) or not all(
                isinstance(k, str) and isinstance(v, (list, tuple)) for k, v in self.allowed.items()):
            raise ConfigError(f"stage {self.name}: allowed must map decision-name patterns to lists of options")
        if not isinstance(self.trainable, (list, tuple)) or not all(isinstance(p, str) for p in self.trainable):
            raise ConfigError(f"stage {self.name}: trainable must be a list of parameter-name patterns")
        if self.sort_channels is not None and (not isinstance(self.sort_channels, (list, tuple)) or not all(
                isinstance(r, (int, float)) and not isinstance(r, bool) for r in self.sort_channels)):
            raise ConfigError(f"stage {self.name}: sort_channels must be a list of expand ratios (or absent)")
        if not isinstance(self.choose, bool):
            raise ConfigError(f"stage {self.name}: choose must be true or false, got {self.choose!r}")
        if "epochs" in self.overrides or "stages" in self.overrides:
            raise ConfigError(f"stage {self.name}: epochs are the stage's own field, not an override")

    def config(self, base: OneShotConfig) -> OneShotConfig:
        options = {**base.to_dict(), "stages": [], "epochs": self.epochs, **self.overrides}
        if "step" in self.overrides and "step_options" not in self.overrides:
            options["step_options"] = {}
        return OneShotConfig.from_dict(options, f"stage {self.name}")


def stages_from(data: Sequence[Dict[str, Any]]) -> List[Stage]:
    """Stages from plain data (a config file's ``stages`` list), every problem one line."""
    if not isinstance(data, (list, tuple)) or not data:
        raise ConfigError("stages must be a non-empty list of {name, epochs, ...} mappings")
    stages = []
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise ConfigError(f"stage {i} must be a mapping, got {type(item).__name__}")
        unknown = sorted(set(item) - {f for f in Stage.__dataclass_fields__})
        if unknown:
            raise ConfigError(f"stage {i} has unknown key(s) {', '.join(unknown)}; known: {', '.join(Stage.__dataclass_fields__)}")
        missing = [key for key in ("name", "epochs") if key not in item]
        if missing:
            raise ConfigError(f"stage {i} needs {' and '.join(missing)}")
        stages.append(Stage(**item))
    if len({s.name for s in stages}) != len(stages):
        raise ConfigError("stage names must be unique")
    return stages


def restrict(supernet, allowed: Dict[str, List[str]]) -> np.ndarray:
    """The supernet's allowed mask with each pattern's decisions restricted to the listed option texts."""
    mask = np.zeros_like(supernet.allowed)
    for d, decision in enumerate(supernet.decisions):
        mask[d, :len(decision.options)] = True
    for pattern, options in allowed.items():
        matched = [d for d, decision in enumerate(supernet.decisions) if fnmatch.fnmatchcase(decision.name, pattern)]
        if not matched:
            raise ConfigError(f"allowed pattern {pattern!r} matches no decision of the supernet")
        for d in matched:
            texts = supernet.decisions[d].options
            keep = [texts.index(str(o)) for o in options if str(o) in texts]
            if not keep:
                raise ConfigError(f"none of {list(options)} is an option of decision {supernet.decisions[d].name!r} "
                                  f"(options: {', '.join(texts)})")
            mask[d] = False
            mask[d, keep] = True
    return mask


def freeze(supernet, trainable: Sequence[str]) -> None:
    """Weights matching none of the patterns stop training (``requires_grad`` off); empty: all train."""
    for name, parameter in supernet.named_parameters():
        parameter.requires_grad_(not trainable or any(fnmatch.fnmatchcase(name, p) for p in trainable))


def stage_folder(run_dir, index: int, stage: Stage) -> Path:
    return Path(run_dir) / f"stage{index}-{stage.name}"


#: a choosing stage's record in its folder: ``{"chosen": {decision name: [option text]}, ...}`` and what the step adds
CHOICE = "choice.json"


def chooser(stage: Stage, config: OneShotConfig):
    """The ``choose(folder, device, data)`` of a choosing stage's step (None for a stage that does not choose)."""
    if not stage.choose:
        return None
    from nastk.oneshot.steps import STEPS

    choose = getattr(STEPS.get(config.step), "choose", None)
    if choose is None:
        raise ConfigError(f"stage {stage.name}: choose needs a step that chooses the options it trained "
                          f"(such as bossnas); the {config.step} step does not")
    return choose


def stage_choice(stage: Stage, config: OneShotConfig, folder: Path, dist, device, data) -> Optional[Dict[str, Any]]:
    """A choosing stage's record: its ``choice.json``, else made now by the step on rank 0 and written
    (the other ranks wait and read it, so every rank continues with the same choice)."""
    choose = chooser(stage, config)
    if choose is None:
        return None
    path = folder / CHOICE
    if dist.is_main and not path.is_file():
        record = choose(folder, device=device, data=data)
        with atomic_write(path, "w") as handle:
            json.dump(record, handle, indent=1)
    dist.barrier()
    record = read_json(path, "stage choice", RunError)
    if not isinstance(record, dict) or not isinstance(record.get("chosen"), dict):
        raise RunError(f"{path} is not a stage choice (it needs a 'chosen' mapping of decisions to options)")
    return record


def _with_teacher(config: OneShotConfig, at: int, stages: Sequence[Stage], run_dir) -> OneShotConfig:
    """Stage ``at``'s ``teacher: stage:NAME`` resolved to that (earlier) stage's checkpoint in this run folder."""
    teacher = config.step_options.get("teacher", "")
    if not isinstance(teacher, str) or not teacher.startswith("stage:"):
        return config
    names = [s.name for s in stages]
    if teacher[6:] not in names:
        raise ConfigError(f"teacher {teacher!r} names no stage of this schedule ({', '.join(names)})")
    index = names.index(teacher[6:])
    if index >= at:
        raise ConfigError(f"teacher {teacher!r} must be an earlier stage than the one it teaches")
    path = stage_folder(run_dir, index, stages[index]) / CHECKPOINT
    return OneShotConfig.from_dict({**config.to_dict(), "step_options": {**config.step_options, "teacher": str(path)}})


def train_stages(config: OneShotConfig, stages: Sequence[Stage], run_dir, resume: bool = False, device=None,
                 progress: bool = True, dist=None, data=None, callbacks=()) -> Dict[str, Any]:
    """Train ``stages`` in order into ``run_dir`` (see the module docstring) on ``device`` (``None``: torch's
    default device, :func:`nastk.devices.resolve_device`); returns the summary."""
    from nastk.devices import resolve_device
    from nastk.oneshot.ddp import Distributed
    from nastk.oneshot.trainer import build_supernet
    from nastk.datasets import load_dataset
    from nastk.run_folder import Run

    run_dir, device = Path(run_dir), resolve_device(device)
    dist = dist or Distributed.from_env(device)
    configs = [stage.config(config) for stage in stages]  # every stage's config checked before anything is written
    data = data if data is not None else load_dataset(config.dataset)
    configs = [_with_teacher(c, i, stages, run_dir) for i, c in enumerate(configs)]
    built: Dict[str, Any] = {}
    for stage, stage_config in zip(stages, configs):  # masks, supernet options, choosers: before anything is written
        key = json.dumps([stage_config.space, stage_config.supernet], sort_keys=True)
        if key not in built:
            built[key] = build_supernet(stage_config, data.num_classes)
        restrict(built[key], stage.allowed)
        chooser(stage, stage_config)
    run = Run(run_dir, config.to_dict(), resume=resume, upgrade=OneShotConfig.upgraded,
              upgrade_adds_fields=True) if dist.is_main else None
    try:
        dist.barrier()
        previous: Optional[Path] = None
        records = []
        chosen: Dict[str, List[str]] = {}  # what earlier choosing stages fixed, kept by every later stage
        for index, (stage, stage_config) in enumerate(zip(stages, configs)):
            folder = stage_folder(run_dir, index, stage)
            done = folder / "summary.json"
            if done.is_file():
                previous = folder / CHECKPOINT
                records.append(read_json(done, "stage summary", RunError))  # nastk.readers: size, depth, shape
                chosen.update(_choice_of(records[-1], stage_choice(stage, stage_config, folder, dist,
                                                                  dist.device(device), data)))
                continue
            import torch

            torch.manual_seed(stage_config.seed)  # a first stage's initial weights depend on the seed alone
            supernet = build_supernet(stage_config, data.num_classes)
            if previous is not None:  # the previous stage's weights (and architecture parameters)
                state = read_checkpoint(previous)
                if "arch_logits" in state["model"] and supernet.arch_logits is None:
                    supernet.init_arch_parameters()
                supernet.load_state_dict(state["model"])
            if stage.sort_channels is not None and not (folder / CHECKPOINT).is_file():
                supernet.sort_channels(stage.sort_channels or None)
            supernet.allowed = restrict(supernet, {**stage.allowed, **chosen})
            freeze(supernet, stage.trainable)
            if dist.is_main:
                make_folder(folder)
            dist.barrier()
            trainer = OneShotTrainer(stage_config, folder, device, dist, data, progress, callbacks, supernet=supernet)
            trainer.label = f"stage {stage.name}: "
            trainer.load_checkpoint(keep_mask=True)
            trainer.fit()
            record = {"stage": stage.name, "epochs": stage.epochs, "step": stage_config.step,
                      "final_train_loss": trainer.history[-1]["train_loss"],
                      "train_wall_s": round(sum(r["epoch_s"] for r in trainer.history), 3)}
            if dist.is_main:
                with atomic_write(done, "w") as handle:
                    json.dump(record, handle, indent=1)
            records.append(record)
            chosen.update(_choice_of(record, stage_choice(stage, stage_config, folder, dist, trainer.device, data)))
            previous = folder / CHECKPOINT
        if dist.is_main:  # the run folder's own checkpoint: the last stage's, with the full mask back
            state = read_checkpoint(previous)
            state["allowed"] = restrict(build_supernet(configs[-1], data.num_classes), {}).tolist()
            with atomic_write(run_dir / CHECKPOINT) as handle:
                import torch

                torch.save(state, handle)
            write_file(run_dir / METRICS, (previous.parent / METRICS).read_bytes())
        summary = {"run_dir": str(run_dir), "space": config.space, "stages": records, "world_size": dist.world,
                   "step": configs[-1].step, "sampler": config.sampler, "epochs": sum(s.epochs for s in stages),
                   "resumed_from_epoch": 0, "device": str(device),
                   "final_train_loss": records[-1]["final_train_loss"], "final_train_acc": None,
                   "train_wall_s": round(sum(r["train_wall_s"] for r in records), 3)}
        if run is not None:
            run.write_summary(summary)
        return summary
    finally:  # the folder's lock is released however training ends
        if run is not None:
            run.release()


def _choice_of(record: Dict[str, Any], choice: Optional[Dict[str, Any]]) -> Dict[str, List[str]]:
    """A stage's choice (none: ``{}``), also noted in its record of the run's summary."""
    if choice is None:
        return {}
    record["chosen"] = choice["chosen"]
    return choice["chosen"]


# --- presets -----------------------------------------------------------------------------------------------
#: OFA's phases (methods.md 12.1): (name, elastic dimension, how many of its largest values, children per
#: step, learning rate, long phase?, sort channels first: None / [] / protect the previous phase's bands)
OFA_PHASES = (("kernel", "kernel", None, 1, 3e-2, True, None),
              ("depth1", "depth", 2, 2, 2.5e-3, False, None),
              ("depth2", "depth", None, 2, 7.5e-3, True, None),
              ("expand1", "expand", 2, 4, 2.5e-3, False, "sort"),
              ("expand2", "expand", None, 4, 7.5e-3, True, "protect"))


def progressive_shrinking(space, long_epochs: int, short_epochs: Optional[int] = None,
                          full_epochs: Optional[int] = None) -> List[Dict[str, Any]]:
    """OFA's progressive-shrinking schedule for an elastic space whose decisions end in ``_kernel``,
    ``_depth`` and ``_expand``: the full network first (every decision at its largest value), then the
    kernel, depth and expand phases, each allowing one more dimension to shrink, the ``ofa`` step
    distilling from the full network (stage ``full``). OFA's lengths are 120-epoch long and 25-epoch
    short phases; ``short_epochs`` defaults to ``long_epochs * 25 / 120`` (at least 1)."""
    from nastk.supernet import decisions_of

    short_epochs = short_epochs or max(1, round(long_epochs * 25 / 120))
    full_epochs = full_epochs or long_epochs
    model = space.get_choice_model()
    largest = dict(zip(model.names, model.largest()))
    texts = {d.name: d.options for d in decisions_of(space)}
    kinds = {kind: sorted({t for name, options in texts.items() if name.endswith("_" + kind) for t in options}, key=float)
             for kind in ("kernel", "depth", "expand")}
    missing = [kind for kind, values in kinds.items() if not values]
    if missing:
        raise ConfigError(f"progressive shrinking needs decisions named *_kernel, *_depth and *_expand; "
                          f"space {space.name} has none for {', '.join(missing)}")
    fixed = {name: [model.choices[model.position_of(name)].text(value)] for name, value in largest.items()
             if value is not None and not any(name.endswith("_" + kind) for kind in kinds)}
    at_max = {f"*_{kind}": [values[-1]] for kind, values in kinds.items()}
    stages = [{"name": "full", "epochs": full_epochs, "overrides": {"step": "ofa"}, "allowed": {**fixed, **at_max}}]
    open_kinds: Dict[str, List[str]] = {}
    previous_expand: List[str] = [kinds["expand"][-1]]
    for name, kind, top, children, lr, long, sort in OFA_PHASES:
        values = kinds[kind][-top:] if top else kinds[kind]
        open_kinds[kind] = values
        stage = {"name": name, "epochs": long_epochs if long else short_epochs,
                 "overrides": {"step": "ofa", "lr": lr, "step_options": {"random_children": children, "teacher": "stage:full"}},
                 "allowed": {**fixed, **at_max, **{f"*_{k}": v for k, v in open_kinds.items()}}}
        if sort == "sort":
            stage["sort_channels"] = []
        elif sort == "protect":
            stage["sort_channels"] = [float(v) for v in previous_expand]
        if kind == "expand":
            previous_expand = values
        stages.append(stage)
    return stages
