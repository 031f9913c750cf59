"""Objectives and constraints as a registry: registered and ``metric:NAME`` objectives (any key of an
evaluator's metrics or of the space's ``cost()``), ``--constraint`` checked before evaluating where the
space's costs decide it, infeasible architectures recorded but never winning, and one-line errors."""
import json
import math

import numpy as np
import pytest

from nastk.cli import main
from nastk.errors import ConfigError
from nastk.evaluator import Evaluator, Result
from nastk.benchmarks.registry import benchmark_for
from nastk.evaluators.benchmark import BenchmarkEvaluator
from nastk.evaluators.multi_objective import (OBJECTIVES, SKIPPED, Objective, ObjectivesEvaluator, get_objective,
                                              parse_constraints, parse_objectives, register_objective, violations)
from nastk.run_folder import run_search
from nastk.strategy import make_strategy
from search_spaces.nb201 import NB201Space

pytestmark = pytest.mark.usefixtures("one_torch_thread")
BENCH = ["search", "--benchmark", "nb201", "--dataset", "cifar10", "--no-progress", "--format", "json"]


class CostlyNB201(NB201Space):
    """NB201 whose ``cost()`` also gives 8-bit bit-operations and a made-up latency (keys a space may add)."""

    def cost(self, arch, num_classes=10, input_size=32, C=16, N=5):
        cost = super().cost(arch, num_classes, input_size, C, N)
        return {**cost, "bitops_g": cost["flops_m"] * 64 / 1000, "latency_ms": 0.5 + 3 * cost["params_m"]}


#: What ``nastk.objectives`` entry points name (here loaded as module:attribute).
BITOPS = Objective("gbitops", "bitops_g", "minimize", "bit-operations (G)")


class Counting(Evaluator):
    def __init__(self, inner):
        self.inner, self.objective, self.calls = inner, inner.objective, 0

    def evaluate(self, arch):
        self.calls += 1
        return self.inner.evaluate(arch)


@pytest.fixture
def bitops():
    yield register_objective("gbitops", "bitops_g", "min", "bit-operations (G)")
    OBJECTIVES._entries.pop("gbitops", None)


@pytest.fixture(scope="module")
def bench(nb201_table):
    return BenchmarkEvaluator(benchmark_for("nb201"), "cifar10", table=nb201_table)


def run_cli(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else None), err


def journal(run):
    return [json.loads(line) for line in (run / "journal.jsonl").read_text().splitlines()]


# --- the registry and the syntax --------------------------------------------------------------------
def test_names_mean_what_they_meant_and_new_ones_register(bitops):
    acc, params, flops, latency = parse_objectives("acc,params,flops,latency")
    assert (acc.metric, params.metric, flops.metric, latency.metric) == (None, "params_m", "flops_m", "edgegpu_latency")
    assert [o.direction for o in (acc, params, latency)] == ["maximize", "minimize", "minimize"]
    generic = parse_objectives("acc,gbitops,metric:latency_ms,metric:score:max")
    assert [o.name for o in generic] == ["score", "gbitops", "metric:latency_ms:min", "metric:score:max"]
    assert [o.metric for o in generic[1:]] == ["bitops_g", "latency_ms", "score"]
    assert generic[3].direction == "maximize" and bitops.direction == "minimize"
    assert get_objective("test_objectives:BITOPS").metric == "bitops_g"  # as an entry point would name it
    with pytest.raises(ConfigError, match="already registered"):
        register_objective("flops", "flops_m", "min")
    with pytest.raises(ConfigError, match="direction must be min or max"):
        register_objective("other", "x", "up")
    for bad, fragment in [("acc,bitopz", "unknown objective"), ("acc,metric:x:upward", "direction"),
                          ("acc,metric:", "metric:NAME"), ("gbitops,acc", "start with score")]:
        with pytest.raises(ConfigError, match=fragment):
            parse_objectives(bad)


