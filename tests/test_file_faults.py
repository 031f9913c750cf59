"""File-system faults: every output goes through one writer (nastk.paths), so a read-only folder, a path
under a regular file, a target that is a folder or a full disk is one line on stderr (exit status 2)
naming the path and the cause, leaves nothing half-written and no folder behind, and a run folder that
hit a full disk resumes to the results of an uninterrupted run. Caches are optional: one that cannot be
written is a one-line note and the command still answers.

How faults are made without a real full disk or read-only mount:

* **disk full**: ``os.write`` (the one call the writer writes with) is replaced by :class:`DiskFull`,
  which lets a chosen file take a number of bytes, writes the part of the next write that still fits
  (a short write, as the kernel does) and then raises ``OSError(ENOSPC)``. In the parallel probe the
  worker processes install it themselves (through the evaluator factory they run).
* **read-only folder**: ``chmod 0555`` where that stops this user; the tests usually run as root, whom
  permissions do not stop, so there ``os.open`` (for writing) and ``os.mkdir`` under the folder raise
  ``OSError(EROFS)``, what a read-only mount gives.
* **under a regular file / a folder where a file should be**: real paths.
"""
import errno
import json
import os
from pathlib import Path

import pytest

from nastk.errors import NastkError, RunError, WriteError
from nastk.paths import append_lines, atomic_write, save_figure
from cli_run import run_cli  # tests/ is on sys.path under pytest

pytestmark = [pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="finds a file's path through /proc"),
              pytest.mark.usefixtures("one_torch_thread")]

REAL_WRITE = os.write
REAL_OPEN = os.open
REAL_MKDIR = os.mkdir
BENCH = ["search", "--benchmark", "nb201", "--dataset", "cifar10", "--no-progress"]


