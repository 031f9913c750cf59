"""An optuna view of every run: optuna's tools (optuna-dashboard, ``optuna.load_study``, its plots)
open sequential searches and one-shot runs as they open a parallel search's own study.

The store stays what it is: a sequential search's truth is nastk's ``journal.jsonl`` (exact resume
by replay, the run-folder lock), a parallel search's the optuna study its workers share. The view is
built from those on demand, never written back:

* a sequential search becomes a study with one COMPLETE trial per journal record, told the same
  values a parallel run's workers tell (:meth:`OptunaStrategy.complete`: the run's objectives in
  their directions, an infeasible result's measured values with the worst value for those it lacks,
  a trial without a finite value FAIL), its architecture's choices as params and the record
  (``arch``, ``result``, ``step``) as user attributes;
* a parallel search's study is copied trial by trial from its ``optuna_journal.log``;
* a one-shot run becomes a study of epochs: one trial per epoch (param ``epoch``), its value the
  quality metric (``valid_acc``, else ``train_acc``), the whole epoch record (loss, op probabilities,
  learning rate, ...) as user attributes, so the dashboard's history plot is the training curve.

:func:`add_run` adds one run to any optuna storage (in memory for the dashboard, a journal file for
``nastk runs study``), :func:`view_storage` every run under a folder.
"""
from __future__ import annotations

import datetime
import math
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import optuna
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.trial import TrialState

from nastk.errors import NastkError, RunError
from nastk.run_views import OneShotView, RunView, View, find_runs, load_study_journal

#: the largest option list shown as a categorical param (a huge integer range is left to ``arch``)
MAX_PARAM_OPTIONS = 1000


def study_label(view: View, root: Optional[Path] = None) -> str:
    """The study name of a run in a view: its kind and its folder (relative to ``root`` when inside it)."""
    directory = Path(view.directory)
    try:
        shown = directory.resolve().relative_to(Path(root).resolve()) if root is not None else directory
    except ValueError:
        shown = directory
    shown = directory.name if str(shown) == "." else shown
    return f"{view.kind}: {shown}"


def add_run(view: View, storage, name: Optional[str] = None) -> optuna.Study:
    """Add the optuna view of ``view`` to ``storage`` as study ``name`` (default :func:`study_label`)."""
    name = name or study_label(view)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created" line per run
    try:
        return _add(view, storage, name)
    finally:
        optuna.logging.set_verbosity(verbosity)


def _add(view: View, storage, name: str) -> optuna.Study:
    if isinstance(view, OneShotView):
        return _add_oneshot(view, storage, name)
    if view.kind == "parallel search" and view.source == "optuna journal":
        return _copy_parallel(view, storage, name)
    return _add_search(view, storage, name)


def _objectives(config: Dict[str, Any]):
    from nastk.evaluators.multi_objective import parse_objectives

    return parse_objectives(config.get("objectives"))


def _add_search(view: RunView, storage, name: str) -> optuna.Study:
    objectives = _objectives(view.config)
    study = optuna.create_study(study_name=name, storage=storage, directions=[o.direction for o in objectives])
    study.set_user_attr("nastk_config", view.config)
    study.set_user_attr("run_dir", str(view.directory))
    study.set_user_attr("source", f"nastk journal ({view.source}), read-only view")
    _name_metrics(study, [view.objective if o.name == "score" else o.name for o in objectives])
    params_of = _params_function(view.config.get("space"))
    trials = []
    for trial in view.trials:
        result = trial.result
        if result.infeasible:
            measured = [o.value(result, raw=True) for o in objectives]
            values = [v if math.isfinite(v) else o.worst for o, v in zip(objectives, measured)]
        else:
            values = [o.value(result) for o in objectives]
        state = TrialState.COMPLETE if all(math.isfinite(v) for v in values) or result.infeasible else TrialState.FAIL
        params, distributions = params_of(trial.arch)
        frozen = optuna.trial.create_trial(
            state=state, values=values if state == TrialState.COMPLETE else None, params=params,
            distributions=distributions,
            user_attrs={"arch": trial.arch, "result": result.to_dict(), "step": trial.step,
                        **({"worker": trial.worker} if trial.worker else {})})
        _set_times(frozen, trial.started, trial.finished)
        trials.append(frozen)
    study.add_trials(trials)
    return study


