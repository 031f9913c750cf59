"""One reader for JSON/YAML (configs, run folders, journals) with limits on size, depth and alias expansion,
and one loader for ``.npz`` image sets that checks the archive, keys, dtypes, shapes and labels before use
(:mod:`nastk.readers`). Every probe of the issue: exit status 2, one line on stderr, nothing written."""
import dataclasses
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from nastk.errors import ArchitectureError, ConfigError, CorruptDataError, RunError
from nastk.readers import (MAX_DEPTH, Unreadable, loads, read_image_set, read_json, read_yaml, yaml_loads)
from cli_run import run_cli  # tests/ is on sys.path under pytest

SHARED_IMAGES = "images/cifar10_subset_5k1k.npz"
SEARCH = ["search", "--benchmark", "nb201", "--dataset", "cifar10", "--strategy", "random", "--no-progress"]
TRAIN = ["supernet", "train", "--epochs", "1", "--batch-size", "8", "--valid-size", "4", "--no-progress"]

# a "billion laughs" config: ten levels of ten aliases each, 10**10 strings once expanded
BOMB = "\n".join(['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
                 + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]
                 + ["budget: *a9"]) + "\n"


def one_line_refusal(code, err, *fragments):
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("nastk: error:") and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err


def files_under(folder: Path):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def image_set(path, x_train=None, y_train=None, **extra):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (16, 8, 8, 3), dtype=np.uint8)
    y = np.arange(16) % 4
    arrays = {"x_train": x if x_train is None else x_train, "y_train": y if y_train is None else y_train,
              "x_test": x[:8], "y_test": y[:8], **extra}
    np.savez(path, **{k: v for k, v in arrays.items() if v is not False})
    return path


# --- the readers' limits ---------------------------------------------------------------------------
def test_json_limits_depth_size_and_encoding(tmp_path):
    assert loads(b'{"a": [1, {"b": null}]}') == {"a": [1, {"b": None}]}
    for text, fragment in [("[" * 5000 + "]" * 5000, "nests more than"),
                           ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), "nests more than"),
                           (b"\xff\xfe{}", "not UTF-8"), ('{"a": 1', "not valid JSON"), ("9" * 5000, "not valid JSON")]:
        with pytest.raises(Unreadable, match=fragment):
            loads(text)
    assert loads("[" * MAX_DEPTH + "]" * MAX_DEPTH) is not None
    with pytest.raises(Unreadable, match="larger than"):
        loads(b"1" * 100, max_bytes=10)
    big = tmp_path / "big.json"
    big.write_text('{"a": "' + "x" * 2000 + '"}')
    with pytest.raises(RunError, match="larger than 1 KiB"):
        read_json(big, "run summary", RunError, max_bytes=1024)
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        read_json(tmp_path / "list.json", "run config")
    with pytest.raises(ConfigError, match="is a directory"):
        read_json(tmp_path, "run config")