def fd_path(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


class DiskFull:
    """``os.write`` on a disk that fills up: writes to files ``counts(path)`` selects use up ``free_bytes``
    (unlimited while None, and until ``full()`` says the disk just filled up, in the middle of the write
    that saw it); the write that does not fit writes what fits and returns that count, every later one
    raises ENOSPC. Other files are written normally. Space freed by truncating is not given back."""

    def __init__(self, counts, free_bytes=None, full=None):
        self.counts, self.free, self.full = counts, free_bytes, full

    def __call__(self, fd, data):
        if not self.counts(fd_path(fd)):
            return REAL_WRITE(fd, data)
        if self.free is None and self.full is not None and self.full():
            self.free = len(data) // 2
        if self.free is None:
            return REAL_WRITE(fd, data)
        if self.free <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written = REAL_WRITE(fd, bytes(memoryview(data)[:self.free]))
        self.free -= written
        return written


def named(*names):
    """A ``counts`` for :class:`DiskFull`: files with one of these names (or their writer's temporary files)."""
    return lambda path: any(Path(path).name == name or Path(path).name.startswith(name + ".") for name in names)


@pytest.fixture
def read_only(monkeypatch):
    """``read_only(folder)`` makes an existing folder read-only (see the module docstring)."""
    locked, roots = [], []

    def under(path) -> bool:
        path = os.path.abspath(os.fsdecode(path))
        return any(path == root or path.startswith(root + os.sep) for root in roots)

    def fake_open(path, flags, *args, **kwargs):
        if under(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))
        return REAL_OPEN(path, flags, *args, **kwargs)

    def fake_mkdir(path, *args, **kwargs):
        if under(path):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))
        return REAL_MKDIR(path, *args, **kwargs)

    def make(folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            folder.chmod(0o555)
            locked.append(folder)
        else:  # root writes into a 0555 folder anyway: fail as a read-only mount does
            roots.append(os.path.abspath(folder))
            monkeypatch.setattr(os, "open", fake_open)
            monkeypatch.setattr(os, "mkdir", fake_mkdir)
        return folder

    yield make
    for folder in locked:
        folder.chmod(0o755)


def tree(root: Path):
    """Every path under ``root`` with its size (files) or None (folders): what the tests compare."""
    return {str(p.relative_to(root)): (p.stat().st_size if p.is_file() else None) for p in sorted(root.rglob("*"))}


def one_line_error(code, err, *fragments):
    assert code == 2 and err.count("\n") == 1 and err.startswith("nastk: error: "), (code, err)
    assert "Traceback" not in err and all(fragment in err for fragment in fragments), err


def journal(run_dir: Path):
    """(step, arch, result) of each journal line: what a run decided and measured, without its timestamps."""
    return [(r["step"], r["arch"], r["result"]) for r in map(json.loads, (run_dir / "journal.jsonl").read_text().splitlines())]


# --- the writer itself ---------------------------------------------------------------------------------
def _json(path):
    with atomic_write(path, "w") as handle:
        json.dump({"a": list(range(200))}, handle)


def _torch(path):
    import torch

    with atomic_write(path) as handle:
        torch.save({"weights": torch.zeros(500)}, handle)  # torch.save turns the OSError into a RuntimeError


def _append(path):
    append_lines(path, ["x" * 300])


def _figure(path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(1, 1))
    try:
        save_figure(fig, path.with_suffix(".png"))
    finally:
        plt.close(fig)


WRITERS = {"json": _json, "torch.save": _torch, "append": _append, "figure": _figure}


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("fault", ["under a file", "a folder", "read-only", "disk full"])
def test_every_writer_turns_an_os_error_into_one_line_and_leaves_nothing(tmp_path, monkeypatch, read_only, writer, fault):
    (tmp_path / "file").write_text("x")
    target = {"under a file": tmp_path / "file" / "new" / "out.dat", "a folder": tmp_path / "out.dat",
              "read-only": tmp_path / "ro" / "new" / "out.dat", "disk full": tmp_path / "new" / "out.dat"}[fault]
    if fault == "a folder":  # where the file should go (the figure writes out.png)
        target.mkdir()
        target.with_suffix(".png").mkdir()
    if fault == "read-only":
        read_only(tmp_path / "ro")
    if fault == "disk full":
        monkeypatch.setattr(os, "write", DiskFull(lambda path: path.startswith(str(tmp_path)), free_bytes=40))
    before = tree(tmp_path)
    with pytest.raises(WriteError) as caught:
        WRITERS[writer](target)
    message = str(caught.value)
    cause = {"under a file": f"{tmp_path / 'file'} is a file, not a folder", "a folder": "it is a folder",
             "read-only": "read-only file system" if os.geteuid() == 0 else "permission denied",
             "disk full": "no space left on device"}[fault]
    assert "\n" not in message and cause in message and str(target.parent) in message, message
    assert tree(tmp_path) == before  # no temporary file, no partial line, no folder made for it


def test_a_failed_append_is_cut_back_off_and_a_torn_tail_is_dropped(tmp_path, monkeypatch):
    path = tmp_path / "journal.jsonl"
    append_lines(path, ["first", "second"])
    with monkeypatch.context() as patch:
        patch.setattr(os, "write", DiskFull(named("journal.jsonl"), free_bytes=3))
        with pytest.raises(WriteError, match="no space left on device"):
            append_lines(path, "third line")
    assert path.read_text() == "first\nsecond\n"  # the three bytes that fitted were cut back off
    with open(path, "a") as handle:  # a writer killed mid-line (not through nastk)
        handle.write('{"torn')
    append_lines(path, "third")
    assert path.read_text() == "first\nsecond\nthird\n"


# --- caches are optional ----------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["under a file", "read-only"])
def test_query_answers_when_its_cache_cannot_be_written(capsys, nastk_data, tmp_path, monkeypatch, read_only, where):
    (tmp_path / "file").write_text("x")
    cache = tmp_path / "file" / "cache" if where == "under a file" else read_only(tmp_path / "ro") / "cache"
    monkeypatch.setenv("NASTK_CACHE", str(cache))
    before = tree(tmp_path)
    code, out, err = run_cli(capsys, "query", "--dataset", "cifar10", "--index", "5", "--format", "json")
    assert code == 0 and json.loads(out)["index"] == 5 and json.loads(out)["test_accuracy"] > 0
    assert err.count("\n") == 1 and err.startswith("nastk: note: the converted NB201 table not cached") and str(cache) in err
    assert ("is a file, not a folder" if where == "under a file" else "read-only file system" if os.geteuid() == 0
            else "permission denied") in err
    assert tree(tmp_path) == before


@pytest.mark.parametrize("where", ["a folder", "under a file"])
def test_proxy_score_cache_that_cannot_be_written_is_skipped_with_a_note(capsys, nastk_data, tmp_path, where):
    (tmp_path / "file").write_text("x")
    (tmp_path / "folder").mkdir()
    cache = tmp_path / "folder" if where == "a folder" else tmp_path / "file" / "scores.jsonl"
    before = tree(tmp_path)
    code, out, err = run_cli(capsys, "proxies", "correlate", "--sample", "3", "--proxies", "params,synflow",
                             "--dataset", "digits", "--truth", "cifar10", "--C", "4", "--N", "1", "--batch-size", "8",
                             "--no-progress", "--cache", str(cache))
    assert code == 0 and set(json.loads(out)) == {"params", "synflow"}
    assert err.count("\n") == 1 and err.startswith("nastk: note: ") and str(cache) in err
    assert tree(tmp_path) == before


# --- outputs named on the command line -------------------------------------------------------------------
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, nastk_data):
    from nastk.cli import main

    run_dir = tmp_path_factory.mktemp("faults") / "run"
    assert main(BENCH + ["--strategy", "random", "--budget", "3", "--run-dir", str(run_dir)]) == 0
    return run_dir


