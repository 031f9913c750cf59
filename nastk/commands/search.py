"""``nastk search``: run a query strategy with an evaluator into a resumable run folder.

With no arguments it runs the embedded default, which needs no download: regularized evolution over
the NB201 cell space, each candidate trained briefly on scikit-learn's digits, and the winner
retrained longer and reported on held-out test digits.
"""
from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional

from nastk.commands import print_json, read_mapping
from nastk.engine import build_evaluator, search
from nastk.errors import ConfigError, NastkError, RunError
from nastk.evaluators.multi_objective import (check_scores, constraint_summary, format_value, parse_objectives,
                                              pareto_front, plot_pareto)
from nastk.log import LOGGER
from nastk.options import Bool, Option, Seeds
from nastk.progress import Progress
from nastk.readers import MAX_CONFIG_BYTES, read_json
from nastk.run_folder import Run, check_journal, require_resumable, study_record
from nastk.search_config import GENERAL, option_owners, options_of_run_config, resolve, run_config
from nastk.space import get_space
from nastk.strategy import STRATEGIES, run_strategy

#: Flags of ``nastk search`` beyond the run options (those come from nastk.search_config's declarations).
FLAG_ONLY = ("config", "seeds", "device", "run_dir", "resume", "format", "no_progress")


def register(subparsers) -> None:
    parser = subparsers.add_parser("search", help="search a space with a strategy (no arguments: embedded default)")
    add = parser.add_argument
    add("--config", help="YAML or JSON file with any of the options below, or a run's config.json (flags override it)")
    for option in GENERAL:
        _add_flag(parser, option, option.help + _default_text(option))
    add("--seeds", type=Seeds(), help="repeated runs, one per seed (0-9, 3 or 0,4,7), each in <run-dir>/seed<N>; "
                                      "prints the mean and std of the best objective and test accuracy")
    add("--device", default="cpu", help="torch device for training or proxies (cpu, cuda, cuda:1, mps)")
    add("--run-dir", help="run folder (default runs/<space>-<strategy>-seed<seed>-<time>)")
    add("--resume", action="store_true", help="continue the run in --run-dir from its journal (its own config: "
                                              "no flags to repeat; a larger --budget extends it)")
    add("--format", choices=["text", "json"], default="text")
    add("--no-progress", action="store_true", help="no progress bar (or, when stderr is not a terminal, no line per evaluation)")
    parser.defer(_add_plugin_flags)
    parser.set_defaults(func=run)


#: Options given by a repeatable flag (its name here; the option's own --name also works), collected in a list.
REPEATABLE = {"constraints": "--constraint"}


def _add_flag(parser, option: Option, help_text: str) -> None:
    """One flag for an option; its default stays None, so a flag left out never overrides a config file."""
    if isinstance(option.value, Bool):
        parser.add_argument(option.flag, dest=option.name, action=argparse.BooleanOptionalAction, default=None,
                            help=help_text)
    elif option.name in REPEATABLE:  # --constraint A --constraint B (also --constraints A,B)
        parser.add_argument(REPEATABLE[option.name], option.flag, dest=option.name, action="append", default=None,
                            type=option.value, help=help_text, metavar="'NAME<=VALUE'")
    else:
        metavar = "SECONDS" if option.name in ("max_cost", "max_wall") else None
        parser.add_argument(option.flag, dest=option.name, type=option.value, default=None, help=help_text,
                            metavar=metavar)


def _add_plugin_flags(parser, argv) -> None:
    """A flag for each option any strategy, evaluator or space declares (each says whose it is and its
    default there), also for a space or strategy named as package.module:Class on this command line."""
    extra = tuple(f"{kind}:{value}" for kind in ("space", "strategy")
                  for value in _flag_values(argv, f"--{kind}") if ":" in value)
    try:
        owners = option_owners(extra)
    except NastkError:  # an unloadable package.module:Class: `run` reports it as one line
        owners = option_owners()
    groups = {}
    for name, declarations in owners.items():
        kind = declarations[0][0].split()[0]
        if kind not in groups:
            groups[kind] = parser.add_argument_group(PLUGIN_GROUPS[kind])
        _add_flag(groups[kind], declarations[0][1], _uses(declarations))