@pytest.mark.parametrize("text, fragment", [
    (BOMB, "expands (through its aliases)"),
    ("budget: &x [1, *x]\n", "refers to a mapping or list containing it"),
    ("budget: " + "[" * 5000 + "]" * 5000 + "\n", "nests more than"),
    ("\n".join(["k0: &k0 [1]"] + [f"k{i}: &k{i} [*k{i - 1}]" for i in range(1, 100)]) + "\n", "through its aliases"),
    ("budget: " + "9" * 6000 + "\n", "not valid YAML"),
    ("budget: 2001-02-30\n", "not valid YAML"),
    ("budget: !!python/object/apply:os.system [echo hi]\n", "not valid YAML"),
])
def test_yaml_bombs_and_bad_values_are_refused_before_anything_is_built(text, fragment):
    with pytest.raises(Unreadable, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        yaml_loads(text)


def test_yaml_aliases_within_the_bound_still_read():
    data = yaml_loads("common: &c {lr: 0.1, epochs: 2}\nstages: [{name: a, overrides: *c}, {name: b, overrides: *c}]\n")
    assert data["stages"][1]["overrides"] == {"lr": 0.1, "epochs": 2}


def test_a_config_named_json_is_read_as_json(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"lr_min": 1e-05}')  # YAML 1.1 would read 1e-05 as the string "1e-05"
    assert read_yaml(path)["lr_min"] == 1e-05


def test_the_yaml_bomb_stays_far_below_a_gigabyte(tmp_path):
    """Peak memory of a process that reads the bomb (it reached 3.6 GB before the bound)."""
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    # VmHWM is this process's own peak; getrusage's ru_maxrss also carries the peak of the process that
    # forked it across exec (a large pytest worker would inflate it)
    code = textwrap.dedent(f"""
        from nastk.errors import ConfigError
        from nastk.readers import read_yaml
        try:
            read_yaml({str(path)!r})
        except ConfigError as error:
            peak = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM"))
            print(peak, error)
        """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    peak_kib, message = done.stdout.split(" ", 1)
    assert "expands (through its aliases)" in message
    assert int(peak_kib) < 200 * 1024, f"peak {int(peak_kib) / 1024:.0f} MiB"


# --- resource bombs through the CLI ----------------------------------------------------------------
def test_a_yaml_bomb_config_is_one_line_and_writes_nothing(capsys, nastk_data, tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    for argv in (SEARCH + ["--config", str(path), "--run-dir", str(tmp_path / "run")],
                 TRAIN + ["--config", str(path), "--run-dir", str(tmp_path / "run")]):
        one_line_refusal(*run_cli(capsys, argv)[::2], "expands (through its aliases)")
    assert not (tmp_path / "run").exists()


def test_a_darts_concat_range_is_bounded_before_it_is_expanded(capsys, nastk_data):
    from nastk.space import get_space

    normal = ("[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
              "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)]")
    genotype = f"Genotype(normal={normal}, normal_concat=range(2, 100000000000000), reduce={normal}, reduce_concat=[2, 3, 4, 5])"
    code, _, err = run_cli(capsys, "query", "--space", "darts", "--arch", genotype)
    one_line_refusal(code, err, "normal_concat range(2, 100000000000000)", "at most")
    space = get_space("darts")
    good = space.genotype(space.from_str(genotype.replace("range(2, 100000000000000)", "range(2, 6)")))
    with pytest.raises(ArchitectureError, match=r"\[2, 3, 4, 5, 6, \.\.\.\]"):
        space.from_genotype(dataclasses.replace(good, normal_concat=range(2, 10 ** 14)))


# --- corrupt or wrong data files -------------------------------------------------------------------
@pytest.fixture
def damaged_data_root(nastk_data, tmp_path, monkeypatch):
    """A data folder like NASTK_DATA whose shared image archive is the one given (damaged by the test)."""
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    for entry in nastk_data.iterdir():
        if entry.name != "images":
            (root / entry.name).symlink_to(entry)
    monkeypatch.setenv("NASTK_DATA", str(root))
    original = (nastk_data / SHARED_IMAGES).read_bytes()

    def damage(edit):
        (root / SHARED_IMAGES).write_bytes(edit(original))
        return root / SHARED_IMAGES
    return damage


def _flip(data: bytes, at: int) -> bytes:
    flipped = bytearray(data)
    flipped[at] ^= 0xFF
    return bytes(flipped)


def test_a_truncated_or_bit_flipped_shared_archive_is_one_line(capsys, damaged_data_root, tmp_path):
    for edit in (lambda data: data[:len(data) // 2], lambda data: _flip(data, len(data) // 3)):
        damaged_data_root(edit)
        code, _, err = run_cli(capsys, TRAIN + ["--train-size", "16", "--run-dir", str(tmp_path / "run")])
        one_line_refusal(code, err, SHARED_IMAGES)
        code, _, err = run_cli(capsys, "proxies", "correlate", "--sample", "2", "--proxies", "synflow", "--no-progress")
        one_line_refusal(code, err, SHARED_IMAGES)
    assert not (tmp_path / "run").exists()


def test_the_archive_checks_behind_the_checksum(damaged_data_root):
    """The loader itself (what a user's --dataset file gets): zip structure and CRC, named in one line."""
    for edit, fragment in [(lambda data: data[:len(data) // 2], "BadZipFile"),
                           (lambda data: _flip(data, len(data) // 3), "Bad CRC-32"),
                           (lambda data: b"PK" + bytes(100), "damaged")]:
        with pytest.raises(CorruptDataError, match=fragment):
            read_image_set(damaged_data_root(edit))


@pytest.mark.parametrize("arrays, fragment", [
    (dict(x_train=np.array([{"a": 1}] * 16, dtype=object)), "holds Python objects in 'x_train'"),
    (dict(x_train=False), "lacks x_train"),
    (dict(x_train=np.zeros((16, 8, 8), np.uint8)), "x_train has shape (16, 8, 8)"),
    (dict(x_train=np.zeros((16, 8, 8, 3), np.float32)), "x_train holds float32"),
    (dict(y_train=np.r_[np.arange(14) % 4, 57, -3]), "label -3 outside 0..57"),
    (dict(y_train=np.r_[np.arange(15) % 4, 57]), "some of the classes 0..57 have none"),
    (dict(y_train=np.arange(16) % 4 * 1.0), "not integer labels"),
    (dict(y_train=np.arange(15) % 4), "y_train has shape (15,) for 16 images"),
    (dict(y_train=np.r_[np.arange(15) % 4, 12], class_names=np.array(list("abcdefghij"))), "label 12 outside 0..9"),
])
def test_a_wrong_dataset_file_is_one_line_and_writes_nothing(capsys, tmp_path, arrays, fragment):
    path = image_set(tmp_path / "data.npz", **arrays)
    code, _, err = run_cli(capsys, TRAIN + ["--dataset", str(path), "--run-dir", str(tmp_path / "run")])
    one_line_refusal(code, err, fragment)
    assert not (tmp_path / "run").exists()


def test_a_dataset_file_with_named_classes_may_leave_some_empty(tmp_path):
    path = image_set(tmp_path / "data.npz", class_names=np.array(list("abcdefghij")))
    assert read_image_set(path).num_classes == 10
    assert read_image_set(image_set(tmp_path / "plain.npz")).num_classes == 4


def test_a_header_claiming_more_data_than_stored_is_refused_before_reading(tmp_path):
    import io
    import zipfile

    path = image_set(tmp_path / "data.npz", x_test=False)
    header = io.BytesIO()  # a well-formed member (its CRC right) whose header claims 10**12 images
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False,
                                                  "shape": (10 ** 12, 8, 8, 3)})
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("x_test.npy", header.getvalue() + bytes(8 * 8 * 8 * 3))
    with pytest.raises(CorruptDataError, match="claims shape"):
        read_image_set(path)


# --- damaged run configs ---------------------------------------------------------------------------
def test_a_supernet_run_config_that_is_not_json_is_one_line(capsys, tmp_path):
    data = image_set(tmp_path / "data.npz")
    run = tmp_path / "run"
    assert run_cli(capsys, TRAIN + ["--dataset", str(data), "--run-dir", str(run)])[0] == 0
    for text, fragment in [('{"space": "nb201", oops', "is not valid JSON"), ("space: nb201\n", "is not valid JSON"),
                           ('{"epochs": "2"}', "option epochs"), ("[" * 3000 + "]" * 3000, "nests more than")]:
        (run / "config.json").write_text(text)
        before = {p: p.read_bytes() for p in run.iterdir() if p.is_file()}
        code, _, err = run_cli(capsys, TRAIN + ["--resume", "--epochs", "2", "--dataset", str(data), "--run-dir", str(run)])
        one_line_refusal(code, err, "run config", fragment)
        assert {p: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_a_search_run_config_value_of_the_wrong_type_is_one_line(capsys, nastk_data, tmp_path):
    run = tmp_path / "run"
    assert run_cli(capsys, SEARCH + ["--budget", "3", "--run-dir", str(run)])[0] == 0
    config = json.loads((run / "config.json").read_text())
    for key, value, fragment in [("budget", "3", "option budget in run config"),
                                 ("seed", [0], "option seed in run config")]:
        (run / "config.json").write_text(json.dumps({**config, key: value}))
        before = files_under(run), (run / "journal.jsonl").read_bytes()
        code, _, err = run_cli(capsys, SEARCH + ["--resume", "--budget", "4", "--run-dir", str(run)])
        one_line_refusal(code, err, fragment)
        assert (files_under(run), (run / "journal.jsonl").read_bytes()) == before


# --- journals --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def search_runs(tmp_path_factory, nastk_data):
    """Four finished 6-evaluation runs, made once; tests damage copies."""
    from nastk.cli import main

    root = tmp_path_factory.mktemp("runs")
    for seed in range(4):
        assert main(SEARCH + ["--budget", "6", "--seed", str(seed), "--format", "json",
                              "--run-dir", str(root / f"r{seed}")]) == 0
    return root


def _copy(search_runs, tmp_path, names=("r0", "r1", "r2", "r3")):
    import shutil

    for name in names:
        shutil.copytree(search_runs / name, tmp_path / "runs" / name)
    return tmp_path / "runs"


def _edit_line(run: Path, number: int, edit) -> None:
    lines = (run / "journal.jsonl").read_text().splitlines()
    record = json.loads(lines[number - 1])
    edit(record)
    lines[number - 1] = json.dumps(record)
    (run / "journal.jsonl").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("line, edit, fragment", [
    (3, lambda r: r["result"].update(cost_s=-1e9), "line 3 is not an evaluation record of this run: result cost_s"),
    (2, lambda r: r["result"].update(cost_s=float("inf")), "line 2 is not an evaluation record of this run: result cost_s"),
    (4, lambda r: r["result"]["metrics"].update({r["result"]["objective"]: "high"}), "line 4 is not an evaluation record"),
    (5, lambda r: r["result"]["metrics"].update(test_accuracy=[1, 2]), "metric 'test_accuracy'"),
    (2, lambda r: r.update(wall_s=-5), "wall_s -5"),
])
def test_impossible_journal_values_are_refused_on_replay_by_line(capsys, search_runs, tmp_path, line, edit, fragment):
    run = _copy(search_runs, tmp_path, ("r0",)) / "r0"
    _edit_line(run, line, edit)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    code, _, err = run_cli(capsys, SEARCH + ["--resume", "--budget", "8", "--run-dir", str(run)])
    one_line_refusal(code, err, fragment)
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before  # the config's budget is not extended either


def test_runs_show_says_how_many_journal_lines_it_could_not_read(capsys, search_runs, tmp_path):
    run = _copy(search_runs, tmp_path, ("r0",)) / "r0"
    lines = (run / "journal.jsonl").read_text().splitlines()
    lines[2] = lines[2][:25] + "\x00garbage"
    (run / "journal.jsonl").write_text("\n".join(lines) + "\n")
    code, out, err = run_cli(capsys, "runs", "show", "--run-dir", str(run), "--format", "json")
    assert code == 0 and err.count("\n") == 1 and "1 of 6 lines could not be read" in err and "line 3" in err
    shown = json.loads(out)
    assert shown["evaluations"] == 5 and len(shown["unreadable_lines"]) == 1
    code, _, err = run_cli(capsys, SEARCH + ["--resume", "--budget", "8", "--run-dir", str(run)])
    one_line_refusal(code, err, "line 3 is corrupt")


def test_runs_commands_skip_a_damaged_folder_with_one_line_each(capsys, search_runs, tmp_path):
    root = _copy(search_runs, tmp_path)
    (root / "r1" / "summary.json").write_text('{"a": ' + "[" * 5000 + "]" * 5000 + "}")
    (root / "deep").mkdir()
    (root / "deep" / "config.json").write_text("[" * 5000 + "]" * 5000)
    _edit_line(root / "r2", 3, lambda r: r["result"].update(cost_s=-1e9))
    (root / "r3" / "config.json").write_bytes(b"\xff" * 10)
    for argv in (["list", str(root)], ["compare", str(root)], ["plot", str(root), "--out", str(tmp_path / "p.png")]):
        code, out, err = run_cli(capsys, ["runs"] + argv + ["--format", "json"])
        assert code == 0, err
        assert err.count("\n") == 4 and err.count("nastk: skipped:") == 4 and "Traceback" not in err, err
        for fragment in ("deep/config.json nests more than", "r1/summary.json nests more than", "r2/journal.jsonl",
                         "r3/config.json is not UTF-8"):
            assert fragment in err
    assert [row["run"] for row in json.loads(run_cli(capsys, "runs", "list", str(root), "--format", "json")[1])] == [
        str(root / "r0")]
    one_line_refusal(*run_cli(capsys, "runs", "show", str(root / "r1"))[::2], "nests more than")
