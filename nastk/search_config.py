"""The run config of a search from flat options: what ``nastk search`` flags, a YAML/JSON config file,
a resumed run's ``config.json`` and Python callers all become one self-contained mapping.

Which options exist comes from declarations, never from a table here: the general ones below
(:data:`GENERAL`), the chosen strategy's (``OPTIONS``, plus the run settings it lists in
``RUN_OPTIONS``), the chosen evaluator's and, for an evaluator that builds networks, the space's build
options. An option that none of the chosen plug-ins takes is refused by name (``--population-size``
with ``--strategy ls``) instead of being silently ignored.

    config = search_config(strategy="re", evaluator="benchmark", dataset="cifar10", budget=100)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

from nastk.errors import ConfigError
from nastk.options import Float, Int, Option, Text, declared

#: Options of every search, whatever its space, strategy and evaluator.
GENERAL: Tuple[Option, ...] = (
    Option("space", Text(nullable=False), "search space: a name (nastk spaces), an installed entry point or "
                                          "package.module:Class", "nb201"),
    Option("strategy", Text(nullable=False), "query strategy (nastk strategies), an entry point or package.module:Class",
           "re"),
    Option("budget", Int(minimum=1), "number of evaluations", 20),
    Option("seed", Int(minimum=0), "random seed", 0),
    Option("evaluator", Text(), "how an architecture is scored (nastk evaluators); default: benchmark when "
                                "--benchmark is given, else train", None),
    Option("dataset", Text(), "the evaluator's dataset: a benchmark's (cifar10, cifar10-valid, cifar100, "
                              "ImageNet16-120), training images (digits, cifar10) or proxy images", None),
    Option("objectives", Text(lists=True), "comma-separated objectives, score (the evaluator's; acc is its older name) first: "
                                           "score,params,flops,latency,energy, "
                                           "a HW-NAS-Bench column (e.g. raspi4_latency), a registered objective "
                                           "(entry points nastk.objectives) or metric:NAME[:min|max] for any metric "
                                           "the evaluator or the space's cost() returns (default min); "
                                           "multi-objective strategies optimise all, and the summary reports the "
                                           "Pareto front", None),
    Option("constraints", Text(lists=True), "NAME OP VALUE (flag --constraint, repeatable or comma-separated; "
                                            "config: a list), OP one of <=, <, >=, >, e.g. --constraint 'flops<=300'; "
                                            "NAME an objective (acc, params, flops, latency, ...), its metric "
                                            "(flops_m) or metric:NAME (any metric the evaluator or the space's cost() "
                                            "returns); VALUE in the metric's own units: params and flops in millions "
                                            "(params_m, flops_m: flops<=300 is 300 MFLOPs), latency ms, energy mJ. "
                                            "Violating architectures are recorded as infeasible (never the winner); "
                                            "a constraint the space's costs decide is checked before evaluating: "
                                            "violators are not evaluated (0 s) but count as queries of --budget",
           None),
    Option("max_cost", Float(above=0), "also stop once the summed evaluation cost in seconds (simulated by a "
                                       "benchmark, measured by training) exceeds this", None),
    Option("max_wall", Float(above=0), "also stop after this many seconds of wall time", None),
    Option("workers", Int(minimum=1), "parallel worker processes sharing one optuna study (journal file in the run "
                                      "folder; 1: the sequential engine); optuna strategies, re and random (ls walks "
                                      "one path: sequential only); a parallel run is not reproducible run to run "
                                      "(results arrive in completion order); --resume reuses the run's own count", 1),
    Option("storage", Text(), "database URL of a shared optuna study (e.g. postgresql://user:pw@host/db); "
                              "machines running the same command join the same study", None),
)
GENERAL_BY_NAME = {option.name: option for option in GENERAL}


@dataclass(frozen=True)
class Plugins:
    """The space, strategy class and evaluator a set of options chooses."""

    space: Any
    strategy: type
    evaluator_spec: str
    evaluator: type

    @classmethod
    def chosen(cls, values: Mapping[str, Any]) -> "Plugins":
        from nastk.evaluators import evaluator_class, parse_evaluator
        from nastk.space import get_space
        from nastk.strategy import STRATEGIES

        spec = values.get("evaluator") or ("benchmark" if values.get("benchmark") else "train")
        kind, _ = parse_evaluator(spec)
        return cls(get_space(values.get("space") or "nb201"), STRATEGIES.get(values.get("strategy") or "re"),
                   spec, evaluator_class(kind))

    def options(self) -> Dict[str, Option]:
        """Every option this search takes, by name; a plug-in's declaration of a general option (the
        evaluator's ``dataset``) supplies its default."""
        from nastk.evaluators import evaluator_option_list

        options = dict(GENERAL_BY_NAME)
        for option in declared(self.strategy) + evaluator_option_list(self.evaluator, self.space):
            options[option.name] = option
        return options

    def describe(self) -> str:
        return (f"space {self.space.name}, strategy {getattr(self.strategy, 'name', '') or self.strategy.__name__}, "
                f"evaluator {self.evaluator_spec.partition(':')[0]}")


