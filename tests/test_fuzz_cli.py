"""Property-based fuzzing of the CLI, in process: generated flags, config files, architecture strings and
corrupted run folders. Whatever the input, a command exits 0 or 2, never with a traceback; an error is
one line on stderr; ``--format json`` prints valid JSON; a rejected command leaves no files behind.

The default run generates ``CASES`` cases per property; ``-m slow`` runs the deep variant
(``DEEP_CASES`` each)."""
import json
import os
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nastk.cli import main

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
