"""Optuna-backed strategies (bo-tpe, bo-gp, nsga2, bo-encoding), multi-objective evaluation, the Pareto
front and EAGAN's selection: seeded, resumable, and searching better than chance."""
import json
import math

import numpy as np
import optuna
import pytest

from nastk.architecture import Architecture
from nastk.cli import main
from nastk.errors import CapabilityError, ConfigError, RunError
from nastk.evaluator import Evaluator, Result
from nastk.benchmarks.registry import benchmark_for
from nastk.evaluators.benchmark import BenchmarkEvaluator
from nastk.evaluators.multi_objective import ObjectivesEvaluator, parse_objectives, pareto_front
from nastk.run_folder import JOURNAL, Run, run_search
from nastk.space import SPACES, SearchSpace, get_space
from nastk.survivor_selection import EaganSelection, merged_fronts, select
from nastk.strategy import make_strategy

FAST = {"bo-tpe": {}, "bo-gp": {"n_startup_trials": 4}, "nsga2": {"population_size": 6},
        "bo-encoding": {"sampler": "tpe"}}


@pytest.fixture
def evaluator(nb201_table):
    return BenchmarkEvaluator(benchmark_for("nb201"), "cifar10", table=nb201_table)


def archs(outcome):
    return [record.arch for record in outcome.trials]


@pytest.mark.parametrize("name", sorted(FAST))
def test_same_seed_same_proposals_other_seed_others(nb201, evaluator, name):
    budget = 7 if name == "bo-gp" else 20
    first, again, other = (run_search(make_strategy(name, nb201, seed=s, **FAST[name]), evaluator, budget)
                           for s in (3, 3, 4))
    assert archs(first) == archs(again)
    assert archs(first) != archs(other)


@pytest.mark.parametrize("name", ["bo-tpe", "nsga2", "bo-encoding"])
def test_state_dict_round_trip_continues_identically(nb201, evaluator, name):
    reference = make_strategy(name, nb201, seed=7, **FAST[name])
    proposals = []
    for step in range(30):
        arch = reference.ask()
        proposals.append(arch)
        reference.tell(arch, evaluator.evaluate(arch))
        if step == 14:
            state = json.loads(json.dumps(reference.state_dict()))
    restored = make_strategy(name, nb201, seed=123, **FAST[name])
    restored.load_state_dict(state)
    for step in range(15, 30):
        arch = restored.ask()
        assert arch == proposals[step]
        restored.tell(arch, evaluator.evaluate(arch))
    bad = dict(state, history=[["|none~0|+|none~0|none~1|+|none~0|none~1|none~2|", state["history"][0][1]]])
    with pytest.raises(RunError, match="diverged"):
        make_strategy(name, nb201, seed=0, **FAST[name]).load_state_dict(bad)


class Crash(Exception):
    pass


class CrashAfter(Evaluator):
    def __init__(self, inner, after=None):
        self.inner, self.after, self.calls = inner, after, 0

    def evaluate(self, arch):
        if self.after is not None and self.calls >= self.after:
            raise Crash
        self.calls += 1
        return self.inner.evaluate(arch)


@pytest.mark.parametrize("name", ["bo-tpe", "bo-gp", "nsga2"])
def test_interrupted_run_resumes_by_replay(nb201, evaluator, tmp_path, name):
    budget, config = (8 if name == "bo-gp" else 25), {"strategy": name}
    full = run_search(make_strategy(name, nb201, seed=5, **FAST[name]), evaluator, budget, Run(tmp_path / "full", config))
    with pytest.raises(Crash):
        run_search(make_strategy(name, nb201, seed=5, **FAST[name]), CrashAfter(evaluator, budget - 3), budget,
                   Run(tmp_path / "cut", config))
    counting = CrashAfter(evaluator)
    resumed = run_search(make_strategy(name, nb201, seed=5, **FAST[name]), counting, budget,
                         Run(tmp_path / "cut", config, resume=True))
    assert counting.calls == 3 and resumed.replayed == budget - 3
    assert archs(resumed) == archs(full) and resumed.best_arch == full.best_arch
    assert (tmp_path / "cut" / JOURNAL).read_text().count("\n") == budget


def test_nb201_suggest_declares_six_categorical_edges(nb201):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    arch = nb201.suggest(trial)
    assert list(trial.params) == ["1<-0", "2<-0", "2<-1", "3<-0", "3<-1", "3<-2"]
    assert arch.choices == tuple(trial.params.values()) and nb201.from_str(arch.to_str()) == arch
    assert all(isinstance(d, optuna.distributions.CategoricalDistribution) and len(d.choices) == 5
               for d in trial.distributions.values())


