"""``nastk reproduce SPACE`` beyond NB201: the DARTS 214-genotype benchmark (incomplete, no training
times, a test-accuracy objective), a plug-in space with its own benchmark, refused inputs and progress."""
import json

import numpy as np
import pytest

from nastk.architecture import Architecture
from nastk.benchmarks import registry
from nastk.benchmarks.registry import Benchmark
from nastk.protocol import BenchmarkProtocol
from nastk.reproduce import default_datasets, default_strategies, search_trace
from nastk.space import SearchSpace
from cli_run import run_cli  # tests/ is on sys.path under pytest


# --- DARTS: searches confined to the 214 genotypes ------------------------------------------------------
def test_darts_searches_stay_among_the_214_genotypes(darts_rows):
    from nastk.benchmarks.registry import benchmark_for

    known = {arch.to_str() for arch in benchmark_for("darts").archs()}
    for strategy in ("random", "bo-encoding"):
        trace = search_trace(strategy, "cifar10", 0, 12, space="darts")
        assert len(trace.archs) == 12 and set(trace.archs) <= known
        assert trace.cost == [0.0] * 12 and trace.objective == trace.test  # test600 is searched and reported


def test_darts_report(capsys, darts_rows, tmp_path):
    code, out, err = run_cli(capsys, "reproduce", "darts", "--seeds", "0-1", "--budget", "12", "--out", str(tmp_path),
                             "--format", "json")
    assert code == 0, err
    report = json.loads((tmp_path / "darts_search.json").read_text())
    markdown = (tmp_path / "darts_search.md").read_text()
    assert (tmp_path / "darts_search_anytime.png").is_file()
    assert report["settings"]["strategies"] == ["random", "bo-encoding"] and report["settings"]["datasets"] == ["cifar10"]
    best_of_214 = max(float(row["test_acc_ep600"]) for row in darts_rows)  # read independently of nastk's table
    assert report["optimum"]["cifar10"] == pytest.approx(best_of_214)
    assert json.loads(out)["optimum"]["cifar10"] == pytest.approx(best_of_214)
    assert report["benchmark"]["protocols"]["cifar10"]["search"] == "cifar10/test/600/last"
    assert not report["equal_time"] and "time" not in report["results"]["cifar10"]["random"]
    for row in report["results"]["cifar10"].values():
        assert all(96.0 <= v <= best_of_214 for v in row["queries"]["values"])
    assert "# Search strategies on the DARTS 214-genotype benchmark (space darts)" in markdown
    assert "NB201" not in markdown and "recalled" not in markdown
    assert "**The search objective is a test accuracy**" in markdown and "oracle" in markdown
    assert f"best of the 214 benchmark architectures | {best_of_214:.2f}" in markdown
    assert "Skipped:" in markdown and "records no training time" in markdown


def test_default_strategies_and_datasets(nastk_data, darts_rows):
    assert default_strategies("darts") == ("random", "bo-encoding")
    assert default_datasets("darts") == ("cifar10",)
    assert default_datasets("nb201") == ("cifar10", "cifar100", "ImageNet16-120")


# --- a plug-in space (package.module:Class) with its own registered benchmark --------------------------
class ToyTable:
    """Made-up accuracies and training times of PluginSpace's six networks: wider is better and slower."""

    source = "toy"

    def evaluator_protocols(self, dataset, objective):
        return BenchmarkProtocol(dataset, "valid", 12), BenchmarkProtocol(dataset, "test", 200)

    def accuracy(self, arch, protocol):
        width, act = arch.choices
        return {4: 80.0, 8: 85.0, 16: 90.0}[width] + (act == "relu") + (protocol.split == "test") / 2

    def train_time(self, arch, dataset, epochs):
        return {"seconds": 10.0 * arch.choices[0], "source": f"{dataset}/train_time_s/12"}


class ToyBenchmark(Benchmark):
    name, title, space, complete, datasets = "toy", "a toy table", "plugin", True, ("toy10", "toy100")
    default_objective = "valid12"

    def load_table(self, path=None, trust_pickle=False):
        return ToyTable()

    def truth(self, archs, dataset, protocol=None):
        report = BenchmarkProtocol(dataset, "test", 200)
        return np.array([ToyTable().accuracy(arch, report) for arch in archs]), report.key