def _copy_parallel(view: RunView, storage, name: str) -> optuna.Study:
    source = load_study_journal(view.directory, view.config)
    study = optuna.create_study(study_name=name, storage=storage, directions=source.directions)
    for key, value in source.user_attrs.items():
        study.set_user_attr(key, value)
    study.set_user_attr("run_dir", str(view.directory))
    study.set_user_attr("source", f"optuna study {source.study_name} ({view.directory / 'optuna_journal.log'}), copied")
    if source.metric_names:
        _name_metrics(study, source.metric_names)
    else:
        _name_metrics(study, [view.objective if o.name == "score" else o.name for o in _objectives(view.config)])
    study.add_trials(source.get_trials(deepcopy=False))
    return study


def _add_oneshot(view: OneShotView, storage, name: str) -> optuna.Study:
    # One objective, the run's quality metric: its history plot is the training curve (two objectives would
    # make optuna-dashboard draw a Pareto front of epochs, which means nothing); the loss and every other
    # metric of the epoch are user attributes.
    keys = [view.score_key]
    directions = ["minimize" if key.endswith("loss") else "maximize" for key in keys]
    study = optuna.create_study(study_name=name, storage=storage, directions=directions)
    study.set_user_attr("nastk_config", view.config)
    study.set_user_attr("run_dir", str(view.directory))
    study.set_user_attr("source", "metrics.jsonl: one trial per epoch, read-only view")
    if view.selected_arch:
        study.set_user_attr("selected_arch", view.selected_arch)
    _name_metrics(study, keys)
    trials = []
    count = max(len(view.epochs), 1)
    for number, record in enumerate(view.epochs, start=1):
        values = [record.get(key) for key in keys]
        finite = all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)
        params: Dict[str, Any] = {"epoch": number}
        distributions: Dict[str, Any] = {"epoch": IntDistribution(1, count)}
        for part in ("stage", "node"):
            if part in record:
                options = sorted({str(r.get(part)) for r in view.epochs})
                params[part], distributions[part] = str(record[part]), CategoricalDistribution(options)
        trials.append(optuna.trial.create_trial(
            state=TrialState.COMPLETE if finite else TrialState.FAIL, values=values if finite else None,
            params=params, distributions=distributions,
            user_attrs={k: v for k, v in record.items() if v is not None}))
    study.add_trials(trials)
    return study


def _name_metrics(study: optuna.Study, names: List[str]) -> None:
    if len(set(names)) == len(names):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(names))


def _set_times(frozen, started: float, finished: float) -> None:
    if started and finished:
        frozen.datetime_start = datetime.datetime.fromtimestamp(started)
        frozen.datetime_complete = datetime.datetime.fromtimestamp(max(finished, started))


def _params_function(space_name):
    """arch string -> (params, distributions): one categorical param per active choice of the space
    (option texts), the whole architecture string when the space is not installed here."""
    model = None
    try:
        from nastk.space import get_space

        space = get_space(space_name)
        model = space.get_choice_model()
    except (NastkError, Exception):  # a plugin space this installation lacks: the arch string alone
        space = None

    def params_of(arch: str) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        if model is None:
            return {}, {}
        try:
            values = space.from_str(arch).choices
        except Exception:
            return {}, {}
        params, distributions = {}, {}
        for choice, value in zip(model.choices, values):
            if value is None or len(choice.options) > MAX_PARAM_OPTIONS:
                continue
            options = [choice.text(option) for option in choice.options]
            params[choice.name] = choice.text(value)
            distributions[choice.name] = CategoricalDistribution(options)
        return params, distributions

    return params_of


def view_storage(root) -> Tuple[optuna.storages.BaseStorage, List[str], List[str]]:
    """An in-memory optuna storage with the view of every run under ``root``; returns it, the study
    names and a line for each run that could not be read or viewed."""
    runs, problems = find_runs(root)
    storage = optuna.storages.InMemoryStorage()
    names = []
    for view in runs:
        name = study_label(view, root)
        try:
            add_run(view, storage, name)
            names.append(name)
        except (NastkError, ValueError, KeyError) as error:
            problems.append(f"{view.directory}: cannot be viewed as a study: {error}")
    return storage, names, problems


def write_view(view: View, out) -> str:
    """Write the optuna view of one run to a new journal file ``out`` (open it with
    ``optuna-dashboard OUT`` or ``optuna.load_study(storage=JournalStorage(JournalFileBackend(OUT)))``);
    returns the study name."""
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    out = Path(out)
    if out.exists():
        raise RunError(f"{out} exists; the view is written to a new file (remove it or name another)")
    name = study_label(view)
    add_run(view, JournalStorage(JournalFileBackend(str(out))), name)
    return name