@pytest.mark.parametrize("command", ["export", "runs plot"])
@pytest.mark.parametrize("where", ["read-only", "under a file", "disk full"])
def test_export_and_plot_out_that_cannot_be_written_are_one_line(capsys, finished_run, tmp_path, monkeypatch,
                                                                 read_only, command, where):
    (tmp_path / "file").write_text("x")
    folder = {"read-only": tmp_path / "ro", "under a file": tmp_path / "file", "disk full": tmp_path}[where]
    if where == "read-only":
        read_only(folder)
    out = folder / "new" / ("model.pt" if command == "export" else "runs.png")
    argv = (["export", "--run-dir", str(finished_run), "--out-format", "state-dict", "--out", str(out)] if command == "export"
            else ["runs", "plot", str(finished_run), "--out", str(out)])
    if where == "disk full":
        monkeypatch.setattr(os, "write", DiskFull(lambda path: path.startswith(str(tmp_path)), free_bytes=100))
    before, run_before = tree(tmp_path), tree(finished_run)
    code, _, err = run_cli(capsys, argv)
    cause = {"read-only": "read-only file system" if os.geteuid() == 0 else "permission denied",
             "under a file": f"{tmp_path / 'file'} is a file, not a folder", "disk full": "no space left on device"}[where]
    one_line_error(code, err, f"cannot write {out}", cause)
    assert tree(tmp_path) == before and tree(finished_run) == run_before


# --- run folders ------------------------------------------------------------------------------------------
def test_a_journal_that_is_a_folder_is_one_line_on_resume(capsys, finished_run, tmp_path):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    (run_dir / "journal.jsonl").unlink()
    (run_dir / "journal.jsonl").mkdir()
    before = tree(run_dir)
    code, _, err = run_cli(capsys, BENCH + ["--strategy", "random", "--budget", "3", "--run-dir", str(run_dir), "--resume"])
    one_line_error(code, err, f"{run_dir / 'journal.jsonl'}", "it is a folder")
    assert tree(run_dir) == before


def test_a_study_journal_that_is_a_folder_is_one_line_on_resume(nastk_data, tmp_path):
    from nastk.parallel import JOURNAL_FILE, run_study
    from nastk.run_folder import Run
    from nastk.search_config import search_config

    config = search_config(strategy="bo-tpe", budget=4, evaluator="benchmark", benchmark="nb201", dataset="cifar10",
                           workers=2)
    Run(tmp_path / "run", config).release()
    (tmp_path / "run" / JOURNAL_FILE).mkdir()
    with pytest.raises(RunError, match="it is a folder") as caught:
        run_study(config, Run(tmp_path / "run", config, resume=True), workers=2)
    assert "\n" not in str(caught.value) and not (tmp_path / "run" / (JOURNAL_FILE + ".lock")).exists()


# --- a full disk during a sequential search resumes exactly ------------------------------------------------
@pytest.fixture(scope="module")
def straight_search(tmp_path_factory, nastk_data):
    from nastk.cli import main

    run_dir = tmp_path_factory.mktemp("straight") / "run"
    assert main(BENCH + ["--strategy", "re", "--budget", "20", "--run-dir", str(run_dir)]) == 0
    return run_dir


