"""Parallel and multi-machine search: worker processes that share one optuna study.

* ``--workers N`` starts N local worker processes on a journal file in the run folder
  (``optuna_journal.log``, optuna's ``JournalFileBackend``);
* ``--storage postgresql://...`` (or any SQLAlchemy URL optuna's ``RDBStorage`` takes) keeps the study
  in a database; every machine that runs the same command joins the same study.

The study is the run's journal. Each worker loops ask -> evaluate -> tell: a trial is COMPLETE
exactly when its evaluation is recorded, with the architecture and the whole :class:`Result` as trial
attributes, so every evaluation is recorded once and the study can be joined, resumed and inspected
with optuna's own tools (``optuna.load_study``, ``optuna.get_all_study_summaries``, optuna-dashboard).
The budget counts COMPLETE trials: a worker takes a new trial only while COMPLETE + RUNNING + WAITING
trials are fewer than the budget; two workers racing for the last slot are settled by trial number,
and the loser marks its trial FAIL (user attribute ``surplus``) without evaluating it.

Killed workers. A worker killed mid-evaluation leaves its trial RUNNING. Its architecture is re-queued
with optuna's ``RetryHeartbeatStaleTrialCallback`` (a WAITING copy that the next ``ask`` takes) after
the trial is marked FAIL, either

* by the coordinating process, which sees its own worker process die (every storage), or
* by optuna's heartbeat on a database storage: a trial whose worker stopped beating for the grace
  period is failed by the next ``fail_stale_trials`` of any worker on any machine.

Strategies. An optuna strategy's sampler reads the study itself. A nastk strategy that accepts results
in any order (``Strategy.asynchronous``: regularized evolution, random search) runs in each worker as
its own seeded instance: before each proposal the worker tells it the study's COMPLETE trials it has
not seen yet (other workers' results), so regularized evolution becomes asynchronous evolution (a
child's parent is drawn from the population as this worker knows it, the oldest member dies when any
worker's result arrives). Local search walks one path from one current architecture and is refused.

Workers are processes started by multiprocessing's forkserver (no fork of a process that may hold
torch or database threads; nastk and optuna are imported once, in the server). They are seeded from
(seed, worker index, pid), so proposals differ between workers and results arrive in completion
order: a parallel search is not reproducible run to run, unlike the sequential engine.

A run folder's study records its worker count and storage in ``study.json``
(:data:`nastk.run_folder.STUDY`), so ``--resume`` needs no ``--workers`` again.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import socket
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import optuna
from optuna.trial import TrialState

from nastk.architecture import Architecture
from nastk.engine import AGAIN, Backend, ProgressCallback, Proposal, build_evaluator, drive
from nastk.errors import ConfigError, RunError, WriteError
from nastk.evaluator import Evaluator, Result
from nastk.redaction import hide_password, redact
from nastk.run_folder import Run, study_record, write_study_record
from nastk.space import SearchSpace, get_space
from nastk.strategy import Strategy, run_strategy
from nastk.trial import SearchOutcome, Stop, Trial, objective_key

JOURNAL_FILE = "optuna_journal.log"
ACTIVE = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)
#: A RUNNING trial without a worker label older than this is a worker that died right after asking
#: (a live worker labels its trial within milliseconds). Checked on every poll, not only when a death
#: is noticed, so an orphan however young at its worker's death is always recovered.
UNLABELLED_GRACE_S = 5.0
#: How often a worker checks that its coordinator is still there (it exits when it is not).
WATCHDOG_S = 1.0


@dataclass(frozen=True)
class StorageSpec:
    """Where the study lives: a database URL, or None for the journal file in the run folder."""

    url: Optional[str]
    run_dir: str
    heartbeat_interval: int = 10
    grace_period: int = 30

    def open(self):
        """A fresh optuna storage (each process opens its own; connections must not cross a fork)."""
        if self.url is None:
            from optuna.storages.journal import JournalFileOpenLock, JournalStorage

            from nastk.study_journal import WholeLineJournalBackend

            path = str(Path(self.run_dir) / JOURNAL_FILE)
            # A worker killed while appending leaves the lock behind; writes take microseconds, so
            # waiting 5 s (not optuna's default 30 s) before breaking it is safe. Appends are whole
            # lines or nothing (a full disk leaves no torn line that would block every later resume).
            return JournalStorage(WholeLineJournalBackend(path, lock_obj=JournalFileOpenLock(path, grace_period=5)))
        if "://" not in self.url:
            raise ConfigError("--storage must be a database URL such as postgresql://user:password@host/db; "
                              "the value given has no scheme:// (not echoed: it may hold a password)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            try:
                return optuna.storages.RDBStorage(
                    database_url(self.url), heartbeat_interval=self.heartbeat_interval, grace_period=self.grace_period,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3),
                    engine_kwargs={"pool_pre_ping": True})
            except ModuleNotFoundError as error:
                raise ConfigError(f"--storage {self.display()} needs the database driver {error.name!r} "
                                  f"(PostgreSQL: pip install psycopg2-binary)") from None
            except Exception as error:  # SQLAlchemy connection and URL errors (a driver may quote the URL)
                first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                raise RunError(f"cannot open study storage {self.display()}: {redact(first, [self.url])}") from None

    @property
    def has_heartbeat(self) -> bool:
        return self.url is not None

    def display(self) -> str:
        """The storage without its password, for summaries and messages."""
        if self.url is None:
            return str(Path(self.run_dir) / JOURNAL_FILE)
        return hide_password(self.url)  # query-string passwords (?password=...) too


def database_url(url: str) -> str:
    """A bare ``postgresql://`` URL with the driver that is installed: SQLAlchemy 2.1 defaults to
    psycopg 3, while nastk's ``postgres`` extra installs psycopg2. Pass the result to optuna's own
    tools (``optuna.load_study(..., storage=database_url(url))``); summaries show it without password."""
    if not url.startswith("postgresql://"):
        return url
    import importlib.util

    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url[len("postgresql://"):]
    return url


def study_name(config: Dict[str, Any]) -> str:
    """The study of a config: the same command on any machine names (and so joins) the same study."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:10]
    return f"nastk-{config['space']}-{config['strategy']}-seed{config['seed']}-{digest}"


