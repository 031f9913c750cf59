"""Property-based fuzzing of the CLI, in process: generated flags, config files, architecture strings and
corrupted run folders, and file-system faults where commands write. Whatever the input, a command exits 0 or 2,
never with a traceback; an error is one line on stderr; ``--format json`` prints valid JSON; a rejected command
leaves no files behind.

The default run generates ``CASES`` cases per property; ``-m slow`` runs the deep variant
(``DEEP_CASES`` each)."""
import json
import os
import string

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from nastk.cli import main
from cli_run import run_cli  # tests/ is on sys.path under pytest
from test_file_faults import DiskFull, read_only  # noqa: F401 (read_only is a fixture, used by name)

CASES, DEEP_CASES = 40, 600
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

nasty_text = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", "../x", "../../etc", "nb201", "re", "random", "bo-tpe", "nsga2", "cifar10", "digits",
                     "valid12", "test200", "cifar10/test/200", "proxy:synflow", "benchmark", "train", "nan", "-1",
                     "\x00", "٣", "1e400", "a" * 5000]),
)
numbers = st.one_of(st.integers(-10, 12), st.integers(-2**70, 2**70), st.sampled_from(["nan", "inf", "-0", "1e3",
                                                                                       "3.5", "٣", "0x10", " 7"]))


@st.composite
def search_argv(draw):
    """``nastk search`` on the NB201 benchmark evaluator (fast) with a random subset of flags."""
    argv = ["search", "--benchmark", "nb201", "--no-progress"]
    flags = {
        "--dataset": st.one_of(st.sampled_from(["cifar10", "cifar100", "ImageNet16-120", "cifar10-valid"]), nasty_text),
        "--strategy": st.one_of(st.sampled_from(["re", "random", "bo-tpe", "nsga2", "robot"]), nasty_text),
        "--budget": st.one_of(st.integers(-2, 4).map(str), numbers.map(str)),
        "--seed": numbers.map(str),
        "--objective": nasty_text,
        "--population-size": numbers.map(str),
        "--sample-size": numbers.map(str),
        "--objectives": st.one_of(st.sampled_from(["acc,params", "acc", "acc,latency", "params"]), nasty_text),
        "--constraint": st.one_of(st.sampled_from(["flops<=60", "params<0.5,latency<10", "flops<<3", "acc>=70",
                                                   "metric:flops_m<=50", "flops<=300e6"]), nasty_text),
        "--workers": st.sampled_from(["0", "-1", "x"]),
        "--storage": nasty_text,
        "--format": st.sampled_from(["json", "text", "xml"]),
    }
    chosen = draw(st.lists(st.sampled_from(sorted(flags)), unique=True, max_size=5))
    if "--dataset" not in chosen and draw(st.booleans()):
        chosen.append("--dataset")
    for flag in chosen:
        argv += [flag, draw(flags[flag])]
    return argv


config_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-5, 10), st.floats(allow_nan=True), nasty_text),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(st.text(max_size=8), children, max_size=3)),
    max_leaves=6)
config_keys = st.one_of(st.sampled_from(["space", "strategy", "budget", "seed", "evaluator", "benchmark", "dataset",
                                         "objective", "epochs", "lr", "C", "population_size", "objectives",
                                         "selection", "workers", "proxies", "constraints"]), st.text(max_size=10))


def arch_strings():
    ops = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]
    valid = st.tuples(*[st.sampled_from(ops)] * 6).map(
        lambda o: f"|{o[0]}~0|+|{o[1]}~0|{o[2]}~1|+|{o[3]}~0|{o[4]}~1|{o[5]}~2|")
    mutated = st.tuples(valid, st.integers(0, 60), st.text(alphabet=string.printable + "~|+٠０", max_size=4)).map(
        lambda t: t[0][:t[1]] + t[2] + t[0][t[1] + len(t[2]):])
    return st.one_of(valid, mutated, st.text(max_size=80))


def check(capsys, argv, run_dir=None, existed=None):
    """Run one command; assert the reliability contract; returns the exit status."""
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    # any other exception propagates: hypothesis reports it (with the argv) as the traceback it is
    out, err = capsys.readouterr()
    assert code in (0, 2), (argv, code, err)
    assert "Traceback" not in err
    if code == 2:
        assert err.count("\n") == 1 and err.startswith(("nastk: error:", "usage:")), (argv, err)
        if run_dir is not None and not existed:
            assert not os.path.exists(run_dir), (argv, "a rejected command left its run folder")
    elif "--format" in argv and argv[argv.index("--format") + 1] == "json":
        json.loads(out, parse_constant=lambda name: pytest.fail(f"{name} in JSON output of {argv}"))
    return code


