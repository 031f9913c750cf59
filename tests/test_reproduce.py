"""``nastk reproduce nb201``: the comparison's arithmetic and the CI-sized report."""
import json

import numpy as np
import pytest

from nastk.cli import main
from nastk.errors import ConfigError
from nastk.reproduce import Settings, Trace, compare, search_trace
from nastk.trial import Stop


def test_trace_budgets():
    trace = Trace("x", "cifar10", 0, objective=[50.0, 70.0, float("nan"), 70.0, 90.0],
                  test=[60.0, 80.0, 99.0, 10.0, 85.0], cost=[10.0, 20.0, 30.0, 40.0, 50.0])
    assert trace.best_test(2) == 80.0 and trace.best_test(4) == 80.0  # NaN never wins; ties: first
    assert trace.best_test(5) == 85.0
    assert trace.queries_within(60.0) == 3 and trace.queries_within(59.9) == 2
    assert trace.best_test_curve(5).tolist() == [60.0, 80.0, 80.0, 80.0, 85.0]


def test_search_stops_once_both_budgets_are_spent(nastk_data):
    trace = search_trace("re", "cifar10", 0, Stop(300, cost_s=5000.0, min_queries=20))
    queries, total = len(trace.cost), sum(trace.cost)
    assert queries >= 20 and total > 5000.0
    assert queries == 20 or sum(trace.cost[:-1]) <= 5000.0
    unstopped = search_trace("re", "cifar10", 0, len(trace.cost))
    assert unstopped.archs == trace.archs  # stopping later does not change earlier queries


def test_nb201_optimum_comes_from_the_table_and_matches_the_published_figures(nastk_data):
    from nastk.benchmarks.registry import benchmark_for

    optimum = {d: round(benchmark_for("nb201").optimum(d), 2) for d in ("cifar10", "cifar100", "ImageNet16-120")}
    assert optimum == {"cifar10": 94.37, "cifar100": 73.51, "ImageNet16-120": 47.31}


def test_settings_are_checked():
    with pytest.raises(ConfigError, match="random"):
        compare(Settings(strategies=("re", "bo-tpe")))
    with pytest.raises(ConfigError, match="max_queries"):
        compare(Settings(budget=50, max_queries=10))


def test_quick_report(capsys, nastk_data, tmp_path):
    code = main(["reproduce", "nb201", "--quick", "--out", str(tmp_path), "--format", "json"])
    out, _ = capsys.readouterr()
    assert code == 0
    summary = json.loads(out)
    report = json.loads((tmp_path / "nb201_search_quick.json").read_text())
    markdown = (tmp_path / "nb201_search_quick.md").read_text()
    assert (tmp_path / "nb201_search_quick_anytime.png").stat().st_size > 20_000
    rows = report["results"]["cifar10"]
    assert set(rows) == {"random", "re", "bo-tpe", "bo-gp", "nsga2"}
    for row in rows.values():
        values = row["queries"]["values"]
        assert len(values) == 2 and all(80 < v <= 94.38 for v in values)
        assert row["queries"]["mean"] == pytest.approx(np.mean(values))
        assert len(row["curve_queries"]["mean"]) == 20 and row["curve_queries"]["mean"][-1] == pytest.approx(np.mean(values))
    random_mean = rows["random"]["queries"]["mean"]
    ri = 100 * (rows["bo-tpe"]["queries"]["mean"] - random_mean) / random_mean
    assert rows["bo-tpe"]["queries"]["ri_percent"] == pytest.approx(ri)
    assert summary["results"]["cifar10"]["bo-tpe"]["queries"]["ri_percent"] == pytest.approx(ri)
    assert "94.37" in markdown and "93.92 ± 0.30" in markdown and "recalled" in markdown
    assert markdown.startswith("# Search strategies on NAS-Bench-201 (space nb201)")
    assert "| cifar10 | cifar10-valid/valid/12/" in markdown and "T per dataset" in markdown
    assert report["time_budget_s"]["cifar10"] == pytest.approx(np.mean(
        [sum(search_trace("random", "cifar10", s, 20).cost) for s in (0, 1)]))
