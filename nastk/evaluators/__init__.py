"""Evaluators by name (``--evaluator KIND[:TARGET]``) and the run-config mapping that rebuilds one.

Each evaluator class declares what its config holds (``OPTIONS``, ``target``, ``builds_networks``,
``reports_benchmark``; see :class:`~nastk.evaluator.Evaluator`), so this module has no table of its
own: :func:`evaluator_config` writes a run's ``evaluator`` mapping from flat option values,
:func:`evaluator_options` reads one back, and :func:`make_evaluator` builds the evaluator from it.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

from nastk.benchmarks.registry import benchmark_for, has_benchmark
from nastk.errors import ConfigError, PluginError, UnknownNameError
from nastk.evaluator import Evaluator
from nastk.evaluators.benchmark import BenchmarkEvaluator, BenchmarkReported, space_benchmark  # noqa: F401
from nastk.options import Option, declared
from nastk.registry import Registry
from nastk.space import SearchSpace

#: Evaluator classes by kind; a user's package adds its own through the entry-point group ``nastk.evaluators``.
EVALUATORS: Registry[type] = Registry("evaluator", group="nastk.evaluators", subclass_of=Evaluator)
EVALUATORS.register("benchmark", "nastk.evaluators.benchmark:BenchmarkEvaluator")
EVALUATORS.register("train", "nastk.evaluators.from_scratch:TrainingEvaluator")
EVALUATORS.register("proxy", "nastk.evaluators.proxy:ProxyEvaluator")
EVALUATORS.register("supernet", "nastk.evaluators.supernet:SupernetEvaluator")
EVALUATORS.register("parzc", "nastk.evaluators.predictor:ParZCEvaluator")
EVALUATORS.register("bossnas", "nastk.oneshot.block_rating:BossNASEvaluator")
EVALUATORS.register("accuracy-predictor", "nastk.evaluators.accuracy_predictor:AccuracyPredictorEvaluator")


def evaluator_class(kind: str) -> type:
    try:
        return EVALUATORS.get(kind)
    except PluginError:  # the name resolves, to something unusable: its own message
        raise
    except UnknownNameError:
        raise ConfigError(f"unknown evaluator {kind!r}; use {', '.join(evaluator_forms())}") from None


def evaluator_forms() -> Tuple[str, ...]:
    """How each evaluator is named on the command line: ``train``, ``proxy:NAME``, ..."""
    forms = []
    for kind in EVALUATORS.names():
        cls = EVALUATORS.get(kind)
        forms.append(f"{kind}:{cls.target_metavar}" if cls.target else kind)
    return tuple(forms)


def parse_evaluator(spec: str) -> Tuple[str, Optional[str]]:
    """``"proxy:synflow"`` -> ``("proxy", "synflow")``; ``"train"`` -> ``("train", None)``; checked."""
    kind, colon, target = str(spec).partition(":")
    cls = evaluator_class(kind)
    if cls.target and not target:
        raise ConfigError(f"--evaluator {kind}:{cls.target_metavar} needs its {cls.target_metavar} after the colon")
    if not cls.target and colon:
        raise ConfigError(f"--evaluator {kind} takes nothing after a colon, got {spec!r}")
    return kind, (target or None)


def evaluator_option_list(cls: type, space: SearchSpace) -> Tuple[Option, ...]:
    """Everything a run config's evaluator mapping holds for ``cls`` on ``space``: its own options and,
    when it builds networks, the space's build options."""
    return declared(cls) + (space.build_options(cls.full_size_networks) if cls.builds_networks else ())


def evaluator_config(space: SearchSpace, spec: str, values: Dict[str, Any]) -> Dict[str, Any]:
    """A run's ``evaluator`` mapping from resolved option ``values`` (:func:`nastk.search_config.resolve`)."""
    kind, target = parse_evaluator(spec)
    cls = evaluator_class(kind)
    config: Dict[str, Any] = {"kind": kind}
    if cls.target:
        config[cls.target] = target
    for option in declared(cls):
        config[option.name] = values[option.name]
    if cls.builds_networks:
        config["build"] = {option.name: values[option.name] for option in space.build_options(cls.full_size_networks)}
    if cls.reports_benchmark:
        dataset = values.get("dataset") or "cifar10"
        config["report_dataset"] = dataset if reports_truth(space.name, dataset) else None
    cls.settle_config(space, config)
    fingerprint = cls.fingerprint(config)
    if fingerprint:
        config["fingerprint"] = fingerprint
    return config