def worker_label(pid: Optional[int] = None) -> str:
    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}"


class OnStudy:
    """A strategy proposing and recording on a shared study. An optuna strategy (its sampler reads the
    study) is used as it is; a nastk strategy that accepts results in any order proposes with its own
    ``ask`` and is told every COMPLETE trial once (:meth:`learn`): its own when recorded, other
    workers' when this worker catches up. Either way a trial is recorded exactly as an optuna
    strategy's: COMPLETE with the architecture and the whole result as user attributes."""

    def __init__(self, strategy: Strategy):
        from nastk.strategies.optuna_search import OptunaStrategy

        self.strategy = strategy
        self.samples = isinstance(strategy, OptunaStrategy)  # the study's sampler proposes

    @property
    def directions(self) -> List[str]:
        return self.strategy.directions if self.samples else ["maximize"]

    def sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        # A nastk strategy's trials suggest nothing, so their sampler is never consulted.
        return self.strategy.sampler(seed) if self.samples else optuna.samplers.RandomSampler(seed)

    def start(self, trial: optuna.Trial) -> Architecture:
        """The architecture of an asked trial: a re-queued trial (a lost worker's) keeps its own."""
        if self.samples:
            return self.strategy.start(trial)
        held = trial.user_attrs.get("arch")
        arch = self.strategy.space.from_str(held) if held else self.strategy.ask()
        trial.set_user_attr("arch", arch.to_str())
        return arch

    def complete(self, study: optuna.Study, trial: optuna.Trial, arch: Architecture, result: Result) -> None:
        """Record one evaluation (raises optuna's UpdateFinishedTrialError when the trial was re-queued)."""
        if self.samples:
            self.strategy.complete(study, trial, result)
            return
        trial.set_user_attr("result", result.to_dict())
        study.tell(trial, objective_key(result.value))  # NaN ranks last but still counts as a query
        self.strategy.tell(arch, result)

    def learn(self, arch: Architecture, result: Result) -> None:
        """Another worker's result (the sampler of an optuna strategy reads those from the study)."""
        if not self.samples:
            self.strategy.tell(arch, result)


