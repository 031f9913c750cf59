"""Reading run folders back: what ``nastk runs``, ``nastk export`` and ``nastk dashboard`` see.

One reader for every kind of run folder nastk writes (a run folder is read, never written; only
:func:`write_seed_aggregate` writes, into a new ``aggregate/`` folder beside a ``--seeds`` search's runs):

* ``search``: a sequential search. Its truth is nastk's own ``journal.jsonl`` (one evaluation record
  per line, replayed exactly on ``--resume``), plus ``config.json`` and, once finished, ``summary.json``.
* ``parallel search``: ``--workers N`` / ``--storage``. Its truth is the optuna study: the run
  folder's ``optuna_journal.log`` is read with optuna (a database storage is not reachable from the
  folder: only its ``summary.json`` trajectory is).
* ``supernet``, ``staged supernet``: ``nastk supernet train`` (``metrics.jsonl`` per epoch,
  ``checkpoint.pt``; a staged run has one ``stage<i>-<name>/`` folder per stage).
* ``few-shot``: a split tree (``tree.json``, one folder per node, ``selection.json``).
* ``darts-pt``: a DARTS-PT selection folder (``journal.jsonl`` of decisions, tuning ``metrics.jsonl``).

:class:`RunView` is a search run (a trial per evaluation), :class:`OneShotView` every one-shot kind
(an epoch record per epoch). Both describe themselves with the same row (:meth:`describe`), so
listing, comparing and plotting treat every kind alike. :func:`read_any` reads any kind,
:func:`find_runs` finds every run under a folder, :func:`group_seeds` groups runs that differ only in
their seed. An optuna view of a search run (optuna tooling opens every run) is :mod:`nastk.optuna_view`.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from nastk.errors import RunError
from nastk.paths import folder_in_use
from nastk.run_folder import BLOCKWISE_RESULT, CONFIG, JOURNAL, SUMMARY, TORN_LAST_LINE, journal_lines
from nastk.readers import MAX_CONFIG_BYTES, MAX_DOCUMENT_BYTES, read_json
from nastk.trial import Trial, best_so_far, objective_key

#: The optuna journal file of a parallel search (nastk.parallel writes it; named here to keep
#: the reader free of the parallel engine's imports).
STUDY_JOURNAL = "optuna_journal.log"
METRICS, CHECKPOINT, SELECTION = "metrics.jsonl", "checkpoint.pt", "selection.json"
SEARCH_KINDS = ("search", "parallel search")
ONESHOT_KINDS = ("supernet", "staged supernet", "few-shot", "darts-pt")
RUN_KINDS = SEARCH_KINDS + ONESHOT_KINDS


@dataclass
class RunView:
    """One search run as it is on disk (sequential: its journal; parallel: its optuna study)."""

    directory: Path
    config: Dict[str, Any]
    trials: List[Trial] = field(default_factory=list)
    summary: Optional[Dict[str, Any]] = None
    in_use: bool = False
    #: journal lines that are not evaluation records ("line N: why"); their evaluations are not in ``trials``
    unreadable: List[str] = field(default_factory=list)
    journal_lines: int = 0
    #: where the trials came from: nastk's journal, the run's optuna journal, or only its summary
    source: str = "journal"

    @property
    def kind(self) -> str:
        return "parallel search" if self.config.get("engine") == "study" else "search"

    @property
    def journal_warning(self) -> Optional[str]:
        """One line saying how many journal lines could not be read, or None when all could."""
        if not self.unreadable:
            return None
        more = f" (and {len(self.unreadable) - 1} more)" if len(self.unreadable) > 1 else ""
        return (f"journal {self.directory / JOURNAL}: {len(self.unreadable)} of {self.journal_lines} lines could not "
                f"be read and are left out; {self.unreadable[0]}{more}")

    @property
    def evaluations(self) -> int:
        return len(self.trials) if self.trials else int((self.summary or {}).get("evaluations", 0))

    @property
    def status(self) -> str:
        """running (a live process holds it), finished (summary of the whole budget) or stopped."""
        if self.in_use:
            return "running"
        if self.summary is not None and self.summary.get("evaluations") == self.evaluations:
            return "finished"
        return "stopped"

    @property
    def best(self) -> Optional[Trial]:
        """The best trial; None when there is none, or none satisfies the run's constraints."""
        best = max(self.trials, key=lambda t: objective_key(t.result.value), default=None)
        return None if best is not None and best.result.infeasible else best

    @property
    def best_arch(self) -> Optional[str]:
        if self.best is not None:
            return self.best.arch
        return (self.summary or {}).get("best_arch")

    @property
    def best_objective(self) -> Optional[float]:
        if self.best is not None:
            return self.best.result.value
        return (self.summary or {}).get("best_objective")

    @property
    def objective(self) -> str:
        """The name of what the run maximised (the evaluator's objective)."""
        return str(self.config.get("evaluator", {}).get("objective") or "objective")

    def top(self, k: int) -> List[Trial]:
        """The ``k`` best feasible trials, best first, one per architecture."""
        seen, best = set(), []
        for trial in sorted(self.trials, key=lambda t: objective_key(t.result.value), reverse=True):
            if trial.result.infeasible or not math.isfinite(trial.result.value) or trial.arch in seen:
                continue
            seen.add(trial.arch)
            best.append(trial)
        return best[:k]

    def curve(self, x: str = "queries") -> List[List[float]]:
        """The anytime curve: (queries or cumulative cost, best-so-far objective) after each trial."""
        if self.trials:
            points, cost = [], 0.0
            best = best_so_far(t.result.value for t in self.trials)
            for number, (trial, index) in enumerate(zip(self.trials, best), start=1):
                cost += trial.result.cost_s
                points.append([number if x == "queries" else cost, objective_key(self.trials[index].result.value)])
            return points
        rows = (self.summary or {}).get("trajectory", [])  # a parallel study: [cost, best, test] per trial
        return [[number if x == "queries" else row[0], row[1]] for number, row in enumerate(rows, start=1)]

    def describe(self) -> Dict[str, Any]:
        """The row ``nastk runs list`` and ``compare`` show (the same keys for every kind of run)."""
        evaluator = self.config.get("evaluator", {})
        summary = self.summary or {}
        return {"run": str(self.directory), "kind": self.kind, "space": self.config.get("space"),
                "strategy": self.config.get("strategy"), "seed": self.config.get("seed"),
                "evaluator": evaluator.get("kind"), "budget": self.config.get("budget"),
                "evaluations": self.evaluations, "status": self.status, "objective": self.objective,
                "best_objective": self.best_objective, "test_accuracy": summary.get("test_accuracy"),
                "cost_s": round(sum(t.result.cost_s for t in self.trials), 3) if self.trials else summary.get("cost_s"),
                "best_arch": self.best_arch}


