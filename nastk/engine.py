"""The one search driver: propose, evaluate, record, until the stop rule says stop.

:func:`search` runs a run config into its run folder on one of two back-ends of :func:`drive`:

* the run folder's journal (:class:`nastk.run_folder.JournalBackend`, one process): a strategy asks,
  each result is appended and fsynced to ``journal.jsonl`` before the strategy is told; resume replays
  the journal; a seeded run is reproducible bit for bit;
* an optuna study (:class:`nastk.parallel.StudyBackend`, ``--workers N`` or ``--storage URL``): each
  worker process runs :func:`drive`, asking the shared study for a trial and recording by telling it,
  so the study holds every result exactly once; before each proposal a worker catches up on the
  results other workers recorded. Results arrive in completion order, so a parallel run is not
  reproducible run to run.

Both produce the same typed :class:`~nastk.trial.Trial` records, stop by the same check
(:meth:`nastk.trial.Stop.ended` on a :class:`~nastk.trial.SearchOutcome`: queries, simulated or
measured cost, wall time), report progress through the same callback ``progress(trial, outcome)`` and
build their evaluator with :func:`build_evaluator`.
"""
from __future__ import annotations

import abc
import contextlib
import time
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Dict, Optional

from nastk.architecture import Architecture
from nastk.evaluator import Evaluator, Result
from nastk.trial import SearchOutcome, Stop, Trial

#: What a search reports after each evaluation (a progress bar, a log line): the trial and the outcome so far.
ProgressCallback = Callable[[Trial, SearchOutcome], None]


@dataclass
class Proposal:
    """An architecture to evaluate, with whatever its back-end needs to record it (e.g. an optuna trial)."""

    arch: Architecture
    handle: Any = None
    #: Held while the architecture is evaluated (e.g. a heartbeat); closed when it is recorded or fails.
    hold: Optional[contextlib.ExitStack] = None


#: What a proposal that holds nothing is evaluated under (one shared object: no cost per query).
NOTHING_HELD = contextlib.nullcontext()
#: What :meth:`Backend.propose` returns when it waited or lost a race: check the stop rule and propose again.
AGAIN = Proposal(None)


class Backend(abc.ABC):
    """Where proposals come from and where trials go."""

    def replay(self) -> SearchOutcome:
        """Trials recorded before this call (a resumed run's), already told to the strategy."""
        return SearchOutcome()

    def catch_up(self, outcome: SearchOutcome) -> None:
        """Add to ``outcome`` the trials recorded elsewhere since the last call (other workers'), telling
        the strategy; called before every stop check. The run folder's journal has no other writer."""

    @abc.abstractmethod
    def propose(self, outcome: SearchOutcome, stop: Stop) -> Optional[Proposal]:
        """The next architecture to evaluate; :data:`AGAIN` to check the stop rule first (the back-end
        waited for trials running elsewhere); None when nothing more will be proposed here."""

    def evaluating(self, proposal: Proposal) -> ContextManager:
        """Entered around the evaluation; a back-end marks the proposal failed when it raises."""
        return proposal.hold or NOTHING_HELD

    @abc.abstractmethod
    def record(self, proposal: Proposal, result: Result, started: float, finished: float,
               step: int) -> Optional[Trial]:
        """Record one evaluation and tell the strategy; None when the back-end no longer counts it (an
        optuna trial that was re-queued while this worker stalled)."""


def drive(backend: Backend, evaluator: Evaluator, stop: Stop,
          progress: Optional[ProgressCallback] = None) -> SearchOutcome:
    """Run the search loop on ``backend`` until ``stop``; ``progress(trial, outcome)`` after each evaluation."""
    outcome = backend.replay()
    started = time.monotonic()
    while True:
        backend.catch_up(outcome)
        if stop.ended(outcome, started):
            return outcome
        proposal = backend.propose(outcome, stop)
        if proposal is None:
            return outcome
        if proposal is AGAIN:
            continue
        began = time.time()
        with backend.evaluating(proposal):
            result = evaluator.evaluate(proposal.arch)
        trial = backend.record(proposal, result, began, time.time(), len(outcome.trials))
        if trial is None:
            continue
        outcome.add(trial, proposal.arch)
        if progress:
            progress(trial, outcome)


def build_evaluator(config: Dict[str, Any], device: Optional[str], factory: Optional[Callable] = None) -> Evaluator:
    """The evaluator of a run config, built the same way in the command's process and in every parallel
    worker. ``factory(space, config, seed, device)`` (module level, picklable) replaces the config's
    evaluator, e.g. in tests; ``device`` None: wherever the evaluator's models are."""
    from nastk.evaluators import run_evaluator
    from nastk.space import get_space

    return (factory or run_evaluator)(get_space(config["space"]), config, config["seed"], device)


def search(config: Dict[str, Any], run, evaluator: Evaluator, strategy, device: Optional[str],
           workers: int = 1, storage: Optional[str] = None, progress: Optional[ProgressCallback] = None,
           **study_options) -> SearchOutcome:
    """Run ``config`` into the run folder ``run`` (a :class:`nastk.run_folder.Run`) until its stop rule:
    on the run folder's journal with ``strategy`` and ``evaluator``, or, for a config with ``engine:
    study``, on ``workers`` processes sharing its optuna study (each builds its own strategy and
    evaluator; ``study_options`` go to :func:`nastk.parallel.run_study`). The outcome's ``details``
    hold what the back-end adds to the summary."""
    if config.get("engine") == "study":
        from nastk.parallel import run_study

        return run_study(config, run, workers=workers, storage=storage, device=device, progress=progress,
                         **study_options)
    from nastk.run_folder import JournalBackend

    stop = Stop.from_config(config)
    return drive(JournalBackend(strategy, run, stop.queries), evaluator, stop, progress)
