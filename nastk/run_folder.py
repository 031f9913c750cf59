"""Run folders and the sequential search on them (the journal back-end of :mod:`nastk.engine`).

A run folder holds ``config.json`` (the resolved configuration), ``journal.jsonl`` (one JSON line per
evaluation, flushed and fsynced before the strategy is told) and ``summary.json``. Killing a run at
any moment loses nothing that was journaled: ``resume`` replays the journal through the strategy
(asking again and checking it proposes the same architectures, which it does because it is seeded)
and evaluates only what is missing.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from nastk.engine import Backend, Proposal, drive
from nastk.errors import RunError, WriteError
from nastk.evaluator import Evaluator, Result
from nastk.paths import CLAIMED, LOCK_FILE, append_lines, atomic_write, lock_folder, os_error_cause
from nastk.readers import MAX_CONFIG_BYTES, Unreadable, loads, read_json
from nastk.strategy import Strategy
from nastk.trial import SearchOutcome, Stop, Trial, record_problem

CONFIG, JOURNAL, SUMMARY = "config.json", "journal.jsonl", "summary.json"
#: A parallel run's study as its first invocation ran it: ``{"name", "workers", "storage" (shown without
#: password), "database" (False: the journal file in the run folder)}``.
STUDY = "study.json"
#: a block-wise (BossNAS) search's result: per-block ratings and choices, the final architecture
BLOCKWISE_RESULT = "bossnas.json"


def require_resumable(directory, what: str = "run") -> Path:
    """``directory`` when it holds a run to resume (its ``config.json``); otherwise a :class:`RunError`
    saying there is nothing to resume, so a mistyped ``--run-dir`` with ``--resume`` never starts a
    fresh run."""
    directory = Path(directory)
    if not directory.exists():
        raise RunError(f"nothing to resume: {directory} does not exist (a typo? without --resume a new {what} "
                       f"starts there)")
    if not (directory / CONFIG).is_file():
        raise RunError(f"nothing to resume: {directory} holds no {what} (no {CONFIG}; without --resume a new "
                       f"{what} starts there)")
    return directory


class Run:
    """A run folder. ``resume=False`` refuses a folder that already holds a journal.

    ``upgrade(saved)``, on resume, returns the saved config as this version of nastk writes it (options
    added since the run started, at their defaults); a sequential run whose saved config differs from
    that only by such added options is resumed as if it had them (its config.json is rewritten).
    """

    def __init__(self, directory, config: Dict[str, Any], resume: bool = False,
                 upgrade: Optional[Callable[[Dict[str, Any]], Dict[str, Any]]] = None, upgrade_adds_fields: bool = False):
        self.directory = Path(directory)
        self.config = config
        self.upgrade = upgrade
        #: the upgrade may add top-level keys too (a one-shot config's new field at its default changes nothing;
        #: a search config's new top-level key, such as objectives, would)
        self.upgrade_adds_fields = upgrade_adds_fields
        # the folders _claim makes: the run folder and its missing parents, innermost first
        created = []
        for folder in (self.directory, *self.directory.parents):
            if folder.exists() or folder.is_symlink():
                break
            created.append(folder)
        lock_created = not (self.directory / LOCK_FILE).exists()
        self.release = self._claim()
        CLAIMED.append(self.directory)
        try:
            self._check_or_create(config, resume)
        except BaseException:
            if lock_created:  # a refused run leaves nothing behind
                (self.directory / LOCK_FILE).unlink(missing_ok=True)
            self.release()
            CLAIMED.remove(self.directory)
            for folder in created:  # not even the parent folders made for it
                try:
                    folder.rmdir()
                except OSError:
                    break
            raise

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def _claim(self) -> Callable[[], None]:
        """Create the folder if needed and take its lock (one writer per run folder)."""
        if self.directory.exists() and not self.directory.is_dir():
            raise RunError(f"run folder {self.directory} exists and is not a folder")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            return lock_folder(self.directory)
        except OSError as error:
            raise RunError(f"cannot write to run folder {self.directory}: {os_error_cause(self.directory, error)}") from None

    def _check_or_create(self, config: Dict[str, Any], resume: bool) -> None:
        config_path = self.directory / CONFIG
        if config_path.exists():
            if not resume:
                raise RunError(f"run folder {self.directory} already holds a run; pass --resume or choose another --run-dir")
            on_disk = _read_saved_config(config_path)
            saved = self._upgraded(on_disk)
            config = json.loads(json.dumps(config))
            if saved != config:
                diff = sorted(k for k in set(saved) | set(config) if saved.get(k) != config.get(k))
                if diff == ["engine"] and saved.get("engine") == "study":
                    raise RunError(f"cannot resume {self.directory} on the sequential engine: it is a parallel run; "
                                   f"resume it with nastk search --run-dir {self.directory} --resume (and the "
                                   f"--storage URL it used, if any)")
                if diff != ["budget"] or _without_budget(saved) != _without_budget(config):
                    raise RunError(f"cannot resume {self.directory}: its config differs in {', '.join(diff)}")
                if config["budget"] < saved["budget"]:
                    raise RunError(f"cannot resume {self.directory} with budget {config['budget']}: the run's budget "
                                   f"is {saved['budget']} (a larger budget extends it)")
                if config.get("engine") == "study":
                    raise RunError(f"cannot extend {self.directory}: a parallel study keeps its budget "
                                   f"({saved['budget']}); start a new run to search further")
            if on_disk != config:  # extended to a larger budget, or upgraded: the config as the run now is
                with atomic_write(config_path, "w") as handle:
                    json.dump(config, handle, indent=2)
            return
        others = sorted(p.name for p in self.directory.iterdir() if p.name != LOCK_FILE)
        if others:  # another run's files without its config (or unrelated files): never replay or mix in
            shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
            raise RunError(f"run folder {self.directory} holds files ({shown}) but no {CONFIG}; "
                           f"choose a new or empty --run-dir")
        with atomic_write(config_path, "w") as handle:
            json.dump(config, handle, indent=2)

    def _upgraded(self, saved: Dict[str, Any]) -> Dict[str, Any]:
        """``saved``, or its upgrade when that only adds options (never for a parallel study, whose name
        is derived from its config)."""
        if self.upgrade is None or saved.get("engine") == "study":
            return saved
        try:
            upgraded = json.loads(json.dumps(self.upgrade(saved)))
        except Exception:  # a config this version cannot read: compared as it is, and refused by name
            return saved
        return upgraded if _only_adds(saved, upgraded, top_level=self.upgrade_adds_fields) else saved

    @property
    def journal_path(self) -> Path:
        return self.directory / JOURNAL

    def records(self) -> List[Dict[str, Any]]:
        """Journaled evaluations; a torn last line (killed mid-write) is dropped with a warning."""
        if not self.journal_path.exists():
            return []
        try:
            lines = self.journal_path.read_bytes().splitlines()
        except OSError as error:  # e.g. journal.jsonl is a folder
            raise RunError(f"cannot read journal {self.journal_path}: {os_error_cause(self.journal_path, error)}") from None
        records = []
        for number, line in enumerate(lines):
            try:
                record = loads(line)  # size and depth bounded (nastk.readers)
            except Unreadable:
                if number == len(lines) - 1:
                    warnings.warn(f"dropping a partly written last journal line in {self.journal_path}")
                    self._truncate(len(records))
                    break
                raise RunError(f"journal {self.journal_path} line {number + 1} is corrupt") from None
            records.append(record)
        return records

    def _truncate(self, keep: int) -> None:
        lines = self.journal_path.read_bytes().splitlines()[:keep]
        with atomic_write(self.journal_path, "wb") as handle:
            handle.write(b"".join(line + b"\n" for line in lines))

    def append(self, record: Dict[str, Any]) -> None:
        """One journal line, fsynced; a failed write (disk full) leaves the journal as it was."""
        try:
            append_lines(self.journal_path, json.dumps(record))
        except WriteError as error:
            raise WriteError(f"{error}; the journal keeps the evaluations before this one (resume once fixed)",
                             error.path, error.errno) from None

    def write_summary(self, summary: Dict[str, Any]) -> None:
        with atomic_write(self.directory / SUMMARY, "w") as handle:
            json.dump(summary, handle, indent=2)


#: what :func:`journal_lines` says of a partly written last line
TORN_LAST_LINE = "a partly written last line (a killed run; resume repairs it)"


def journal_lines(path: Path) -> List[Tuple[int, Optional[Dict[str, Any]], Optional[str]]]:
    """Every journal line as ``(line number, record, None)`` or ``(line number, None, what is wrong)``: not JSON
    within the limits of :mod:`nastk.readers`, or not an evaluation record of its step
    (:func:`nastk.trial.record_problem`: an impossible cost, a metric that is not a number). The one reader of
    journals for resume checks and the runs browser."""
    try:
        lines = Path(path).read_bytes().splitlines()
    except OSError as error:
        raise RunError(f"cannot read journal {path}: {error.strerror or error}") from None
    out = []
    for number, line in enumerate(lines, start=1):
        try:
            record = loads(line)
        except Unreadable as reason:
            out.append((number, None, TORN_LAST_LINE if number == len(lines) else f"it {reason}"))
            continue
        problem = record_problem(record, number - 1)
        out.append((number, None, problem) if problem else (number, record, None))  # a record or a problem
    return out


def check_journal(directory) -> None:
    """Refuse, with one :class:`RunError` line, a run folder whose journal would not replay (a partly written
    last line excepted: resume drops it). Read-only, so a resume calls it before it changes anything."""
    path = Path(directory) / JOURNAL
    if path.is_file():
        for number, record, problem in journal_lines(path):
            if problem and problem != TORN_LAST_LINE:
                what = f"is corrupt: {problem}" if record is None and problem.startswith("it ") else \
                    f"is not an evaluation record of this run: {problem}"
                raise RunError(f"journal {path} line {number} {what}")


def write_study_record(directory, record: Dict[str, Any]) -> None:
    """Keep a parallel run's study name, storage (shown without password) and worker count in its folder,
    once: a resume that gives another ``--workers`` uses it for that invocation only."""
    path = Path(directory) / STUDY
    if not path.exists():
        with atomic_write(path, "w") as handle:
            json.dump(record, handle, indent=2)


def study_record(directory) -> Optional[Dict[str, Any]]:
    """What a parallel run recorded of its study (:data:`STUDY`); None for a folder without the record
    (a sequential run, or a parallel one made before runs recorded it)."""
    path = Path(directory) / STUDY
    if not path.is_file():
        return None
    record = read_json(path, "parallel run record", RunError, max_bytes=MAX_CONFIG_BYTES)
    workers = record.get("workers")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise RunError(f"parallel run record {path} holds no worker count >= 1 (workers: {workers!r})")
    if not isinstance(record.get("storage"), str) or not isinstance(record.get("database"), bool):
        raise RunError(f"parallel run record {path} does not say where its study is (storage, database)")
    return record


def _read_saved_config(path: Path) -> Dict[str, Any]:
    try:
        return read_json(path, "run config", RunError, max_bytes=MAX_CONFIG_BYTES)
    except RunError as error:
        raise RunError(f"cannot resume: {error}") from None


def _only_adds(old: Dict[str, Any], new: Dict[str, Any], depth: int = 0, top_level: bool = False) -> bool:
    """Whether ``new`` is ``old`` with keys added inside its mappings (not at the top level unless
    ``top_level``: a new top-level key of a search config, such as ``objectives`` or ``stop``, changes
    what the run does)."""
    if depth == 0 and not top_level and set(old) != set(new):
        return False
    if not set(old) <= set(new):
        return False
    for key, value in old.items():
        if isinstance(value, dict) and isinstance(new[key], dict):
            if not _only_adds(value, new[key], depth + 1):
                return False
        elif value != new[key]:
            return False
    return True


def _without_budget(config: Dict[str, Any]) -> Dict[str, Any]:
    """A run config without its budget (also a strategy's own copy of it, as RoBoT keeps)."""
    options = {k: v for k, v in config.get("strategy_options", {}).items() if k != "budget"}
    return {**{k: v for k, v in config.items() if k != "budget"}, "strategy_options": options}


class JournalBackend(Backend):
    """The sequential back-end: ``strategy`` proposes; each evaluation is appended (and fsynced) to the
    run folder's journal before the strategy is told, so a killed run loses nothing journaled."""

    def __init__(self, strategy: Strategy, run: Optional[Run] = None, budget: Optional[int] = None):
        self.strategy, self.run, self.budget = strategy, run, budget

    def replay(self) -> SearchOutcome:
        """The journaled trials, replayed through the strategy (checking it proposes them again)."""
        outcome = SearchOutcome()
        journal = self.run.records() if self.run else []
        if self.budget is not None and len(journal) > self.budget:
            raise RunError(f"the journal already holds {len(journal)} evaluations, more than the budget {self.budget}")
        for number, record in enumerate(journal):
            problem = record_problem(record, number)
            if problem:
                raise RunError(f"journal {self.run.journal_path} line {number + 1} is not an evaluation record of "
                               f"this run: {problem}")
            arch = self.strategy.ask()
            if arch.to_str() != record["arch"]:
                raise RunError(
                    f"resume diverged at evaluation {record['step']}: the strategy proposed {arch.to_str()} "
                    f"but the journal holds {record['arch']} (was the seed or code changed?)")
            trial = Trial.from_record(record)
            self.strategy.tell(arch, trial.result)
            outcome.add(trial, arch)
        outcome.replayed = len(outcome.trials)
        return outcome

    def propose(self, outcome: SearchOutcome, stop: Stop) -> Proposal:
        return Proposal(self.strategy.ask())

    def record(self, proposal: Proposal, result: Result, started: float, finished: float, step: int) -> Trial:
        trial = Trial(step, proposal.arch.to_str(), result, started, finished)
        if self.run:
            self.run.append(trial.to_record())
        self.strategy.tell(proposal.arch, result)
        return trial


def run_search(strategy: Strategy, evaluator: Evaluator, budget: Union[int, Stop], run: Optional[Run] = None,
               progress: Optional[Callable[[Trial, SearchOutcome], None]] = None) -> SearchOutcome:
    """The sequential search: replay the run's journal, then ask, evaluate, journal, tell until ``budget``
    (a query count or a :class:`~nastk.trial.Stop`) says stop.

    ``progress(trial, outcome)`` is called after every evaluation (a progress bar, a log line).
    """
    stop = Stop.of(budget)
    return drive(JournalBackend(strategy, run, stop.queries), evaluator, stop, progress)