@dataclass
class OneShotView:
    """One one-shot run as it is on disk: a supernet training (staged or not), a few-shot tree or a
    DARTS-PT selection. ``epochs`` are its ``metrics.jsonl`` records in training order (a staged run:
    every stage's, each labelled with its ``stage``; a few-shot tree: the root's, then each node's)."""

    directory: Path
    kind: str
    config: Dict[str, Any]
    epochs: List[Dict[str, Any]] = field(default_factory=list)
    summary: Optional[Dict[str, Any]] = None
    #: the selections recorded in the folder: method -> the selection document
    selections: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    in_use: bool = False

    @property
    def train_config(self) -> Dict[str, Any]:
        """The OneShotConfig the supernet trained with (a few-shot run's ``train``, a DARTS-PT ``tuning``)."""
        if self.kind == "few-shot":
            return self.config.get("train") or self.config
        if self.kind == "darts-pt":
            return self.config.get("tuning") or {}
        return self.config

    @property
    def method(self) -> str:
        """What trained it: the step (and the sampler of single-path steps); a few-shot schedule's
        method; ``pt`` for a selection folder."""
        if self.kind == "darts-pt":
            return "darts-pt"
        if self.kind == "few-shot":
            return f"{(self.config.get('fewshot') or {}).get('method', 'few-shot')}+{self.train_config.get('step')}"
        step, sampler = self.train_config.get("step"), self.train_config.get("sampler")
        return f"{step}/{sampler}" if step == "single_path" else str(step)

    @property
    def planned_epochs(self) -> Optional[int]:
        stages = self.train_config.get("stages") or []
        if stages:
            return sum(int(s.get("epochs", 0)) for s in stages if isinstance(s, dict))
        return self.train_config.get("epochs")

    @property
    def status(self) -> str:
        if self.in_use:
            return "running"
        done = self.summary is not None or (self.kind in ("few-shot", "darts-pt") and SELECTION in self.selections)
        return "finished" if done else "stopped"

    @property
    def selected_arch(self) -> Optional[str]:
        """The architecture the run selected: a few-shot or DARTS-PT selection, a block-wise search's
        result, a ``supernet select`` result (pt before argmax), else the architecture parameters' argmax
        its last epoch recorded."""
        for name in (SELECTION, BLOCKWISE_RESULT, "selection-pt.json", "selection-argmax.json"):
            if name in self.selections and self.selections[name].get("arch"):
                return self.selections[name]["arch"]
        for source in ([self.summary] if self.summary else []) + self.epochs[::-1]:
            if source.get("arch"):
                return source["arch"]
        return None

    @property
    def score_key(self) -> str:
        """The epoch metric that stands for quality (accuracy when recorded, else the first score)."""
        last = self.epochs[-1] if self.epochs else {}
        for key in ("valid_acc", "train_acc", "test_acc"):
            if last.get(key) is not None:
                return key
        return next((k for k, v in last.items() if k.startswith(("valid_", "train_")) and k != "train_loss"
                     and isinstance(v, (int, float))), "train_loss")

    def curve(self, metric: str) -> List[List[float]]:
        """(epoch number from 1, value) of one metric over every recorded epoch."""
        return [[number, float(record[metric])] for number, record in enumerate(self.epochs, start=1)
                if isinstance(record.get(metric), (int, float)) and not isinstance(record.get(metric), bool)]

    def sampler_state(self) -> Dict[str, Any]:
        """What the path and data samplers recorded last: PA&DA's op probabilities and data share,
        the op counts, the temperature."""
        last = self.epochs[-1] if self.epochs else {}
        state = {key: last[key] for key in ("op_counts", "op_probs", "tau", "data_unique_fraction", "data_q_max_ratio",
                                            "alpha_entropy", "children_per_step") if key in last}
        names = self._shared_op_names()
        for key in ("op_counts", "op_probs"):  # one entry per operation every decision offers: named
            if names and isinstance(state.get(key), list) and len(state[key]) == len(names):
                state[key] = dict(zip(names, state[key]))
        return state

    def _shared_op_names(self) -> Optional[Tuple[str, ...]]:
        """The option names when every decision of the run's space offers the same ones (NB201's ops)."""
        try:
            from nastk.space import get_space
            from nastk.supernet import decisions_of

            decisions = decisions_of(get_space(self.train_config.get("space")))
        except Exception:  # a space this installation lacks: the lists stay unnamed
            return None
        options = {decision.options for decision in decisions}
        return options.pop() if len(options) == 1 else None

    def alphas(self, device: str) -> Optional[List[Dict[str, Any]]]:
        """The architecture parameters' mixture weights, one row per decision with its name and every
        option's name (None when the supernet has none, e.g. SPOS); read from the run's checkpoint."""
        folder = self.directory
        if not (folder / CHECKPOINT).is_file():
            return None
        from nastk.oneshot.trainer import load_trained

        supernet, config, _ = load_trained(folder, device)
        if supernet.arch_logits is None:
            return None
        weighting = (config.step_options or {}).get("weighting", "softmax")
        return named_weights(supernet, supernet.mixture_weights(weighting=weighting).detach().cpu().tolist())

    def describe(self) -> Dict[str, Any]:
        """The row ``nastk runs list`` and ``compare`` show: the same keys as a search run's; the
        objective is the last epoch's quality metric, the evaluations are epochs."""
        train = self.train_config
        last = self.epochs[-1] if self.epochs else {}
        key = self.score_key
        return {"run": str(self.directory), "kind": self.kind, "space": train.get("space"),
                "strategy": self.method, "seed": train.get("seed"), "evaluator": None,
                "budget": self.planned_epochs, "evaluations": len(self.epochs), "status": self.status,
                "objective": key, "best_objective": last.get(key),
                "test_accuracy": last.get("test_acc"),
                "cost_s": round(sum(float(r.get("epoch_s") or 0) for r in self.epochs), 3) if self.epochs else None,
                "best_arch": self.selected_arch}


