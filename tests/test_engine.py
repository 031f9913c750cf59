"""The one engine's trial record, its stop rule and its progress lines."""
import io
import json

import pytest

from nastk.cli import main
from nastk.errors import ConfigError
from nastk.progress import Progress
from nastk.trial import Stop, Trial

BENCH = ["search", "--benchmark", "nb201", "--dataset", "cifar10", "--strategy", "re", "--seed", "3", "--format", "json"]


def journal(run):
    return [Trial.from_record(json.loads(line)) for line in (run / "journal.jsonl").read_text().splitlines()]


def test_a_cost_limit_stops_a_search_early_and_resume_keeps_it(capsys, nastk_data, tmp_path):
    run = tmp_path / "run"
    assert main(BENCH + ["--budget", "50", "--max-cost", "1500", "--run-dir", str(run), "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out)
    trials = journal(run)
    costs = [t.result.cost_s for t in trials]
    assert len(trials) < 50 and sum(costs) > 1500 >= sum(costs[:-1])  # stopped at the first trial past the limit
    assert summary["evaluations"] == len(trials) and summary["cost_s"] == pytest.approx(sum(costs))
    assert main(["search", "--run-dir", str(run), "--resume", "--format", "json", "--no-progress"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["evaluated_now"] == 0 and again["best_arch"] == summary["best_arch"]


def test_trials_carry_their_times_and_round_trip_through_the_journal(capsys, nastk_data, tmp_path):
    run = tmp_path / "run"
    assert main(BENCH + ["--budget", "4", "--run-dir", str(run), "--no-progress"]) == 0
    trials = journal(run)
    assert [t.step for t in trials] == [0, 1, 2, 3] and all(t.finished >= t.started > 1e9 for t in trials)
    assert all(Trial.from_record(t.to_record()) == t for t in trials)


@pytest.mark.parametrize("kwargs, message", [({"queries": 0}, "budget"), ({"queries": 5, "cost_s": -1.0}, "cost_s"),
                                             ({"queries": 5, "min_queries": 6}, "min_queries")])
def test_bad_stop_rules_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Stop(**kwargs)


def test_min_queries_holds_off_a_cost_limit():
    stop = Stop(10, cost_s=1.0, min_queries=3)
    assert not stop.reached(2, 100.0, 0.0) and stop.reached(3, 100.0, 0.0) and not stop.reached(3, 0.5, 0.0)
    assert stop.reached(10, 0.0, 0.0)


def test_progress_is_one_line_per_step_when_not_a_terminal():
    stream = io.StringIO()
    with Progress(3, "search", "evaluations", stream=stream) as progress:
        for best in (0.5, 2e-7, 3e8):
            progress.update(best=best)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3 and lines[0].startswith("search 1/3 evaluations  best 0.5000") and "left" in lines[0]
    assert "best 2.000e-07" in lines[1] and "best 3.000e+08" in lines[2] and "left" not in lines[2]


def test_no_progress_lines_with_no_progress(capsys, nastk_data, tmp_path):
    assert main(BENCH + ["--budget", "3", "--run-dir", str(tmp_path / "a"), "--no-progress"]) == 0
    assert capsys.readouterr().err == ""
    assert main(BENCH + ["--budget", "3", "--run-dir", str(tmp_path / "b")]) == 0
    err = capsys.readouterr().err  # the first and the last step at least (lines at most every LOG_EVERY_S)
    assert "search 1/3 evaluations" in err and "search 3/3 evaluations" in err


def test_seeds_run_one_search_per_seed_and_report_mean_and_std(capsys, nastk_data, tmp_path):
    import numpy as np

    argv = ["search", "--benchmark", "nb201", "--dataset", "cifar10", "--budget", "6", "--seeds", "2-4",
            "--run-dir", str(tmp_path / "many"), "--no-progress", "--format", "json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["seeds"] == [2, 3, 4] and [r["seed"] for r in out["runs"]] == [2, 3, 4]
    best = [r["best_objective"] for r in out["runs"]]
    assert out["best_objective"] == {"mean": pytest.approx(np.mean(best)), "std": pytest.approx(np.std(best)), "n": 3}
    assert sorted(p.name for p in (tmp_path / "many").iterdir()) == ["aggregate", "seed2", "seed3", "seed4"]
    assert main(BENCH[:-2] + ["--budget", "6", "--seed", "3", "--run-dir", str(tmp_path / "one"),
                              "--no-progress", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["best_arch"] == out["runs"][1]["best_arch"]


@pytest.mark.parametrize("extra, message", [(["--seeds", "3-1"], "must be seeds such as"),
                                            (["--seeds", "0-2", "--seed", "1"], "either --seed or --seeds")])
def test_bad_seed_lists_are_one_line_and_write_nothing(capsys, nastk_data, tmp_path, extra, message):
    argv = ["search", "--benchmark", "nb201", "--dataset", "cifar10", "--budget", "3", "--run-dir",
            str(tmp_path / "x"), "--no-progress"] + extra
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1 and not (tmp_path / "x").exists()


def test_best_so_far_keeps_the_first_best_and_ranks_nan_and_none_last():
    from nastk.trial import best_so_far

    nan = float("nan")
    assert best_so_far([nan, 1.0, None, 3.0, 3.0, 2.0]) == [0, 1, 1, 3, 3, 3]
    assert best_so_far([2.0, 1.0, nan, 1.0, 0.5], direction="minimize") == [0, 1, 1, 1, 4]
    assert best_so_far([]) == []
    with pytest.raises(ConfigError, match="maximize or minimize"):
        best_so_far([1.0], direction="max")
