"""RoBoT: BO over proxy-ensemble weights + greedy exploitation, on synthetic pools and the Suite-Zero table."""
import json
import math

import numpy as np
import pytest

from nastk.benchmarks.proxy_tables import read_proxy_table
from nastk.errors import ConfigError, CorruptDataError
from nastk.evaluator import Evaluator, Result
from nastk.run import JOURNAL, Run, run_search
from nastk.strategies.robot import ProxyPool, RoBoT
from nastk.strategy import make_strategy


class TableEvaluator(Evaluator):
    """Objective = a stored number per architecture; counts evaluations."""

    def __init__(self, values):
        self.values, self.calls = values, 0

    def evaluate(self, arch):
        self.calls += 1
        return Result({"accuracy": self.values[arch]}, cost_s=1.0)


def synthetic(nb201, size=400, seed=0):
    """A pool whose second proxy is the objective itself; the others are noise or misleading."""
    rng = np.random.default_rng(seed)
    codes = rng.choice(len(nb201), size=size, replace=False)
    archs = [nb201.from_code(int(c)) for c in codes]
    objective = rng.normal(size=size)
    proxies = np.column_stack([rng.normal(size=size), objective, -objective + 0.5 * rng.normal(size=size),
                               rng.normal(size=size)])
    return archs, proxies, TableEvaluator(dict(zip(archs, objective.tolist())))


def robot(nb201, archs, proxies, seed=0, budget=10):
    return RoBoT(nb201, seed=seed, budget=budget, proxies=["a", "objective", "anti", "b"], pool=(archs, proxies))


@pytest.mark.parametrize("seed", [0, 1])
def test_finds_the_optimum_when_a_proxy_is_the_objective(nb201, seed):
    archs, proxies, evaluator = synthetic(nb201)
    strategy = robot(nb201, archs, proxies, seed=seed)
    outcome = run_search(strategy, evaluator, 10)
    assert outcome.best_result.value == pytest.approx(max(evaluator.values.values()))
    assert strategy.best_weights[1] > 0  # it learned that the objective proxy counts positively


def test_never_requeries_and_duplicate_bo_steps_are_free(nb201):
    archs, proxies, evaluator = synthetic(nb201, size=6, seed=3)
    strategy = robot(nb201, archs, proxies, budget=6)
    outcome = run_search(strategy, evaluator, 6)
    asked = [record["arch"] for record in outcome.history]
    assert len(set(asked)) == 6 == evaluator.calls  # the whole 6-arch pool, each once
    assert strategy.bo_steps == 6
    # on a 6-arch pool BO repeats argmaxes; those steps were completed without asking
    assert strategy.distinct_bo_queries < 6
    assert sum(not step["new"] for step in strategy.trace) == 6 - strategy.distinct_bo_queries
    with pytest.raises(ConfigError, match="queried all 6"):
        strategy.ask()


def test_exploitation_follows_the_best_weights_ranking(nb201):
    archs, proxies, evaluator = synthetic(nb201, size=200, seed=5)
    strategy = robot(nb201, archs, proxies, budget=4)
    outcome = run_search(strategy, evaluator, 12)
    bo_archs = {step["arch"] for step in strategy.trace if step["new"]}
    exploited = [record["arch"] for record in outcome.history if record["arch"] not in bo_archs]
    ranking = [archs[row].to_str() for row in strategy.pool.ranking(strategy.best_weights)]
    assert exploited == [a for a in ranking if a not in bo_archs][:len(exploited)]
    assert len(exploited) == 12 - strategy.distinct_bo_queries


def test_same_seed_same_proposals_other_seed_differs(nb201):
    archs, proxies, evaluator = synthetic(nb201)
    histories = [[r["arch"] for r in run_search(robot(nb201, archs, proxies, seed=s, budget=5), evaluator, 5).history]
                 for s in (2, 2, 3)]
    assert histories[0] == histories[1]
    assert histories[0] != histories[2]