View = Union[RunView, OneShotView]


def named_weights(supernet, weights: List[List[float]]) -> List[Dict[str, Any]]:
    """Mixture weights (one row per decision) with the decision's and every option's name."""
    return [{"decision": decision.name, "weights": {name: round(float(w), 6) for name, w in zip(decision.options, row)},
             "strongest": decision.options[max(range(len(row)), key=row.__getitem__)]}
            for decision, row in zip(supernet.decisions, weights)]


def run_kind(directory) -> Optional[str]:
    """Which kind of run ``directory`` holds (one of :data:`RUN_KINDS`), None when it is no run folder
    (a stage's or few-shot node's folder inside a run is part of that run, not a run of its own)."""
    directory = Path(directory)
    config = directory / CONFIG
    if not config.is_file():
        return None
    try:
        data = read_json(config, "run config", RunError, max_bytes=MAX_CONFIG_BYTES, mapping=False)
    except RunError:  # a damaged run is still listed (reading it says what is wrong)
        return "supernet" if (directory / METRICS).is_file() or (directory / CHECKPOINT).is_file() else "search"
    if not isinstance(data, dict):
        return None
    if "strategy" in data and isinstance(data.get("evaluator"), dict):
        return "parallel search" if data.get("engine") == "study" else "search"
    if ("fewshot" in data and "train" in data) or ("step" in data and (directory / "tree.json").is_file()):
        return "few-shot"  # train_fewshot's folder, or train_leaves' (a OneShotConfig beside a split tree)
    if data.get("method") == "pt" and "source_run" in data:
        return "darts-pt"
    if "step" in data and "space" in data and "epochs" in data:
        return "staged supernet" if data.get("stages") else "supernet"
    return None