def test_constraint_syntax_units_and_violations():
    flops, params, latency = parse_constraints(["flops <= 300", "params_m<1.5,latency>=2.5"])
    assert [c.text for c in (flops, params, latency)] == ["flops<=300", "params_m<1.5", "latency>=2.5"]
    assert (flops.metric, params.metric, latency.metric) == ("flops_m", "params_m", "edgegpu_latency")
    assert (flops.violation(250.0), flops.violation(330.0), latency.violation(2.0)) == (0.0, 30.0, 0.5)
    assert 0 < params.violation(1.5) < 1e-9 and math.isnan(flops.violation(math.nan))  # strict; unmeasured
    assert parse_constraints("") == parse_constraints([]) == parse_constraints(None) == ()
    assert parse_constraints("metric:bitops_g>0.5")[0].metric == "bitops_g"
    for spec in ("flops<=300e6", "metric:flops_m<3e8", "params<=5000000"):  # raw counts for a metric in millions
        with pytest.raises(ConfigError, match=r"counted in millions \((flops|params)_m\)"):
            parse_constraints(spec)
    infeasible = Result({"accuracy": 91.0, "feasible": 0})
    assert math.isnan(infeasible.value) and infeasible.raw_value == 91.0 and infeasible.infeasible


@pytest.mark.parametrize("spec, fragment", [
    ("flops<<3", "bad constraint 'flops<<3': expected NAME OP VALUE"),
    ("flops=300", "bad constraint"),
    ("weight<=3", "unknown constraint metric 'weight'"),
    ("flops<=abc", "'abc' is not a finite number"),
    ("flops<=inf", "not a finite number"),
    ("flops<=300000000", "flops is counted in millions (flops_m)"),
    ("flops<=3,,params<=1", "empty constraint"),
    ("flops<=3,flops<=3", "given twice"),
    ("metric:x:min<=3", "without a direction"),
])
def test_bad_constraints_are_one_line_and_write_nothing(capsys, nastk_data, tmp_path, spec, fragment):
    run = tmp_path / "r"
    code, _, err = run_cli(capsys, *BENCH, "--budget", "3", "--constraint", spec, "--run-dir", str(run))
    assert code == 2 and fragment in err and err.count("\n") == 1 and not run.exists()
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps({"constraints": [spec], "budget": 3}))
    code, _, err = run_cli(capsys, *BENCH, "--config", str(config), "--run-dir", str(run))
    assert code == 2 and fragment in err and err.count("\n") == 1 and not run.exists()


# --- searches ---------------------------------------------------------------------------------------
def test_nsga2_on_a_registered_and_a_metric_objective(capsys, nastk_data, tmp_path, bitops):
    run = tmp_path / "moo"
    code, summary, _ = run_cli(capsys, *BENCH, "--space", "test_objectives:CostlyNB201", "--strategy", "nsga2",
                               "--population-size", "6", "--budget", "18", "--seed", "1",
                               "--objectives", "acc,gbitops,metric:latency_ms", "--run-dir", str(run))
    assert code == 0 and summary["evaluations"] == 18
    names = ["score", "gbitops", "metric:latency_ms:min"]
    assert summary["strategy"]["objectives"] == names == json.loads((run / "config.json").read_text())["objectives"]
    points = {r["arch"]: (r["result"]["metrics"]["accuracy"], r["result"]["metrics"]["bitops_g"],
                          r["result"]["metrics"]["latency_ms"]) for r in journal(run)}
    assert all(bits == pytest.approx(flops * 0.064) for bits, flops in
               ((r["result"]["metrics"]["bitops_g"], r["result"]["metrics"]["flops_m"]) for r in journal(run)))
    front = {row["arch"]: tuple(row[name] for name in names) for row in summary["pareto_front"]}
    signs = np.array([-1.0, 1.0, 1.0])

    def dominates(a, b):
        a, b = np.asarray(a) * signs, np.asarray(b) * signs
        return bool(np.all(a <= b) and np.any(a < b))

    assert front and all(points[arch] == pytest.approx(values) for arch, values in front.items())
    for arch, point in points.items():
        assert any(dominates(other, point) for other in points.values()) == (arch not in front)


def test_a_metric_no_one_gives_is_one_line(capsys, nastk_data, tmp_path):
    code, _, err = run_cli(capsys, *BENCH, "--strategy", "nsga2", "--budget", "2",
                           "--objectives", "acc,metric:bitops_g", "--run-dir", str(tmp_path / "r"))
    assert code == 2 and "no metric bitops_g" in err and "params_m" in err and err.count("\n") == 1


