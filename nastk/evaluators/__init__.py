"""Evaluators: benchmark look-up, train-from-scratch, zero-cost proxy; :func:`make_evaluator` builds
one from a plain config dict (the form runs store in ``config.json``)."""
from __future__ import annotations

from typing import Any, Dict

from nastk.errors import ConfigError
from nastk.evaluator import Evaluator
from nastk.space import SearchSpace


def make_evaluator(space: SearchSpace, config: Dict[str, Any], seed: int = 0, device: str = "cpu") -> Evaluator:
    """``config["kind"]`` is ``benchmark``, ``train`` or ``proxy``; the other keys are its options."""
    kind = config.get("kind")
    if kind == "benchmark":
        from nastk.benchmarks.nb201 import load_table
        from nastk.evaluators.benchmark import BenchmarkEvaluator

        if config.get("benchmark", "nb201") != "nb201":
            raise ConfigError(f"unknown benchmark {config.get('benchmark')!r}; known: nb201")
        if space.name != "nb201":
            raise ConfigError(f"the nb201 benchmark cannot evaluate architectures of space {space.name!r}")
        table = load_table(config.get("table"), trust_pickle=config.get("trust_pickle", False))
        return BenchmarkEvaluator(config["dataset"], config.get("objective", "valid12"), table)
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
        if config.get("report_dataset") and space.name == "nb201":
            from nastk.evaluators.benchmark import BenchmarkEvaluator, BenchmarkReported

            return BenchmarkReported(evaluator, BenchmarkEvaluator(config["report_dataset"]))
        return evaluator
    raise ConfigError(f"unknown evaluator kind {kind!r}; known: benchmark, train, proxy:NAME")
