"""Query strategies, the run engine, journals and exact resume."""
import json
import math

import numpy as np
import pytest

from nastk.errors import ConfigError, RunError
from nastk.evaluator import Evaluator, Result
from nastk.benchmarks.registry import benchmark_for
from nastk.evaluators.benchmark import BenchmarkEvaluator
from nastk.run_folder import JOURNAL, Run, run_search
from nastk.strategy import make_strategy


class Interrupt(Exception):
    pass


class CountingEvaluator(Evaluator):
    """Wraps an evaluator, counts calls and can fail after a number of them (a simulated crash)."""

    def __init__(self, inner, fail_after=None):
        self.inner, self.fail_after, self.calls = inner, fail_after, 0

    def evaluate(self, arch):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise Interrupt
        self.calls += 1
        return self.inner.evaluate(arch)


@pytest.fixture
def evaluator(nb201_table):
    return BenchmarkEvaluator(benchmark_for("nb201"), "cifar10", table=nb201_table)


@pytest.mark.parametrize("name", ["random", "re"])
def test_same_seed_same_search(nb201, evaluator, name):
    runs = [run_search(make_strategy(name, nb201, seed=3), evaluator, 60) for _ in range(2)]
    assert [r.arch for r in runs[0].trials] == [r.arch for r in runs[1].trials]
    other = run_search(make_strategy(name, nb201, seed=4), evaluator, 60)
    assert [r.arch for r in other.trials] != [r.arch for r in runs[0].trials]


@pytest.mark.parametrize("name", ["random", "re"])
def test_state_dict_round_trip_continues_identically(nb201, evaluator, name):
    reference = make_strategy(name, nb201, seed=7)
    proposals = []
    for step in range(40):
        arch = reference.ask()
        proposals.append(arch)
        reference.tell(arch, evaluator.evaluate(arch))
        if step == 19:
            state = json.loads(json.dumps(reference.state_dict()))
    restored = make_strategy(name, nb201, seed=123)
    restored.load_state_dict(state)
    for step in range(20, 40):
        arch = restored.ask()
        assert arch == proposals[step]
        restored.tell(arch, evaluator.evaluate(arch))


def test_regularized_evolution_ages_and_mutates(nb201, evaluator):
    strategy = make_strategy("re", nb201, seed=0, population_size=5, sample_size=2)
    children = []
    for step in range(30):
        arch = strategy.ask()
        if step >= 5:
            # every child is one edge away from some earlier-evaluated architecture
            assert any(sum(a != b for a, b in zip(arch.choices, p.choices)) == 1 for p in children)
        strategy.tell(arch, evaluator.evaluate(arch))
        children.append(arch)
        assert len(strategy.population) == min(step + 1, 5)
    assert [a for a, _ in strategy.population] == children[-5:]  # the oldest died
    with pytest.raises(ConfigError):
        make_strategy("re", nb201, population_size=3, sample_size=5)


def test_re_beats_random_on_average(nb201, evaluator):
    def best(name, seed):
        return run_search(make_strategy(name, nb201, seed=seed), evaluator, 100).best_result.metrics["test_accuracy"]

    re = np.mean([best("re", s) for s in range(12)])
    rs = np.mean([best("random", s) for s in range(12)])
    assert re > rs


def test_nan_objectives_rank_last(nb201):
    class NanFirst(Evaluator):
        def __init__(self):
            self.n = 0

        def evaluate(self, arch):
            self.n += 1
            return Result({"accuracy": math.nan if self.n == 1 else float(self.n)})

    outcome = run_search(make_strategy("re", nb201, seed=0), NanFirst(), 12)
    assert outcome.best_result.value == 12.0


def test_interrupted_run_resumes_to_the_same_result(nb201, evaluator, tmp_path):
    config = {"test": "resume"}
    full = run_search(make_strategy("re", nb201, seed=5), evaluator, 50, Run(tmp_path / "full", config))
    crashing = CountingEvaluator(evaluator, fail_after=23)
    with pytest.raises(Interrupt):
        run_search(make_strategy("re", nb201, seed=5), crashing, 50, Run(tmp_path / "cut", config))
    counting = CountingEvaluator(evaluator)
    resumed = run_search(make_strategy("re", nb201, seed=5), counting, 50, Run(tmp_path / "cut", config, resume=True))
    assert counting.calls == 27 and resumed.replayed == 23
    assert resumed.best_arch == full.best_arch
    assert (tmp_path / "full" / JOURNAL).read_text().count("\n") == (tmp_path / "cut" / JOURNAL).read_text().count("\n") == 50
    strip = lambda h: [(r.arch, r.result) for r in h]  # noqa: E731
    assert strip(resumed.trials) == strip(full.trials)


def test_torn_journal_line_is_dropped_and_re_evaluated(nb201, evaluator, tmp_path):
    config = {"x": 1}
    run_search(make_strategy("random", nb201, seed=1), evaluator, 10, Run(tmp_path, config))
    journal = tmp_path / JOURNAL
    text = journal.read_text()
    journal.write_text(text[: len(text) - 25])  # killed in the middle of writing the last line
    counting = CountingEvaluator(evaluator)
    with pytest.warns(UserWarning, match="partly written"):
        outcome = run_search(make_strategy("random", nb201, seed=1), counting, 10, Run(tmp_path, config, resume=True))
    assert counting.calls == 1 and outcome.replayed == 9
    assert [json.loads(line)["step"] for line in journal.read_text().splitlines()] == list(range(10))


def test_run_folder_guards(nb201, evaluator, tmp_path):
    Run(tmp_path, {"a": 1})
    with pytest.raises(RunError, match="--resume"):
        Run(tmp_path, {"a": 1})
    with pytest.raises(RunError, match="differs in a"):
        Run(tmp_path, {"a": 2}, resume=True)
    run_search(make_strategy("random", nb201, seed=0), evaluator, 5, Run(tmp_path, {"a": 1}, resume=True))
    with pytest.raises(RunError, match="diverged"):
        run_search(make_strategy("random", nb201, seed=99), evaluator, 5, Run(tmp_path, {"a": 1}, resume=True))
    with pytest.raises(RunError, match="more than the budget"):
        run_search(make_strategy("random", nb201, seed=0), evaluator, 3, Run(tmp_path, {"a": 1}, resume=True))