@pytest.mark.parametrize("file", ["journal.jsonl", "summary.json"])
def test_a_full_disk_during_a_search_is_one_line_and_resumes_to_the_same_results(capsys, straight_search, tmp_path,
                                                                                monkeypatch, file):
    run_dir = tmp_path / "run"
    argv = BENCH + ["--strategy", "re", "--budget", "20", "--run-dir", str(run_dir)]
    lines = (straight_search / "journal.jsonl").read_text().splitlines(keepends=True)
    free = sum(len(line) for line in lines[:7]) + 25 if file == "journal.jsonl" else 50  # fills up mid-line 8
    with monkeypatch.context() as patch:
        patch.setattr(os, "write", DiskFull(named(file), free_bytes=free))
        code, _, err = run_cli(capsys, argv)
    one_line_error(code, err, str(run_dir / file), "no space left on device")
    kept = (run_dir / "journal.jsonl").read_text().splitlines(keepends=True)
    assert all(line.endswith("\n") for line in kept) and len(kept) == (7 if file == "journal.jsonl" else 20)
    assert journal(run_dir) == journal(straight_search)[:len(kept)]  # whole lines only, nothing torn
    assert sorted(p.name for p in run_dir.iterdir()) == [".nastk.lock", "config.json", "journal.jsonl"]
    code, out, err = run_cli(capsys, argv + ["--resume", "--format", "json"])  # space freed
    assert code == 0, err
    assert journal(run_dir) == journal(straight_search)
    printed = json.loads(out)
    resumed, straight = (json.loads((folder / "summary.json").read_text()) for folder in (run_dir, straight_search))
    assert resumed["replayed"] == len(kept) and resumed["evaluated_now"] == 20 - len(kept)
    assert printed["best_arch"] == resumed["best_arch"] == straight["best_arch"]
    assert (resumed["best_objective"], resumed["test_accuracy"], resumed["trajectory"]) == \
        (straight["best_objective"], straight["test_accuracy"], straight["trajectory"])


# --- a full disk during supernet training resumes exactly ---------------------------------------------------
TINY = dict(space="nb201", dataset="digits", supernet={"C": 4, "N": 1}, epochs=3, train_size=96, batch_size=32,
            valid_size=64, eval_batch_size=64, sampler="pada")


@pytest.fixture(scope="module")
def straight_supernet(tmp_path_factory):
    from nastk.oneshot.trainer import OneShotConfig, train

    run_dir = tmp_path_factory.mktemp("supernet") / "run"
    sizes = {}

    def measure(trainer, record):
        sizes[record["epoch"]] = {name: (run_dir / name).stat().st_size for name in ("checkpoint.pt", "metrics.jsonl")}

    train(OneShotConfig(**TINY), run_dir, progress=False, callbacks=[measure])
    return run_dir, sizes


@pytest.mark.parametrize("file", ["checkpoint.pt", "metrics.jsonl"])
def test_a_full_disk_during_supernet_training_is_one_line_and_resumes_to_the_same_weights(
        capsys, straight_supernet, tmp_path, monkeypatch, file):
    import torch

    from nastk.oneshot.trainer import OneShotConfig, train

    straight, sizes = straight_supernet
    run_dir = tmp_path / "run"
    free = sizes[0][file] + 20  # the first epoch's file fits; the second epoch's does not
    with monkeypatch.context() as patch:
        patch.setattr(os, "write", DiskFull(named(file), free_bytes=free))
        with pytest.raises(WriteError) as caught:
            train(OneShotConfig(**TINY), run_dir, progress=False)
    message = str(caught.value)
    assert "\n" not in message and str(run_dir / file) in message and "no space left on device" in message
    assert not list(run_dir.glob("*.tmp"))
    epoch = torch.load(run_dir / "checkpoint.pt", weights_only=True)["epoch"]
    assert epoch == (1 if file == "checkpoint.pt" else 2)  # the last whole checkpoint
    metrics = (run_dir / "metrics.jsonl").read_text()
    assert metrics.endswith("\n") and len(metrics.splitlines()) == 1
    resumed = train(OneShotConfig(**TINY), run_dir, resume=True, progress=False)  # space freed
    assert resumed["resumed_from_epoch"] == epoch
    a = torch.load(straight / "checkpoint.pt", weights_only=True)
    b = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    strip = lambda history: [{k: v for k, v in r.items() if k not in ("epoch_s", "images_per_s")} for r in history]
    assert strip(a["history"]) == strip(b["history"])
    assert strip(map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())) == strip(a["history"])


def test_a_checkpoint_that_is_a_folder_is_one_line_on_resume(straight_supernet, tmp_path):
    import shutil

    from nastk.oneshot.trainer import OneShotConfig, train

    run_dir = tmp_path / "run"
    shutil.copytree(straight_supernet[0], run_dir)
    (run_dir / "checkpoint.pt").unlink()
    (run_dir / "checkpoint.pt").mkdir()
    before = tree(run_dir)
    with pytest.raises(RunError) as caught:  # before any epoch is trained again
        train(OneShotConfig(**TINY), run_dir, resume=True, progress=False)
    assert str(caught.value) == f"cannot resume from {run_dir / 'checkpoint.pt'}: it is a folder, not a checkpoint file"
    assert tree(run_dir) == before