#: Headings of the plug-in flags in ``nastk search --help``, by who declares them.
PLUGIN_GROUPS = {"strategy": "options of query strategies (nastk strategies)",
                 "evaluator": "options of evaluators (--evaluator)",
                 "space": "build options of spaces (defaults: the reduced networks the train evaluator trains; "
                          "proxy:NAME scores the space's own network unless these are given)"}


def _uses(declarations) -> str:
    """``"strategy bo-gp, bo-tpe: what it does (default 10); strategy re: ..."``: one entry per meaning."""
    meanings = {}
    for label, option in declarations:
        kind, _, name = label.partition(" ")
        meanings.setdefault((kind, option.help + _default_text(option)), []).append(name)
    return "; ".join(f"{kind} {', '.join(names)}: {text}" for (kind, text), names in meanings.items())


def _default_text(option: Option) -> str:
    return "" if option.default is None else f" (default {option.default})"


def _flag_values(argv, flag: str):
    for position, word in enumerate(argv):
        if word == flag and position + 1 < len(argv):
            yield argv[position + 1]
        elif word.startswith(flag + "="):
            yield word[len(flag) + 1:]


def resolve_options(args) -> Dict[str, Any]:
    """The run's option values: on ``--resume`` the run's own config, then the config file, then the flags
    given; checked against what the chosen space, strategy and evaluator declare."""
    given, sources = {}, {}

    def layer(values: Dict[str, Any], source: str) -> None:
        for name, value in values.items():
            given[name] = value
            sources[name] = source

    saved = Path(args.run_dir) / "config.json" if args.run_dir else None
    parallel = False
    if args.resume and saved is not None and saved.is_file():
        data = _read_json(saved)
        layer(options_of_run_config(data), f"run config {saved}")
        parallel = data.get("engine") == "study"
        if parallel:  # the workers it recorded; 1 for a run made before runs recorded them
            layer({"workers": (study_record(args.run_dir) or {}).get("workers", 1)}, f"run folder {args.run_dir}")
    if args.config:
        layer(_read_config(Path(args.config)), f"config file {args.config}")
    layer({name: value for name, value in vars(args).items()
           if name not in FLAG_ONLY and name not in ("func", "command") and value is not None}, "")
    options = resolve(given, sources)
    if parallel:  # a parallel run stays one, whatever number of workers resumes it
        options["engine"] = "study"
    return options


def _read_json(path: Path) -> Dict[str, Any]:
    """A run's config.json (size, depth and shape checked), its own values checked as the run's options,
    so a damaged value is refused by name even where a flag given now replaces it."""
    data = read_json(path, "run config", ConfigError, max_bytes=MAX_CONFIG_BYTES)
    options = options_of_run_config(data)
    resolve(options, {name: f"run config {path}" for name in options})
    return data


def _read_config(path: Path) -> Dict[str, Any]:
    """A config file's options, flat; a run's config.json (it has an evaluator mapping) reruns that run."""
    data = read_mapping(path)
    if isinstance(data.get("evaluator"), dict):
        data = options_of_run_config(data)
    data = {str(key).replace("-", "_"): value for key, value in data.items()}
    flag_only = sorted(set(data) & set(FLAG_ONLY))
    if flag_only:
        raise ConfigError(f"config file {path} sets {', '.join(flag_only)}, which are command-line flags only")
    return data


@dataclass
class Prepared:
    """A config's evaluator and strategy, built: everything the run would refuse has been said."""

    evaluator: Any
    strategy: Any