def _search(capsys, tmp_path_factory, argv):
    run_dir = str(tmp_path_factory.mktemp("fuzz") / "run")
    check(capsys, argv + ["--run-dir", run_dir], run_dir, existed=False)


def _config(capsys, tmp_path_factory, mapping):
    folder = tmp_path_factory.mktemp("fuzzcfg")
    import yaml

    path = folder / "config.yaml"
    try:
        path.write_text(yaml.safe_dump(mapping, allow_unicode=True))
    except (yaml.YAMLError, UnicodeEncodeError):
        return
    run_dir = str(folder / "run")
    check(capsys, ["search", "--config", str(path), "--benchmark", "nb201", "--no-progress", "--budget", "2",
                   "--run-dir", run_dir], run_dir, existed=False)


def _corrupt(capsys, tmp_path_factory, target, position, garbage):
    folder = tmp_path_factory.mktemp("fuzzrun")
    run_dir = folder / "run"
    base = ["search", "--benchmark", "nb201", "--dataset", "cifar10", "--strategy", "random", "--budget", "3",
            "--no-progress", "--run-dir", str(run_dir)]
    assert check(capsys, base) == 0
    path = run_dir / target
    data = path.read_bytes()
    position = position % (len(data) + 1)
    path.write_bytes(data[:position] + garbage + data[position + len(garbage):])
    check(capsys, base + ["--resume", "--budget", "4"], str(run_dir), existed=True)


@settings(max_examples=CASES, **SETTINGS)
@given(argv=search_argv())
def test_fuzz_search_flags(capsys, nastk_data, tmp_path_factory, argv):
    _search(capsys, tmp_path_factory, argv)


@settings(max_examples=CASES, **SETTINGS)
@given(mapping=st.dictionaries(config_keys, config_values, max_size=5))
def test_fuzz_config_files(capsys, nastk_data, tmp_path_factory, mapping):
    _config(capsys, tmp_path_factory, mapping)


@settings(max_examples=CASES, **SETTINGS)
@given(arch=arch_strings(), fmt=st.sampled_from(["json", "text"]), dataset=st.sampled_from(["cifar10", "cifar100", "x"]))
def test_fuzz_architecture_strings(capsys, nastk_data, arch, fmt, dataset):
    check(capsys, ["query", "--space", "nb201", "--dataset", dataset, "--arch", arch, "--format", fmt])