class BareSpace(SearchSpace):
    """A space without a choice model: it samples and encodes, nothing more (no mutate, no optuna)."""

    name = "bare"

    def sample(self, rng):
        return Architecture("bare", (int(rng.integers(3)),))

    def encode(self, arch):
        return np.eye(3)[arch.choices[0]]

    def to_str(self, arch):
        return str(arch.choices[0])

    def from_str(self, text):
        return Architecture("bare", (int(text),))


@pytest.fixture
def toy_benchmarks(monkeypatch):
    monkeypatch.setitem(registry._BENCHMARKS._entries, "plugin", ToyBenchmark)
    monkeypatch.setitem(registry._BENCHMARKS._entries, "bare", type("BareBenchmark", (ToyBenchmark,), {"space": "bare"}))
    registry.benchmark_for.cache_clear()
    yield
    registry.benchmark_for.cache_clear()


@pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")  # every toy search finds the optimum
def test_plugin_space_with_its_own_benchmark(capsys, tmp_path, toy_benchmarks):
    code, out, err = run_cli(capsys, "reproduce", "plugin_space:PluginSpace", "--seeds", "0-1", "--budget", "6",
                             "--out", str(tmp_path), "--no-progress")
    assert code == 0, err
    assert err == "" and "report:" in out
    report = json.loads((tmp_path / "plugin_search.json").read_text())
    markdown = (tmp_path / "plugin_search.md").read_text()
    assert report["settings"]["strategies"] == ["random", "re", "bo-tpe", "bo-gp", "nsga2"]
    assert report["optimum"] == {"toy10": 91.5, "toy100": 91.5}  # 16 wide, relu, test
    assert report["equal_time"] and report["time_budget_s"]["toy10"] > 0
    assert "# Search strategies on a toy table (space plugin)" in markdown and "NB201 paper" not in markdown
    assert "optimum of the space | 91.50 | 91.50" in markdown and "T per dataset" in markdown


def test_a_strategy_the_space_cannot_run_is_refused(capsys, tmp_path, toy_benchmarks, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert default_strategies("test_reproduce_spaces:BareSpace") == ("random",)
    code, _, err = run_cli(capsys, "reproduce", "test_reproduce_spaces:BareSpace", "--strategies", "random,re")
    assert code == 2 and err.count("\n") == 1 and "strategy re needs capability mutate" in err
    assert not list(tmp_path.iterdir())


# --- refused inputs: one line, exit 2, nothing written ---------------------------------------------------
@pytest.mark.parametrize("argv, fragment", [
    (["nope"], "unknown search space 'nope'"),
    (["plugin_space:PluginSpace"], "has no benchmark"),
    (["nb201", "--datasets", "cifar10,mnist"], "no dataset 'mnist'"),
    (["darts", "--datasets", "cifar100"], "no dataset 'cifar100'"),
    (["nb201", "--strategies", "random,foo"], "unknown strategy 'foo'"),
    (["nb201", "--strategies", "re"], "must include random"),
    (["darts", "--strategies", "random,re"], "only strategies that search that pool can run: random, bo-encoding"),
    (["nb201", "--seeds", "0"], "give seeds such as"),
    (["nb201", "--seeds", "2-1"], "give seeds such as"),
    (["nb201", "--budget", "-3"], "must be"),
    (["nb201", "--budget", "10", "--max-queries", "5"], "max_queries (5) must be at least the budget (10)"),
    (["nb201", "--out", "taken"], "taken is a file"),
    (["nb201", "--out", "taken/sub"], "taken is a file"),
])
def test_bad_input_is_one_line_and_writes_nothing(capsys, tmp_path, monkeypatch, nastk_data, darts_rows, argv, fragment):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "taken").write_text("")
    code, out, err = run_cli(capsys, "reproduce", *argv)
    assert code == 2 and out == "" and err.count("\n") == 1 and fragment in err
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]


# --- progress -----------------------------------------------------------------------------------------
def test_progress_lines_on_a_non_terminal_stderr(capsys, tmp_path, darts_rows):
    code, _, err = run_cli(capsys, "reproduce", "darts", "--seeds", "0-1", "--budget", "3", "--strategies", "random",
                           "--out", str(tmp_path))
    assert code == 0
    lines = err.splitlines()
    assert [line.split("  ")[0] for line in lines] == ["reproduce 1/2 searches", "reproduce 2/2 searches"]
    assert "best 9" in lines[0] and "left" in lines[0] and "elapsed" in lines[-1]
