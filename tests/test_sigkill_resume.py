"""Everything resumes exactly after SIGKILL: a real ``nastk supernet train`` process is killed with SIGKILL at a
chosen point, resumed with ``--resume`` alone (the run folder's saved config), and its final state must equal an
uninterrupted run's bit for bit: every checkpoint (weights, the step's optimizers, heads, EMA target, samplers,
history), BossNAS' block ratings and choice, and every ``metrics.jsonl`` line, each epoch exactly once.

Resume granularity is the trainer's: a checkpoint after every epoch (``checkpoint.pt`` written atomically, then
the epoch's metrics line), every random stream derived from (seed, epoch); a process killed inside an epoch
retrains that epoch from the last checkpoint. A block-wise BossNAS search adds one more point: a block's rating
(``choice.json``) is written once after the block's stage finished, so a kill during rating re-rates from the
stage's checkpoint, and finished blocks and ratings are skipped.

The slow tests run ``python -m nastk`` (each process pays torch's import): the block-wise BossNAS search killed
inside block 1 right after a checkpoint, in the middle of an epoch, and during block 0's rating; the EQ-Net and
QuantNAS steps killed after a checkpoint and mid-epoch. The fast one (default run) kills a single BossNAS block
stage in a child forked from the test process, so a real SIGKILL costs no interpreter start.
"""
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

#: what differs between two identical runs: wall-clock times
TIMING = {"epoch_s", "images_per_s", "train_wall_s", "rating_wall_s"}
#: tiny runs, each a few seconds of training on 2 cores (digits at 4x4 or a C = 4 super-resolution net)
RUNS = {
    "bossnas-blockwise": ["--space", "nats-sss", "--step", "bossnas", "--data", "two_views", "--stages", "blockwise",
                          "--epochs", "2", "--dataset", "digits", "--image-size", "4", "--train-size", "20",
                          "--batch-size", "8", "--paths", "2", "--update-interval", "2", "--adapter-width", "8",
                          "--hidden", "8", "--projection", "8", "--rating-batches", "1", "--rating-batch-size", "4",
                          "--rating-calibration-size", "4"],
    "eqnet": ["--space", "quant:mobilenet", "--step", "eqnet", "--dataset", "digits", "--image-size", "4",
              "--train-size", "64", "--batch-size", "32", "--valid-size", "0", "--no-augment", "--calibration-size", "16",
              "--epochs", "3"],
    "quantnas": ["--space", "sr", "--step", "quantnas", "--data", "image_pairs", "--dataset", "digits", "--C", "4",
                 "--train-size", "32", "--batch-size", "8", "--valid-size", "0", "--no-augment", "--lr", "1e-3",
                 "--arch-warmup-epochs", "0", "--bitops-penalty", "0.1", "--epochs", "3"],
}
#: where a run is killed: (the folder whose metrics.jsonl is watched, its lines before the kill, then wait this
#: share of that epoch's duration); a folder ending in summary.json waits for that file (a finished stage)
KILLS = {
    "bossnas-blockwise": {"block1-after-checkpoint": ("stage1-block1", 1, 0.0),
                          "block1-mid-epoch": ("stage1-block1", 1, 0.5),
                          "block0-rating": ("stage0-block0/summary.json", 0, 0.0)},
    "eqnet": {"after-checkpoint": (".", 1, 0.0), "mid-epoch": (".", 1, 0.5)},
    "quantnas": {"after-checkpoint": (".", 1, 0.0), "mid-epoch": (".", 1, 0.5)},
}
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "NASTK_TENSORBOARD": "0"}


def _command(run_dir: Path, *flags: str):
    return [sys.executable, "-m", "nastk", "supernet", "train", *flags, "--run-dir", str(run_dir), "--no-progress",
            "--format", "json"]


def _metrics(path: Path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def _reached(run_dir: Path, where: str, lines: int) -> bool:
    if where.endswith(".json"):
        return (run_dir / where).is_file()
    return len(_metrics(run_dir / where / "metrics.jsonl")) >= lines


def _kill_when(process_alive, pid: int, run_dir: Path, kill, timeout: float = 300.0) -> None:
    """SIGKILL ``pid`` once the kill point is reached (fails if the run ended or stalled first)."""
    where, lines, share = kill
    deadline = time.time() + timeout
    while not _reached(run_dir, where, lines):
        assert process_alive(), "the run ended before its kill point"
        assert time.time() < deadline, "the run never reached its kill point"
        time.sleep(0.01)
    if share:
        last = _metrics(run_dir / where / "metrics.jsonl")[-1]
        time.sleep(share * last["epoch_s"])
    os.kill(pid, signal.SIGKILL)


def _files(run_dir: Path):
    return sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file() and p.name != ".lock")