# --- a full disk during a parallel run leaves a resumable study journal ---------------------------------------
class CountingEvaluator:
    """The config's evaluator, each evaluation logged; the ``fill_at``-th fills the disk (a marker file)."""

    def __init__(self, inner, log_path, marker, fill_at):
        self.inner, self.log_path, self.marker, self.fill_at = inner, log_path, marker, fill_at

    def evaluate(self, arch):
        import time
        import uuid

        time.sleep(0.05)
        result = self.inner.evaluate(arch)
        result.metrics["eval_id"] = uuid.uuid4().hex
        with open(self.log_path, "a") as handle:
            handle.write(json.dumps({"id": result.metrics["eval_id"], "arch": arch.to_str()}) + "\n")
        if self.fill_at is not None and len(Path(self.log_path).read_text().splitlines()) >= self.fill_at:
            Path(self.marker).touch()
        return result

    def final_metrics(self, arch):
        return self.inner.final_metrics(arch)

    def describe(self):
        return self.inner.describe()


def filling_factory(log_path, marker, fill_at, space, config, seed, device):
    """Module-level (picklable for the worker processes): in the worker, the study journal's disk is
    full once the marker exists; the evaluator creates the marker after ``fill_at`` evaluations."""
    from nastk.evaluators import run_evaluator

    os.write = DiskFull(named("optuna_journal.log"), full=lambda: os.path.exists(marker))
    return CountingEvaluator(run_evaluator(space, config, seed, device), log_path, marker, fill_at)


def test_a_full_disk_during_a_parallel_run_leaves_a_whole_resumable_study_journal(nastk_data, tmp_path, monkeypatch):
    import functools

    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage
    from optuna.trial import TrialState

    from nastk.parallel import JOURNAL_FILE, run_study, study_name
    from nastk.run_folder import Run
    from nastk.search_config import search_config

    config = search_config(strategy="bo-tpe", budget=8, evaluator="benchmark", benchmark="nb201", dataset="cifar10",
                           workers=2)
    run_dir, log, marker = tmp_path / "run", tmp_path / "evaluations.jsonl", tmp_path / "disk-full"
    with monkeypatch.context() as patch:  # the coordinator writes to the same full disk
        patch.setattr(os, "write", DiskFull(named(JOURNAL_FILE), full=marker.exists))
        with pytest.raises(NastkError) as caught:
            run_study(config, Run(run_dir, config), workers=2, poll_s=0.05,
                      evaluator_factory=functools.partial(filling_factory, str(log), str(marker), 3))
    message = str(caught.value)
    assert "\n" not in message and JOURNAL_FILE in message and "no space left on device" in message, message
    assert "--resume" in message
    data = (run_dir / JOURNAL_FILE).read_bytes()
    assert data.endswith(b"\n") and all(isinstance(json.loads(line), dict) for line in data.splitlines())
    assert not (run_dir / (JOURNAL_FILE + ".lock")).exists()

    def study():  # optuna's own reader, as `optuna.load_study` users see the run
        return optuna.load_study(study_name=study_name(config), storage=JournalStorage(JournalFileBackend(str(run_dir / JOURNAL_FILE))))

    def recorded():
        return {t.number: t.user_attrs["result"]["metrics"]["eval_id"]
                for t in study().get_trials(states=(TrialState.COMPLETE,))}

    before = recorded()
    assert 1 <= len(before) < 8
    marker.unlink()  # space freed
    outcome = run_study(config, Run(run_dir, config, resume=True), workers=2, poll_s=0.05,
                        evaluator_factory=functools.partial(filling_factory, str(log), str(marker), None))
    after = recorded()
    assert len(after) == 8 and len(set(after.values())) == 8 and outcome.replayed == len(before)
    assert {n: after[n] for n in before} == before  # what was recorded before the disk filled up is kept
    logged = {row["id"] for row in map(json.loads, log.read_text().splitlines())}
    assert set(after.values()) <= logged
    assert not study().get_trials(states=(TrialState.RUNNING, TrialState.WAITING))