def test_bo_tpe_finds_better_architectures_than_random(nb201, evaluator):
    def best(name, seed):
        return run_search(make_strategy(name, nb201, seed=seed), evaluator, 60).best_result.metrics["test_accuracy"]

    tpe = np.mean([best("bo-tpe", s) for s in range(10)])
    rs = np.mean([best("random", s) for s in range(10)])
    assert tpe > rs + 0.2


class ToySpace(SearchSpace):
    """A space optuna cannot see (no suggest): two integers 0..20, encoded as themselves."""

    name = "toy-bowl"

    def to_str(self, arch):
        return ",".join(map(str, arch.choices))

    def from_str(self, text):
        return Architecture(self.name, tuple(int(v) for v in text.split(",")))

    def sample(self, rng):
        return Architecture(self.name, tuple(int(v) for v in rng.integers(0, 21, size=2)))

    def encode(self, arch):
        return np.array(arch.choices, dtype=float)


class Bowl(Evaluator):
    def evaluate(self, arch):
        x, y = arch.choices
        return Result({"accuracy": 100.0 - (x - 14) ** 2 - (y - 5) ** 2})


def test_bo_encoding_searches_a_space_optuna_cannot_express():
    SPACES.register(ToySpace.name, ToySpace)  # architectures name their space through the registry
    space = get_space(ToySpace.name)
    with pytest.raises(CapabilityError, match="optuna"):
        make_strategy("bo-tpe", space)
    strategy = make_strategy("bo-encoding", space, seed=0, sampler="gp", n_startup_trials=5, pool_size=441)
    assert 400 < len(strategy.pool) == len(set(strategy.pool)) <= 441  # up to 3 x pool_size draws
    assert strategy.project(np.array([13.6, 5.4])) == min(
        strategy.pool, key=lambda a: (a.choices[0] - 13.6) ** 2 + (a.choices[1] - 5.4) ** 2)
    best_in_pool = max(Bowl().evaluate(a).value for a in strategy.pool)
    outcome = run_search(strategy, Bowl(), 16)
    assert outcome.best_result.value >= best_in_pool - 5  # two steps or so from the best of 400+ candidates


# --- multi-objective ------------------------------------------------------------------------------
def test_parse_objectives():
    assert [o.metric for o in parse_objectives("acc,params,latency")] == [None, "params_m", "edgegpu_latency"]
    assert [o.direction for o in parse_objectives(["acc", "fpga_energy"])] == ["maximize", "minimize"]
    for bad, fragment in [("acc,weight", "unknown objective"), ("params,acc", "start with score"), ("acc,acc", "once")]:
        with pytest.raises(ConfigError, match=fragment):
            parse_objectives(bad)


def test_objective_metrics_match_the_benchmarks(nb201, nb201_table, evaluator):
    wrapped = ObjectivesEvaluator(evaluator, nb201, "cifar10", parse_objectives("acc,params,flops,latency,edgetpu_latency"))
    rng = np.random.default_rng(0)
    for arch in [nb201.sample(rng) for _ in range(4)]:
        result = wrapped.evaluate(arch)
        assert result.metrics["params_m"] == pytest.approx(nb201_table.metrics(arch, "cifar10")["cifar10/params_m"], abs=1e-6)
        assert result.value == evaluator.evaluate(arch).value and result.metrics["flops_m"] > 0
    first = wrapped.evaluate(benchmark_for("nb201").arch_at(0)).metrics  # values printed in HW-NAS-Bench's example notebook
    assert first["edgegpu_latency"] == pytest.approx(5.807418537139893) and first["fpga_energy"] == pytest.approx(18.01072)
    wrapped_in16 = ObjectivesEvaluator(evaluator, nb201, "ImageNet16-120", parse_objectives("acc,flops"))
    assert wrapped_in16.evaluate(benchmark_for("nb201").arch_at(0)).metrics["flops_m"] < first["flops_m"]  # 16x16 inputs
    hardware = ObjectivesEvaluator(evaluator, nb201, "cifar10", parse_objectives("acc,edgetpu_latency"))
    missing = [i for i in range(40) if math.isnan(hardware.evaluate(benchmark_for("nb201").arch_at(i)).metrics["edgetpu_latency"])]
    assert missing  # the source's -1 ("not measured") became NaN


def dominates(a, b, signs):
    a, b = np.asarray(a) * signs, np.asarray(b) * signs
    return bool(np.all(a <= b) and np.any(a < b))


