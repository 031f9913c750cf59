"""Plug-in names that resolve to something else, the CLI's last-resort handler, degenerate one-shot sizes,
resumes of nothing or of a changed evaluator, storage URLs and what is checked before anything is written,
and searches of an incomplete benchmark (DARTS' 214 genotypes) within its architectures.

Every refused command here must be exit 2, one line on stderr with its own message (never the last-resort
handler's), and leave nothing behind: no run folder, lock or config.
"""
import json
import shutil
import subprocess
import sys
import textwrap

import pytest

import nastk.cli
from nastk.cli import main
from nastk.errors import PluginError, RunError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BENCH = ["search", "--benchmark", "nb201", "--dataset", "cifar10", "--budget", "2", "--no-progress"]
TINY = ["--dataset", "digits", "--C", "4", "--N", "1", "--train-size", "200", "--epochs", "1", "--no-progress"]


class Reached(list):
    """The exceptions that reached the last-resort handler; ``allowed`` by the one test that wants them."""

    allowed = False


@pytest.fixture(autouse=True)
def no_last_resort(monkeypatch):
    """Fails any test whose command reaches the last-resort handler (unless the test asks for it)."""
    reached = Reached()
    original = nastk.cli.unexpected
    monkeypatch.setattr(nastk.cli, "unexpected", lambda error: reached.append(error) or original(error))
    yield reached
    if not reached.allowed:
        assert not reached, f"reached the last-resort handler: {reached[0]!r}"