def prepare(config: Dict[str, Any], device: Optional[str], workers: int = 1, storage: Optional[str] = None) -> Prepared:
    """Build what a run of ``config`` needs (checking its protocol, data files, strategy options and
    engine) before anything is printed or written."""
    evaluator = build_evaluator(config, device)
    if config.get("engine") == "study":
        from nastk.parallel import check_study

        return Prepared(evaluator, check_study(config, workers, storage))
    if storage:
        raise ConfigError("--storage needs a parallel run's study (engine: study); it is not used by the sequential engine")
    return Prepared(evaluator, run_strategy(config, get_space(config["space"]), config["seed"]))


def execute(config: Dict[str, Any], run_dir, device: Optional[str], resume: bool = False, progress: bool = True,
            workers: int = 1, storage: Optional[str] = None, prepared: Optional[Prepared] = None):
    """Run a resolved config into ``run_dir`` (:func:`nastk.engine.search`: the run folder's journal, or
    ``workers`` processes on the study of an ``engine: study`` config); returns the summary dict (also
    written to summary.json). ``prepared``: :func:`prepare`'s result for this config (default: prepared here).
    """
    started = time.perf_counter()
    if resume:
        require_resumable(run_dir, "search run")
        check_same_evaluator(config, run_dir)
        check_journal(run_dir)  # a journal that would not replay is refused before the config is extended
    prepared = prepared or prepare(config, device, workers, storage)
    bar = Progress(config["budget"], "search", "evaluations", enabled=progress)
    with Run(run_dir, config, resume=resume, upgrade=upgraded_config) as run:  # locked until its summary is written
        outcome = search(config, run, prepared.evaluator, prepared.strategy, device, workers=workers, storage=storage,
                         progress=lambda trial, outcome: bar.update(len(outcome.trials), best=outcome.best.result.value))
        return _finish(config, run, outcome, prepared.evaluator, bar, started, device)


def check_same_evaluator(config: Dict[str, Any], run_dir) -> None:
    """Refuse to resume a run whose evaluator's file (a saved predictor, a supernet checkpoint) is not the
    one it started with (the fingerprint its config recorded): one journal never mixes two evaluators."""
    saved = read_json(Path(run_dir) / "config.json", "run config", RunError, max_bytes=MAX_CONFIG_BYTES)
    before = (saved.get("evaluator") or {}).get("fingerprint") if isinstance(saved.get("evaluator"), dict) else None
    now = config["evaluator"].get("fingerprint")
    if before and before != now:
        source = config["evaluator"].get("path") or config["evaluator"].get("run_dir") or "file"
        raise RunError(f"cannot resume {run_dir}: the {config['evaluator']['kind']} evaluator's {source} changed since "
                       f"the run started ({before[:19]}... then, {now[:19] + '...' if now else 'missing'} now); its "
                       f"journal would mix two evaluators' results (restore the file, or start a new run)")


def upgraded_config(saved: Dict[str, Any]) -> Dict[str, Any]:
    """A saved run config as this version writes it: every option the plug-ins declare today, those the
    run did not record at their defaults (what the run used, since it was made before they existed)."""
    return run_config(resolve(options_of_run_config(saved)))