@settings(max_examples=CASES // 2, **SETTINGS)
@given(target=st.sampled_from(["journal.jsonl", "config.json"]), position=st.integers(0, 10**6),
       garbage=st.binary(min_size=1, max_size=12))
def test_fuzz_corrupted_run_folders(capsys, nastk_data, tmp_path_factory, target, position, garbage):
    _corrupt(capsys, tmp_path_factory, target, position, garbage)


# --- deep variants (-m slow) ------------------------------------------------------------------------------
@pytest.mark.slow
@settings(max_examples=DEEP_CASES, **SETTINGS)
@given(argv=search_argv())
def test_fuzz_search_flags_deep(capsys, nastk_data, tmp_path_factory, argv):
    _search(capsys, tmp_path_factory, argv)


@pytest.mark.slow
@settings(max_examples=DEEP_CASES, **SETTINGS)
@given(mapping=st.dictionaries(config_keys, config_values, max_size=6))
def test_fuzz_config_files_deep(capsys, nastk_data, tmp_path_factory, mapping):
    _config(capsys, tmp_path_factory, mapping)


@pytest.mark.slow
@settings(max_examples=DEEP_CASES, **SETTINGS)
@given(target=st.sampled_from(["journal.jsonl", "config.json"]), position=st.integers(0, 10**6),
       garbage=st.binary(min_size=1, max_size=40))
def test_fuzz_corrupted_run_folders_deep(capsys, nastk_data, tmp_path_factory, target, position, garbage):
    _corrupt(capsys, tmp_path_factory, target, position, garbage)


# --- nested and aliased configs, corrupt archives, nested run folders (nastk.readers) -------------------
YAML_SCALARS = st.sampled_from(["1", "2", "0", "-1", "null", ".nan", "1e400", "re", "cifar10", "'lol'", "acc,params",
                                "'" + "a" * 300 + "'", "true", "2001-02-30", "9" * 5000, "!!binary aGk="])
KNOWN_KEYS = ["budget", "seed", "strategy", "dataset", "objective", "objectives", "constraints", "population_size",
              "sample_size", "epochs", "lr", "stages"]


@st.composite
def aliased_yaml(draw):
    """A YAML config whose values alias one another level by level (fan-out up to 12 over up to 10 levels:
    up to 12**10 values once expanded, the "billion laughs"), with merges, self-references and deep nesting."""
    bomb = draw(st.booleans())  # every level aliases the one before, many times: most expand past the bound
    levels, lines = draw(st.integers(6, 12) if bomb else st.integers(1, 10)), []
    for level in range(levels):
        key = draw(st.sampled_from(KNOWN_KEYS + [f"x{level}"]))
        if level == 0:
            value = "[" + ", ".join(draw(st.lists(YAML_SCALARS, min_size=1, max_size=10))) + "]"
            value = draw(st.sampled_from([value, draw(YAML_SCALARS), "{a: 1, b: [1, 2]}"]))
        else:
            previous = st.just(level - 1) if bomb else st.one_of(st.just(level - 1), st.integers(0, level - 1))
            refs = [f"*a{draw(previous)}" for _ in range(draw(st.integers(6 if bomb else 1, 12)))]
            value = draw(st.sampled_from(["[" + ", ".join(refs) + "]",
                                          "{" + ", ".join(f"k{i}: {r}" for i, r in enumerate(refs)) + "}",
                                          "{<<: " + refs[0] + ", k: 1}"]))
        lines.append(f"{key}: &a{level} {value}")
    if draw(st.booleans()):
        lines.append(draw(st.sampled_from(["xs: &s [1, *s]", "xs: &s {a: *s}", "xs: *undefined"])))
    depth = draw(st.one_of(st.integers(0, 4), st.integers(0, 300)))
    lines.append(f"{draw(st.sampled_from(KNOWN_KEYS))}: " + "[" * depth + f"*a{levels - 1}" + "]" * depth)
    return "\n".join(lines) + "\n"


def _aliased(capsys, tmp_path_factory, text):
    from nastk.readers import MAX_YAML_EXPANSION, Unreadable, yaml_loads

    try:  # what the reader lets through is bounded once expanded
        data = yaml_loads(text)
    except Unreadable as reason:
        event(f"reader refuses: {str(reason).split(' (')[0].split(':')[0][:40]}")
    else:
        event("reader accepts")
        assert len(json.dumps(data, default=str)) < 16 * MAX_YAML_EXPANSION
    folder = tmp_path_factory.mktemp("fuzzalias")
    (folder / "config.yaml").write_text(text)
    run_dir = str(folder / "run")
    check(capsys, ["search", "--config", str(folder / "config.yaml"), "--benchmark", "nb201", "--no-progress",
                   "--budget", "2", "--run-dir", run_dir], run_dir, existed=False)


def _tiny_archive(compressed: bool) -> bytes:
    import io

    import numpy as np

    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 255, (16, 8, 8, 3), dtype=np.uint8), np.arange(16) % 4
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, x_train=x, y_train=y, x_test=x[:8], y_test=y[:8])
    return buffer.getvalue()


ARCHIVES = {compressed: _tiny_archive(compressed) for compressed in (False, True)}


@st.composite
def damaged_archives(draw):
    """A small valid image archive, truncated, bit-flipped or overwritten with garbage somewhere."""
    data = bytearray(ARCHIVES[draw(st.booleans())])
    kind = draw(st.sampled_from(["truncate", "flip", "garbage"]))
    if kind == "truncate":
        return bytes(data[:draw(st.integers(0, len(data) - 1))])
    if kind == "flip":
        for position in draw(st.lists(st.integers(0, len(data) - 1), min_size=1, max_size=4)):
            data[position] ^= 1 << draw(st.integers(0, 7))
        return bytes(data)
    position, garbage = draw(st.integers(0, len(data))), draw(st.binary(min_size=1, max_size=16))
    return bytes(data[:position] + garbage + data[position + len(garbage):])


