"""Reading search run folders back: what ``nastk runs list|show|compare|plot`` and ``nastk export`` see.

A run folder is read, never written: its ``config.json``, its trials (the sequential engine's
``journal.jsonl``; a parallel study's summary) and, when it finished, its ``summary.json``. Folders
that are not search runs (a supernet's, a reproduction's) are skipped by :func:`find_runs`.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from nastk.errors import RunError
from nastk.paths import folder_in_use
from nastk.run import CONFIG, JOURNAL, SUMMARY
from nastk.trial import Trial, is_record, objective_key


@dataclass
class RunView:
    """One search run as it is on disk."""

    directory: Path
    config: Dict[str, Any]
    trials: List[Trial] = field(default_factory=list)
    summary: Optional[Dict[str, Any]] = None
    in_use: bool = False

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
        data = json.loads(config.read_text())
    except (OSError, ValueError):
        return True  # a damaged search run is still listed (read_run says what is wrong)
    return isinstance(data, dict) and "strategy" in data and isinstance(data.get("evaluator"), dict)


def read_run(directory) -> RunView:
    """A search run folder; a :class:`RunError` naming the file when it is not one or is damaged."""
    directory = Path(directory)
    if not directory.is_dir():
        raise RunError(f"run folder {directory} does not exist")
    config = _read_mapping(directory / CONFIG, "run config")
    if "strategy" not in config or not isinstance(config.get("evaluator"), dict):
        raise RunError(f"{directory} is not a search run folder (its {CONFIG} has no strategy and evaluator)")
    view = RunView(directory, config, in_use=folder_in_use(directory))
    journal = directory / JOURNAL
    if journal.is_file():
        for number, line in enumerate(journal.read_bytes().splitlines()):
            try:
                record = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                break  # a torn last line of a killed run; resume repairs it
            if not is_record(record, number):
                raise RunError(f"journal {journal} line {number + 1} is not an evaluation record")
            view.trials.append(Trial.from_record(record))
    if (directory / SUMMARY).is_file():
        view.summary = _read_mapping(directory / SUMMARY, "run summary")
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


def _read_mapping(path: Path, what: str) -> Dict[str, Any]:
    if not path.is_file():
        raise RunError(f"{path.parent} has no {path.name}: not a run folder")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise RunError(f"{what} {path} is unreadable ({type(error).__name__})") from None
    if not isinstance(data, dict):
        raise RunError(f"{what} {path} does not hold a mapping")
    return data