def read_any(directory, partial: bool = False) -> View:
    """Any run folder (:func:`read_run` for searches, :func:`read_oneshot` otherwise); a
    :class:`RunError` naming what is wrong when it is no run folder."""
    directory = Path(directory)
    if not directory.is_dir():
        raise RunError(f"run folder {directory} does not exist")
    kind = run_kind(directory)
    if kind is None or kind in SEARCH_KINDS:
        if kind is None and not (directory / CONFIG).is_file():
            raise RunError(f"{directory} has no {CONFIG}: not a run folder (search, supernet, few-shot or DARTS-PT)")
        if kind is None:
            raise RunError(f"{directory} is not a run folder: its {CONFIG} is not a search, supernet, few-shot or "
                           f"DARTS-PT configuration")
        return read_run(directory, partial)
    return read_oneshot(directory)


def read_run(directory, partial: bool = False) -> RunView:
    """A search run folder; a :class:`RunError` naming the file when it is not one or is damaged.

    A journal line that is not an evaluation record (not JSON, nested too deeply, an impossible cost, a
    metric that is not a number) makes the run damaged, unless ``partial``: then the run holds the records
    it could read and ``unreadable`` names the others. A partly written last line (a killed run) is left
    out either way, and named. A parallel run's trials are its optuna study's COMPLETE trials."""
    directory = Path(directory)
    if not directory.is_dir():
        raise RunError(f"run folder {directory} does not exist")
    config = _read_mapping(directory / CONFIG, "run config", MAX_CONFIG_BYTES)
    if "strategy" not in config or not isinstance(config.get("evaluator"), dict):
        raise RunError(f"{directory} is not a search run folder (its {CONFIG} has no strategy and evaluator)")
    view = RunView(directory, config, in_use=folder_in_use(directory))
    journal = directory / JOURNAL
    if journal.is_file():  # every line that reads as an evaluation record; the others are counted and named
        lines = journal_lines(journal)
        for number, record, problem in lines:
            if problem:
                view.unreadable.append(f"line {number}: {problem}")
            else:
                view.trials.append(Trial.from_record(record))
        view.journal_lines = len(lines)
        torn_last = len(view.unreadable) == 1 and view.unreadable[0] == f"line {len(lines)}: {TORN_LAST_LINE}"
        if view.unreadable and not partial and not torn_last:
            raise RunError(view.journal_warning)
    elif (directory / STUDY_JOURNAL).is_file():
        view.trials, view.source = study_trials(directory, config), "optuna journal"
    elif config.get("engine") == "study":
        view.source = "summary"  # a database storage: not reachable from the folder
    if (directory / SUMMARY).is_file():
        view.summary = _read_mapping(directory / SUMMARY, "run summary", MAX_DOCUMENT_BYTES)
    return view