def on_study(config: Dict[str, Any], seed: int) -> OnStudy:
    """The config's strategy seeded with ``seed``, for a worker; refused with one line when it cannot
    run on parallel workers."""
    strategy = run_strategy(config, get_space(config["space"]), seed)
    from nastk.strategies.optuna_search import OptunaStrategy

    if not (isinstance(strategy, OptunaStrategy) or strategy.asynchronous):
        raise ConfigError(f"strategy {config['strategy']!r} cannot run on parallel workers or --storage: "
                          f"{strategy.sequential_because} (run it with --workers 1)")
    return OnStudy(strategy)


class StudyHistory:
    """The study's COMPLETE trials as the engine's trials, read as they arrive (each once, in completion
    order): a worker catches up on other workers' results with it, the coordinator reports progress
    and checks the stop rule, and a finished run's outcome is read with it."""

    def __init__(self, study: optuna.Study, space: SearchSpace):
        self.study, self.space, self.seen = study, space, set()

    def catch_up(self, outcome: SearchOutcome,
                 each: Callable[[Trial, Architecture], None] = lambda trial, arch: None) -> None:
        """Add the COMPLETE trials not seen yet to ``outcome``, calling ``each(trial, arch)`` after each."""
        fresh = sorted((t for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                        if t.number not in self.seen), key=lambda t: (t.datetime_complete, t.number))
        for frozen in fresh:
            self.seen.add(frozen.number)
            trial = Trial(len(outcome.trials), frozen.user_attrs["arch"], Result.from_dict(frozen.user_attrs["result"]),
                          frozen.datetime_start.timestamp(), frozen.datetime_complete.timestamp(),
                          frozen.user_attrs.get("worker"), frozen.number)
            arch = self.space.from_str(trial.arch)
            outcome.add(trial, arch)
            each(trial, arch)


# --- one worker ------------------------------------------------------------------------------------
class StudyBackend(Backend):
    """The parallel back-end of the search loop (:func:`nastk.engine.drive`): proposals are trials asked
    from the shared study, and a trial is recorded by telling the study (COMPLETE with the architecture
    and result as attributes), so each evaluation is recorded exactly once whichever worker ran it.

    The loop's outcome holds every COMPLETE trial of the study (other workers' caught up before each
    stop check), so the stop rule counts them all. When only trials running elsewhere are left, this
    worker waits for them (one may be lost and re-queued) unless ``alive()`` says nobody is left to
    re-queue it.
    """

    def __init__(self, study: optuna.Study, strategy: OnStudy, label: str, poll_s: float = 0.2,
                 alive: Callable[[], bool] = lambda: True):
        self.study, self.strategy, self.label, self.poll_s, self.alive = study, strategy, label, poll_s, alive
        self.history = StudyHistory(study, strategy.strategy.space)

    def catch_up(self, outcome: SearchOutcome) -> None:
        self.history.catch_up(outcome, lambda trial, arch: self.strategy.learn(arch, trial.result))

    def propose(self, outcome: SearchOutcome, stop: Stop) -> Optional[Proposal]:
        from optuna.storages._heartbeat import get_heartbeat_thread  # the heartbeat optuna's optimize() runs

        _fail_stale(self.study)
        recover_unlabelled(self.study)
        trials = self.study.get_trials(deepcopy=False, states=ACTIVE)
        if len(trials) >= stop.queries and TrialState.WAITING not in [t.state for t in trials]:
            if not self.alive():
                return None
            time.sleep(self.poll_s)
            return AGAIN
        trial = self.study.ask()
        proposal = Proposal(None, trial, contextlib.ExitStack())
        try:
            trial.set_user_attr("worker", self.label)
            # Beat from the moment the trial exists: optuna never fails a trial that has no heartbeat.
            proposal.hold.enter_context(get_heartbeat_thread(trial._trial_id, self.study._storage))
            if not _within_budget(self.study, trial.number, stop.queries):
                trial.set_user_attr("surplus", True)
                self.study.tell(trial, state=TrialState.FAIL)
                proposal.hold.close()
                return AGAIN
            proposal.arch = self.strategy.start(trial)
            return proposal
        except optuna.exceptions.UpdateFinishedTrialError:
            proposal.hold.close()  # re-queued while this worker stalled past a grace period
            return AGAIN
        except BaseException:
            proposal.hold.close()
            raise

    @contextlib.contextmanager
    def evaluating(self, proposal: Proposal):
        """Heartbeat while evaluating; an evaluation that raises leaves its trial FAIL with the error."""
        with proposal.hold:
            try:
                yield
            except BaseException as error:
                trial = proposal.handle
                try:
                    trial.set_user_attr("error", f"{type(error).__name__}: {error}")
                    self.study.tell(trial, state=TrialState.FAIL)
                except optuna.exceptions.UpdateFinishedTrialError:
                    pass
                raise

    def record(self, proposal: Proposal, result: Result, started: float, finished: float,
               step: int) -> Optional[Trial]:
        trial = proposal.handle
        try:
            self.strategy.complete(self.study, trial, proposal.arch, result)
        except optuna.exceptions.UpdateFinishedTrialError:
            return None  # this worker stalled past a grace period and its trial was re-queued: not counted twice
        self.history.seen.add(trial.number)
        return Trial(step, proposal.arch.to_str(), result, started, finished, self.label, trial.number)


