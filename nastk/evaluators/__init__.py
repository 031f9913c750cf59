"""Evaluators: benchmark look-up, train-from-scratch, zero-cost proxy; :func:`make_evaluator` builds
one from a plain config dict (the form runs store in ``config.json``)."""
from __future__ import annotations

from typing import Any, Dict, Optional

from nastk.benchmarks.registry import Benchmark, benchmark_for, benchmark_spaces, has_benchmark
from nastk.errors import ConfigError
from nastk.evaluator import Evaluator
from nastk.space import SearchSpace


def make_evaluator(space: SearchSpace, config: Dict[str, Any], seed: int = 0, device: str = "cpu") -> Evaluator:
    """``config["kind"]`` is ``benchmark``, ``train`` or ``proxy``; the other keys are its options."""
    kind = config.get("kind")
    if kind == "benchmark":
        return _benchmark(space, config.get("benchmark")).evaluator(config)
    if kind == "train":
        from nastk.evaluators.training import TrainingEvaluator
        from nastk.training import TrainingConfig

        training = TrainingConfig(epochs=config["epochs"], batch_size=config["batch_size"], lr=config["lr"])
        final = TrainingConfig(epochs=config["final_epochs"], batch_size=config["batch_size"], lr=config["lr"])
        return TrainingEvaluator(space, config["dataset"], training, final, seed=seed, device=device,
                                 build_options=config.get("build", {}))
    if kind == "proxy":
        from nastk.evaluators.proxy import ProxyEvaluator

        evaluator = ProxyEvaluator(space, config["proxy"], dataset=config["dataset"],
                                   batch_size=config.get("batch_size", 64), seed=seed, device=device)
        return _reported(space, evaluator, config)
    if kind == "supernet":
        from nastk.evaluators.supernet import SupernetEvaluator

        evaluator = SupernetEvaluator(space, config["run_dir"], eval_size=config.get("eval_size", 1000),
                                      batch_size=config.get("batch_size", 500), device=device)
        return _reported(space, evaluator, config)
    raise ConfigError(f"unknown evaluator kind {kind!r}; known: benchmark, train, proxy:NAME, supernet:RUN_DIR")


def run_evaluator(space: SearchSpace, config: Dict[str, Any], seed: int, device: str) -> Evaluator:
    """A run's evaluator from its whole config: the configured evaluator plus the cost metrics the run's
    ``objectives`` need. The one place both engines (and every worker process) build it."""
    from nastk.evaluators.multi_objective import with_objectives

    return with_objectives(make_evaluator(space, config["evaluator"], seed=seed, device=device), space, config)


def _reported(space: SearchSpace, evaluator: Evaluator, config: Dict[str, Any]) -> Evaluator:
    """A training-free evaluator whose winner is also reported with the benchmark's ground truth."""
    if config.get("report_dataset") and reports_truth(space.name):
        from nastk.evaluators.benchmark import BenchmarkReported

        reporter = benchmark_for(space.name).evaluator({"dataset": config["report_dataset"]})
        return BenchmarkReported(evaluator, reporter)
    return evaluator


def reports_truth(space: str, dataset: Optional[str] = None) -> bool:
    """Whether any search of ``space`` can report benchmark ground truth (its benchmark covers every
    architecture, as NB201's does), for ``dataset`` when given."""
    if not (has_benchmark(space) and benchmark_for(space).complete):
        return False
    return dataset is None or dataset in benchmark_for(space).datasets


def _benchmark(space: SearchSpace, requested) -> Benchmark:
    """The benchmark of ``space``, checked against the one a config names."""
    if not has_benchmark(space.name):
        raise ConfigError(f"no benchmark can evaluate architectures of space {space.name!r} "
                          f"(benchmarks exist for spaces: {', '.join(benchmark_spaces()) or 'none'})")
    benchmark = benchmark_for(space.name)
    if requested not in (None, benchmark.name):
        raise ConfigError(f"benchmark {requested!r} cannot evaluate architectures of space {space.name!r}; "
                          f"its benchmark is {benchmark.name!r}")
    return benchmark
