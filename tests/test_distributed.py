"""Parallel workers on one optuna study: every evaluation recorded exactly once, lost workers recovered,
studies joined and resumed, on a journal file and on a real PostgreSQL server (NASTK_TEST_POSTGRES)."""
import collections
import functools
import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from nastk.cli import main
from nastk.search_config import search_config
from nastk.parallel import JOURNAL_FILE, StorageSpec, database_url, run_study, study_name
from nastk.errors import ConfigError, RunError
from nastk.evaluator import Evaluator
from nastk.run_folder import Run

HEARTBEAT = (1, 2)  # seconds: beat interval, grace before a silent trial is failed


class LoggedSlowEvaluator(Evaluator):
    """The benchmark look-up, made slow (so workers overlap and can be killed mid-evaluation), logging
    each finished evaluation with a unique id that also goes into the result."""

    def __init__(self, inner, log_path, delay_s):
        self.inner, self.log_path, self.delay_s = inner, log_path, delay_s

    def evaluate(self, arch):
        time.sleep(self.delay_s)
        result = self.inner.evaluate(arch)
        eval_id = uuid.uuid4().hex
        with open(self.log_path, "a") as handle:
            handle.write(json.dumps({"id": eval_id, "pid": os.getpid(), "arch": arch.to_str()}) + "\n")
        result.metrics["eval_id"] = eval_id
        return result

    def final_metrics(self, arch):
        return self.inner.final_metrics(arch)


def slow_factory(log_path, delay_s, space, config, seed, device):
    """Module-level (picklable for spawned workers): the config's evaluator, slowed and logged."""
    from nastk.evaluators import run_evaluator

    return LoggedSlowEvaluator(run_evaluator(space, config, seed, device), log_path, delay_s)


def make_config(budget, seed=0, strategy="bo-tpe"):
    return search_config(strategy=strategy, budget=budget, seed=seed, evaluator="benchmark", benchmark="nb201",
                         dataset="cifar10", workers=2)


def journal_study(run_dir, config):
    """The run's study, or None while the journal file exists but the study is not yet in it."""
    storage = JournalStorage(JournalFileBackend(str(run_dir / JOURNAL_FILE)))
    try:
        return optuna.load_study(study_name=study_name(config), storage=storage)
    except KeyError:  # created a moment later by the coordinator
        return None


def logged(log_path):
    if not log_path.exists():
        return []
    return [json.loads(line) for line in log_path.read_text().splitlines()]


def assert_recorded_exactly_once(study, log_path, budget, killed_pids=()):
    """COMPLETE == budget; each COMPLETE trial is one logged evaluation; every logged evaluation of a
    live worker is in the study (a killed worker may have logged one it never got to tell)."""
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == budget
    ids = [t.user_attrs["result"]["metrics"]["eval_id"] for t in complete]
    assert len(set(ids)) == budget
    log = {row["id"]: row for row in logged(log_path)}
    assert set(ids) <= set(log)
    for trial in complete:
        assert log[trial.user_attrs["result"]["metrics"]["eval_id"]]["arch"] == trial.user_attrs["arch"]
    lost = [row for eval_id, row in log.items() if eval_id not in set(ids)]
    assert all(row["pid"] in killed_pids for row in lost)
    assert all(n <= 1 for n in collections.Counter(row["pid"] for row in lost).values())