def test_a_study_journal_torn_by_an_older_nastk_is_repaired_on_resume(tmp_path):
    """What optuna's own journal backend left after a full disk: a torn line, with the next append (made once
    space was freed) glued to it, after which optuna refuses the whole file."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    from nastk.study_journal import repair_journal

    path = tmp_path / "optuna_journal.log"

    def study():
        return optuna.create_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(path))),
                                   load_if_exists=True)

    first = study()
    for x in (1.0, 2.0, 3.0):
        first.tell(first.ask(), x)
    whole = path.read_bytes()
    last = whole.splitlines()[-1]
    with open(path, "ab") as handle:
        handle.write(last[: len(last) // 2])  # the write the full disk cut short
    first.set_user_attr("after", "space was freed")  # the next append, once space was freed, is glued to it
    with pytest.raises(ValueError):  # ... and as soon as anything follows, optuna refuses the file
        first.set_user_attr("next", 1)
    with pytest.raises(ValueError):
        study()
    with pytest.warns(UserWarning, match="removed 1 partly written line"):
        assert repair_journal(path) == 1
    repaired = study()
    assert [t.value for t in repaired.trials] == [1.0, 2.0, 3.0] and repaired.user_attrs == {"after": "space was freed", "next": 1}
    assert repair_journal(path) == 0  # a whole file is left as it is
    path.write_bytes(whole + b"not json\n" + last + b"\n")
    with pytest.raises(RunError, match=f"line {len(whole.splitlines()) + 1} is corrupt"):
        repair_journal(path)


# --- the same on a real full and read-only file system, where this machine allows mounting one -------------
def _can_mount_tmpfs(folder: Path) -> bool:
    import shutil
    import subprocess

    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    folder.mkdir()
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                           f"mount -t tmpfs -o size=16k tmpfs '{folder}' && touch '{folder}/x'"], capture_output=True)
    return done.returncode == 0 and not (folder / "x").exists()  # mounted in a namespace of its own, gone with it


@pytest.mark.slow  # moved out of the default run to keep it under 5 minutes on 2 cores
def test_a_real_full_and_read_only_tmpfs(straight_search, tmp_path):
    """A 12 KiB tmpfs (in a mount namespace that dies with the shell) fills up during a search: one line,
    whole journal lines, and after the file system grows the resumed run equals the uninterrupted one;
    remounted read-only, a query still answers without its cache."""
    import subprocess
    import sys

    disk = tmp_path / "disk"
    if not _can_mount_tmpfs(disk):
        pytest.skip("cannot mount a tmpfs here (needs root and unshare)")
    nastk = f"'{sys.executable}' -m nastk"
    search = f"{nastk} {' '.join(BENCH)} --strategy re --budget 20 --run-dir '{disk}/run'"
    script = f"""
        mount -t tmpfs -o size=12k tmpfs '{disk}' || exit 99
        {search} 2> '{tmp_path}/full.err'; echo $? > '{tmp_path}/full.rc'
        cp '{disk}/run/journal.jsonl' '{tmp_path}/kept.jsonl'; ls -a '{disk}/run' > '{tmp_path}/kept.ls'
        mount -o remount,size=4m '{disk}'
        {search} --resume > /dev/null 2> '{tmp_path}/resume.err' || exit 98
        cp '{disk}/run/journal.jsonl' '{tmp_path}/resumed.jsonl'
        mount -o remount,ro '{disk}'
        NASTK_CACHE='{disk}/cache' {nastk} query --dataset cifar10 --index 5 --format json > '{tmp_path}/query.out' 2> '{tmp_path}/query.err'
        echo $? > '{tmp_path}/query.rc'
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.returncode, done.stderr, (tmp_path / "resume.err").read_text()
                                  if (tmp_path / "resume.err").exists() else "")
    read = lambda name: (tmp_path / name).read_text()
    err = read("full.err")
    assert read("full.rc").strip() == "2" and err.count("\n") == 1, err
    assert f"cannot write {disk / 'run' / 'journal.jsonl'}: no space left on device" in err
    kept = read("kept.jsonl").splitlines(keepends=True)
    assert 0 < len(kept) < 20 and all(line.endswith("\n") for line in kept)
    assert read("kept.ls").split() == [".", "..", ".nastk.lock", "config.json", "journal.jsonl"]
    straight = journal(straight_search)
    assert [(r["step"], r["arch"], r["result"]) for r in map(json.loads, kept)] == straight[:len(kept)]
    assert [(r["step"], r["arch"], r["result"]) for r in map(json.loads, read("resumed.jsonl").splitlines())] == straight
    assert read("query.rc").strip() == "0" and json.loads(read("query.out"))["index"] == 5
    assert read("query.err").count("\n") == 1 and "read-only file system" in read("query.err")