def cli(capsys, argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def refused(capsys, argv, fragment, *absent):
    """The command is exit 2 with one stderr line holding ``fragment``; no path of ``absent`` exists."""
    code, _, err = cli(capsys, argv)
    assert code == 2 and err.count("\n") == 1 and fragment in err, err
    assert "unexpected error" not in err and "--debug" not in err
    for path in absent:
        assert not path.exists(), f"{path} was left behind"
    return err


@pytest.fixture(scope="module")
def plugin_modules(tmp_path_factory):
    """Modules a user might name: one with a syntax error, one that raises while importing."""
    folder = tmp_path_factory.mktemp("plugins")
    (folder / "nastk_test_syntax.py").write_text("x = (1,\ndef f():\n    pass\n")
    (folder / "nastk_test_raises.py").write_text("import os\nraise RuntimeError('boom while importing')\n")
    sys.path.insert(0, str(folder))
    yield folder
    sys.path.remove(str(folder))


# --- plug-in names that resolve to something else -----------------------------------------------------
@pytest.mark.parametrize("flags, fragment", [
    (["--strategy", "os:system"], "strategy 'os:system' is the built-in function posix.system, not a Strategy subclass"),
    (["--strategy", "nastk.strategy:STRATEGIES"], "is a Registry object, not a Strategy subclass"),
    (["--space", "os:getcwd"], "not a SearchSpace subclass"),
    (["--space", "nastk.strategies.random_search:RandomSearch"], "is the class nastk.strategies.random_search.RandomSearch, "
                                                                  "not a SearchSpace subclass"),
    (["--strategy", "search_spaces.nb201:NB201Space"], "not a Strategy subclass"),
    (["--strategy", "nastk_test_syntax:Strategy"], "importing nastk_test_syntax failed: SyntaxError"),
    (["--space", "nastk_test_raises:Space"], "importing nastk_test_raises failed: RuntimeError: boom while importing"),
    (["--strategy", "no_such_package_here:Strategy"], "no module named 'no_such_package_here'"),
    (["--strategy", "os:no_such_thing"], "module os has no attribute 'no_such_thing'"),
    (["--objectives", "acc,os:getcwd"], "objective 'os:getcwd' is the built-in function posix.getcwd, not an Objective"),
    (["--evaluator", "proxy:os:getcwd", "--C", "4"], "proxy 'os:getcwd' is the built-in function posix.getcwd, not a ProxySpec"),
])
def test_search_plugin_names_resolving_to_something_else_are_one_line(capsys, nastk_data, tmp_path, plugin_modules,
                                                                     flags, fragment):
    argv = BENCH + ["--run-dir", tmp_path / "run"] + flags
    if flags[1].startswith("proxy:"):
        argv = ["search", "--dataset", "digits", "--budget", "2", "--no-progress", "--run-dir", tmp_path / "run"] + flags
    refused(capsys, argv, fragment, tmp_path / "run")


def test_an_evaluator_kind_of_the_wrong_kind_is_one_line(capsys, nastk_data, tmp_path, monkeypatch):
    from nastk.evaluators import EVALUATORS

    monkeypatch.setitem(EVALUATORS._entries, "bogus", "nastk.strategies.random_search:RandomSearch")
    refused(capsys, BENCH + ["--run-dir", tmp_path / "run", "--evaluator", "bogus"],
            "evaluator 'bogus' is the class nastk.strategies.random_search.RandomSearch, not an Evaluator subclass",
            tmp_path / "run")


@pytest.mark.parametrize("flags, fragment", [
    (["--step", "os:system"], "training step 'os:system' is the built-in function posix.system, not a TrainingStep subclass"),
    (["--step", "search_spaces.nb201:NB201Space"], "not a TrainingStep subclass"),
    (["--sampler", "os:system"], "path sampler 'os:system' is the built-in function posix.system, not a PathSampler subclass"),
    (["--data", "os:system"], "data module 'os:system' is the built-in function posix.system, not a data module class"),
    (["--space", "nastk.strategy:Strategy"], "not a SearchSpace subclass"),
    (["--step", "nastk_test_raises:Step"], "RuntimeError: boom while importing"),
])
def test_supernet_plugin_names_resolving_to_something_else_are_one_line(capsys, tmp_path, plugin_modules, flags, fragment):
    refused(capsys, ["supernet", "train", "--run-dir", tmp_path / "run"] + TINY + flags, fragment, tmp_path / "run")


def test_the_registry_checks_registered_objects_too():
    from nastk.registry import Registry
    from nastk.strategy import Strategy

    registry = Registry("strategy", subclass_of=Strategy)
    registry.register("fn", print)
    with pytest.raises(PluginError, match="is the built-in function builtins.print, not a Strategy subclass"):
        registry.get("fn")


# --- the last-resort handler ------------------------------------------------------------------------
def test_an_unexpected_error_is_one_line_pointing_to_debug_and_debug_prints_the_traceback(
        capsys, monkeypatch, no_last_resort):
    import nastk.commands.query

    def broken(args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(nastk.commands.query, "run", broken)
    no_last_resort.allowed = True
    code, _, err = cli(capsys, ["query", "--arch", "x"])
    assert code == 1 and err.count("\n") == 1
    assert "nastk: unexpected error: ZeroDivisionError: a bug" in err and "rerun with --debug" in err
    code, _, err = cli(capsys, ["query", "--debug", "--arch", "x"])  # the global flag, anywhere
    assert code == 1 and "Traceback (most recent call last)" in err and "ZeroDivisionError: a bug" in err
    code, _, err = cli(capsys, ["--debug", "search", "--space", "os:getcwd", "--no-progress"])
    assert code == 2 and "Traceback" in err and err.splitlines()[-1].startswith("nastk: error: search space")


# --- degenerate one-shot sizes ----------------------------------------------------------------------
@pytest.mark.parametrize("flags", [["--train-size", "1"], ["--held-out-fraction", "0"]])
def test_darts_without_held_out_images_is_refused_before_training(capsys, tmp_path, flags):
    argv = ["supernet", "train", "--step", "darts", "--run-dir", tmp_path / "run"] + TINY + flags
    refused(capsys, argv, "the darts step learns on held-out training images, and this run holds out none",
            tmp_path / "run")


# --- resumes of nothing, of something changed -------------------------------------------------------
@pytest.fixture(scope="module")
def darts_run(tmp_path_factory):
    from nastk.oneshot.trainer import OneShotConfig, train

    folder = tmp_path_factory.mktemp("darts") / "run"
    train(OneShotConfig(space="nb201", step="darts", dataset="digits", supernet={"C": 4, "N": 1}, epochs=1,
                        batch_size=64, train_size=200, held_out_fraction=0.5, valid_size=0), folder, progress=False)
    return folder


def copy_run(source, target):
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".nastk.lock"))
    return target


@pytest.mark.parametrize("argv", [
    BENCH + ["--run-dir", "{tmp}/TYPO", "--resume"],
    ["search", "--run-dir", "{tmp}/TYPO", "--resume", "--no-progress"],
    ["supernet", "train", "--run-dir", "{tmp}/TYPO", "--resume"] + TINY,
])
def test_resuming_a_folder_that_holds_no_run_says_so(capsys, nastk_data, tmp_path, argv):
    argv = [str(a).replace("{tmp}", str(tmp_path)) for a in argv]
    refused(capsys, argv, "nothing to resume", tmp_path / "TYPO")
    (tmp_path / "empty").mkdir()  # an existing folder without a config is nothing to resume either
    refused(capsys, [a.replace("TYPO", "empty") for a in argv], "holds no", tmp_path / "empty" / "config.json")