def run_in_thread(**kwargs):
    box = {}

    def target():
        try:
            box["value"] = run_study(**kwargs)
        except BaseException as error:  # noqa: BLE001 - handed to the test
            box["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


def wait_for(predicate, timeout=60.0, poll=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError("timed out waiting")


def running_trial(study, exclude_pids=()):
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get("worker")
        if worker and int(worker.split(":")[1]) not in exclude_pids and "arch" in trial.user_attrs:
            return trial
    return None


# --- PostgreSQL -------------------------------------------------------------------------------------
@pytest.fixture
def postgres_url():
    """A fresh database on the server NASTK_TEST_POSTGRES points at (CI: scripts/ci_postgres.sh)."""
    base = os.environ.get("NASTK_TEST_POSTGRES")
    if not base:
        pytest.skip("NASTK_TEST_POSTGRES is not set (CI starts a server with scripts/ci_postgres.sh)")
    import psycopg2
    from sqlalchemy.engine import make_url

    url = make_url(base)
    name = f"nastk_test_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(base)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    yield url.set(database=name).render_as_string(hide_password=False)
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


# --- tests ----------------------------------------------------------------------------------------------
def test_two_workers_on_a_journal_file_record_each_evaluation_once(nastk_data, tmp_path):
    config = make_config(budget=8)
    log = tmp_path / "evaluations.jsonl"
    outcome = run_study(config, Run(tmp_path / "run", config), workers=2,
                              evaluator_factory=functools.partial(slow_factory, str(log), 0.1))
    study = journal_study(tmp_path / "run", config)  # inspectable with optuna's own tools
    assert_recorded_exactly_once(study, log, budget=8)
    workers = {t.user_attrs["worker"] for t in study.trials}
    assert len(workers) == 2 and outcome.details["study"]["workers"] == 2 and outcome.details["study"]["surplus"] == 0
    assert len(outcome.trials) == 8 and outcome.evaluated == 8
    assert outcome.best_result.value == max(t.values[0] for t in study.get_trials(states=(TrialState.COMPLETE,)))


def test_sigkilled_worker_is_recovered_by_the_coordinator(nastk_data, tmp_path):
    config = make_config(budget=6)
    log = tmp_path / "evaluations.jsonl"
    thread, box = run_in_thread(config=config, run=Run(tmp_path / "run", config), workers=2,
                                evaluator_factory=functools.partial(slow_factory, str(log), 0.3), poll_s=0.05)
    study = wait_for(lambda: (tmp_path / "run" / JOURNAL_FILE).exists() and journal_study(tmp_path / "run", config))
    victim = wait_for(lambda: running_trial(study))
    pid = int(victim.user_attrs["worker"].split(":")[1])
    os.kill(pid, signal.SIGKILL)
    thread.join(120)
    assert "error" not in box, box.get("error")
    outcome = box["value"]
    assert study.trials[victim.number].state == TrialState.FAIL
    retry = [t for t in study.trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE and retry[0].params == victim.params
    assert outcome.details["study"]["retried"] == 1 and len(outcome.trials) == 6
    assert_recorded_exactly_once(study, log, budget=6, killed_pids=(pid,))


def test_run_stopped_by_killing_every_worker_resumes(nastk_data, tmp_path):
    config = make_config(budget=6, seed=1)
    log = tmp_path / "evaluations.jsonl"
    factory = functools.partial(slow_factory, str(log), 0.2)
    thread, box = run_in_thread(config=config, run=Run(tmp_path / "run", config), workers=2,
                                evaluator_factory=factory, poll_s=0.05, replacements=0)
    study = wait_for(lambda: (tmp_path / "run" / JOURNAL_FILE).exists() and journal_study(tmp_path / "run", config))
    wait_for(lambda: len(study.get_trials(states=(TrialState.COMPLETE,))) >= 2)
    pids = {child.pid for child in multiprocessing.active_children() if child.name.startswith("nastk-worker")}
    assert len(pids) == 2
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    thread.join(120)
    assert isinstance(box.get("error"), RunError) and "--resume" in str(box["error"])
    with pytest.raises(RunError, match="--resume"):
        Run(tmp_path / "run", config)
    outcome = run_study(config, Run(tmp_path / "run", config, resume=True), workers=2, evaluator_factory=factory)
    assert outcome.replayed >= 2 and outcome.replayed + outcome.evaluated == 6
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    assert_recorded_exactly_once(study, log, budget=6, killed_pids=pids)


def test_workers_killed_at_random_moments_are_replaced_and_each_trial_recorded_once(nastk_data, tmp_path):
    """Fault injection: SIGKILL a random live worker at a random moment, five times; the coordinator
    re-queues each lost trial, replaces the worker, and the search finishes with every trial once."""
    config = make_config(budget=10, seed=2)
    log = tmp_path / "evaluations.jsonl"
    thread, box = run_in_thread(config=config, run=Run(tmp_path / "run", config), workers=2,
                                evaluator_factory=functools.partial(slow_factory, str(log), 0.15), poll_s=0.05)
    study = wait_for(lambda: (tmp_path / "run" / JOURNAL_FILE).exists() and journal_study(tmp_path / "run", config))
    rng, killed = random.Random(0), set()

    def live_workers():
        return [c.pid for c in multiprocessing.active_children() if c.name.startswith("nastk-worker") and c.is_alive()
                and c.pid not in killed]

    for _ in range(5):
        time.sleep(rng.uniform(0.0, 0.4))
        live = wait_for(lambda: live_workers() or not thread.is_alive())  # replacements take a moment to start
        if live is True:
            break
        victim = rng.choice(live)
        os.kill(victim, signal.SIGKILL)
        killed.add(victim)
    thread.join(180)
    assert not thread.is_alive(), "the search hung"
    assert "error" not in box, box.get("error")
    assert len(killed) >= 3
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    assert_recorded_exactly_once(study, log, budget=10, killed_pids=killed)


def test_a_trial_orphaned_before_its_worker_labelled_it_is_recovered(nastk_data, tmp_path, monkeypatch):
    """A worker that dies between asking a trial and labelling it leaves an unlabelled RUNNING trial that
    no heartbeat or owner check frees; the coordinator recovers it on its next polls, however young."""
    import nastk.parallel as distributed

    monkeypatch.setattr(distributed, "UNLABELLED_GRACE_S", 0.5)
    config = make_config(budget=6, seed=3)
    log = tmp_path / "evaluations.jsonl"
    thread, box = run_in_thread(config=config, run=Run(tmp_path / "run", config), workers=1,
                                evaluator_factory=functools.partial(slow_factory, str(log), 0.2), poll_s=0.05)
    study = wait_for(lambda: (tmp_path / "run" / JOURNAL_FILE).exists() and journal_study(tmp_path / "run", config))
    wait_for(lambda: len(study.get_trials(states=(TrialState.COMPLETE,))) >= 1)
    orphan = study.ask()  # asked and never labelled: the dead worker's trial
    thread.join(120)
    assert not thread.is_alive(), "the search hung on the orphaned trial"
    assert "error" not in box, box.get("error")
    assert study.trials[orphan.number].state == TrialState.FAIL
    assert_recorded_exactly_once(study, log, budget=6)


def test_workers_do_not_outlive_a_killed_coordinator(nastk_data, tmp_path):
    """SIGKILL the coordinating process: its workers notice within the watchdog interval and exit."""
    script = tmp_path / "coordinator.py"
    script.write_text(
        "import functools, sys\n"
        "sys.path.insert(0, %r)\n"
        "from test_distributed import make_config, slow_factory\n"
        "from nastk.parallel import run_study\n"
        "from nastk.run_folder import Run\n"
        "if __name__ == '__main__':\n"
        "    config = make_config(budget=200)\n"
        "    run_study(config, Run(%r, config), workers=2,\n"
        "              evaluator_factory=functools.partial(slow_factory, %r, 0.5))\n"
        % (str(Path(__file__).parent), str(tmp_path / "run"), str(tmp_path / "log.jsonl")))
    coordinator = subprocess.Popen([sys.executable, str(script)], env={**os.environ})
    try:
        wait_for(lambda: len(logged(tmp_path / "log.jsonl")) >= 2, timeout=120)
        workers = {row["pid"] for row in logged(tmp_path / "log.jsonl")}
        os.kill(coordinator.pid, signal.SIGKILL)
        coordinator.wait(10)
        wait_for(lambda: not any(_alive(pid) for pid in workers), timeout=15)
    finally:
        if coordinator.poll() is None:
            coordinator.kill()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by its parent) is gone for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_local_search_is_refused_on_parallel_workers_saying_why(tmp_path):
    config = make_config(budget=4, strategy="ls")
    with pytest.raises(ConfigError, match="ls.*cannot run on parallel workers.*walks one path"):
        run_study(config, Run(tmp_path, config), workers=2)
    assert not (tmp_path / JOURNAL_FILE).exists()


def test_a_run_whose_study_is_in_a_database_is_not_resumed_on_a_new_journal(tmp_path):
    config = make_config(budget=4, strategy="random")
    Run(tmp_path / "run", config).release()
    (tmp_path / "run" / "study.json").write_text(json.dumps(
        {"name": study_name(config), "workers": 2, "storage": "postgresql://u:***@host/db", "database": True}))
    with pytest.raises(ConfigError, match=r"in the database postgresql://u:\*\*\*@host/db; resume it with --storage"):
        run_study(config, Run(tmp_path / "run", config, resume=True), workers=2)
    assert not (tmp_path / "run" / JOURNAL_FILE).exists()


def test_two_workers_of_regularized_evolution_record_each_evaluation_once(nastk_data, tmp_path):
    """RE on the study: each worker's own instance is told the others' results (asynchronous evolution)."""
    config = search_config(strategy="re", population_size=4, sample_size=2, budget=10, seed=0, evaluator="benchmark",
                           benchmark="nb201", dataset="cifar10", workers=2)
    log = tmp_path / "evaluations.jsonl"
    outcome = run_study(config, Run(tmp_path / "run", config), workers=2,
                        evaluator_factory=functools.partial(slow_factory, str(log), 0.05), poll_s=0.05)
    study = journal_study(tmp_path / "run", config)
    assert_recorded_exactly_once(study, log, budget=10)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len({t.user_attrs["worker"] for t in complete}) == 2 and len(outcome.trials) == 10
    assert [t.number for t in outcome.trials] == [t.number for t in sorted(complete, key=lambda t: t.datetime_complete)]
    assert outcome.best_result.value == max(t.value for t in complete)
    assert json.loads((tmp_path / "run" / "study.json").read_text())["workers"] == 2


def test_two_workers_on_postgres_record_each_evaluation_once(nastk_data, tmp_path, postgres_url):
    config = make_config(budget=8, seed=2)
    log = tmp_path / "evaluations.jsonl"
    outcome = run_study(config, Run(tmp_path / "run", config), workers=2, storage=postgres_url,
                              evaluator_factory=functools.partial(slow_factory, str(log), 0.1))
    study = optuna.load_study(study_name=study_name(config), storage=database_url(postgres_url))
    assert_recorded_exactly_once(study, log, budget=8)
    assert len({t.user_attrs["worker"] for t in study.trials}) == 2
    assert "nastk:nastk@" not in outcome.details["study"]["storage"] and "***" in outcome.details["study"]["storage"]  # no password


def _machine(config, run_dir, url, log_path):
    """A second 'machine': its own coordinator and one worker on the shared database."""
    run_study(config, Run(run_dir, config), workers=1, storage=url, heartbeat=HEARTBEAT,
              evaluator_factory=functools.partial(slow_factory, log_path, 0.4), poll_s=0.05)


def test_lost_machine_is_recovered_by_heartbeat_and_the_study_joined(nastk_data, tmp_path, postgres_url):
    """Machine B dies outright (coordinator and worker SIGKILLed); machine A joins the study, optuna's
    heartbeat fails B's silent trial and A re-runs it: the study completes with nothing lost."""
    config = make_config(budget=5, seed=3)
    log = tmp_path / "evaluations.jsonl"
    machine_b = multiprocessing.get_context("spawn").Process(
        target=_machine, args=(config, tmp_path / "b", postgres_url, str(log)))
    machine_b.start()
    storage = StorageSpec(postgres_url, str(tmp_path)).open()
    study = wait_for(lambda: _load(storage, config), timeout=60, poll=0.2)
    victim = wait_for(lambda: running_trial(study))
    os.kill(machine_b.pid, signal.SIGKILL)
    os.kill(int(victim.user_attrs["worker"].split(":")[1]), signal.SIGKILL)
    machine_b.join(10)
    outcome = run_study(config, Run(tmp_path / "a", config), workers=1, storage=postgres_url,
                              heartbeat=HEARTBEAT, poll_s=0.05,
                              evaluator_factory=functools.partial(slow_factory, str(log), 0.05))
    study = optuna.load_study(study_name=study_name(config), storage=database_url(postgres_url))
    assert study.trials[victim.number].state == TrialState.FAIL
    retry = [t for t in study.trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE and retry[0].params == victim.params
    assert outcome.details["study"]["retried"] == 1 and len(outcome.trials) == 5
    assert_recorded_exactly_once(study, log, budget=5,
                                 killed_pids=(int(victim.user_attrs["worker"].split(":")[1]),))


def _load(storage, config):
    try:
        return optuna.load_study(study_name=study_name(config), storage=storage)
    except KeyError:  # not created yet
        return None


def test_cli_parallel_search_and_resume(capsys, nastk_data, tmp_path):
    argv = ["search", "--space", "nb201", "--strategy", "nsga2", "--benchmark", "nb201", "--dataset", "cifar10",
            "--budget", "12", "--seed", "0", "--workers", "2", "--run-dir", str(tmp_path / "run"), "--format", "json",
            "--no-progress"]
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["evaluations"] == 12 and first["evaluated_now"] == 12 and first["study"]["workers"] == 2
    assert first["study"]["storage"].endswith(JOURNAL_FILE) and first["test_accuracy"] > 50
    assert main(argv + ["--resume"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["replayed"] == 12 and again["evaluated_now"] == 0 and again["best_arch"] == first["best_arch"]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    trials = journal_study(tmp_path / "run", config).trials
    assert config["engine"] == "study" and sum(t.state == TrialState.COMPLETE for t in trials) == 12
    # two workers racing for the last slot: the loser's trial is FAIL, marked surplus, never evaluated
    assert all(t.user_attrs.get("surplus") and "result" not in t.user_attrs for t in trials if t.state != TrialState.COMPLETE)


def test_cli_resume_of_a_parallel_run_uses_its_recorded_worker_count(capsys, nastk_data, tmp_path):
    run_dir = tmp_path / "run"
    argv = ["search", "--strategy", "random", "--benchmark", "nb201", "--dataset", "cifar10", "--budget", "6",
            "--run-dir", str(run_dir), "--format", "json", "--no-progress"]
    assert main(argv + ["--workers", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["study"]["workers"] == 2
    resume = ["search", "--run-dir", str(run_dir), "--resume", "--format", "json", "--no-progress"]
    assert main(resume) == 0  # no --workers: the run's own 2
    again = json.loads(capsys.readouterr().out)
    assert again["study"]["workers"] == 2 and again["replayed"] == 6 and again["evaluated_now"] == 0
    assert main(resume + ["--workers", "3"]) == 0  # an explicit count wins for this invocation only
    assert json.loads(capsys.readouterr().out)["study"]["workers"] == 3
    assert json.loads((run_dir / "study.json").read_text())["workers"] == 2
    (run_dir / "study.json").unlink()  # a run folder made before runs recorded their workers: resumes with 1
    assert main(resume) == 0
    assert json.loads(capsys.readouterr().out)["study"]["workers"] == 1
