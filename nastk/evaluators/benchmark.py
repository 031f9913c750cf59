"""Look-up evaluation in a benchmark's table, charging the simulated training time.

The strategy optimises one protocol (NB201's default search protocol: validation accuracy after 12
epochs, on cifar10-valid for cifar10) and the winner is reported under another (NB201: 200-epoch test
accuracy). Each query costs the training time the benchmark recorded for the objective protocol, so
strategies can be compared at equal simulated time as well as at equal query counts.

Nothing here names a space or a benchmark: the evaluator asks the
:class:`~nastk.benchmarks.registry.Benchmark` it is given for its table, protocols and defaults.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

from nastk.architecture import Architecture
from nastk.benchmarks.registry import Benchmark, benchmark_for, benchmark_spaces, has_benchmark
from nastk.errors import ConfigError
from nastk.evaluator import Evaluator, Result
from nastk.options import Bool, Option, Text
from nastk.space import SearchSpace


class BenchmarkEvaluator(Evaluator):
    """Look-ups in a benchmark's table, each query charged the training time it records.

    ``benchmark`` says which table (default its shared one), which dataset and objective are the
    defaults and which (search, report) protocols an objective means; ``table`` may be any table with
    ``source``, ``evaluator_protocols(dataset, objective)``, ``accuracy(arch, protocol)`` and
    ``train_time(arch, dataset, epochs)`` (e.g. a ``--table`` file the benchmark read)."""

    objective = "accuracy"
    #: ``--evaluator benchmark``: the searched space's benchmark (``nastk.benchmarks.registry``) builds it.
    OPTIONS = (Option("benchmark", Text(), "benchmark to look architectures up in (default: the space's own)", None),
               Option("dataset", Text(), "benchmark dataset, e.g. NB201's cifar10, cifar10-valid, cifar100, "
                                         "ImageNet16-120 (required)", None),
               Option("objective", Text(), "protocol the search maximises (default: the benchmark's own, recorded in "
                      "the run config: NB201 valid12, its search protocol; the DARTS table test600; NATS test90), a "
                      "benchmark shorthand such as valid200 or test200 (an oracle), or dataset/split/epochs[/family]",
                      None),
               Option("table", Text(), "table file: NB201's compact .csv.gz, the official .pth or a nastk .npz", None),
               Option("trust_pickle", Bool(), "allow a full unpickle of an official .pth that needs it "
                                              "(only for a file you trust)", False))

    @classmethod
    def settle_config(cls, space, config: Dict[str, Any]) -> None:
        """A benchmark search names its benchmark (default: the space's own) and its objective (default: the
        benchmark's), and needs a dataset."""
        if not config["benchmark"] and has_benchmark(space.name):
            config["benchmark"] = benchmark_for(space.name).name  # else from_config says why not
        if not config.get("objective") and has_benchmark(space.name):  # the run records what it maximised
            config["objective"] = space_benchmark(space, config["benchmark"]).default_objective
        if not config["dataset"]:
            datasets = ", ".join(benchmark_for(space.name).datasets) if has_benchmark(space.name) else "its datasets"
            raise ConfigError(f"a benchmark search needs --dataset ({datasets})")

    @classmethod
    def from_config(cls, space, config: Dict[str, Any], seed: int = 0, device: Optional[str] = None) -> Evaluator:
        """The look-up a run config's ``evaluator`` mapping describes (a look-up uses no device)."""
        return benchmark_evaluator(space_benchmark(space, config.get("benchmark")), config)

    def __init__(self, benchmark: Benchmark, dataset: Optional[str] = None, objective: Optional[str] = None,
                 table=None):
        dataset = dataset or benchmark.default_dataset
        if not dataset:
            raise ConfigError(f"a look-up in {benchmark.title or benchmark.name} needs a dataset "
                              f"({', '.join(benchmark.datasets)})")
        self.benchmark = benchmark
        self.table = benchmark.load_table() if table is None else table
        self.search_protocol, self.report_protocol = benchmark.protocols(
            self.table, dataset, objective or benchmark.default_objective)

    def evaluate(self, arch: Architecture) -> Result:
        time = self.table.train_time(arch, self.search_protocol.dataset, self.search_protocol.epochs)
        metrics = {"accuracy": self.table.accuracy(arch, self.search_protocol),
                   "test_accuracy": self.table.accuracy(arch, self.report_protocol)}
        return Result(metrics, cost_s=time["seconds"], objective="accuracy",
                      protocol={"objective": self.search_protocol.key, "test_accuracy": self.report_protocol.key,
                                "cost": time["source"]})

    def final_metrics(self, arch: Architecture) -> Dict[str, float]:
        return {"test_accuracy": self.table.accuracy(arch, self.report_protocol)}

    def describe(self) -> Dict[str, Any]:
        return {"evaluator": "benchmark", "table": self.table.source, "objective": self.search_protocol.key,
                "report": self.report_protocol.key}


def benchmark_evaluator(benchmark: Benchmark, config: Dict[str, Any]) -> BenchmarkEvaluator:
    """The look-up a config mapping describes: ``dataset`` and ``objective`` (default: the benchmark's),
    optional ``table`` file (read by the benchmark) and ``trust_pickle``."""
    table = benchmark.load_table(config["table"], config.get("trust_pickle", False)) if config.get("table") else None
    return BenchmarkEvaluator(benchmark, config.get("dataset"), config.get("objective"), table)


def space_benchmark(space: SearchSpace, requested) -> Benchmark:
    """The benchmark of ``space``, checked against the one a config names."""
    if not has_benchmark(space.name):
        raise ConfigError(f"space {space.name!r} has no benchmark: none can evaluate its architectures "
                          f"(benchmarks exist for spaces: {', '.join(benchmark_spaces()) or 'none'})")
    benchmark = benchmark_for(space.name)
    if requested not in (None, benchmark.name):
        raise ConfigError(f"benchmark {requested!r} cannot evaluate architectures of space {space.name!r}; "
                          f"its benchmark is {benchmark.name!r}")
    return benchmark


class BenchmarkReported(Evaluator):
    """Any evaluator (e.g. a zero-cost proxy) whose results also carry the benchmark's test accuracy,
    so searches by proxy get anytime curves and a reported winner on the benchmark's terms."""

    def __init__(self, inner: Evaluator, benchmark: BenchmarkEvaluator):
        self.inner, self.benchmark = inner, benchmark
        self.objective = inner.objective

    def evaluate(self, arch: Architecture) -> Result:
        result = self.inner.evaluate(arch)
        metrics = {**result.metrics, **self.benchmark.final_metrics(arch)}
        protocol = {**result.protocol, "test_accuracy": self.benchmark.report_protocol.key}
        return Result(metrics, result.cost_s, result.objective, protocol)

    def final_metrics(self, arch: Architecture) -> Dict[str, float]:
        """The inner evaluator's report on the winner (if any), the benchmark's ground truth over it."""
        return {**(self.inner.final_metrics(arch) or {}), **self.benchmark.final_metrics(arch)}

    def final_model(self):
        return self.inner.final_model()

    def describe(self) -> Dict[str, Any]:
        return {**self.inner.describe(), "report": self.benchmark.report_protocol.key}