@pytest.mark.parametrize("limit", [30, 60])
def test_constrained_re_wins_within_budget_and_skips_what_costs_rule_out(nb201, bench, limit):
    counting = Counting(bench)
    constraints = parse_constraints(f"flops<={limit}")
    evaluator = ObjectivesEvaluator(counting, nb201, "cifar10", parse_objectives("acc"), constraints)
    outcome = run_search(make_strategy("re", nb201, seed=0, population_size=8, sample_size=3), evaluator, 40)
    results = [trial.result for trial in outcome.trials]
    skipped = [r for r in results if SKIPPED in r.protocol]
    assert skipped and counting.calls == 40 - len(skipped)  # ruled out by cost() before evaluating
    assert all(r.infeasible and r.cost_s == 0 and "accuracy" not in r.metrics and r.metrics["flops_m"] > limit
               and violations(r)[f"flops<={limit}"] == pytest.approx(r.metrics["flops_m"] - limit) for r in skipped)
    feasible = [r for r in results if not r.infeasible]
    assert all(r.metrics["flops_m"] <= limit and violations(r) == {f"flops<={limit}": 0.0} for r in feasible)
    best = outcome.best_result
    assert not best.infeasible and best.metrics["flops_m"] <= limit
    assert best.value == max(r.value for r in feasible)


def test_cli_constraints_recorded_resumed_and_checked_after_evaluating(capsys, nastk_data, tmp_path):
    run = tmp_path / "c"
    code, first, _ = run_cli(capsys, *BENCH, "--strategy", "re", "--budget", "12", "--constraint", "flops<=50",
                             "--constraint", "acc>=70", "--run-dir", str(run))
    assert code == 0 and json.loads((run / "config.json").read_text())["constraints"] == ["flops<=50", "acc>=70"]
    records = journal(run)
    evaluated_out = [r for r in records if r["result"]["metrics"]["feasible"] == 0
                     and SKIPPED not in r["result"]["protocol"]]
    assert evaluated_out and all(r["result"]["metrics"]["accuracy"] < 70 and r["result"]["cost_s"] > 0
                                 for r in evaluated_out)  # measured, then found infeasible
    counts = first["constraints"]
    assert counts["feasible"] + counts["infeasible"] == 12 and counts["not_evaluated"] == sum(
        SKIPPED in r["result"]["protocol"] for r in records) > 0
    best = next(r for r in records if r["arch"] == first["best_arch"])["result"]["metrics"]
    assert best["feasible"] == 1 and best["flops_m"] <= 50 and first["best_objective"] >= 70
    code, resumed, _ = run_cli(capsys, "search", "--run-dir", str(run), "--resume", "--budget", "16",
                               "--no-progress", "--format", "json")
    assert code == 0 and resumed["evaluations"] == 16 and resumed["replayed"] == 12
    assert resumed["constraints"]["constraints"] == ["flops<=50", "acc>=70"]
    assert all("feasible" in r["result"]["metrics"] for r in journal(run))
    code, _, err = run_cli(capsys, *BENCH, "--strategy", "re", "--budget", "16", "--constraint", "flops<=60",
                           "--run-dir", str(run), "--resume")
    assert code == 2 and "differs in constraints" in err and err.count("\n") == 1
    config = tmp_path / "c.yaml"
    config.write_text("budget: 3\nconstraints:\n  - acc>=99\n")  # a config file's list
    code, none, _ = run_cli(capsys, *BENCH, "--config", str(config), "--run-dir", str(tmp_path / "n"))
    assert code == 0 and none["best_arch"] is None and none["best_objective"] is None  # no feasible winner


def test_optuna_is_told_the_violations(nb201, bench):
    evaluator = ObjectivesEvaluator(bench, nb201, "cifar10", parse_objectives("acc,params"),
                                    parse_constraints("flops<40"))
    strategy = make_strategy("nsga2", nb201, seed=0, objectives="acc,params", population_size=6)
    outcome = run_search(strategy, evaluator, 14)
    trials = strategy.study.get_trials()
    assert all(t.state.name == "COMPLETE" and set(t.constraints) == {"flops<40"} for t in trials)
    out = [t for t in trials if t.constraints["flops<40"] > 0]
    assert out and all(t.values[0] == -math.inf for t in out)  # not evaluated: the worst accuracy
    assert len(outcome.trials) == 14 and not outcome.best_result.infeasible