def _finish(config, run, outcome, evaluator, bar, started, device) -> Dict[str, Any]:
    """The summary of a finished search, written to the run folder."""
    bar.close()
    # With constraints the winner is the best feasible architecture; when none is, there is no winner.
    winner = outcome.best if outcome.best is not None and not outcome.best.result.infeasible else None
    final = (evaluator.final_metrics(outcome.best_arch) or {}) if winner else {}
    if winner and evaluator.final_model() is not None:  # the retrained winner: kept for `nastk export`
        from nastk.export import save_winner

        save_winner(run.directory, outcome.best.arch, evaluator.final_model())
    summary = {
        "best_arch": winner.arch if winner else None,
        "best_objective": winner.result.value if winner else None,
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
        **outcome.details,
    }
    if config.get("constraints"):
        summary["constraints"] = constraint_summary(outcome.trials, config["constraints"])
    if config.get("objectives"):
        objectives = parse_objectives(config["objectives"])
        summary["objectives"] = [{"name": o.name, "label": o.label, "unit": o.unit, "direction": o.direction}
                                 for o in objectives]
        if winner:
            summary["best_objectives"] = {o.name: o.value(winner.result) for o in objectives}
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
    if args.resume and not args.run_dir:
        raise ConfigError("--resume continues the run in --run-dir; name it")
    if args.resume and not args.seeds:
        require_resumable(args.run_dir, "search run")  # a mistyped folder is not a fresh run
    options = resolve_options(args)
    seeds = args.seeds or (options["seed"],)
    if args.seeds and args.seed is not None:
        raise ConfigError("give either --seed or --seeds, not both")
    configs = [run_config({**options, "seed": seed}) for seed in seeds]  # every one valid before any runs
    config = configs[0]
    # Everything the run would refuse is said before any note or "searching" line.
    first = prepare(config, args.device, options["workers"], options["storage"])
    if options.get("objectives"):  # also a single one, which the run config does not record
        check_scores(first.evaluator, parse_objectives(options["objectives"]), space=config["space"])
    _note_objectives(config)
    space_name = get_space(config["space"]).name  # a module:Class space is named by its own name
    stamp = time.strftime('%Y%m%d-%H%M%S')
    if args.seeds:
        base = Path(args.run_dir or f"runs/{_safe(space_name)}-{_safe(config['strategy'])}-seeds-{stamp}")
        run_dirs = [base / f"seed{seed}" for seed in seeds]
    else:
        run_dirs = [args.run_dir or f"runs/{_safe(space_name)}-{_safe(config['strategy'])}-seed{config['seed']}-{stamp}"]
    for run_dir in run_dirs if args.resume else ():  # every seed's run is there before any resumes
        require_resumable(run_dir, "search run")
    if args.format == "text" and not args.resume and config["evaluator"]["kind"] == "train":
        ev = config["evaluator"]
        build = ", ".join(f"{key}={value}" for key, value in ev["build"].items())
        LOGGER.info(f"nastk: searching {config['space']} with {config['strategy']} for {config['budget']} candidates, "
                    f"each trained {ev['epochs']} epochs on {ev['dataset']}" + (f" ({build})" if build else "")
                    + f"; the winner is retrained {ev['final_epochs']} epochs and tested. Run folder: {run_dirs[0]}"
                    + (f" (and {len(run_dirs) - 1} more seeds beside it)" if len(run_dirs) > 1 else ""))
    summaries = []
    for config, run_dir in zip(configs, run_dirs):
        summary = execute(config, run_dir, args.device, resume=args.resume, progress=not args.no_progress,
                          workers=options["workers"], storage=options["storage"],
                          prepared=first if config is configs[0] else None)
        summaries.append({key: value for key, value in summary.items() if key != "trajectory"})
        if args.format == "text":
            if args.seeds and summary["best_arch"] is None:
                print(f"seed {config['seed']}: no feasible architecture  ({run_dir})")
            elif args.seeds:
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
    from nastk.run_views import write_seed_aggregate

    written = write_seed_aggregate(base, run_dirs)  # mean, std and the per-seed table, kept beside the seeds
    if args.format == "json":
        print_json({"seeds": list(seeds), **aggregate, "aggregate": str(written), "runs": summaries})
    else:
        for key, row in aggregate.items():
            if row:
                print(f"{key.replace('_', ' '):14s}: {row['mean']:.4f} +- {row['std']:.4f} over {row['n']} seeds")
        print(f"aggregate: {written}")
    return 0