def _same(a, b, where: str = "") -> None:
    """``a`` equals ``b`` exactly (tensors bit for bit), wall-clock times left out."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b) or (a.is_floating_point() and torch.equal(a.isnan(), b.isnan())
                                     and torch.equal(a.nan_to_num(), b.nan_to_num())), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys {sorted(set(a) ^ set(b))}"
        for key in a:
            if key not in TIMING:
                _same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{where}: lengths {len(a)} vs {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and a != a:
        assert isinstance(b, float) and b != b, where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_same_run(resumed: Path, straight: Path) -> None:
    """The killed-and-resumed run folder ends exactly as the uninterrupted one."""
    files = _files(straight)
    assert _files(resumed) == files
    for name in files:
        left, right = resumed / name, straight / name
        if name.endswith(".pt"):
            _same(torch.load(left, weights_only=True), torch.load(right, weights_only=True), name)
        elif name.endswith("metrics.jsonl"):
            lines = _metrics(left)
            assert [r["epoch"] for r in lines] == list(range(len(lines))), f"{name}: an epoch duplicated or lost"
            _same(lines, _metrics(right), name)
        elif name.endswith("summary.json") and name.count("/") == 0:  # the run's own: where it resumed from differs
            a, b = (json.loads(p.read_text()) for p in (left, right))
            for summary in (a, b):
                summary.pop("resumed_from_epoch", None)
                summary.pop("run_dir", None)
            _same(a, b, name)
        elif name.endswith(".json"):
            _same(json.loads(left.read_text()), json.loads(right.read_text()), name)


@pytest.fixture(scope="module")
def straight_runs(tmp_path_factory):
    """Each setting's uninterrupted run, made once (folder, printed summary)."""
    made = {}

    def get(name):
        if name not in made:
            folder = tmp_path_factory.mktemp("straight") / name
            done = subprocess.run(_command(folder, *RUNS[name]), env=ENV, capture_output=True, text=True)
            assert done.returncode == 0, done.stderr[-3000:]
            made[name] = folder, json.loads(done.stdout)
        return made[name]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("name, point", [(name, point) for name, kills in KILLS.items() for point in kills])
def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path, straight_runs, name, point):
    folder, log = tmp_path / "killed", tmp_path / "killed.log"
    with open(log, "wb") as stderr:  # a file, not a pipe: a full pipe would stall the run before its kill point
        process = subprocess.Popen(_command(folder, *RUNS[name]), env=ENV, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            _kill_when(lambda: process.poll() is None, process.pid, folder, KILLS[name][point])
        finally:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL, log.read_text()[-2000:]
    assert not (folder / "summary.json").is_file(), "killed after the run had finished"
    if point == "block0-rating":
        assert not (folder / "stage0-block0" / "choice.json").is_file(), "killed after the rating was written"
    resumed = subprocess.run(_command(folder, "--resume"), env=ENV, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    straight, printed = straight_runs(name)
    assert_same_run(folder, straight)
    out = json.loads(resumed.stdout)
    if name == "bossnas-blockwise":
        assert out["arch"] == printed["arch"] and out["ratings"] == printed["ratings"]
        assert [len(r) for r in out["ratings"]] == [64, 64, 8]
    else:
        assert out["final_train_loss"] == printed["final_train_loss"] and out["resumed_from_epoch"] >= 1


# --- the fast variant: the test process forks, so the killed run starts in no time -----------------------------
FAST = ["--space", "nats-sss", "--step", "bossnas", "--data", "two_views", "--block", "0", "--epochs", "2",
        "--dataset", "digits", "--image-size", "4", "--train-size", "24", "--batch-size", "8", "--paths", "2",
        "--update-interval", "2", "--adapter-width", "8", "--hidden", "8", "--projection", "8", "--valid-size", "0"]


def _cli(argv) -> None:  # the forked child: the CLI, then out without the parent's pytest teardown
    from nastk.cli import main

    os._exit(main(argv))


@pytest.fixture(scope="module")
def warm_imports():
    """What a run imports on first use (scikit-learn for digits, torch._dynamo for the first optimizer): a few
    seconds once per test session, paid here instead of in both the forked child and the resumed run."""
    import torch._dynamo  # noqa: F401
    from nastk.datasets import load_dataset

    load_dataset("digits")


def test_sigkilled_bossnas_block_resumes_exactly(tmp_path, monkeypatch, capsys, one_torch_thread, warm_imports):
    """The step's whole state (online and EMA target networks, heads, LARS, fair sampler, mid-accumulation
    counters) survives a SIGKILL right after a checkpoint: killed, resumed, equal to an uninterrupted run."""
    from nastk.cli import main

    monkeypatch.setenv("NASTK_TENSORBOARD", "0")
    argv = ["supernet", "train", *FAST, "--no-progress", "--format", "json", "--run-dir"]
    child = multiprocessing.get_context("fork").Process(target=_cli, args=(argv + [str(tmp_path / "killed")],))
    child.start()
    try:
        _kill_when(child.is_alive, child.pid, tmp_path / "killed", (".", 1, 0.0), timeout=60)
    finally:
        child.join(timeout=30)
    assert child.exitcode == -signal.SIGKILL
    assert not (tmp_path / "killed" / "summary.json").is_file()
    assert main(argv + [str(tmp_path / "killed"), "--resume"]) == 0
    resumed = json.loads(capsys.readouterr().out)
    assert main(argv + [str(tmp_path / "straight")]) == 0
    straight = json.loads(capsys.readouterr().out)
    assert resumed["resumed_from_epoch"] >= 1 and resumed["final_train_loss"] == straight["final_train_loss"]
    assert_same_run(tmp_path / "killed", tmp_path / "straight")
