"""Look-up evaluation on a benchmark table, charging the simulated training time.

The strategy optimises one protocol (NB201's default search protocol: validation accuracy after 12
epochs, on cifar10-valid for cifar10) and the winner is reported under another (NB201: 200-epoch test
accuracy). Each query costs the training time the benchmark recorded for the objective protocol, so
strategies can be compared at equal simulated time as well as at equal query counts.
"""
from __future__ import annotations

from typing import Any, Dict

from nastk.architecture import Architecture
from nastk.benchmarks.nb201 import OBJECTIVES, SEARCH_DATASET, objective_protocol  # noqa: F401 (NB201's, re-exported)
from nastk.errors import ConfigError
from nastk.evaluator import Evaluator, Result
from nastk.options import Bool, Option, Text


class BenchmarkEvaluator(Evaluator):
    """Look-ups in the space's benchmark table, each query charged the training time it records.

    Any table with ``source``, ``evaluator_protocols(dataset, objective)`` (-> search and
    report protocol), ``accuracy(arch, protocol)`` and ``train_time(arch, dataset, epochs)`` works: NB201's
    :class:`~nastk.benchmarks.nb201.NB201Table` (the default) or :class:`nastk.benchmarks.darts.DartsTable`."""

    objective = "accuracy"
    #: ``--evaluator benchmark``: the searched space's benchmark (``nastk.benchmarks.registry``) builds it.
    OPTIONS = (Option("benchmark", Text(), "benchmark to look architectures up in (default: the space's own)", None),
               Option("dataset", Text(), "benchmark dataset, e.g. NB201's cifar10, cifar10-valid, cifar100, "
                                         "ImageNet16-120 (required)", None),
               Option("objective", Text(nullable=False), "protocol the search maximises: valid12 (NB201's search "
                      "protocol), valid200, test200 (an oracle), or dataset/split/epochs[/family]", "valid12"),
               Option("table", Text(), "table file: NB201's compact .csv.gz, the official .pth or a nastk .npz", None),
               Option("trust_pickle", Bool(), "allow a full unpickle of an official .pth that needs it "
                                              "(only for a file you trust)", False))

    @classmethod
    def settle_config(cls, space, config: Dict[str, Any]) -> None:
        """A benchmark search names its benchmark (default: the space's own) and needs a dataset."""
        from nastk.benchmarks.registry import benchmark_for, has_benchmark

        if not config["benchmark"] and has_benchmark(space.name):
            config["benchmark"] = benchmark_for(space.name).name  # else from_config says why not
        if not config["dataset"]:
            datasets = ", ".join(benchmark_for(space.name).datasets) if has_benchmark(space.name) else "its datasets"
            raise ConfigError(f"a benchmark search needs --dataset ({datasets})")

    @classmethod
    def from_config(cls, space, config: Dict[str, Any], seed: int = 0, device: str = "cpu") -> Evaluator:
        from nastk.evaluators import space_benchmark

        return space_benchmark(space, config.get("benchmark")).evaluator(config)

    def __init__(self, dataset: str, objective: str = "valid12", table=None):
        if table is None:
            from nastk.benchmarks.nb201 import default_table

            table = default_table()
        self.table = table
        self.search_protocol, self.report_protocol = table.evaluator_protocols(dataset, objective)

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