def _note_objectives(config: Dict[str, Any]) -> None:
    """Say when a single-objective strategy is given several objectives (they are measured, not optimised)."""
    cls = STRATEGIES.get(config["strategy"])
    if config.get("objectives") and "objectives" not in cls.RUN_OPTIONS:
        several = [name for name in STRATEGIES.names() if "objectives" in STRATEGIES.get(name).RUN_OPTIONS]
        LOGGER.warning(f"nastk: note: {config['strategy']} optimises one objective ({config['objectives'][0]}); the "
                       f"others are measured and the summary reports the Pareto front of all (multi-objective: "
                       f"{', '.join(several)})")


def _mean_std(values) -> Optional[Dict[str, float]]:
    import numpy as np

    numbers = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not numbers:
        return None
    return {"mean": float(np.mean(numbers)), "std": float(np.std(numbers)), "n": len(numbers)}


def objective_name(evaluator: Dict[str, Any]) -> str:
    """What the search objective measured: the protocol, the proxy (and its data), or the evaluator kind."""
    if evaluator.get("objective"):
        return str(evaluator["objective"])
    kind = evaluator.get("evaluator", "?")
    detail = evaluator.get(kind) or evaluator.get("target") or evaluator.get("kind")
    dataset = f" on {evaluator['dataset']}" if evaluator.get("dataset") else ""
    return f"{kind} {detail}{dataset}" if detail else f"{kind}{dataset}"


def _print_summary(summary: Dict[str, Any]) -> None:
    evaluator = summary["evaluator"]
    constrained = summary.get("constraints")
    unit = evaluator.get("unit") if evaluator.get("unit") != "%" else ""  # accuracies print as they always did
    if summary["best_arch"] is None:
        print(f"best architecture : none satisfies {', '.join(constrained['constraints'])}")
    else:
        print(f"best architecture : {summary['best_arch']}")
        print(f"search objective  : {format_value(summary['best_objective'], unit)}  ({objective_name(evaluator)})")
    if summary["test_accuracy"] is not None:
        print(f"test accuracy     : {summary['test_accuracy']:.4f}  ({evaluator.get('report', 'retrained winner, test split')})")
    reported = (summary.get("final_metrics") or {}).get(f"test_{evaluator.get('score')}")
    if summary["test_accuracy"] is None and reported is not None:  # another score than an accuracy (a PSNR)
        how = "selected on too: --split test" if evaluator.get("split") == "test" else "reported, never selected on"
        print(f"{'test ' + evaluator['score']:18s}: {format_value(reported, unit)}  ({evaluator.get('report', 'test split')}; "
              f"{how})")
    objectives = summary.get("objectives") or []
    if summary.get("best_objectives"):
        print("objectives        : " + ", ".join(
            f"{o['name']} {format_value(summary['best_objectives'][o['name']], o['unit'] or (unit if i == 0 else ''))}"
            for i, o in enumerate(objectives)))
    print(f"evaluations       : {summary['evaluations']} ({summary['replayed']} replayed from the journal, "
          f"{summary['evaluated_now']} evaluated now)")
    print(f"cost              : {summary['cost_s']:.1f} s {'simulated' if evaluator['evaluator'] == 'benchmark' else 'measured'}, "
          f"wall {summary['wall_s']:.1f} s")
    if constrained:
        print(f"constraints       : {', '.join(constrained['constraints'])}: {constrained['feasible']} feasible, "
              f"{constrained['infeasible']} infeasible ({constrained['not_evaluated']} of them not evaluated)")
    if "pareto_front" in summary:
        front = summary["pareto_front"]
        print(f"Pareto front      : {len(front)} architectures (plot: {summary['pareto_plot'] or 'needs matplotlib'})")
        for row in front:
            print("  " + "  ".join(format_value(row[o["name"]], o["unit"] or (unit if i == 0 else ""))
                                   for i, o in enumerate(objectives)) + f"  {row['arch']}")
    if "study" in summary:
        study = summary["study"]
        print(f"optuna study      : {study['name']} in {study['storage']} ({study['workers']} workers here, "
              f"{study['retried']} retried after a lost worker)")
    print(f"run folder        : {summary['run_dir']}")