def test_resume_by_replay_and_state_dict_round_trip(nb201, tmp_path):
    archs, proxies, evaluator = synthetic(nb201)
    make = lambda seed: robot(nb201, archs, proxies, seed=seed, budget=4)  # noqa: E731
    full = run_search(make(6), evaluator, 7, Run(tmp_path / "full", {"seed": 6}))
    cut = tmp_path / "cut"
    Run(cut, {"seed": 6})
    lines = (tmp_path / "full" / JOURNAL).read_text().splitlines()
    (cut / JOURNAL).write_text("\n".join(lines[:3]) + "\n")
    resumed = run_search(make(6), evaluator, 7, Run(cut, {"seed": 6}, resume=True))
    assert resumed.replayed == 3 and resumed.evaluated == 4
    assert [r["arch"] for r in resumed.history] == [r["arch"] for r in full.history]

    state = make(6)
    for record in full.history[:3]:
        state.tell(state.ask(), Result.from_dict(record["result"]))
    restored = make(99)
    restored.load_state_dict(json.loads(json.dumps(state.state_dict())))
    assert restored.seed == 6
    for record in full.history[3:]:
        arch = restored.ask()
        assert arch.to_str() == record["arch"]
        restored.tell(arch, Result.from_dict(record["result"]))


def test_pool_normalisation_nan_and_constant_columns(nb201):
    archs = [nb201.from_code(c) for c in range(4)]
    values = np.array([[0.0, 5.0, np.nan], [2.0, 5.0, np.nan], [4.0, 5.0, np.nan], [np.nan, 5.0, np.nan]])
    pool = ProxyPool(archs, values, ["x", "const", "empty"])
    np.testing.assert_allclose(pool.normalised[:, 0], [0.0, 0.5, 1.0, 0.0])
    np.testing.assert_allclose(pool.normalised[:, 1], 5.0)
    np.testing.assert_allclose(pool.normalised[:, 2], 0.0)
    assert list(pool.ranking([1.0, 0.0, 0.0])) == [2, 1, 0, 3]
    with pytest.raises(ConfigError, match="twice"):
        ProxyPool(archs + archs[:1], np.zeros((5, 3)), ["x", "y", "z"])


def test_proxy_table_reader(nastk_data, tmp_path):
    suite = read_proxy_table(nastk_data / "nb201" / "nb201_zc_proxies_nbsuitezero.csv.gz", dataset="cifar10",
                             names=["synflow", "jacob_cov"])
    assert len(suite) == 9445 and suite.names == ["synflow", "jacov"] and suite.values.shape == (9445, 2)
    early = read_proxy_table(nastk_data / "nb201" / "nb201_zc_proxies_naslib_early_sample.csv.gz", dataset="cifar10")
    assert len(early) == 725 and "flops" in early.names and "synflow_time_s" not in early.names
    assert np.isnan(early.column("synflow")).sum() == 1  # the README's one missing value is kept
    plain = tmp_path / "mine.csv"
    plain.write_text("arch_str,score\n|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,1.5\n")
    assert read_proxy_table(plain).names == ["score"]
    with pytest.raises(ConfigError, match="no rows"):
        read_proxy_table(nastk_data / "nb201" / "nb201_zc_proxies_nbsuitezero.csv.gz", dataset="cifar100")
    with pytest.raises(CorruptDataError, match="arch_str"):
        (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
        read_proxy_table(tmp_path / "bad.csv")


def test_cli_on_the_suite_zero_table(capsys, nastk_data, tmp_path):
    from nastk.cli import main

    code = main(["search", "--space", "nb201", "--strategy", "robot", "--benchmark", "nb201", "--dataset", "cifar10",
                 "--budget", "20", "--seed", "10", "--format", "json", "--no-progress", "--run-dir", str(tmp_path / "r")])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["evaluations"] == 20 and summary["strategy"]["name"] == "robot"
    assert summary["evaluator"]["objective"].startswith("cifar10-valid/valid/12")
    journal = [json.loads(line) for line in (tmp_path / "r" / JOURNAL).read_text().splitlines()]
    assert len({record["arch"] for record in journal}) == 20
    assert summary["test_accuracy"] > 93.5 and math.isfinite(summary["cost_s"])


def test_registered_and_clear_errors(nb201, nastk_data):
    with pytest.raises(ConfigError, match="dataset"):
        make_strategy("robot", nb201)
    with pytest.raises(ConfigError, match="budget"):
        make_strategy("robot", nb201, budget=0, dataset="cifar10")
    with pytest.raises(ConfigError, match="no column|lacks"):
        make_strategy("robot", nb201, dataset="cifar10", proxies="synflow,nope")
