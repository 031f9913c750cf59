"""The CLI contract: JSON forms, one-line errors with exit status 2, resume after SIGKILL."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nastk.cli import main
from cli_run import run_cli  # tests/ is on sys.path under pytest

BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"


def test_query_json(capsys, nastk_data):
    code, out, err = run_cli(capsys, "query", "--space", "nb201", "--dataset", "cifar10", "--arch", BEST, "--format", "json")
    data = json.loads(out)
    assert code == 0 and data["index"] == 6111 and data["epochs"] == 200
    assert data["test_accuracy"] == pytest.approx(94.3733, abs=1e-4) and data["test_protocol"] == "cifar10/test/200/nb201api"
    code, out, _ = run_cli(capsys, "query", "--dataset", "cifar100", "--arch", BEST, "--epochs", "12", "--format", "json")
    assert json.loads(out)["test_protocol"] == "cifar100/test/12/v1_1"


def test_search_json_and_resume(capsys, nastk_data, tmp_path):
    argv = ["search", "--space", "nb201", "--strategy", "re", "--benchmark", "nb201", "--dataset", "cifar10",
            "--budget", "100", "--seed", "0", "--run-dir", str(tmp_path / "run"), "--format", "json"]
    code, out, _ = run_cli(capsys, *argv)
    first = json.loads(out)
    assert code == 0 and first["evaluations"] == 100 and first["evaluated_now"] == 100
    assert 85 < first["test_accuracy"] <= 94.38 and first["best_arch"].count("~") == 6
    code, out, _ = run_cli(capsys, *argv, "--resume")
    again = json.loads(out)
    assert again["replayed"] == 100 and again["evaluated_now"] == 0 and again["best_arch"] == first["best_arch"]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["best_arch"] == first["best_arch"]


def test_listings(capsys):
    code, out, _ = run_cli(capsys, "spaces", "--format", "json")
    assert code == 0 and "mutate" in json.loads(out)["nb201"]
    code, out, _ = run_cli(capsys, "strategies", "--format", "json")
    assert {"random", "re"} <= set(json.loads(out))


@pytest.mark.parametrize("argv, fragment", [
    (["query", "--dataset", "cifar10", "--arch", "|nor_conv_3x3~0|+|x~0|"], "node groups"),
    (["query", "--dataset", "cifar10", "--arch", BEST.replace("nor_conv_1x1", "conv_5x5")], "unknown NB201 operation"),
    (["query", "--dataset", "cifar10", "--arch", BEST.replace("skip_connect~0|", "")], "input edges"),
    (["query", "--dataset", "svhn", "--arch", BEST], "unknown NB201 dataset"),
    (["query", "--dataset", "cifar10", "--arch", BEST, "--epochs", "90"], "12 or 200"),
    (["query", "--dataset", "cifar10", "--arch", BEST, "--table", "/nonexistent/nb201.pth"], "not found"),
    (["search", "--benchmark", "nb201", "--budget", "5"], "needs --dataset"),
    (["search", "--benchmark", "nb201", "--dataset", "cifar10", "--strategy", "magic"], "unknown strategy"),
    (["search", "--benchmark", "nb201", "--dataset", "cifar10", "--budget", "0"], "budget"),
    (["search", "--benchmark", "nb201", "--dataset", "cifar10", "--objective", "cifar10/valid/200"], "cifar10-valid"),
    (["search", "--space", "darts9"], "unknown search space"),
    (["search", "--budget", "many"], "must be a whole number"),
])
def test_errors_are_one_line_with_status_2(capsys, nastk_data, tmp_path, argv, fragment):
    try:
        code = main(argv + ["--run-dir", str(tmp_path / "r")] if argv[0] == "search" else argv)
    except SystemExit as exit_:  # argparse usage errors
        code = exit_.code
    _, err = capsys.readouterr()
    assert code == 2
    assert fragment in err and err.count("\n") == 1 and "Traceback" not in err


def test_corrupt_and_bad_config_files(capsys, tmp_path):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("budget: [1, 2\n")
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("budgett: 3\n")
    for path, fragment in [(bad_yaml, "not valid YAML"), (unknown, "unknown option budgett"),
                           (tmp_path / "absent.yaml", "not found")]:
        code, _, err = run_cli(capsys, "search", "--config", str(path), "--run-dir", str(tmp_path / "r"))
        assert code == 2 and fragment in err and err.count("\n") == 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=60))
def test_cli_arch_parsing_fuzz(capsys, nastk_data, text):
    if text.startswith("-") or "\x00" in text:
        return
    code = main(["query", "--dataset", "cifar10", "--arch", text, "--format", "json"])
    out, err = capsys.readouterr()
    if code == 0:
        assert json.loads(out)["arch"] == text.strip()
    else:
        assert code == 2 and err.startswith("nastk: error:") and err.count("\n") == 1


def test_embedded_default_from_config_file(capsys, tmp_path):
    """The no-download default path (training on digits), shrunk through a config file."""
    config = tmp_path / "tiny.yaml"
    config.write_text("budget: 3\nepochs: 1\nfinal_epochs: 1\nC: 4\nN: 1\nstrategy: random\n")
    code, out, _ = run_cli(capsys, "search", "--config", str(config), "--run-dir", str(tmp_path / "run"), "--format", "json")
    summary = json.loads(out)
    assert code == 0 and summary["evaluations"] == 3 and summary["evaluator"]["evaluator"] == "train"
    assert 0 <= summary["test_accuracy"] <= 100


def _journal_lines(path):
    return path.read_text().count("\n") if path.exists() else 0


@pytest.mark.slow  # moved out of the default run to keep it under 5 minutes on 2 cores
def test_sigkill_mid_run_then_resume_matches_uninterrupted(tmp_path):
    """A real process killed with SIGKILL, resumed, ends as an uninterrupted run, re-evaluating nothing."""
    config = tmp_path / "c.yaml"
    config.write_text("budget: 8\nepochs: 1\nfinal_epochs: 1\nC: 4\nN: 1\nstrategy: re\npopulation_size: 3\nsample_size: 2\n")
    base = [sys.executable, "-m", "nastk.cli", "search", "--config", str(config), "--format", "json", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed_dir = tmp_path / "killed"
    process = subprocess.Popen(base + ["--run-dir", str(killed_dir)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while _journal_lines(killed_dir / "journal.jsonl") < 3 and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.communicate()  # waits and closes the pipes
    done_before = _journal_lines(killed_dir / "journal.jsonl")
    assert 3 <= done_before < 8, "the run was not killed mid-way"
    resumed = json.loads(subprocess.run(base + ["--run-dir", str(killed_dir), "--resume"], env=env,
                                        capture_output=True, text=True, check=True).stdout)
    straight = json.loads(subprocess.run(base + ["--run-dir", str(tmp_path / "straight")], env=env,
                                         capture_output=True, text=True, check=True).stdout)
    assert resumed["replayed"] == done_before and resumed["evaluated_now"] == 8 - done_before
    assert resumed["best_arch"] == straight["best_arch"]
    assert resumed["test_accuracy"] == straight["test_accuracy"]
    strip = lambda path: [(r["arch"], r["result"]["metrics"]) for r in map(json.loads, path.read_text().splitlines())]  # noqa: E731
    assert strip(killed_dir / "journal.jsonl") == strip(tmp_path / "straight" / "journal.jsonl")