def work(study: optuna.Study, strategy: OnStudy, evaluator: Evaluator, budget, label: str,
         poll_s: float = 0.2, alive: Callable[[], bool] = lambda: True) -> int:
    """One worker: the search loop on the study until its COMPLETE trials satisfy ``budget`` (a query
    count or a :class:`~nastk.trial.Stop`, whose cost limit counts the study's summed cost); returns the
    evaluations this worker recorded."""
    outcome = drive(StudyBackend(study, strategy, label, poll_s, alive), evaluator, Stop.of(budget))
    return sum(trial.worker == label for trial in outcome.trials[outcome.replayed:])


def _within_budget(study: optuna.Study, number: int, budget: int) -> bool:
    numbers = sorted(t.number for t in study.get_trials(deepcopy=False, states=ACTIVE))
    return number in numbers and numbers.index(number) < budget


def _fail_stale(study: optuna.Study) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _worker_main(config, spec: StorageSpec, name: str, index: int, device: Optional[str],
                 evaluator_factory: Optional[Callable], errors, coordinator: int) -> None:
    """Entry point of a worker process."""
    # This loop runs optuna's heartbeat thread itself (see work()), which optuna cannot see.
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
    try:
        seed = int(np.random.SeedSequence([config["seed"], index, os.getpid()]).generate_state(1)[0])
        strategy = on_study(config, seed)
        evaluator = build_evaluator(config, device, evaluator_factory)
        study = optuna.load_study(study_name=name, storage=spec.open(), sampler=strategy.sampler(seed))
        # Without a heartbeat, only the coordinator can re-queue a lost worker's trial.
        alive = (lambda: True) if spec.has_heartbeat else (lambda: _pid_alive(coordinator))
        _exit_with(coordinator)
        work(study, strategy, evaluator, Stop.from_config(config), worker_label(), alive=alive)
    except BaseException as error:
        errors.put((index, f"{type(error).__name__}: {error}".splitlines()[0]))
        raise SystemExit(1)


def _exit_with(coordinator: int) -> None:
    """End this worker when its coordinator is gone (killed or crashed): a worker never runs unsupervised.
    Its unfinished trial is recovered by the next run or resume (or, with a database, by the heartbeat)."""
    def watch():
        while _pid_alive(coordinator) and os.getppid() != 1:
            time.sleep(WATCHDOG_S)
        os._exit(3)

    threading.Thread(target=watch, name="nastk-coordinator-watchdog", daemon=True).start()


# --- the coordinating process ----------------------------------------------------------------------
def recover(study: optuna.Study, owner: Optional[str] = None) -> List[int]:
    """Fail the RUNNING trials of a dead worker (``owner``; None: every RUNNING trial) and re-queue
    their architectures through optuna's retry callback; returns the failed trial numbers."""
    recovered = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if owner is None or trial.user_attrs.get("worker") == owner:
            recovered += _fail_and_requeue(study, trial)
    return recovered + recover_unlabelled(study)