def _archive(capsys, tmp_path_factory, data):
    from nastk.errors import CorruptDataError
    from nastk.readers import read_image_set

    folder = tmp_path_factory.mktemp("fuzznpz")
    path = folder / "images.npz"
    path.write_bytes(data)
    try:  # the loader refuses it in one line, or what it returns holds what it promises
        images = read_image_set(path)
    except CorruptDataError as error:
        event("archive refused: " + ("damaged" if " is damaged (" in str(error) else "checks"))
        assert "\n" not in str(error)
    else:
        event("archive reads (the damage missed what is read): trains")
        assert images.x_train.dtype.name == "uint8" and images.x_train.ndim == 4 and images.x_train.shape[3] == 3
        assert 0 <= images.y_train.min() and images.y_train.max() < images.num_classes
    run_dir = str(folder / "run")
    check(capsys, ["supernet", "train", "--dataset", str(path), "--epochs", "1", "--batch-size", "8",
                   "--valid-size", "4", "--no-progress", "--run-dir", run_dir], run_dir, existed=False)


def nested_json(draw_depth):
    return st.tuples(draw_depth, st.sampled_from(["[", "{\"a\": "])).map(
        lambda t: (t[1] * t[0] + "1" + ("]" if t[1] == "[" else "}") * t[0]))


_BASE_RUN = {}


def _base_run(capsys, tmp_path_factory):
    """A finished 3-evaluation search, made once per session (read, never written, by the properties)."""
    if "run" not in _BASE_RUN:
        base = tmp_path_factory.mktemp("fuzzbase") / "run"
        assert check(capsys, ["search", "--benchmark", "nb201", "--dataset", "cifar10", "--strategy", "random",
                              "--budget", "3", "--no-progress", "--run-dir", str(base)]) == 0
        _BASE_RUN["run"] = base
    return _BASE_RUN["run"]


def _nested_run_folder(capsys, tmp_path_factory, target, text):
    import shutil

    root = tmp_path_factory.mktemp("fuzznest")
    run_dir = root / "run"
    shutil.copytree(_base_run(capsys, tmp_path_factory), run_dir)
    if target == "journal.jsonl":
        lines = (run_dir / target).read_text().splitlines()
        lines[1] = text
        text = "\n".join(lines) + "\n"
    (run_dir / target).write_text(text)
    for argv in (["runs", "list", str(root), "--format", "json"], ["runs", "show", "--run-dir", str(run_dir)],
                 ["runs", "compare", str(root)]):
        check(capsys, argv)
    check(capsys, ["search", "--benchmark", "nb201", "--dataset", "cifar10", "--strategy", "random", "--budget", "4",
                   "--no-progress", "--resume", "--run-dir", str(run_dir)], str(run_dir), existed=True)


@settings(max_examples=CASES, **SETTINGS)
@given(text=aliased_yaml())
def test_fuzz_nested_and_aliased_configs(capsys, nastk_data, tmp_path_factory, text):
    _aliased(capsys, tmp_path_factory, text)