def test_nsga2_pareto_front_is_the_non_dominated_set(nb201, evaluator):
    objectives = parse_objectives("acc,latency")
    wrapped = ObjectivesEvaluator(evaluator, nb201, "cifar10", objectives)
    for selection in ("nsga2", "eagan"):
        outcome = run_search(make_strategy("nsga2", nb201, seed=1, objectives="acc,latency", population_size=8,
                                           selection=selection), wrapped, 40)
        front = pareto_front(outcome.trials, objectives)
        points = {r.arch: (r.result.metrics["accuracy"], r.result.metrics["edgegpu_latency"])
                  for r in outcome.trials}
        signs = np.array([-1.0, 1.0])
        on = {row["arch"] for row in front}
        assert front and len(on) == len(front)
        for arch, point in points.items():
            dominated = any(dominates(other, point, signs) for other in points.values())
            assert dominated == (arch not in on)
        assert [row["score"] for row in front] == sorted((row["score"] for row in front), reverse=True)


def test_eagan_merged_fronts_and_selection():
    # quality loss and model size, lower is better for both. On (quality, size) the fronts are
    # {0,1,3}, {2,4,5}; on (quality, -size) they are {0,2}, {1,4}, {3,5}; merged level by level:
    losses = np.array([[1.0, 5.0], [2.0, 1.0], [3.0, 9.0], [4.0, 0.5], [5.0, 8.0], [6.0, 7.0]])
    assert merged_fronts(losses) == [[0, 1, 3, 2], [4, 5]]
    assert select(losses, 4, np.random.default_rng(0)) == [0, 1, 3, 2]
    fifth = {select(losses, 5, np.random.default_rng(seed))[4] for seed in range(20)}
    assert fifth == {4, 5}  # the overflowing front is sampled uniformly, not by crowding
    picks = {tuple(sorted(select(losses, 2, np.random.default_rng(seed)))) for seed in range(30)}
    assert all(len(set(p)) == 2 and set(p) <= {0, 1, 2, 3} for p in picks) and len(picks) > 1
    assert merged_fronts(np.array([[3.0], [1.0], [1.0], [2.0]])) == [[1, 2], [3], [0]]

    study = optuna.create_study(directions=["maximize", "minimize"])
    study.add_trials([optuna.trial.create_trial(values=[-q, s]) for q, s in losses])
    population = study.get_trials()
    assert [t.number for t in EaganSelection(4, seed=0)(study, population)] == [0, 1, 3, 2]
    three = [t.number for t in EaganSelection(3, seed=0)(study, population)]
    assert three == [t.number for t in EaganSelection(3, seed=0)(study, population)]  # seeded: workers agree
    assert set(three) < {0, 1, 2, 3}


def test_cli_multi_objective_search_reports_the_front(capsys, nastk_data, tmp_path):
    code = main(["search", "--space", "nb201", "--strategy", "nsga2", "--benchmark", "nb201", "--dataset", "cifar100",
                 "--budget", "20", "--seed", "0", "--objectives", "acc,params,latency", "--run-dir", str(tmp_path / "r"),
                 "--format", "json", "--no-progress"])
    out, _ = capsys.readouterr()
    summary = json.loads(out)
    assert code == 0 and summary["evaluations"] == 20 and summary["strategy"]["objectives"] == ["score", "params", "latency"]
    assert summary["pareto_front"] and {"score", "params", "latency", "test_accuracy"} <= set(summary["pareto_front"][0])
    assert (tmp_path / "r" / "pareto.png").stat().st_size > 10_000


@pytest.mark.parametrize("argv, fragment", [
    (["--strategy", "ls", "--workers", "2"], "cannot run on parallel workers"),
    (["--strategy", "bo-tpe", "--objectives", "acc,size"], "unknown objective"),
    (["--strategy", "nsga2", "--selection", "random"], "must be one of nsga2, eagan"),
    (["--strategy", "bo-tpe", "--storage", "not-a-url", "--workers", "1"], "database URL"),
])
def test_cli_errors_are_one_line(capsys, nastk_data, tmp_path, argv, fragment):
    try:
        code = main(["search", "--benchmark", "nb201", "--dataset", "cifar10", "--budget", "4",
                     "--run-dir", str(tmp_path / "r"), "--no-progress"] + argv)
    except SystemExit as exit_:
        code = exit_.code
    _, err = capsys.readouterr()
    assert code == 2 and fragment in err and err.count("\n") == 1