def recover_unlabelled(study: optuna.Study, grace_s: Optional[float] = None) -> List[int]:
    """Recover RUNNING trials that never got a worker label within ``grace_s``: their worker died
    between asking and labelling, and nothing else (no label, no heartbeat) would ever free them."""
    grace_s = UNLABELLED_GRACE_S if grace_s is None else grace_s
    now = time.time()
    stale = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
             if "worker" not in t.user_attrs and t.datetime_start and now - t.datetime_start.timestamp() > grace_s]
    return [number for trial in stale for number in _fail_and_requeue(study, trial)]


def _fail_and_requeue(study: optuna.Study, trial) -> List[int]:
    try:
        study.tell(trial.number, state=TrialState.FAIL)
    except (ValueError, RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
        return []  # finished meanwhile, e.g. failed (and re-queued) by a heartbeat check elsewhere
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3)(study, trial)
    return [trial.number]


def open_study(config: Dict[str, Any], spec: StorageSpec, directions: List[str]) -> optuna.Study:
    """Create the run's study, or join it after checking it holds the same search."""
    name = study_name(config)
    study = optuna.create_study(study_name=name, storage=spec.open(), directions=directions, load_if_exists=True)
    held = study.user_attrs.get("nastk_config")
    if held is None:
        study.set_user_attr("nastk_config", config)
    elif held != json.loads(json.dumps(config)):
        raise RunError(f"study {name} in {spec.display()} holds a different search configuration")
    if [d.name.lower() for d in study.directions] != directions:
        raise RunError(f"study {name} in {spec.display()} optimises other directions than {directions}")
    return study


def check_study(config: Dict[str, Any], workers: int, storage: Optional[str]) -> OnStudy:
    """What :func:`run_study` would refuse, checked before the run folder is made; returns the strategy."""
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    strategy = on_study(config, config["seed"])
    if storage is not None:  # a URL without a scheme, a missing driver, a refused connection: said before any write
        StorageSpec(storage, "").open()
    return strategy


def run_study(config: Dict[str, Any], run: Run, workers: int = 1, storage: Optional[str] = None,
              device: Optional[str] = None, progress: Optional[ProgressCallback] = None,
              evaluator_factory: Optional[Callable] = None, heartbeat: Tuple[int, int] = (10, 30),
              poll_s: float = 0.2, replacements: Optional[int] = None) -> SearchOutcome:
    """Run ``workers`` worker processes on the config's study until its budget is COMPLETE.

    A worker killed by a signal (the OOM killer, a lost node) has its trial re-queued and is replaced,
    up to ``replacements`` times (default: the budget); a worker that fails with an error stops the run.

    Returns the outcome (history in completion order, as the sequential engine's) whose ``details``
    describe the study for the summary. ``progress(trial, outcome)`` as the sequential engine calls it,
    for each trial any worker records. ``evaluator_factory`` replaces the config's evaluator (see
    :func:`nastk.engine.build_evaluator`); ``device`` None: wherever the evaluator's models are.
    """
    strategy = check_study(config, workers, storage)  # before any process starts
    spec = StorageSpec(storage, str(run.directory), *heartbeat)
    _check_same_storage(run, spec)
    if storage is None:  # a journal an older nastk left torn (disk full) is made readable again
        from nastk.study_journal import repair_journal

        repair_journal(run.directory / JOURNAL_FILE)
    study = open_study(config, spec, strategy.directions)
    name = study.study_name
    write_study_record(run.directory, {"name": name, "workers": workers, "storage": spec.display(),
                                       "database": spec.url is not None})
    if not spec.has_heartbeat:
        # Only this process runs workers on a run folder's journal, so RUNNING trials there were left
        # by an earlier invocation that was killed.
        recover(study)
    history, seen = StudyHistory(study, get_space(config["space"])), SearchOutcome()
    history.catch_up(seen)
    seen.replayed = before = len(seen.trials)
    stop, started = Stop.from_config(config), time.monotonic()
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["nastk.parallel", "nastk.strategies.optuna_search", "nastk.evaluators.benchmark"])
    errors = context.Queue()

    def spawn(index: int):
        process = context.Process(target=_worker_main, name=f"nastk-worker-{index}",
                                  args=(config, spec, name, index, device, evaluator_factory, errors, os.getpid()))
        process.start()
        return process

    def ended() -> bool:
        """Catch up with the study (reporting each new trial) and check the stop rule, as a worker does."""
        history.catch_up(seen, lambda trial, arch: progress and progress(trial, seen))
        return stop.ended(seen, started)

    processes = [spawn(index) for index in range(workers)]
    failures: List[str] = []
    try:
        failures = _supervise(study, processes, errors, ended, poll_s, spawn,
                              stop.queries if replacements is None else replacements)
    except WriteError as error:  # the study journal cannot be written (disk full): kept whole, resumable
        _stop(study, processes)
        raise WriteError(f"{error} ({_complete(study)}/{config['budget']} evaluations recorded; fix and --resume)",
                         error.path, error.errno) from None
    except BaseException:
        _stop(study, processes)
        raise
    done = _complete(study)
    if failures:
        raise RunError(f"{len(failures)} worker(s) failed; first: {failures[0]} "
                       f"({done}/{config['budget']} evaluations recorded; fix and --resume)")
    if not ended():
        raise RunError(f"all workers stopped after {done}/{config['budget']} evaluations; continue with --resume")
    outcome = outcome_from_study(study, before)
    trials = study.get_trials(deepcopy=False)
    outcome.details = {"study": {
        "name": name, "storage": spec.display(), "workers": workers, "wall_s": round(time.monotonic() - started, 3),
        "failed": sum(t.state == TrialState.FAIL and not t.user_attrs.get("surplus") for t in trials),
        "retried": sum(t.state == TrialState.COMPLETE and "failed_trial" in t.system_attrs for t in trials),
        "surplus": sum(bool(t.user_attrs.get("surplus")) for t in trials)}}
    return outcome