def test_pt_resume_without_a_selection_and_pt_on_a_run_still_training_are_refused(capsys, darts_run, tmp_path):
    refused(capsys, ["supernet", "select", "--run-dir", darts_run, "--method", "pt", "--resume", "--out",
                     tmp_path / "pt"], "nothing to resume", tmp_path / "pt")
    training = copy_run(darts_run, tmp_path / "training")
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from nastk.paths import lock_folder
        lock_folder({str(training)!r}); print("locked", flush=True); time.sleep(60)""")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        refused(capsys, ["supernet", "select", "--run-dir", training, "--method", "pt", "--no-progress"],
                "is still being trained (nastk process", training / "pt")
    finally:
        holder.kill()
        holder.communicate()  # waits and closes the pipe


def test_resume_without_the_checkpoint_is_refused_instead_of_retraining(capsys, darts_run, tmp_path):
    run = copy_run(darts_run, tmp_path / "run")
    (run / "checkpoint.pt").unlink()
    metrics = (run / "metrics.jsonl").read_text()
    refused(capsys, ["supernet", "train", "--run-dir", run, "--resume", "--no-progress"],
            "checkpoint.pt is missing, though metrics.jsonl records 1 finished epoch(s)", run / "checkpoint.pt")
    assert (run / "metrics.jsonl").read_text() == metrics  # no epoch recorded twice


def test_select_refuses_a_truth_dataset_the_benchmark_lacks(capsys, darts_run, nastk_data):
    refused(capsys, ["supernet", "select", "--run-dir", darts_run, "--truth-dataset", "bogus"],
            "--truth-dataset 'bogus': the nb201 benchmark has results for", darts_run / "selection-argmax.json")


def test_gm_soft_with_the_single_path_step_is_refused_before_training(capsys, tmp_path):
    refused(capsys, ["supernet", "train", "--fewshot", "gm", "--gm-mode", "soft", "--gm-batches", "1", "--epochs", "4",
                     "--dataset", "digits", "--C", "4", "--N", "1", "--train-size", "200", "--no-progress",
                     "--run-dir", tmp_path / "gm"], "soft gradient matching", tmp_path / "gm")


def test_a_replaced_supernet_is_refused_on_resume(capsys, darts_run, tmp_path):
    from nastk.oneshot.trainer import OneShotConfig, train

    supernet = copy_run(darts_run, tmp_path / "supernet")
    search = ["search", "--evaluator", f"supernet:{supernet}", "--strategy", "random", "--budget", "2",
              "--eval-size", "50", "--no-progress", "--run-dir", tmp_path / "search"]
    assert cli(capsys, search)[0] == 0
    fingerprint = json.loads((tmp_path / "search" / "config.json").read_text())["evaluator"]["fingerprint"]
    assert fingerprint.startswith("sha256:")
    other = tmp_path / "other"
    train(OneShotConfig(space="nb201", step="darts", dataset="digits", supernet={"C": 4, "N": 1}, epochs=1,
                        batch_size=64, train_size=200, held_out_fraction=0.5, valid_size=0, seed=1), other,
          progress=False)
    shutil.copy(other / "checkpoint.pt", supernet / "checkpoint.pt")
    journal = (tmp_path / "search" / "journal.jsonl").read_text()
    refused(capsys, ["search", "--run-dir", tmp_path / "search", "--resume", "--budget", "3", "--no-progress"],
            "changed since the run started")
    assert (tmp_path / "search" / "journal.jsonl").read_text() == journal


def test_a_parzc_model_file_is_fingerprinted(tmp_path, capsys):
    from nastk.commands.search import check_same_evaluator
    from nastk.search_config import search_config

    model = tmp_path / "parzc.pt"
    model.write_bytes(b"one model")
    config = search_config(strategy="random", evaluator=f"parzc:{model}", budget=2)
    assert config["evaluator"]["fingerprint"].startswith("sha256:")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(json.dumps(config))
    check_same_evaluator(config, tmp_path / "run")  # the same file: fine
    model.write_bytes(b"another model")
    with pytest.raises(RunError, match="parzc evaluator's .*parzc.pt changed since the run started"):
        check_same_evaluator(search_config(strategy="random", evaluator=f"parzc:{model}", budget=2), tmp_path / "run")


def test_export_refuses_a_finished_run_whose_retrained_weights_are_gone(capsys, tmp_path):
    run = tmp_path / "run"
    assert cli(capsys, ["search", "--budget", "1", "--epochs", "1", "--final-epochs", "1", "--C", "4", "--N", "1",
                        "--run-dir", run, "--no-progress"])[0] == 0
    (run / "winner.pt").unlink()
    refused(capsys, ["export", "--run-dir", run], "winner.pt is missing", run / "model.pt")


# --- checked before anything is written -------------------------------------------------------------
@pytest.mark.parametrize("url", [
    "postgresql://u@127.0.0.1:5999/db?password=SECRET",      # refused, password in the query string
    "postgresql://u:SECRET@127.0.0.1:99999/db",             # a port out of range
    "postgresql://u:SECRET@127.0.0.1:abc/db",               # a port that is no number
    "postgresql://u:SECRET@no-such-host.invalid/db",        # an unknown host
    "nosuchdriverdb://u:SECRET@127.0.0.1/db",               # no such driver
])
def test_a_storage_that_does_not_open_writes_nothing_and_hides_the_password(capsys, nastk_data, tmp_path, url):
    argv = BENCH + ["--strategy", "bo-tpe", "--run-dir", tmp_path / "run", "--storage", url]
    err = refused(capsys, argv, "study storage", tmp_path / "run")
    assert "SECRET" not in err and "***" in err
    refused(capsys, argv, "study storage", tmp_path / "run")  # a rerun says the same, not "already holds a run"


def test_password_redaction():
    from nastk.redaction import hide_password, redact

    assert hide_password("postgresql://u:pw@h/db?sslmode=x&password=SECRET") == \
        "postgresql://u:***@h/db?sslmode=x&password=***"
    assert redact("cannot connect: postgresql://bob:hunter2@host/db failed: password=hunter2.") == \
        "cannot connect: postgresql://bob:***@host/db failed: password=***."
    assert redact("user u with password SECRET refused", ["postgresql://u@h/db?password=SECRET"]) == \
        "user u with password *** refused"


@pytest.fixture
def corrupt_hw_table(nastk_data, tmp_path, monkeypatch):
    from nastk.benchmarks.hw_nas_bench import FILE, default_hw_table

    root = tmp_path / "data"
    for entry in nastk_data.iterdir():
        if entry.name != "nb201":
            (root / entry.name).parent.mkdir(parents=True, exist_ok=True)
            (root / entry.name).symlink_to(entry)
    (root / "nb201").mkdir()
    for entry in (nastk_data / "nb201").iterdir():
        (root / "nb201" / entry.name).symlink_to(entry)
    (root / FILE).unlink()
    (root / FILE).write_bytes(b"not the table")
    monkeypatch.setenv("NASTK_DATA", str(root))
    default_hw_table.cache_clear()
    yield
    default_hw_table.cache_clear()


def test_a_corrupt_hardware_table_is_refused_before_the_run_folder(capsys, corrupt_hw_table, tmp_path):
    refused(capsys, BENCH + ["--objectives", "acc,latency", "--run-dir", tmp_path / "run"],
            "nb201_hw_nas_bench.csv.gz has sha256", tmp_path / "run")


def test_a_tiny_wall_limit_still_makes_one_evaluation(capsys, nastk_data, tmp_path):
    code, _, err = cli(capsys, BENCH + ["--max-wall", "1e-300", "--run-dir", tmp_path / "run", "--format", "json"])
    assert code == 0, err
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["evaluations"] == 1


# --- an incomplete benchmark is searched within its architectures ------------------------------------
DARTS = ["search", "--space", "darts", "--benchmark", "darts", "--dataset", "cifar10", "--objective", "test600",
         "--budget", "14", "--no-progress", "--format", "json"]


@pytest.mark.parametrize("strategy", ["random", "re", "ls", "bo-encoding"])
def test_darts_benchmark_searches_stay_within_its_214_genotypes(capsys, nastk_data, tmp_path, strategy):
    from nastk.benchmarks.registry import benchmark_for

    code, out, err = cli(capsys, DARTS + ["--strategy", strategy, "--run-dir", tmp_path / "run"])
    assert code == 0, err
    pool = {arch.to_str() for arch in benchmark_for("darts").archs()}
    queried = [json.loads(line)["arch"] for line in (tmp_path / "run" / "journal.jsonl").read_text().splitlines()]
    assert len(queried) == 14 and set(queried) <= pool
    assert json.loads(out)["best_arch"] in pool
    if strategy in ("re", "ls"):
        assert len(set(queried)) > 10  # mutations and neighbourhoods move through the pool
    code, out, err = cli(capsys, DARTS + ["--strategy", strategy, "--run-dir", tmp_path / "run", "--resume"])
    assert code == 0 and json.loads(out)["replayed"] == 14, err  # resumes by replay: the same proposals


@pytest.mark.parametrize("strategy", ["bo-tpe", "nsga2"])
def test_darts_benchmark_refuses_strategies_that_cannot_stay_within_it(capsys, nastk_data, tmp_path, strategy):
    refused(capsys, DARTS + ["--strategy", strategy, "--run-dir", tmp_path / "run"],
            "scores only its 214 architectures of space 'darts'", tmp_path / "run")


def test_a_pool_of_the_whole_space_gives_the_spaces_own_neighbours(nb201):
    import numpy as np

    from nastk.pool import ArchPool

    pool = ArchPool(list(nb201.enumerate()))
    arch = nb201.sample(np.random.default_rng(0))
    assert set(pool.neighbors(arch)) == set(nb201.neighbors(arch))
    assert pool.mutate(arch, np.random.default_rng(1)) in set(nb201.neighbors(arch))
