"""Look-up evaluation on the NAS-Bench-201 table, charging the simulated training time.

The strategy optimises one protocol (by default NB201's search protocol: validation accuracy after
12 epochs, on cifar10-valid for cifar10) and the winner is reported under another (200-epoch test
accuracy). Each query costs the training time the benchmark recorded for the objective protocol, so
strategies can be compared at equal simulated time as well as at equal query counts.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

from nastk.architecture import Architecture
from nastk.benchmarks.nb201 import NB201Table, default_table
from nastk.evaluator import Evaluator, Result
from nastk.protocol import Protocol

#: The dataset whose validation split stands in for each dataset during search (NB201 convention:
#: ``cifar10`` has no validation split, so searches use ``cifar10-valid``).
SEARCH_DATASET = {"cifar10": "cifar10-valid", "cifar10-valid": "cifar10-valid",
                  "cifar100": "cifar100", "ImageNet16-120": "ImageNet16-120"}
#: Shorthand objective names accepted by the CLI.
OBJECTIVES = {"valid12": ("valid", 12), "valid200": ("valid", 200), "test200": ("test", 200), "test12": ("test", 12)}


def objective_protocol(dataset: str, objective: str = "valid12") -> Protocol:
    """The protocol a search on ``dataset`` optimises: a shorthand (valid12, ...) or a full key."""
    if objective in OBJECTIVES:
        split, epochs = OBJECTIVES[objective]
        return Protocol(SEARCH_DATASET[dataset] if split == "valid" else dataset, split, epochs)
    return Protocol.parse(objective)


class BenchmarkEvaluator(Evaluator):
    objective = "accuracy"

    def __init__(self, dataset: str, objective: str = "valid12", table: Optional[NB201Table] = None):
        self.table = table or default_table()
        self.search_protocol = self.table.resolve(objective_protocol(dataset, objective))
        self.report_protocol = self.table.resolve(Protocol(dataset, "test", 200))

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
        return self.benchmark.final_metrics(arch)

    def describe(self) -> Dict[str, Any]:
        return {**self.inner.describe(), "report": self.benchmark.report_protocol.key}
