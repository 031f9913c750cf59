"""``nastk search``: run a query strategy with an evaluator into a resumable run folder.

With no arguments it runs the embedded default, which needs no download: regularized evolution over
the NB201 cell space, each candidate trained briefly on scikit-learn's digits, and the winner
retrained longer and reported on held-out test digits.
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Dict, Optional

from nastk.benchmarks.registry import benchmark_for, has_benchmark
from nastk.commands import print_json
from nastk.errors import ConfigError
from nastk.evaluators import reports_truth, run_evaluator
from nastk.evaluators.multi_objective import parse_objectives, pareto_front, plot_pareto
from nastk.options import Float, Int, Seeds, Text, check_all
from nastk.progress import Progress
from nastk.run import Run, run_search
from nastk.trial import Stop
from nastk.space import get_space
from nastk.strategy import STRATEGIES, make_strategy

#: The embedded default, also the base every config file and flag overrides.
DEFAULTS: Dict[str, Any] = {
    "space": "nb201", "strategy": "re", "budget": 20, "seed": 0,
    "evaluator": "train", "benchmark": None, "dataset": None, "objective": "valid12", "table": None,
    "epochs": 3, "final_epochs": 12, "batch_size": 64, "lr": 0.1, "C": 8, "N": 1,
    "population_size": 10, "sample_size": 3, "initial_size": 10,
    "proxy_table": None, "proxies": None,
    "objectives": None, "selection": "nsga2", "workers": 1, "storage": None,
    "max_cost": None, "max_wall": None,
}
#: The type and range of every option, checked the same way for flags, config files and resumed runs.
SCHEMA = {
    "space": Text(nullable=False), "strategy": Text(nullable=False), "budget": Int(minimum=1), "seed": Int(minimum=0),
    "evaluator": Text(), "benchmark": Text(), "dataset": Text(), "objective": Text(nullable=False), "table": Text(),
    "epochs": Int(minimum=1), "final_epochs": Int(minimum=1), "batch_size": Int(minimum=1), "lr": Float(above=0),
    "C": Int(minimum=1), "N": Int(minimum=1), "population_size": Int(minimum=1), "sample_size": Int(minimum=1), "initial_size": Int(minimum=1),
    "proxy_table": Text(), "proxies": Text(lists=True), "objectives": Text(lists=True),
    "selection": Text(choices=["nsga2", "eagan"], nullable=False), "workers": Int(minimum=1), "storage": Text(),
    "max_cost": Float(above=0), "max_wall": Float(above=0),
}
STRATEGY_OPTIONS = {"re": ("population_size", "sample_size"), "ls": ("initial_size",),
                    "robot": ("budget", "dataset", "proxy_table", "proxies"),
                    "bo-tpe": ("objectives",), "bo-gp": ("objectives",), "bo-encoding": ("objectives",),
                    "nsga2": ("objectives", "population_size", "selection")}


def register(subparsers) -> None:
    parser = subparsers.add_parser("search", help="search a space with a strategy (no arguments: embedded default)")
    add = parser.add_argument
    add("--config", help="YAML or JSON file with any of the options below (flags override it)")
    add("--space", help="search space (default nb201)")
    add("--strategy", help=f"query strategy: {', '.join(STRATEGIES.names())} (default re)")
    add("--budget", type=SCHEMA["budget"], help="number of evaluations (default 20)")
    add("--seed", type=SCHEMA["seed"], help="random seed (default 0)")
    add("--seeds", type=Seeds(), help="repeated runs, one per seed (0-9, 3 or 0,4,7), each in <run-dir>/seed<N>; "
                                      "prints the mean and std of the best objective and test accuracy")
    add("--max-cost", type=SCHEMA["max_cost"], metavar="SECONDS",
        help="also stop once the summed evaluation cost (simulated by a benchmark, measured by training) exceeds this")
    add("--max-wall", type=SCHEMA["max_wall"], metavar="SECONDS", help="also stop after this much wall time")
    add("--benchmark", help="evaluate by look-up in this benchmark (nb201); needs --dataset")
    add("--dataset", help="benchmark dataset (cifar10, cifar10-valid, cifar100, ImageNet16-120) or training dataset (digits, cifar10)")
    add("--objective", help="benchmark protocol the search maximises: valid12 (NB201's search protocol, default), "
                            "valid200, test200 (an oracle), or dataset/split/epochs[/family]")
    add("--evaluator", help="benchmark, train, proxy:NAME or supernet:RUN_DIR (a trained supernet's inherited-weight "
                            "accuracy) (default: benchmark with --benchmark, else train)")
    add("--table", help="NB201 table file (compact .csv.gz, official .pth or nastk .npz)")
    add("--epochs", type=SCHEMA["epochs"], help="train evaluator: epochs per candidate (default 3)")
    add("--final-epochs", type=SCHEMA["final_epochs"], help="train evaluator: epochs to retrain the winner (default 12)")
    add("--batch-size", type=SCHEMA["batch_size"], help="training / proxy batch size (default 64)")
    add("--lr", type=SCHEMA["lr"], help="train evaluator: learning rate (default 0.1)")
    add("--C", type=SCHEMA["C"], help="train/proxy evaluator: network width (default 8)")
    add("--N", type=SCHEMA["N"], help="train/proxy evaluator: cells per stage (default 1)")
    add("--population-size", type=SCHEMA["population_size"], help="re: population size (default 10)")
    add("--sample-size", type=SCHEMA["sample_size"], help="re: tournament size (default 3)")
    add("--initial-size", type=SCHEMA["initial_size"], help="ls: random architectures before the first move (default 10)")
    add("--objectives", help="comma-separated objectives, acc first: acc,params,flops,latency,energy or a "
                             "HW-NAS-Bench column (e.g. raspi4_latency); multi-objective strategies (nsga2, "
                             "bo-tpe, bo-gp) optimise all, and the summary reports the Pareto front (default acc)")
    add("--selection", choices=["nsga2", "eagan"], help="nsga2: survivor selection, NSGA-II's crowding "
                                                        "(default) or EAGAN's merged-front selection")
    add("--workers", type=SCHEMA["workers"], help="parallel worker processes sharing one optuna study (journal file in "
                                    "--run-dir); optuna strategies only (default 1: the sequential engine)")
    add("--storage", help="database URL of a shared optuna study (e.g. postgresql://user:pw@host/db); "
                          "machines running the same command join the same study")
    add("--proxy-table", help="robot: CSV(.gz) of proxy values with an arch_str column (default: the shared "
                              "NAS-Bench-Suite-Zero table covering --dataset)")
    add("--proxies", help="robot: comma-separated proxy columns to combine "
                          "(default grad_norm,snip,grasp,fisher,synflow,jacob_cov)")
    add("--device", default="cpu", help="torch device for training or proxies (cpu, cuda, cuda:1, mps)")
    add("--run-dir", help="run folder (default runs/<space>-<strategy>-seed<seed>-<time>)")
    add("--resume", action="store_true", help="continue the run in --run-dir from its journal")
    add("--format", choices=["text", "json"], default="text")
    add("--no-progress", action="store_true", help="no progress bar (or, when stderr is not a terminal, no line per evaluation)")
    parser.set_defaults(func=run)


def resolve_options(args) -> Dict[str, Any]:
    """Defaults (or, on ``--resume``, the run's own config), then the config file, then explicitly given flags."""
    options = dict(DEFAULTS)
    saved = Path(args.run_dir) / "config.json" if args.run_dir else None
    resumed = {}
    if args.resume and saved is not None and saved.is_file():
        resumed = options_of_run_config(_read_json(saved))
        options.update(resumed)
    from_file = _read_config(Path(args.config)) if args.config else {}
    options.update(from_file)
    for key in DEFAULTS:
        value = getattr(args, key, None)
        if value is not None:
            options[key] = value
    if args.evaluator is None and "evaluator" not in from_file and "evaluator" not in resumed:
        options["evaluator"] = "benchmark" if options["benchmark"] else "train"
    return check_all(options, SCHEMA)


def options_of_run_config(config: Dict[str, Any]) -> Dict[str, Any]:
    """The flat options that :func:`run_config` turns into this resolved run config (a run's ``config.json``)."""
    evaluator = config.get("evaluator")
    if not isinstance(evaluator, dict) or "kind" not in evaluator:
        raise ConfigError("a run config needs an 'evaluator' mapping with a 'kind'")
    options = {key: config[key] for key in ("space", "strategy", "budget", "seed") if key in config}
    options.update(config.get("strategy_options", {}))
    kind = evaluator["kind"]
    if kind == "benchmark":
        options.update(evaluator="benchmark", **{k: evaluator.get(k) for k in ("benchmark", "dataset", "objective", "table")})
    elif kind == "train":
        options.update(evaluator="train", **{k: evaluator[k] for k in ("dataset", "epochs", "final_epochs", "batch_size", "lr")},
                       **{k: evaluator.get("build", {}).get(k, DEFAULTS[k]) for k in ("C", "N")})
    elif kind == "proxy":
        options.update(evaluator=f"proxy:{evaluator['proxy']}", dataset=evaluator["dataset"],
                       batch_size=evaluator.get("batch_size", DEFAULTS["batch_size"]))
    elif kind == "supernet":
        options.update(evaluator=f"supernet:{evaluator['run_dir']}", dataset=evaluator.get("report_dataset"))
    else:
        raise ConfigError(f"unknown evaluator kind {kind!r} in the run config")
    if isinstance(options.get("objectives"), list):
        options["objectives"] = ",".join(options["objectives"])
    if config.get("objectives"):
        options["objectives"] = ",".join(config["objectives"])
    limits = config.get("stop") or {}
    options.update(max_cost=limits.get("cost_s"), max_wall=limits.get("wall_s"))
    return options


def _read_json(path: Path) -> Dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ConfigError(f"cannot read run config {path}: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"run config {path} must hold a mapping")
    return data


def _read_config(path: Path) -> Dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory") from None
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text (a binary file?)") from None
    except RecursionError:
        raise ConfigError(f"config file {path} is nested too deeply") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML/JSON: {str(error).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of option names to values")
    if isinstance(data.get("evaluator"), dict):  # a run's config.json: rerun (or vary) that run
        data = options_of_run_config(data)
    data = {str(key).replace("-", "_"): value for key, value in data.items()}
    unknown = sorted(set(data) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"config file {path} has unknown option(s) {', '.join(unknown)}; known: {', '.join(DEFAULTS)}")
    return check_all(data, SCHEMA, f"config file {path}")


def run_config(options: Dict[str, Any]) -> Dict[str, Any]:
    """The resolved, self-contained config stored in the run folder (and compared on resume)."""
    evaluator = options["evaluator"]
    if evaluator == "benchmark":
        if not options["benchmark"] and has_benchmark(options["space"]):
            options["benchmark"] = benchmark_for(options["space"]).name  # else make_evaluator says why not
        if not options["dataset"]:
            raise ConfigError("a benchmark search needs --dataset (cifar10, cifar10-valid, cifar100 or ImageNet16-120)")
        evaluator_config = {"kind": "benchmark", "benchmark": options["benchmark"], "dataset": options["dataset"],
                            "objective": options["objective"], "table": options["table"]}
    elif evaluator == "train":
        evaluator_config = {"kind": "train", "dataset": options["dataset"] or "digits", "epochs": options["epochs"],
                            "final_epochs": options["final_epochs"], "batch_size": options["batch_size"],
                            "lr": options["lr"], "build": {"C": options["C"], "N": options["N"]}}
    elif str(evaluator).startswith("proxy:"):
        dataset = options["dataset"] or "cifar10"
        evaluator_config = {"kind": "proxy", "proxy": evaluator.split(":", 1)[1], "dataset": dataset,
                            "batch_size": options["batch_size"],
                            "report_dataset": dataset if reports_truth(options["space"], dataset) else None}
    elif str(evaluator).startswith("supernet:"):
        run_dir = evaluator.split(":", 1)[1]
        if not run_dir:
            raise ConfigError("--evaluator supernet:RUN_DIR needs the folder of a trained supernet")
        dataset = options["dataset"] or "cifar10"
        evaluator_config = {"kind": "supernet", "run_dir": run_dir,
                            "report_dataset": dataset if reports_truth(options["space"], dataset) else None}
    else:
        raise ConfigError(f"unknown evaluator {evaluator!r}; use benchmark, train, proxy:NAME or supernet:RUN_DIR")
    objectives = [o.name for o in parse_objectives(options["objectives"])]
    options = {**options, "objectives": objectives if options["objectives"] else None}
    strategy_options = {key: options[key] for key in STRATEGY_OPTIONS.get(options["strategy"], ())}
    config = {"space": options["space"], "strategy": options["strategy"], "strategy_options": strategy_options,
              "budget": options["budget"], "seed": options["seed"], "evaluator": evaluator_config}
    if len(objectives) > 1:
        config["objectives"] = objectives
    limits = {key: options[option] for key, option in (("cost_s", "max_cost"), ("wall_s", "max_wall")) if options[option]}
    if limits:
        config["stop"] = limits
    if options["workers"] != 1 or options["storage"]:
        config["engine"] = "study"  # the shared optuna study is the journal (nastk.distributed)
    return config


def execute(config: Dict[str, Any], run_dir, resume: bool = False, device: str = "cpu", progress: bool = True,
            workers: int = 1, storage: Optional[str] = None):
    """Run a resolved config into ``run_dir``; returns the summary dict (also written to summary.json).

    Configs with ``engine: study`` run on :mod:`nastk.distributed` (``workers`` processes on the run
    folder's journal file, or on the ``storage`` database); all others on the sequential engine.
    """
    started = time.perf_counter()
    space = get_space(config["space"])
    evaluator = run_evaluator(space, config, config["seed"], device)
    bar = Progress(config["budget"], "search", "evaluations", enabled=progress)
    if config.get("engine") == "study":
        from nastk.distributed import check_study, run_study

        check_study(config, workers, storage)
        with Run(run_dir, config, resume=resume) as run:  # locked until its summary is written
            outcome, extra = run_study(config, run, workers=workers, storage=storage, device=device,
                                       progress=lambda done: bar.update(done))
            return _finish(config, run, outcome, evaluator, bar, started, device, extra)
    else:
        if storage:
            raise ConfigError("--storage needs an optuna strategy's study; it is not used by the sequential engine")
        strategy = make_strategy(config["strategy"], space, seed=config["seed"], **config["strategy_options"])
        with Run(run_dir, config, resume=resume) as run:
            outcome = run_search(strategy, evaluator, Stop.from_config(config), run,
                                 progress=lambda trial, outcome: bar.update(best=outcome.best.result.value))
            return _finish(config, run, outcome, evaluator, bar, started, device, {})


def _finish(config, run, outcome, evaluator, bar, started, device, extra) -> Dict[str, Any]:
    """The summary of a finished search, written to the run folder."""
    bar.close()
    final = evaluator.final_metrics(outcome.best_arch) or {}
    if evaluator.final_model() is not None:  # the retrained winner: kept for `nastk export`
        from nastk.export import save_winner

        save_winner(run.directory, outcome.best.arch, evaluator.final_model())
    summary = {
        "best_arch": outcome.best.arch,
        "best_objective": outcome.best_result.value,
        "test_accuracy": final.get("test_accuracy"),
        "final_metrics": final,
        "evaluations": len(outcome.trials),
        "replayed": outcome.replayed,
        "evaluated_now": outcome.evaluated,
        "cost_s": outcome.total_cost_s,
        "wall_s": round(time.perf_counter() - started, 3),
        "evaluator": evaluator.describe(),
        "strategy": {"name": config["strategy"], **config["strategy_options"]},
        "seed": config["seed"],
        "device": str(device),
        "run_dir": str(run.directory),
        "trajectory": outcome.trajectory(),
        **extra,
    }
    if config.get("objectives"):
        objectives = parse_objectives(config["objectives"])
        summary["pareto_front"] = pareto_front(outcome.trials, objectives)
        try:
            plot_pareto(outcome.trials, objectives, run.directory / "pareto.png",
                        title=f"{config['strategy']} on {config['space']}, {len(outcome.trials)} evaluations")
            summary["pareto_plot"] = str(run.directory / "pareto.png")
        except ModuleNotFoundError:  # matplotlib is the optional `plot` extra
            summary["pareto_plot"] = None
    run.write_summary(summary)
    return summary


def _safe(name: str) -> str:
    """A name as one harmless path component (no separators, no '..')."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in str(name)) or "_"


def run(args) -> int:
    options = resolve_options(args)
    seeds = args.seeds or (options["seed"],)
    if args.seeds and args.seed is not None:
        raise ConfigError("give either --seed or --seeds, not both")
    configs = [run_config({**options, "seed": seed}) for seed in seeds]  # every one valid before any runs
    config = configs[0]
    space_name = get_space(config["space"]).name  # a module:Class space is named by its own name
    _check_strategy(config)
    stamp = time.strftime('%Y%m%d-%H%M%S')
    if args.seeds:
        base = Path(args.run_dir or f"runs/{_safe(space_name)}-{_safe(config['strategy'])}-seeds-{stamp}")
        run_dirs = [base / f"seed{seed}" for seed in seeds]
    else:
        run_dirs = [args.run_dir or f"runs/{_safe(space_name)}-{_safe(config['strategy'])}-seed{config['seed']}-{stamp}"]
    if args.format == "text" and not args.resume and not args.benchmark and config["evaluator"]["kind"] == "train":
        ev = config["evaluator"]
        print(f"nastk: searching {config['space']} with {config['strategy']} for {config['budget']} candidates, "
              f"each trained {ev['epochs']} epochs on {ev['dataset']} (C={ev['build']['C']}, N={ev['build']['N']}); "
              f"the winner is retrained {ev['final_epochs']} epochs and tested. Run folder: {run_dirs[0]}"
              + (f" (and {len(run_dirs) - 1} more seeds beside it)" if len(run_dirs) > 1 else ""))
    summaries = []
    for config, run_dir in zip(configs, run_dirs):
        summary = execute(config, run_dir, resume=args.resume, device=args.device, progress=not args.no_progress,
                          workers=options["workers"], storage=options["storage"])
        summaries.append({key: value for key, value in summary.items() if key != "trajectory"})
        if args.format == "text":
            if args.seeds:
                print(f"seed {config['seed']}: best {summary['best_objective']:.4f}"
                      + (f", test {summary['test_accuracy']:.4f}" if summary["test_accuracy"] is not None else "")
                      + f"  ({run_dir})")
            else:
                _print_summary(summary)
    if not args.seeds:
        if args.format == "json":
            print_json(summaries[0])
        return 0
    aggregate = {key: _mean_std([s[key] for s in summaries]) for key in ("best_objective", "test_accuracy")}
    if args.format == "json":
        print_json({"seeds": list(seeds), **aggregate, "runs": summaries})
    else:
        for key, row in aggregate.items():
            if row:
                print(f"{key.replace('_', ' '):14s}: {row['mean']:.4f} +- {row['std']:.4f} over {row['n']} seeds")
    return 0


def _check_strategy(config: Dict[str, Any]) -> None:
    """What the strategy would refuse, said before anything is printed or created."""
    from nastk.strategy import STRATEGIES

    cls = STRATEGIES.get(config["strategy"])
    get_space(config["space"]).require(*getattr(cls, "requires", ()))
    if config.get("objectives") and "objectives" not in STRATEGY_OPTIONS.get(config["strategy"], ()):
        print(f"nastk: note: {config['strategy']} optimises one objective ({config['objectives'][0]}); the others "
              f"are measured and the summary reports the Pareto front of all "
              f"(multi-objective: {', '.join(k for k, v in STRATEGY_OPTIONS.items() if 'objectives' in v)})",
              file=sys.stderr)


def _mean_std(values) -> Optional[Dict[str, float]]:
    import numpy as np

    numbers = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not numbers:
        return None
    return {"mean": float(np.mean(numbers)), "std": float(np.std(numbers)), "n": len(numbers)}


def _print_summary(summary: Dict[str, Any]) -> None:
    evaluator = summary["evaluator"]
    print(f"best architecture : {summary['best_arch']}")
    print(f"search objective  : {summary['best_objective']:.4f}  ({evaluator.get('objective')})")
    if summary["test_accuracy"] is not None:
        print(f"test accuracy     : {summary['test_accuracy']:.4f}  ({evaluator.get('report', 'retrained winner, test split')})")
    print(f"evaluations       : {summary['evaluations']} ({summary['replayed']} replayed from the journal, "
          f"{summary['evaluated_now']} evaluated now)")
    print(f"cost              : {summary['cost_s']:.1f} s {'simulated' if evaluator['evaluator'] == 'benchmark' else 'measured'}, "
          f"wall {summary['wall_s']:.1f} s")
    if "pareto_front" in summary:
        print(f"Pareto front      : {len(summary['pareto_front'])} architectures (plot: {summary['pareto_plot'] or 'needs matplotlib'})")
    if "study" in summary:
        study = summary["study"]
        print(f"optuna study      : {study['name']} in {study['storage']} ({study['workers']} workers here, "
              f"{study['retried']} retried after a lost worker)")
    print(f"run folder        : {summary['run_dir']}")
