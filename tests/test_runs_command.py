"""``nastk runs list|show|compare|plot`` read run folders back without writing to them."""
import json

import numpy as np

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
    shown = cli_json(capsys, ["runs", "show", "--run-dir", str(runs / "re0")])
    rows = shown["trajectory"]
    assert [r["step"] for r in rows] == list(range(12))
    best = [max(r["objective"] for r in rows[: i + 1]) for i in range(12)]
    assert [r["best_so_far"] for r in rows] == best and rows[-1]["best_so_far"] == shown["best_objective"]
    assert rows[-1]["cumulative_cost_s"] == pytest.approx(sum(r["cost_s"] for r in rows), abs=1e-3)
    assert len(cli_json(capsys, ["runs", "show", "--run-dir", str(runs / "re0"), "--last", "3"])["trajectory"]) == 3


def test_compare_and_plot_several_runs(runs, capsys, tmp_path):
    rows = cli_json(capsys, ["runs", "compare", str(runs / "re0"), str(runs / "random1")])
    assert [r["seeds"] for r in rows] == [[0], [1]] and [r["best_objective_std"] for r in rows] == [None, None]
    assert [r["strategy"] for r in rows] == ["re", "random"]
    out = tmp_path / "curves.png"
    assert main(["runs", "plot", str(runs), "--x", "cost", "--out", str(out)]) == 0
    assert out.stat().st_size > 1000 and "2 runs" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [(["runs", "show", "--run-dir", "nowhere"], "does not exist"),
                                           (["runs", "compare", "."], "no run ("),
                                           (["runs", "plot", "RUNS", "--out", "x.txt"], "must end in .png"),
                                           (["runs", "show", "--run-dir", "RUNS", "--last", "0"], "must be a whole number >= 1")])
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


def test_seeds_are_aggregated_in_a_folder_compared_as_one_row_and_plotted_as_a_band(nastk_data, capsys, tmp_path):
    base = tmp_path / "seeds"
    out = cli_json(capsys, SEARCH + ["--strategy", "random", "--budget", "5", "--seeds", "0-2", "--run-dir", str(base)])
    aggregate = json.loads((base / "aggregate" / "aggregate.json").read_text())
    summaries = [json.loads((base / f"seed{s}" / "summary.json").read_text()) for s in range(3)]
    best = [s["best_objective"] for s in summaries]
    assert aggregate["seeds"] == [0, 1, 2] and out["aggregate"] == str(base / "aggregate")
    assert aggregate["best_objective"]["mean"] == pytest.approx(sum(best) / 3)
    assert aggregate["best_objective"]["std"] == pytest.approx(float(np.std(best))) and aggregate["best_objective"]["n"] == 3
    assert [r["best_objective"] for r in aggregate["per_seed"]] == best
    table = (base / "aggregate" / "seeds.csv").read_text().splitlines()
    assert table[0].startswith("seed,run,") and len(table) == 4
    rows = cli_json(capsys, ["runs", "compare", str(base)])  # seeds of one configuration: one row
    assert len(rows) == 1 and rows[0]["seeds"] == [0, 1, 2] and rows[0]["best_objective"] == pytest.approx(np.mean(best))
    assert rows[0]["best_objective_std"] == pytest.approx(np.std(best)) and len(rows[0]["per_seed"]) == 3
    assert len(cli_json(capsys, ["runs", "compare", str(base), "--per-seed"])) == 3
    plot = cli_json(capsys, ["runs", "plot", str(base), "--out", str(tmp_path / "seeds.png")])
    assert len(plot["lines"]) == 1 and len(plot["lines"][0]["runs"]) == 3


def test_plot_gives_each_objective_its_axis_and_never_repeats_a_colour(runs, capsys, tmp_path):
    from nastk.commands.runs import distinct_colors

    for count in (1, 9, 10, 11, 20, 21, 40):
        colors = distinct_colors(count)
        assert len(colors) == count and len({tuple(round(c, 4) for c in color[:3]) for color in colors}) == count
    other = tmp_path / "runs" / "test200"  # another objective (a proxy score would be 1e40s): its own axis
    assert main(SEARCH + ["--strategy", "random", "--budget", "3", "--objective", "test200",
                          "--run-dir", str(other)]) == 0
    capsys.readouterr()
    plot = cli_json(capsys, ["runs", "plot", str(runs), "--out", str(tmp_path / "all.png")])
    assert len(plot["axes"]) == 2 and len({line["color"] for line in plot["lines"]}) == len(plot["lines"]) == 3
    assert {line["panel"].split(chr(10))[0] for line in plot["lines"]} == set(plot["axes"][i].split(chr(10))[0]
                                                                             for i in range(2))
