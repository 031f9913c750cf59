"""What nastk says and how: one ``nastk`` logger with -q/-v, plain ``nastk`` prints help, "did you mean"
for a mistyped flag, progress that counts replayed work, objectives named and formatted, and a Ctrl-C
line that names the run folder and the command that continues it."""
import logging

import pytest

from cli_run import run_cli
from nastk.log import LOGGER
from nastk.progress import Progress

SEARCH = ["search", "--space", "nb201", "--strategy", "re", "--evaluator", "benchmark", "--dataset", "cifar10"]


def test_plain_nastk_prints_help_and_makes_no_run_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys)
    assert code == 0 and "usage: nastk" in out and "search" in out
    assert list(tmp_path.iterdir()) == []


def test_a_mistyped_flag_gets_a_suggestion_from_its_own_command(capsys):
    code, _, err = run_cli(capsys, "search", "--budgt", "5")
    assert code == 2 and err.count("\n") == 1
    assert "unrecognized arguments: --budgt 5" in err and "--budgt -> --budget" in err
    code, _, err = run_cli(capsys, "search", "--zzzzzz")
    assert code == 2 and "did you mean" not in err


def test_quiet_and_verbose_set_the_level_and_restore_it(tmp_path, capsys):
    code, out, err = run_cli(capsys, SEARCH + ["--budget", "40", "--run-dir", str(tmp_path / "a")])
    assert code == 0 and "search 40/40 evaluations" in err
    assert len([line for line in err.splitlines() if line.startswith("search ")]) < 40  # throttled lines
    code, out, err = run_cli(capsys, SEARCH + ["--budget", "5", "--run-dir", str(tmp_path / "b"), "-q"])
    assert code == 0 and err == "" and "best architecture" in out  # results on stdout are kept
    code, out, err = run_cli(capsys, ["-v"] + SEARCH + ["--budget", "5", "--run-dir", str(tmp_path / "c")])
    assert code == 0 and all(f"search {i}/5 evaluations" in err for i in range(1, 6))  # every step at -v
    assert LOGGER.level == logging.INFO  # the caller's level again


def test_a_library_user_silences_nastk_with_the_logging_api(capsys):
    LOGGER.setLevel(logging.WARNING)
    try:
        with Progress(3, "work", "steps") as bar:
            bar.update()
    finally:
        LOGGER.setLevel(logging.INFO)
    assert capsys.readouterr().err == ""


def test_resume_counts_replayed_evaluations_and_times_only_new_ones(tmp_path, capsys):
    run_cli(capsys, SEARCH + ["--budget", "5", "--run-dir", str(tmp_path / "r")])
    code, out, err = run_cli(capsys, "-v", "search", "--run-dir", str(tmp_path / "r"), "--resume", "--budget", "8")
    lines = [line for line in err.splitlines() if line.startswith("search ")]
    assert code == 0 and lines[0].startswith("search 6/8 evaluations (5 replayed)") and lines[-1].startswith("search 8/8")


def test_a_proxy_objective_is_named_and_printed_in_scientific_notation():
    from nastk.commands.search import objective_name
    from nastk.progress import format_score

    assert objective_name({"evaluator": "proxy", "proxy": "synflow", "dataset": "cifar10"}) == "proxy synflow on cifar10"
    assert objective_name({"evaluator": "benchmark", "objective": "cifar10-valid/valid/12/v1_1"}) == "cifar10-valid/valid/12/v1_1"
    assert format_score(1.2661754950620346e34) == "1.266e+34"


def test_ctrl_c_names_the_run_folder_and_a_resume_command_that_works(tmp_path, capsys, monkeypatch):
    from nastk.run_folder import Run

    folder = tmp_path / "killed"
    original = Run.write_summary
    monkeypatch.setattr(Run, "write_summary", lambda self, summary: (_ for _ in ()).throw(KeyboardInterrupt))
    code, _, err = run_cli(capsys, SEARCH + ["--budget", "6", "--run-dir", str(folder)])
    assert code == 130 and err.strip().splitlines()[-1] == (
        f"nastk: interrupted; run folder {folder} keeps the finished work; continue it with: "
        f"nastk search --run-dir {folder} --resume")
    monkeypatch.setattr(Run, "write_summary", original)
    code, out, _ = run_cli(capsys, "search", "--run-dir", str(folder), "--resume")
    assert code == 0 and "6 (6 replayed from the journal, 0 evaluated now)" in out


def test_ctrl_c_before_any_run_folder_says_nothing_was_written(capsys, monkeypatch):
    import nastk.commands.query as query

    interrupt = (lambda args: (_ for _ in ()).throw(KeyboardInterrupt), query.QUERIES["nb201"][1])
    monkeypatch.setitem(query.QUERIES, "nb201", interrupt)
    code, _, err = run_cli(capsys, "query", "--space", "nb201", "--index", "0", "--dataset", "cifar10")
    assert code == 130 and err == "nastk: interrupted; nothing was written\n"


@pytest.mark.parametrize("flags", [["-qq"], ["--quiet", "--quiet"]])
def test_double_quiet_is_errors_only(flags):
    from nastk.cli import _verbosity
    from nastk.log import level_from

    argv, quiet, verbose = _verbosity(flags + ["search"])
    assert argv == ["search"] and level_from(quiet, verbose) == logging.ERROR


def test_parzc_model_size_is_its_own_flag_and_config_its_deprecated_spelling(capsys):
    """``--config`` means a configuration file everywhere else; ParZC's model size is ``--model-size``."""
    fit = ["proxies", "fit", "parzc", "--train-size", "5"]
    code, _, err = run_cli(capsys, *fit, "--model-size", "huge")
    assert code != 0 and err.count("\n") == 1 and "unknown --model-size 'huge'" in err
    code, _, err = run_cli(capsys, *fit, "--model-size", "small", "--config", "full")
    assert code != 0 and err.count("\n") == 1 and "--model-size only" in err
    code, _, err = run_cli(capsys, *fit, "--config", "huge")
    assert code != 0 and "deprecated" in err and "unknown --model-size 'huge'" in err