def _check_same_storage(run: Run, spec: StorageSpec) -> None:
    """Refuse to resume a run on another storage than its study's (it would start a second, empty study)."""
    record = study_record(run.directory)
    if record is None:
        return
    if record["database"] and spec.url is None:
        raise ConfigError(f"the study of {run.directory} is in the database {record['storage']}; resume it with "
                          f"--storage and that URL (its password is not recorded)")
    if not record["database"] and spec.url is not None:
        raise ConfigError(f"the study of {run.directory} is the journal file {JOURNAL_FILE} in the run folder; "
                          f"resume it without --storage")
    if record["database"] and spec.display() != record["storage"]:
        raise ConfigError(f"the study of {run.directory} is in the database {record['storage']}, not in "
                          f"{spec.display()}")


def _supervise(study, processes, errors, ended: Callable[[], bool], poll_s, spawn, replacements: int) -> List[str]:
    """Wait for the workers; re-queue the trials of any that dies and replace it (while ``ended()`` says
    the search goes on); stop all on a worker error."""
    failures = []
    running = dict(enumerate(processes))  # worker index -> its live process
    while running:
        recover_unlabelled(study)
        over = ended()  # also reports progress
        for index, process in list(running.items()):
            if process.is_alive():
                continue
            del running[index]
            if process.exitcode != 0:  # negative: killed by a signal, a lost worker
                recover(study, worker_label(process.pid))
            if process.exitcode < 0 and replacements > 0 and not failures and not over:
                replacements -= 1
                running[index] = replacement = spawn(index)
                processes.append(replacement)
        while not errors.empty():
            index, message = errors.get()
            failures.append(f"worker {index}: {message}")
        if failures and running:
            _stop(study, list(running.values()))
            continue
        time.sleep(poll_s)
    while not errors.empty():
        index, message = errors.get()
        failures.append(f"worker {index}: {message}")
    crashed = [p.exitcode for p in processes if p.exitcode and p.exitcode > 0]
    if crashed and not failures:
        failures.append(f"a worker exited with status {crashed[0]} before it could report why (see its output above)")
    return failures


def _stop(study, processes) -> None:
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join()
        if process.exitcode != 0:
            try:
                recover(study, worker_label(process.pid))
            except WriteError:  # the study cannot be written now (disk full): the next run or resume recovers it
                pass


def _complete(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def outcome_from_study(study: optuna.Study, replayed: int = 0) -> SearchOutcome:
    """The study's COMPLETE trials as the engine's trials, in completion order."""
    outcome = SearchOutcome(replayed=replayed)
    StudyHistory(study, get_space(study.user_attrs["nastk_config"]["space"])).catch_up(outcome)
    return outcome