@settings(max_examples=CASES // 2, **SETTINGS)
@given(data=damaged_archives())
def test_fuzz_corrupt_archives(capsys, tmp_path_factory, data):
    _archive(capsys, tmp_path_factory, data)


@settings(max_examples=CASES // 4, **SETTINGS)
@given(target=st.sampled_from(["config.json", "summary.json", "journal.jsonl"]),
       text=nested_json(st.integers(1, 3000)))
def test_fuzz_nested_run_folders(capsys, nastk_data, tmp_path_factory, target, text):
    _nested_run_folder(capsys, tmp_path_factory, target, text)


@pytest.mark.slow
@settings(max_examples=DEEP_CASES, **SETTINGS)
@given(text=aliased_yaml())
def test_fuzz_nested_and_aliased_configs_deep(capsys, nastk_data, tmp_path_factory, text):
    _aliased(capsys, tmp_path_factory, text)


@pytest.mark.slow
@settings(max_examples=DEEP_CASES // 2, **SETTINGS)
@given(data=damaged_archives())
def test_fuzz_corrupt_archives_deep(capsys, tmp_path_factory, data):
    _archive(capsys, tmp_path_factory, data)


@pytest.mark.slow
@settings(max_examples=DEEP_CASES // 4, **SETTINGS)
@given(target=st.sampled_from(["config.json", "summary.json", "journal.jsonl"]),
       text=nested_json(st.integers(1, 100000)))
def test_fuzz_nested_run_folders_deep(capsys, nastk_data, tmp_path_factory, target, text):
    _nested_run_folder(capsys, tmp_path_factory, target, text)


# --- file-system faults where commands write (nastk.paths: the one writer) ---------------------------------
#: Cheap commands that write, each with the file (or folder) it writes: ``nastk search``'s run folder,
#: ``nastk query``'s NASTK_CACHE folder, ``export``/``runs plot``'s --out, ``proxies correlate``'s --cache.
TARGETS = {"search": "run", "query": "cache", "export": "model.pt", "runs plot": "runs.png",
           "proxies correlate": "scores.jsonl"}
CACHES = ("query", "proxies correlate")  # optional: a cache that cannot be written is a note, and the command answers
#: about how many bytes each writes where the fault is: the disk-full case's free space is drawn up to half as much again
WRITES = {"search": 1_900, "query": 2_200_000, "export": 3_600_000, "runs plot": 25_000, "proxies correlate": 1_900}
FS_FAULTS = ["under a file", "a folder", "read-only"] + (["disk full"] if os.path.isdir("/proc/self/fd") else [])
RUN_FILES = ["config.json", "journal.jsonl", "summary.json"]
PROXY_ARGS = ["proxies", "correlate", "--sample", "3", "--dataset", "digits", "--truth", "cifar10", "--C", "4",
              "--N", "1", "--batch-size", "8", "--no-progress"]


@st.composite
def file_faults(draw):
    """A command, a fault and where it strikes: ``depth`` folders still to make between the fault (the regular
    file, the read-only folder, the full disk's folder) and the target; ``existing``: the target is there
    already (an older output, a partial cache, an empty run folder; for "a folder": the folder is not empty)."""
    command, fault = draw(st.sampled_from(sorted(TARGETS))), draw(st.sampled_from(FS_FAULTS))
    case = {"command": command, "fault": fault, "depth": draw(st.integers(0, 2)), "existing": draw(st.booleans())}
    if fault == "disk full":
        case["free"] = draw(st.one_of(st.integers(0, 400), st.integers(0, 150).map(lambda pct: WRITES[command] * pct // 100)))
    if fault == "a folder" and command == "search":  # the run folder holds a folder where its file belongs
        case["inner"] = draw(st.sampled_from(RUN_FILES))
    return case


def contents(root):
    """Every path under ``root``: a file's bytes, None for a folder."""
    return {str(p.relative_to(root)): (None if p.is_dir() else p.read_bytes()) for p in sorted(root.rglob("*"))}


_PARTIAL_PROXY_CACHE = {}


def _partial_proxy_cache(capsys, tmp_path_factory):
    """A proxy score cache holding ``params`` only: ``--proxies params,synflow`` reads it and rewrites it whole."""
    if "bytes" not in _PARTIAL_PROXY_CACHE:
        path = tmp_path_factory.mktemp("fuzzproxy") / "scores.jsonl"
        assert check(capsys, PROXY_ARGS + ["--proxies", "params", "--cache", str(path)]) == 0
        _PARTIAL_PROXY_CACHE["bytes"] = path.read_bytes()
    return _PARTIAL_PROXY_CACHE["bytes"]


def _nb201_cache_name():
    from nastk.benchmarks.nb201 import FORMAT_VERSION, MANIFEST

    return f"nb201-compact-v{FORMAT_VERSION}-{json.loads(MANIFEST.read_text())['sha256'][:16]}.npz"


def _whole(command, target):
    """Assert what a command that completed wrote is whole."""
    if command == "search":
        assert json.loads((target / "summary.json").read_text())["best_arch"]
        assert len([json.loads(line) for line in (target / "journal.jsonl").read_text().splitlines()]) == 2
    elif command == "query":
        from nastk.integrity import read_npz

        read_npz(target / _nb201_cache_name(), "NB201 cache", rows=5 ** 6)
    elif command == "export":
        import torch

        assert torch.load(target, weights_only=True)["state_dict"]
    elif command == "runs plot":
        data = target.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and data.endswith(b"IEND\xaeB`\x82")
    else:
        from nastk.evaluators.proxy import _verified_record

        lines = target.read_text().splitlines()
        assert len(lines) == 6 and all(_verified_record(line) for line in lines)


def _file_fault(capsys, tmp_path_factory, read_only, case):
    command, fault, depth, existing = case["command"], case["fault"], case["depth"], case["existing"]
    base = _base_run(capsys, tmp_path_factory) if command in ("export", "runs plot") else None
    partial = _partial_proxy_cache(capsys, tmp_path_factory) if command == "proxies correlate" else None
    root = tmp_path_factory.mktemp("fuzzfs")
    (root / "keep.txt").write_text("a file beside the fault\n")
    anchor = root / {"under a file": "file", "read-only": "ro"}.get(fault, "out")
    if fault == "under a file":
        anchor.write_text("a regular file\n")
    else:
        anchor.mkdir()
        (anchor / "keep.txt").write_text("a file beside the target\n")
    target = anchor.joinpath(*[f"new{i}" for i in range(depth)], TARGETS[command])
    if fault == "a folder":  # a folder where the file belongs
        folder = {"search": target / case.get("inner", ""), "query": target / _nb201_cache_name()}.get(command, target)
        folder.mkdir(parents=True)
        if existing:
            (folder / "inside.txt").write_text("x\n")
    elif existing and fault != "under a file":
        if command in ("search", "query"):  # an empty run folder; a cache folder holding something else
            target.mkdir(parents=True)
            if command == "query":
                (target / "other.npz").write_bytes(b"not nastk's\n")
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(partial if command == "proxies correlate" else b"an older output\n")
    if fault == "read-only":  # all of it, as on a read-only mount (chmod, where it stops this user, is per folder)
        for folder in [anchor, *sorted(p for p in anchor.rglob("*") if p.is_dir())]:
            read_only(folder)
    argv = {"search": ["search", "--benchmark", "nb201", "--dataset", "cifar10", "--strategy", "random", "--budget",
                       "2", "--no-progress", "--run-dir", str(target)],
            "query": ["query", "--dataset", "cifar10", "--index", "5", "--format", "json"],
            "export": ["export", "--run-dir", str(base), "--out-format", "state-dict", "--out", str(target)],
            "runs plot": ["runs", "plot", str(base), "--out", str(target)],
            "proxies correlate": PROXY_ARGS + ["--proxies", "params,synflow", "--cache", str(target)]}[command]
    before, base_before = contents(root), base and contents(base)
    with pytest.MonkeyPatch.context() as patch:
        if command == "query":
            patch.setenv("NASTK_CACHE", str(target))
        if fault == "disk full":
            patch.setattr(os, "write", DiskFull(lambda path: path.startswith(str(root) + os.sep), case["free"]))
        code, out, err = run_cli(capsys, argv)
    noted = err.startswith("nastk: note: ")
    event(f"{command}, {fault}: exit {code}{' with a note' if noted else ''}")
    assert "Traceback" not in err and "unexpected error" not in err, (argv, err)
    assert code in (0, 2), (argv, code, err)
    after = contents(root)
    assert not [name for name in after if name.endswith(".tmp")], (argv, sorted(after))
    if base is not None:
        assert contents(base) == base_before, "a command that reads a run folder changed it"
    if err or code == 2:  # one line, naming the path: an error (exit 2), or a cache skipped with a note (exit 0)
        assert err.count("\n") == 1 and err.startswith("nastk: note: " if code == 0 else "nastk: error: "), (argv, err)
        assert str(target) in err, (argv, err)
    if code == 0:
        if command in CACHES:
            json.loads(out)
        if noted:
            assert command in CACHES and after == before, (argv, err)  # the skipped cache: nothing written
        else:
            assert not err and fault == "disk full", (argv, err)  # only a disk with room enough lets it write
            _whole(command, target)
    elif command == "search" and fault == "disk full" and (target / "config.json").is_file():  # kept, to resume
        run = str(target.relative_to(root))
        outside = lambda tree: {k: v for k, v in tree.items()  # what is not the run folder or a folder above it
                                if k != run and not k.startswith(run + os.sep) and not run.startswith(k + os.sep)}
        assert outside(after) == outside(before), (argv, sorted(set(after) ^ set(before)))
        if (target / "journal.jsonl").exists():  # whole lines only
            data = (target / "journal.jsonl").read_bytes()
            assert data.endswith(b"\n") and all(json.loads(line) for line in data.splitlines()), data
    else:
        assert command not in CACHES, (argv, err)  # a cache is never a reason to fail
        # nothing written, no folder made for it, no run folder without its config
        assert after == before, (argv, err, "left behind or changed:", sorted(k for k in set(after) | set(before)
                                                                              if after.get(k, 0) != before.get(k, 0)))


@pytest.mark.slow  # moved out of the default run to keep it under 5 minutes on 2 cores
@pytest.mark.usefixtures("one_torch_thread")
@settings(max_examples=CASES, **SETTINGS)
@given(case=file_faults())
def test_fuzz_file_system_faults(capsys, nastk_data, tmp_path_factory, read_only, case):
    _file_fault(capsys, tmp_path_factory, read_only, case)


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
@settings(max_examples=DEEP_CASES // 2, **SETTINGS)
@given(case=file_faults())
def test_fuzz_file_system_faults_deep(capsys, nastk_data, tmp_path_factory, read_only, case):
    _file_fault(capsys, tmp_path_factory, read_only, case)
