"""``nastk runs list|show|compare|plot`` read run folders back without writing to them."""
import json

import pytest

from nastk.cli import main

SEARCH = ["search", "--benchmark", "nb201", "--dataset", "cifar10", "--no-progress", "--format", "json"]


@pytest.fixture
def runs(nastk_data, tmp_path, capsys):
    root = tmp_path / "runs"
    for strategy, seed, budget in (("re", 0, 12), ("random", 1, 8)):
        assert main(SEARCH + ["--strategy", strategy, "--seed", str(seed), "--budget", str(budget),
                              "--run-dir", str(root / f"{strategy}{seed}")]) == 0
    capsys.readouterr()
    return root


def cli_json(capsys, argv):
    assert main(argv + ["--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_list_finds_every_run_with_its_status(runs, capsys):
    (runs / "not-a-run").mkdir()
    rows = cli_json(capsys, ["runs", "list", str(runs)])
    assert [(r["strategy"], r["seed"], r["evaluations"], r["budget"], r["status"]) for r in rows] == [
        ("random", 1, 8, 8, "finished"), ("re", 0, 12, 12, "finished")]
    summary = json.loads((runs / "re0" / "summary.json").read_text())
    assert rows[1]["best_objective"] == summary["best_objective"] and rows[1]["best_arch"] == summary["best_arch"]


def test_a_killed_run_is_listed_as_stopped_and_a_damaged_one_is_skipped_with_a_line(runs, capsys):
    (runs / "re0" / "summary.json").unlink()
    (runs / "broken").mkdir()
    (runs / "broken" / "config.json").write_text('{"strategy": "re", "evaluator": {"kind": "benchmark"}}')
    (runs / "broken" / "journal.jsonl").write_text('{"step": 5}\n')
    assert main(["runs", "list", str(runs), "--format", "json"]) == 0
    out, err = capsys.readouterr()
    assert [r["status"] for r in json.loads(out)] == ["finished", "stopped"]
    assert err.count("\n") == 1 and "skipped" in err and "broken" in err and "line 1" in err


def test_show_labels_every_evaluation_with_the_best_so_far(runs, capsys):
    shown = cli_json(capsys, ["runs", "show", str(runs / "re0")])
    rows = shown["trajectory"]
    assert [r["step"] for r in rows] == list(range(12))
    best = [max(r["objective"] for r in rows[: i + 1]) for i in range(12)]
    assert [r["best_so_far"] for r in rows] == best and rows[-1]["best_so_far"] == shown["best_objective"]
    assert rows[-1]["cumulative_cost_s"] == pytest.approx(sum(r["cost_s"] for r in rows), abs=1e-3)
    assert len(cli_json(capsys, ["runs", "show", str(runs / "re0"), "--last", "3"])["trajectory"]) == 3


def test_compare_and_plot_several_runs(runs, capsys, tmp_path):
    rows = cli_json(capsys, ["runs", "compare", str(runs / "re0"), str(runs / "random1")])
    assert [r["strategy"] for r in rows] == ["re", "random"]
    out = tmp_path / "curves.png"
    assert main(["runs", "plot", str(runs), "--x", "cost", "--out", str(out)]) == 0
    assert out.stat().st_size > 1000 and "2 runs" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [(["runs", "show", "nowhere"], "does not exist"),
                                           (["runs", "compare", "."], "no search run in"),
                                           (["runs", "plot", "RUNS", "--out", "x.txt"], "must end in .png"),
                                           (["runs", "show", "RUNS", "--last", "0"], "must be a whole number >= 1")])
def test_bad_runs_commands_are_one_line(runs, capsys, tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path / "runs" / "re0")
    argv = [str(runs / "re0") if a == "RUNS" else a for a in argv]
    if argv[1] == "compare":
        monkeypatch.chdir(tmp_path)
        (tmp_path / "empty").mkdir()
        argv[2] = str(tmp_path / "empty")
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1
