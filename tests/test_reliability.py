"""Reliability mechanisms: the run-folder lock, nothing written before validation, typed and ranged
options on every command, cache and table integrity (fault injection by tampering), input parsing."""
import argparse
import gzip
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from nastk.cli import build_parser
from nastk.errors import CorruptDataError
from nastk.options import Value
from nastk.paths import LOCK_FILE
from nastk.run_folder import Run
from plugin_space import PluginSpace
from cli_run import run_cli  # tests/ is on sys.path under pytest

BENCH = ["search", "--benchmark", "nb201", "--dataset", "cifar10", "--strategy", "random", "--budget", "3",
         "--no-progress"]


# --- class 1: one writer per run folder ---------------------------------------------------------------
def test_a_second_writer_of_a_run_folder_is_refused_while_the_first_lives(capsys, nastk_data, tmp_path):
    run_dir = tmp_path / "run"
    assert run_cli(capsys, BENCH + ["--run-dir", str(run_dir)])[0] == 0
    journal = (run_dir / "journal.jsonl").read_text()
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from nastk.paths import lock_folder
        lock_folder({str(run_dir)!r}); print("locked", flush=True); time.sleep(60)""")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        code, _, err = run_cli(capsys, BENCH + ["--run-dir", str(run_dir), "--resume", "--budget", "5"])
        assert code == 2 and "in use by nastk process" in err and err.count("\n") == 1
        assert (run_dir / "journal.jsonl").read_text() == journal  # nothing appended, nothing duplicated
    finally:
        holder.kill()
        holder.communicate()  # waits and closes the pipe
    # the lock died with its process: the resume now runs and extends the run
    assert run_cli(capsys, BENCH + ["--run-dir", str(run_dir), "--resume", "--budget", "5"])[0] == 0
    steps = [json.loads(line)["step"] for line in (run_dir / "journal.jsonl").read_text().splitlines()]
    assert steps == list(range(5))


def test_the_same_folder_twice_in_one_process_shares_the_lock(tmp_path):
    config = {"space": "nb201"}
    first = Run(tmp_path / "run", config)
    second = Run(tmp_path / "run", config, resume=True)  # a resume in the same interpreter is sequential
    first.release()
    second.release()
    assert (tmp_path / "run" / LOCK_FILE).exists()


# --- classes 5 and 6: nothing written before validation; another run's files are refused --------------
@pytest.mark.parametrize("extra", [
    ["--strategy", "ls", "--workers", "2"],  # ls cannot run parallel workers: refused after resolving
    ["--storage", "user:secret@host/db"],    # no scheme
    ["--objective", "nonsense"],
])
def test_a_rejected_run_leaves_no_folder_behind(capsys, nastk_data, tmp_path, extra):
    argv = ["search", "--benchmark", "nb201", "--dataset", "cifar10", "--strategy", "re", "--budget", "3",
            "--no-progress", "--run-dir", str(tmp_path / "run")] + extra
    code, _, err = run_cli(capsys, argv)
    assert code == 2 and err.count("\n") == 1 and "secret" not in err
    assert not (tmp_path / "run").exists()


class EscapingSpace(PluginSpace):
    """A space whose own name would climb out of the run root if it were used as a path."""

    name = "../../escaped"


@pytest.mark.parametrize("argv", [
    ["--space", "test_reliability:EscapingSpace", "--strategy", "random"],  # the space's name is '../../escaped'
    ["--strategy", "../../escaped", "--workers", "2"],                       # refused: unknown strategy
    ["--strategy", "../../escaped", "--storage", "sqlite:///x.db"],
])
def test_default_run_folders_never_escape_the_run_root(capsys, tmp_path, monkeypatch, argv):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    code, _, err = run_cli(capsys, ["search", "--evaluator", "proxy:synflow", "--dataset", "digits", "--C", "4",
                                    "--budget", "2", "--no-progress", "--format", "json"] + argv)
    outside = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if work not in (p, *p.parents))
    assert outside == ["a"]  # nothing beside or above the working folder
    if code == 0:
        (folder,) = (work / "runs").iterdir()
        assert folder.name.startswith("______escaped-random-seed0-")
    else:
        assert code == 2 and err.count("\n") == 1 and not (work / "runs").exists()


def test_numpy_and_torch_values_in_a_result_are_journaled_as_numbers(tmp_path):
    import torch

    from nastk.evaluator import Evaluator, Result
    from nastk.run_folder import run_search
    from nastk.space import get_space
    from nastk.strategy import make_strategy

    class NumpyEvaluator(Evaluator):
        def evaluate(self, arch):
            return Result({"accuracy": np.float32(0.25), "params": np.int64(7), "loss": torch.tensor(1.5)},
                          cost_s=np.float64(2.0), protocol={"sizes": np.arange(2)})

    space = get_space("nb201")
    config = {"space": "nb201", "budget": 2}
    with Run(tmp_path / "run", config) as run:
        outcome = run_search(make_strategy("random", space, seed=0), NumpyEvaluator(), 2, run)
    record = json.loads((tmp_path / "run" / "journal.jsonl").read_text().splitlines()[0])
    assert record["result"]["metrics"] == {"accuracy": 0.25, "params": 7, "loss": 1.5}
    assert record["result"]["protocol"] == {"sizes": [0, 1]} and outcome.total_cost_s == 4.0


@pytest.mark.parametrize("metric", ["0.5x", [0.1, 0.2], np.zeros(3), True])
def test_a_result_with_a_metric_that_is_not_a_number_is_one_clear_error(metric):
    from nastk.errors import EvaluationError
    from nastk.evaluator import Result

    if isinstance(metric, str):  # strings are labels (e.g. an evaluation id), never the objective
        assert np.isnan(Result({"accuracy": metric}).value)
        return
    with pytest.raises(EvaluationError, match="metric 'accuracy' of an evaluation result must be a number"):
        Result({"accuracy": metric})


@pytest.mark.parametrize("resume", [False, True])
def test_a_journal_without_its_config_is_never_replayed(capsys, nastk_data, tmp_path, resume):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "journal.jsonl").write_text('{"step": 0, "arch": "x", "result": {"metrics": {}, "objective": "a", "cost_s": 1}}\n')
    code, _, err = run_cli(capsys, BENCH + ["--run-dir", str(run_dir)] + (["--resume"] if resume else []))
    assert code == 2 and "no config.json" in err
    assert sorted(p.name for p in run_dir.iterdir()) == ["journal.jsonl"]


def test_a_run_folder_that_is_a_file_or_read_only_is_one_line(capsys, nastk_data, tmp_path):
    (tmp_path / "file").write_text("x")
    code, _, err = run_cli(capsys, BENCH + ["--run-dir", str(tmp_path / "file")])
    assert code == 2 and "is not a folder" in err
    if os.geteuid() == 0:
        return  # root writes into read-only folders anyway
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code, _, err = run_cli(capsys, BENCH + ["--run-dir", str(locked / "run")])
        assert code == 2 and err.count("\n") == 1
    finally:
        locked.chmod(0o700)


def test_journal_lines_of_the_wrong_shape_are_refused(capsys, nastk_data, tmp_path):
    run_dir = tmp_path / "run"
    assert run_cli(capsys, BENCH + ["--run-dir", str(run_dir)])[0] == 0
    lines = (run_dir / "journal.jsonl").read_text().splitlines()
    (run_dir / "journal.jsonl").write_text("\n".join([lines[0], "[1, 2]", lines[2]]) + "\n")
    code, _, err = run_cli(capsys, BENCH + ["--run-dir", str(run_dir), "--resume"])
    assert code == 2 and "line 2 is not an evaluation record" in err


# --- class 3: every numeric option is typed and ranged ------------------------------------------------
def _actions(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _actions(sub.populate())  # flags built from plug-in declarations
        else:
            yield parser.prog, action


def test_every_numeric_flag_of_every_command_declares_its_type_and_range():
    loose = [f"{prog} {action.option_strings}" for prog, action in _actions(build_parser())
             if action.type in (int, float)]
    assert not loose, f"flags without a declared range: {loose}"
    ranged = [action for _, action in _actions(build_parser()) if isinstance(action.type, Value)]
    assert len(ranged) >= 50


@pytest.mark.parametrize("argv", [
    ["search", "--seed", "-1"], ["search", "--C", "0"], ["search", "--budget", "1e3"], ["search", "--lr", "nan"],
    ["supernet", "train", "--batch-size", "-3"], ["supernet", "train", "--valid-size", "-5"],
    ["supernet", "train", "--epochs", "0"], ["supernet", "train", "--tau-max", "-1"],
    ["supernet", "train", "--momentum", "1.5"], ["proxies", "correlate", "--sample", "0"],
    ["query", "--index", "-1"], ["reproduce", "nb201", "--jobs", "0"],
])
def test_out_of_range_flags_are_one_line_before_anything_runs(capsys, tmp_path, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, argv)
    assert code == 2 and err.count("\n") == 1 and "must be" in err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("text, fragment", [
    ('budget: "abc"', "option budget in config file"), ("budget: true", "whole number"),
    ('seed: "x"', "option seed"), ("seed: [1, 2]", "option seed"), ("epochs: 2.5", "option epochs"),
    ("lr: -0.1", "option lr"), ("space: {a: 1}", "option space"), ("1: 2", "unknown option"),
])
def test_config_file_values_are_type_and_range_checked(capsys, tmp_path, text, fragment):
    path = tmp_path / "config.yaml"
    path.write_text(text + "\n")
    code, _, err = run_cli(capsys, ["search", "--config", str(path), "--run-dir", str(tmp_path / "run")])
    assert code == 2 and fragment in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_binary_nested_and_directory_config_files_are_one_line(capsys, tmp_path):
    (tmp_path / "binary.yaml").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "nested.yaml").write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    for name in ("binary.yaml", "nested.yaml", "."):
        code, _, err = run_cli(capsys, ["search", "--config", str(tmp_path / name)])
        assert code == 2 and err.count("\n") == 1 and "config file" in err


# --- class 4: caches and tables are verified on load (tampering) --------------------------------------
@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NASTK_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_tampered_nb201_cache_is_detected_and_rebuilt(nastk_data, own_cache):
    from nastk.benchmarks.nb201 import NB201Table, load_table
    from nastk.integrity import write_npz

    good = load_table()
    cache = next(own_cache.glob("nb201-compact-*.npz"))
    column = next(iter(good.columns))
    arrays = dict(np.load(cache))  # alter one value, keep the recorded checksum
    arrays[f"col:{column}"] = arrays[f"col:{column}"].copy()
    arrays[f"col:{column}"][123] += 1.0
    np.savez(cache, **arrays)
    with pytest.raises(CorruptDataError, match="content checksum"):
        NB201Table.load(cache)
    with pytest.raises(CorruptDataError, match="content checksum"):  # a user's own .npz: one clear error
        load_table(str(cache))
    with pytest.warns(UserWarning, match="rebuilding the NB201 cache"):
        rebuilt = load_table()
    assert np.array_equal(rebuilt.columns[column], good.columns[column])
    # half the rows, consistently re-checksummed: the expected row count still catches it
    half = {"codes": good.codes[:100].astype(np.int32), f"col:{column}": good.columns[column][:100]}
    write_npz(cache, half, {"format": 1, "source": "forged"}, 100)
    with pytest.raises(CorruptDataError, match="100 rows, expected 15625"):
        NB201Table.load(cache, rows=15625)
    with pytest.warns(UserWarning, match="rebuilding"):
        assert len(load_table()) == 15625


def test_a_truncated_or_altered_shipped_proxy_table_is_refused(nastk_data, tmp_path, monkeypatch):
    from nastk.benchmarks.proxy_tables import SUITE_ZERO, default_table_path, read_proxy_table

    source = nastk_data / SUITE_ZERO
    copy_root = tmp_path / "data"
    (copy_root / "nb201").mkdir(parents=True)
    with gzip.open(source, "rt") as handle:
        lines = handle.read().splitlines()
    with gzip.open(copy_root / SUITE_ZERO, "wt") as handle:
        handle.write("\n".join(lines[: len(lines) // 2]) + "\n")
    with pytest.raises(CorruptDataError, match="rows, expected 18890"):
        read_proxy_table(copy_root / SUITE_ZERO, dataset="cifar10")
    monkeypatch.setenv("NASTK_DATA", str(copy_root))
    with pytest.raises(CorruptDataError, match="sha256"):
        default_table_path("cifar10")


def test_damaged_proxy_cache_lines_are_dropped_and_recomputed(tmp_path):
    from nastk.evaluators.proxy import ProxyCache

    path = tmp_path / "scores.jsonl"
    cache = ProxyCache(path)
    key = {"space": "nb201", "proxy": "synflow", "arch": "a", "dataset": "cifar10", "batch_size": 64, "seed": 0}
    for arch in ("a", "b", "c"):
        cache.put({**key, "arch": arch, "score": 1.5, "seconds": 0.1})
    cache.flush()
    lines = path.read_text().splitlines()
    lines[0] = lines[0].replace("1.5", "9.5")  # altered value, stale checksum
    lines[1] = lines[1][:20]  # torn line
    path.write_text("\n".join(lines) + "\n")
    with pytest.warns(UserWarning, match="dropped 2"):
        reread = ProxyCache(path)
    assert reread.get(**{**key, "arch": "a"}) is None and reread.get(**{**key, "arch": "b"}) is None
    assert reread.get(**{**key, "arch": "c"})["score"] == 1.5


def test_a_tampered_layerwise_cache_is_refused(tmp_path):
    from nastk.predictors.layerwise_features import LayerwisePool, load_pool, save_pool

    pool = LayerwisePool(np.arange(4), {"snip": np.ones((4, 3))}, np.ones(4), {"seed": 42})
    save_pool(pool, tmp_path / "pool.npz")
    assert len(load_pool(tmp_path / "pool.npz")) == 4
    arrays = dict(np.load(tmp_path / "pool.npz"))
    arrays["stat:snip"] = arrays["stat:snip"][:2]
    np.savez(tmp_path / "pool.npz", **arrays)
    with pytest.raises(CorruptDataError):
        load_pool(tmp_path / "pool.npz")


# --- class 8: parsing and output ------------------------------------------------------------------------
@pytest.mark.parametrize("index", ["٠", "０", "00", "²", " 0"])
def test_nb201_edge_indexes_are_exactly_ascii(index):
    from nastk.errors import ArchitectureError
    from nastk.space import get_space

    text = f"|nor_conv_3x3~{index}|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
    with pytest.raises(ArchitectureError):
        get_space("nb201").from_str(text)


def test_json_output_is_valid_json_even_with_nan(capsys):
    from nastk.commands import print_json

    print_json({"a": float("nan"), "b": np.float32(1.5), "c": [np.inf, 2]})
    assert json.loads(capsys.readouterr().out) == {"a": None, "b": 1.5, "c": [None, 2]}


def test_a_huge_input_is_cut_in_the_error_message(capsys):
    code, _, err = run_cli(capsys, ["query", "--space", "nb201", "--arch", "|" + "x" * 10000 + "|"])
    assert code == 2 and err.count("\n") == 1 and len(err) < 600
