"""Reading search run folders back: what ``nastk runs list|show|compare|plot`` and ``nastk export`` see.

A run folder is read, never written: its ``config.json``, its trials (the sequential engine's
``journal.jsonl``; a parallel study's summary) and, when it finished, its ``summary.json``. Folders
that are not search runs (a supernet's, a reproduction's) are skipped by :func:`find_runs`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from nastk.errors import RunError
from nastk.paths import folder_in_use
from nastk.run import CONFIG, JOURNAL, SUMMARY, TORN_LAST_LINE, journal_lines
from nastk.readers import MAX_CONFIG_BYTES, MAX_DOCUMENT_BYTES, read_json
from nastk.trial import Trial, objective_key


@dataclass
class RunView:
    """One search run as it is on disk."""

    directory: Path
    config: Dict[str, Any]
    trials: List[Trial] = field(default_factory=list)
    summary: Optional[Dict[str, Any]] = None
    in_use: bool = False
    #: journal lines that are not evaluation records ("line N: why"); their evaluations are not in ``trials``
    unreadable: List[str] = field(default_factory=list)
    journal_lines: int = 0

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

    def curve(self, x: str = "queries") -> List[List[float]]:
        """The anytime curve: (queries or cumulative cost, best-so-far objective) after each trial."""
        if self.trials:
            points, best, cost = [], -math.inf, 0.0
            for number, trial in enumerate(self.trials, start=1):
                cost += trial.result.cost_s
                best = max(best, objective_key(trial.result.value))
                points.append([number if x == "queries" else cost, best])
            return points
        rows = (self.summary or {}).get("trajectory", [])  # a parallel study: [cost, best, test] per trial
        return [[number if x == "queries" else row[0], row[1]] for number, row in enumerate(rows, start=1)]

    def describe(self) -> Dict[str, Any]:
        """The row ``nastk runs list`` and ``compare`` show."""
        evaluator = self.config.get("evaluator", {})
        summary = self.summary or {}
        return {"run": str(self.directory), "space": self.config.get("space"), "strategy": self.config.get("strategy"),
                "seed": self.config.get("seed"), "evaluator": evaluator.get("kind"),
                "budget": self.config.get("budget"), "evaluations": self.evaluations, "status": self.status,
                "best_objective": self.best_objective, "test_accuracy": summary.get("test_accuracy"),
                "cost_s": round(sum(t.result.cost_s for t in self.trials), 3) if self.trials else summary.get("cost_s"),
                "best_arch": self.best_arch}


def is_search_run(directory: Path) -> bool:
    config = Path(directory) / CONFIG
    if not config.is_file():
        return False
    try:
        data = read_json(config, "run config", RunError, max_bytes=MAX_CONFIG_BYTES, mapping=False)
    except RunError:
        return True  # a damaged search run is still listed (read_run says what is wrong)
    return isinstance(data, dict) and "strategy" in data and isinstance(data.get("evaluator"), dict)


def read_run(directory, partial: bool = False) -> RunView:
    """A search run folder; a :class:`RunError` naming the file when it is not one or is damaged.

    A journal line that is not an evaluation record (not JSON, nested too deeply, an impossible cost, a
    metric that is not a number) makes the run damaged, unless ``partial``: then the run holds the records
    it could read and ``unreadable`` names the others. A partly written last line (a killed run) is left
    out either way, and named."""
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
    if (directory / SUMMARY).is_file():
        view.summary = _read_mapping(directory / SUMMARY, "run summary", MAX_DOCUMENT_BYTES)
    return view


def find_runs(root) -> Tuple[List[RunView], List[str]]:
    """Every search run folder under ``root`` (``root`` itself included), in path order, and a line
    for each damaged one (listed, not fatal: one bad folder must not hide the others)."""
    root = Path(root)
    if not root.is_dir():
        raise RunError(f"folder {root} does not exist")
    folders = [root] if is_search_run(root) else []
    folders += sorted(path.parent for path in root.rglob(CONFIG) if path.parent != root and is_search_run(path.parent))
    runs, problems = [], []
    for folder in folders:
        try:
            runs.append(read_run(folder))
        except RunError as error:
            problems.append(str(error))
    return runs, problems


def _read_mapping(path: Path, what: str, max_bytes: int) -> Dict[str, Any]:
    if not path.is_file():
        raise RunError(f"{path.parent} has no {path.name}: not a run folder")
    return read_json(path, what, RunError, max_bytes=max_bytes)  # size, depth and shape checked (nastk.readers)
