"""The one search loop: propose, evaluate, record, until the stop rule says stop.

Where proposals come from and where trials are recorded is the back-end's business:

* the run folder's journal (:class:`nastk.run_folder.JournalBackend`): a strategy asks, each result is
  appended and fsynced to ``journal.jsonl`` before the strategy is told; resume replays the journal;
* an optuna study (:class:`nastk.parallel.StudyBackend`): each worker process asks the shared
  study for a trial and records by telling it, so the study holds every result exactly once.

Both produce the same typed :class:`~nastk.trial.Trial` records and stop by the same
:class:`~nastk.trial.Stop` rule (queries, simulated or measured cost, wall time).
"""
from __future__ import annotations

import abc
import contextlib
import time
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Optional

from nastk.architecture import Architecture
from nastk.evaluator import Evaluator, Result
from nastk.trial import SearchOutcome, Stop, Trial


@dataclass
class Proposal:
    """An architecture to evaluate, with whatever its back-end needs to record it (e.g. an optuna trial)."""

    arch: Architecture
    handle: Any = None
    #: Held while the architecture is evaluated (e.g. a heartbeat); closed when it is recorded or fails.
    hold: Optional[contextlib.ExitStack] = None


#: What a proposal that holds nothing is evaluated under (one shared object: no cost per query).
NOTHING_HELD = contextlib.nullcontext()


class Backend(abc.ABC):
    """Where proposals come from and where trials go."""

    def replay(self) -> SearchOutcome:
        """Trials recorded before this call (a resumed run's), already told to the strategy."""
        return SearchOutcome()

    @abc.abstractmethod
    def propose(self, outcome: SearchOutcome, stop: Stop, started: float) -> Optional[Proposal]:
        """The next architecture to evaluate, or None when ``stop`` says the search is over."""

    def evaluating(self, proposal: Proposal) -> ContextManager:
        """Entered around the evaluation; a back-end marks the proposal failed when it raises."""
        return proposal.hold or NOTHING_HELD

    @abc.abstractmethod
    def record(self, proposal: Proposal, result: Result, started: float, finished: float,
               step: int) -> Optional[Trial]:
        """Record one evaluation and tell the strategy; None when the back-end no longer counts it (an
        optuna trial that was re-queued while this worker stalled)."""


def drive(backend: Backend, evaluator: Evaluator, stop: Stop,
          progress: Optional[Callable[[Trial, SearchOutcome], None]] = None) -> SearchOutcome:
    """Run the search loop on ``backend`` until ``stop``; ``progress(trial, outcome)`` after each evaluation."""
    outcome = backend.replay()
    started = time.monotonic()
    while True:
        proposal = backend.propose(outcome, stop, started)
        if proposal is None:
            return outcome
        began = time.time()
        with backend.evaluating(proposal):
            result = evaluator.evaluate(proposal.arch)
        trial = backend.record(proposal, result, began, time.time(), len(outcome.trials))
        if trial is None:
            continue
        outcome.add(trial, proposal.arch)
        if progress:
            progress(trial, outcome)