def evaluator_options(config: Dict[str, Any]) -> Dict[str, Any]:
    """The flat options :func:`evaluator_config` turns into ``config`` (reading a run's config back)."""
    if not isinstance(config, dict) or "kind" not in config:
        raise ConfigError("a run config needs an 'evaluator' mapping with a 'kind'")
    cls = evaluator_class(config["kind"])
    target = config.get(cls.target) if cls.target else None
    values = {"evaluator": f"{config['kind']}:{target}" if cls.target else config["kind"]}
    unrecorded = getattr(cls, "UNRECORDED_DEFAULTS", {})  # what a config older than the option used
    values.update({option.name: config[option.name] if option.name in config else unrecorded[option.name]
                   for option in declared(cls) if option.name in config or option.name in unrecorded})
    build = config.get("build") or {}
    if not isinstance(build, dict):
        raise ConfigError("a run config's evaluator 'build' must be a mapping of build options")
    values.update(build)
    if cls.reports_benchmark and config.get("report_dataset") and not values.get("dataset"):
        values["dataset"] = config["report_dataset"]
    return values


def make_evaluator(space: SearchSpace, config: Dict[str, Any], seed: int = 0, *, device: str) -> Evaluator:
    """The evaluator a run config's ``evaluator`` mapping describes (``config["kind"]`` names the class),
    its networks (if any) on ``device``."""
    cls = evaluator_class(config.get("kind"))
    evaluator = cls.from_config(space, config, seed=seed, device=device)
    return _reported(space, evaluator, config) if cls.reports_benchmark else evaluator


def run_evaluator(space: SearchSpace, config: Dict[str, Any], seed: int, device: str) -> Evaluator:
    """A run's evaluator from its whole config: the configured evaluator plus the cost metrics the run's
    ``objectives`` need. The one place both engines (and every worker process) build it."""
    from nastk.evaluators.multi_objective import with_objectives

    return with_objectives(make_evaluator(space, config["evaluator"], seed=seed, device=device), space, config)


def _reported(space: SearchSpace, evaluator: Evaluator, config: Dict[str, Any]) -> Evaluator:
    """A training-free evaluator whose winner is also reported with the benchmark's ground truth."""
    if config.get("report_dataset") and reports_truth(space.name):
        return BenchmarkReported(evaluator, BenchmarkEvaluator(benchmark_for(space.name), config["report_dataset"]))
    return evaluator


def reports_truth(space: str, dataset: Optional[str] = None) -> bool:
    """Whether any search of ``space`` can report benchmark ground truth (its benchmark covers every
    architecture, as NB201's does), for ``dataset`` when given."""
    if not (has_benchmark(space) and benchmark_for(space).complete):
        return False
    return dataset is None or dataset in benchmark_for(space).datasets


def search_pool(space: SearchSpace, config: Dict[str, Any]):
    """``(architectures, "what scores them")`` when a run's evaluator mapping scores only some architectures
    of ``space`` (a look-up in an incomplete benchmark, such as DARTS' 214 genotypes, or in its ``table``
    file), else None: any architecture of the space can be evaluated."""
    if not isinstance(config, dict) or config.get("kind") != "benchmark" or not has_benchmark(space.name):
        return None
    benchmark = benchmark_for(space.name)
    if benchmark.complete:
        return None
    reach = benchmark.title or f"benchmark {benchmark.name}"
    table = benchmark.load_table(config["table"], config.get("trust_pickle", False)) if config.get("table") else None
    if table is not None and hasattr(table, "archs"):
        return list(table.archs()), f"{reach} (table {config['table']})"
    return list(benchmark.archs()), reach