def load_study_journal(directory, config: Dict[str, Any]):
    """The optuna study of a parallel run folder (its ``optuna_journal.log``), opened for reading."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    from nastk.parallel import study_name

    path = Path(directory) / STUDY_JOURNAL
    try:
        storage = JournalStorage(JournalFileBackend(str(path)))
        return optuna.load_study(study_name=study_name(config), storage=storage)
    except KeyError:
        raise RunError(f"{path} holds no study of this run's configuration") from None
    except (OSError, ValueError) as error:
        raise RunError(f"cannot read the study journal {path}: {str(error).splitlines()[0] if str(error) else error}") \
            from None


def study_trials(directory, config: Dict[str, Any]) -> List[Trial]:
    """A parallel run's COMPLETE trials as the engine's trials, in completion order (as its summary)."""
    from optuna.trial import TrialState

    from nastk.evaluator import Result

    study = load_study_journal(directory, config)
    done = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)),
                  key=lambda t: (t.datetime_complete, t.number))
    return [Trial(step, t.user_attrs["arch"], Result.from_dict(t.user_attrs["result"]), t.datetime_start.timestamp(),
                  t.datetime_complete.timestamp(), t.user_attrs.get("worker"), t.number)
            for step, t in enumerate(done) if "arch" in t.user_attrs and "result" in t.user_attrs]


def read_oneshot(directory) -> OneShotView:
    """A supernet, staged supernet, few-shot or DARTS-PT run folder (:class:`OneShotView`)."""
    directory = Path(directory)
    kind = run_kind(directory)
    if kind not in ONESHOT_KINDS:
        raise RunError(f"{directory} is not a supernet, few-shot or DARTS-PT run folder")
    config = _read_mapping(directory / CONFIG, "run config", MAX_CONFIG_BYTES)
    view = OneShotView(directory, kind, config, in_use=folder_in_use(directory))
    if kind == "staged supernet":  # every stage's epochs, in stage order
        stages = [s for s in config.get("stages") or [] if isinstance(s, dict)]
        for index, stage in enumerate(stages):
            for record in _epoch_records(directory / f"stage{index}-{stage.get('name')}" / METRICS):
                view.epochs.append({**record, "stage": stage.get("name")})
    elif kind == "few-shot":  # the root's epochs, then every other node's, by node id
        nodes = sorted((p.parent for p in directory.glob(f"*/{METRICS}")), key=lambda p: (p.name.count("."), p.name))
        for node in nodes:
            view.epochs += [{**record, "node": node.name} for record in _epoch_records(node / METRICS)]
    else:
        view.epochs = _epoch_records(directory / METRICS)
    if (directory / SUMMARY).is_file():
        view.summary = _read_mapping(directory / SUMMARY, "run summary", MAX_DOCUMENT_BYTES)
    for path in sorted(directory.glob("selection*.json")) + sorted(directory.glob(BLOCKWISE_RESULT)):
        view.selections[path.name] = _read_mapping(path, "selection", MAX_DOCUMENT_BYTES)
    return view


def _epoch_records(path: Path) -> List[Dict[str, Any]]:
    """The epoch records of a ``metrics.jsonl`` (a torn last line, left by a kill, is left out)."""
    if not path.is_file():
        return []
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        raise RunError(f"cannot read {path}: {error.strerror or error}") from None
    records = []
    lines = text.splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            if number == len(lines) and not text.endswith("\n"):
                break  # torn by a kill: the checkpoint is the truth and rewrites it on resume
            raise RunError(f"{path} line {number} is not an epoch record (not JSON)") from None
        if not isinstance(record, dict):
            raise RunError(f"{path} line {number} is not an epoch record (not a JSON object)")
        records.append(record)
    return records


def find_runs(root, kinds=RUN_KINDS) -> Tuple[List[View], List[str]]:
    """Every run folder of ``kinds`` under ``root`` (``root`` itself included), in path order, and a
    line for each damaged one (listed, not fatal: one bad folder must not hide the others)."""
    root = Path(root)
    if not root.is_dir():
        raise RunError(f"folder {root} does not exist")
    candidates = [root] + sorted(path.parent for path in root.rglob(CONFIG) if path.parent != root)
    runs, problems = [], []
    for folder in candidates:
        kind = run_kind(folder)
        if kind not in kinds:
            continue
        try:
            runs.append(read_run(folder) if kind in SEARCH_KINDS else read_oneshot(folder))
        except RunError as error:
            problems.append(str(error))
    return runs, problems


def configuration_key(view: View) -> str:
    """What a run is apart from its seed and folder: runs with the same key are seeds of one configuration."""
    config = {key: value for key, value in view.config.items() if key != "seed"}
    for part in ("train", "tuning"):  # a few-shot run's and a DARTS-PT folder's training config
        if isinstance(config.get(part), dict):
            config[part] = {key: value for key, value in config[part].items() if key != "seed"}
    return json.dumps({"kind": view.kind, "config": config}, sort_keys=True, default=str)


def group_seeds(views: List[View]) -> List[List[View]]:
    """The runs grouped by configuration (seeds of one configuration together), in first-seen order."""
    groups: Dict[str, List[View]] = {}
    for view in views:
        groups.setdefault(configuration_key(view), []).append(view)
    return list(groups.values())


def seed_aggregate(views: List[View]) -> Dict[str, Any]:
    """Mean and (population) std over seeds of the best objective, test accuracy and cost, with the
    per-seed table they come from."""
    import numpy as np

    rows = [view.describe() for view in views]
    out: Dict[str, Any] = {"configuration": {k: rows[0][k] for k in ("kind", "space", "strategy", "evaluator",
                                                                      "budget", "objective")},
                           "seeds": [r["seed"] for r in rows]}
    for key in ("best_objective", "test_accuracy", "cost_s", "evaluations"):
        numbers = [r[key] for r in rows if isinstance(r[key], (int, float)) and math.isfinite(r[key])]
        out[key] = ({"mean": float(np.mean(numbers)), "std": float(np.std(numbers)), "n": len(numbers)}
                    if numbers else None)
    out["per_seed"] = [{k: r[k] for k in ("seed", "run", "evaluations", "status", "best_objective", "test_accuracy",
                                          "cost_s", "best_arch")} for r in rows]
    return out


def _read_mapping(path: Path, what: str, max_bytes: int) -> Dict[str, Any]:
    if not path.is_file():
        raise RunError(f"{path.parent} has no {path.name}: not a run folder")
    return read_json(path, what, RunError, max_bytes=max_bytes)  # size, depth and shape checked (nastk.readers)


#: the folder ``nastk search --seeds`` writes beside the seeds' run folders
AGGREGATE = "aggregate"


def write_seed_aggregate(base, run_dirs) -> Path:
    """Read the seeds' run folders back and write ``<base>/aggregate/``: ``aggregate.json`` (mean and
    std of the best objective, test accuracy, cost and evaluations, with the per-seed table) and
    ``seeds.csv`` (the per-seed table); the run folders themselves are not touched."""
    import csv
    import io

    from nastk.paths import make_folder, write_file

    views = [read_run(folder, partial=True) for folder in run_dirs]
    aggregate = seed_aggregate(views)
    folder = make_folder(Path(base) / AGGREGATE)
    write_file(folder / "aggregate.json", json.dumps(aggregate, indent=1, allow_nan=False, default=str) + "\n")
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=list(aggregate["per_seed"][0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(aggregate["per_seed"])
    write_file(folder / "seeds.csv", table.getvalue())
    return folder