def resolve(given: Mapping[str, Any], sources: Optional[Mapping[str, str]] = None) -> Dict[str, Any]:
    """Checked values of every option the chosen plug-ins take, defaults filled in.

    ``given`` holds what was set (None: not set); ``sources`` names where each came from ("config file
    x.yaml"), for messages. An option none of the chosen plug-ins takes is a :class:`ConfigError`.
    """
    sources = sources or {}
    given = {str(name).replace("-", "_"): value for name, value in given.items()}
    general = {name: GENERAL_BY_NAME[name].check(value, sources.get(name, ""))
               for name, value in given.items() if name in GENERAL_BY_NAME}
    plugins = Plugins.chosen({**given, **general})
    options = plugins.options()
    for name in given:
        if name not in options:
            raise ConfigError(_not_taken(name, plugins, sources.get(name, "")))
    values = {}
    for name, option in options.items():
        value = given.get(name)
        values[name] = option.check(option.default if value is None else value, sources.get(name, ""))
    values["evaluator"] = plugins.evaluator_spec
    return values


def run_config(values: Mapping[str, Any]) -> Dict[str, Any]:
    """The resolved, self-contained config stored in the run folder (and compared on resume)."""
    from nastk.evaluators import evaluator_config
    from nastk.evaluators.multi_objective import parse_constraints, parse_objectives

    plugins = Plugins.chosen(values)
    objectives = [o.name for o in parse_objectives(values["objectives"])] if values.get("objectives") else None
    constraints = [c.text for c in parse_constraints(values.get("constraints"))]
    run_settings = {**values, "objectives": objectives}
    strategy_options = {name: run_settings[name] for name in plugins.strategy.RUN_OPTIONS}
    strategy_options.update({option.name: values[option.name] for option in declared(plugins.strategy)})
    config = {"space": values["space"], "strategy": values["strategy"], "strategy_options": strategy_options,
              "budget": values["budget"], "seed": values["seed"],
              "evaluator": evaluator_config(plugins.space, plugins.evaluator_spec, values)}
    if objectives and len(objectives) > 1:
        config["objectives"] = objectives
    if constraints:  # recorded only when set: runs without constraints keep their configs as they were
        config["constraints"] = constraints
    limits = {key: values[option] for key, option in (("cost_s", "max_cost"), ("wall_s", "max_wall")) if values.get(option)}
    if limits:
        config["stop"] = limits
    if values.get("workers", 1) != 1 or values.get("storage") or values.get("engine") == "study":
        config["engine"] = "study"  # the shared optuna study is the journal (nastk.parallel)
    return config


def search_config(**given) -> Dict[str, Any]:
    """A run config from keyword options, as the CLI makes one: ``search_config(strategy="ls", budget=50)``."""
    return run_config(resolve(given))


def options_of_run_config(config: Mapping[str, Any]) -> Dict[str, Any]:
    """The flat options :func:`run_config` turns into this run config (a run's ``config.json``)."""
    from nastk.evaluators import evaluator_options

    options = {key: config[key] for key in ("space", "strategy", "budget", "seed") if key in config}
    strategy_options = config.get("strategy_options", {})
    if not isinstance(strategy_options, dict):
        raise ConfigError("a run config's 'strategy_options' must be a mapping")
    options.update(strategy_options)
    options.update(evaluator_options(config.get("evaluator")))
    objectives = config.get("objectives") or options.get("objectives")
    options["objectives"] = ",".join(objectives) if isinstance(objectives, list) else objectives
    options["constraints"] = config.get("constraints")
    limits = config.get("stop") or {}
    options.update(max_cost=limits.get("cost_s"), max_wall=limits.get("wall_s"))
    return options


def option_owners(extra: Tuple[str, ...] = ()) -> Dict[str, List[Tuple[str, Option]]]:
    """Every plug-in option by name: ``{"population_size": [("strategy re", Option), ...]}``, over the
    registered strategies, evaluators and spaces (and the ``extra`` package.module:Class names, e.g.
    ``("space:mypkg:MySpace",)``). The CLI makes one flag per name from this."""
    from nastk.evaluators import EVALUATORS
    from nastk.registry import SPACES
    from nastk.strategy import STRATEGIES

    owners: Dict[str, List[Tuple[str, Option]]] = {}

    def add(label: str, options) -> None:
        for option in options:
            if option.name not in GENERAL_BY_NAME:
                owners.setdefault(option.name, []).append((label, option))

    names = {"strategy": list(STRATEGIES.names()), "space": list(SPACES.names())}
    for entry in extra:
        kind, _, name = entry.partition(":")
        if name and name not in names.setdefault(kind, []):
            names[kind].append(name)
    for name in names["strategy"]:
        add(f"strategy {name}", declared(STRATEGIES.get(name)))
    for name in EVALUATORS.names():
        add(f"evaluator {name}", declared(EVALUATORS.get(name)))
    for name in names["space"]:
        add(f"space {name}", SPACES.get(name).build_options())
    return owners


def _not_taken(name: str, plugins: Plugins, source: str) -> str:
    where = f" (from {source})" if source else ""
    owners = [label for label, _ in option_owners().get(name, [])]
    if owners:
        return (f"option {name}{where} does not apply to this search ({plugins.describe()}); "
                f"it is an option of {', '.join(owners)}")
    return f"unknown option {name}{where}; this search ({plugins.describe()}) takes: {', '.join(plugins.options())}"
