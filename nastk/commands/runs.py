"""``nastk runs list|show|compare|plot|study``: every run under a folder (searches, parallel searches,
supernets, staged and few-shot runs, DARTS-PT selections), one run in detail, several side by side
(seeds of one configuration aggregated), their curves in one plot, and a run's optuna view as a
journal file for optuna's own tools (see :mod:`nastk.run_views` and :mod:`nastk.optuna_view`)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

from nastk.commands import print_json
from nastk.errors import ConfigError, NastkError
from nastk.log import LOGGER
from nastk.options import Int
from nastk.paths import check_writable, save_figure
from nastk.progress import format_score
from nastk.run_views import OneShotView, RunView, View, find_runs, group_seeds, read_any, seed_aggregate
from nastk.trial import best_so_far, objective_key

KINDS_TEXT = "search, parallel search, supernet, staged supernet, few-shot or DARTS-PT"


def register(subparsers) -> None:
    parser = subparsers.add_parser("runs", help="list, inspect, compare and plot runs of every kind (searches, "
                                   "supernets, few-shot, DARTS-PT)")
    commands = parser.add_subparsers(dest="runs_command", metavar="ACTION", required=True,
                                     parser_class=type(parser))
    listing = commands.add_parser("list", help="every run under a folder: kind, space, method, seed, progress, best, "
                                  "status")
    listing.add_argument("root", nargs="?", default="runs", help="folder to search (default runs)")
    listing.set_defaults(func=list_runs)
    show = commands.add_parser("show", help="one run: a search's trajectory, or a one-shot run's epochs, sampler "
                               "state, architecture weights with op names and selected architecture")
    show.add_argument("--run-dir", help="the run folder")
    show.add_argument("positional_run_dir", nargs="?", metavar="RUN_DIR", help="deprecated spelling of --run-dir")
    show.add_argument("--last", type=Int(minimum=1), help="only the last N evaluations or epochs (default all)")
    show.set_defaults(func=show_run)
    compare = commands.add_parser("compare", help="several runs side by side; seeds of one configuration become one "
                                  "row (mean and std)")
    compare.add_argument("run_dirs", nargs="+", help="run folders (or folders holding runs)")
    compare.add_argument("--per-seed", action="store_true", help="one row per run instead of one per configuration")
    compare.set_defaults(func=compare_runs)
    plot = commands.add_parser("plot", help="the curves of several runs in one figure: best so far of searches, "
                               "training curves of one-shot runs; one axis per objective, seeds as a mean with a band")
    plot.add_argument("run_dirs", nargs="+", help="run folders (or folders holding runs)")
    plot.add_argument("--x", choices=["queries", "cost"], default="queries",
                      help="search runs' x axis: evaluations or cumulative (simulated or measured) cost (default "
                           "queries); one-shot runs are plotted over epochs")
    plot.add_argument("--per-seed", action="store_true", help="one line per run instead of a mean and band per "
                      "configuration")
    plot.add_argument("--out", default="runs.png", help="image file to write (default runs.png)")
    plot.set_defaults(func=plot_runs)
    study = commands.add_parser("study", help="write a run's optuna view (a study of its trials, or of its epochs) "
                                "as an optuna journal file, for optuna's own tools")
    study.add_argument("--run-dir", required=True, help="the run folder")
    study.add_argument("--out", required=True, help="the journal file to create (e.g. view.log; open it with "
                       "optuna-dashboard view.log)")
    study.set_defaults(func=write_study)
    for sub in (listing, show, compare, plot, study):
        sub.add_argument("--format", choices=["text", "json"], default="text", help="output format (default text)")


def _gather(paths: List[str]) -> List[View]:
    """The runs under each path; a damaged folder is skipped with one line, a path without any readable run
    is one error line (naming why when its only runs are damaged)."""
    runs, skipped = [], []
    for path in paths:
        found, problems = find_runs(path)
        if not found:
            why = "" if not problems else f": {problems[0]}" + (
                f" (and {len(problems) - 1} more damaged)" if len(problems) > 1 else "")
            raise ConfigError(f"no run ({KINDS_TEXT}) in {path}{why}")
        runs += found
        skipped += problems
    for problem in skipped:
        LOGGER.warning(f"nastk: skipped: {problem}")
    _warn_unreadable(runs)
    return runs


def _number(value, digits: int = 4) -> str:
    """A score as the progress lines show it (scientific notation for proxy-sized values), costs with ``digits``."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return format_score(value) if digits == 4 else f"{value:.{digits}f}"
    return str(value)


def _table(rows: List[List[str]], header: List[str]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    for row in [header] + rows:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())


def list_runs(args) -> int:
    runs, problems = find_runs(args.root)
    for problem in problems:
        LOGGER.warning(f"nastk: skipped: {problem}")
    _warn_unreadable(runs)
    rows = [run.describe() for run in runs]
    if args.format == "json":
        print_json(rows)
    elif not rows:
        print(f"no runs under {args.root}")
    else:
        _table([[r["run"], r["kind"], r["space"], r["strategy"], r["seed"], f"{r['evaluations']}/{r['budget']}",
                 r["status"], _number(r["best_objective"]), r["objective"], _number(r["test_accuracy"])] for r in rows],
               ["run", "kind", "space", "method", "seed", "done", "status", "best", "objective", "test"])
    return 0


def _warn_unreadable(runs: List[View]) -> None:
    """One line per run whose journal has lines that are not evaluation records (left out of its rows)."""
    for run in runs:
        if isinstance(run, RunView) and run.journal_warning:
            LOGGER.warning(f"nastk: warning: {run.journal_warning}")


def _run_dir(args) -> str:
    """``--run-dir``, or the deprecated positional folder."""
    if args.run_dir and args.positional_run_dir:
        raise ConfigError("give the run folder once: --run-dir RUN_DIR")
    if not (args.run_dir or args.positional_run_dir):
        raise ConfigError("name the run folder: nastk runs show --run-dir RUN_DIR")
    return args.run_dir or args.positional_run_dir


def show_run(args) -> int:
    code = _show(args)
    if args.positional_run_dir:  # said once the command succeeded (a refused command stays one error line)
        LOGGER.warning("nastk: warning: 'nastk runs show RUN_DIR' is deprecated and will be removed in the next "
                       "release; use 'nastk runs show --run-dir RUN_DIR'")
    return code


def _show(args) -> int:
    view = read_any(_run_dir(args), partial=True)  # the evaluations it can read, and how many lines it could not
    if isinstance(view, OneShotView):
        return _show_oneshot(view, args)
    run = view
    _warn_unreadable([run])
    rows, cost = [], 0.0
    score, others = _objectives(run)
    for trial, best in zip(run.trials, best_so_far(t.result.value for t in run.trials)):
        cost += trial.result.cost_s
        rows.append({"step": trial.step, "arch": trial.arch, "objective": trial.result.value,
                     "best_so_far": run.trials[best].result.value,
                     **{o.name: o.value(trial.result) for o in others},
                     "test_accuracy": trial.result.metrics.get("test_accuracy"), "cost_s": trial.result.cost_s,
                     "cumulative_cost_s": round(cost, 3), "wall_s": round(trial.wall_s, 3), "worker": trial.worker})
    rows = rows[-args.last:] if args.last else rows
    if args.format == "json":
        print_json({**run.describe(), "source": run.source, "config": run.config, "unreadable_lines": run.unreadable,
                    "trajectory": rows})
        return 0
    info = run.describe()
    print(f"run {info['run']}: {info['kind']}, {info['space']} / {info['strategy']} seed {info['seed']}, "
          f"{info['evaluator']} evaluator, {info['evaluations']}/{info['budget']} evaluations, {info['status']}")
    best = f"{_number(info['best_objective'])} {score.unit}" if score is not None else _number(info['best_objective'])
    print(f"best {best} ({score.name if score is not None else info['objective']}): {info['best_arch']}")
    if run.source == "optuna journal":
        print(f"(a parallel study: trials read from its optuna storage {run.directory / 'optuna_journal.log'})")
    elif run.source == "summary":
        print("(a parallel study in a database storage, not reachable from the folder: only its summary's "
              "trajectory is shown by runs plot; open the study with optuna's tools)")
    header = f"{score.name} ({score.unit})" if score is not None else "objective"  # psnr (dB)
    _table([[r["step"], _number(r["objective"]), _number(r["best_so_far"])] + [_number(r[o.name]) for o in others]
            + [_number(r["test_accuracy"], 2), _number(r["cost_s"], 1), _number(r["cumulative_cost_s"], 1),
               _number(r["wall_s"], 3), r["arch"]] for r in rows],
           ["step", header, "best so far"] + [o.label for o in others]
           + ["test acc", "cost s", "total cost s", "wall s", "architecture"])
    return 0


def _objectives(view: RunView):
    """A search run's objectives: the one naming its score when that has a unit (``psnr``: dB; None otherwise) and
    the others it recorded (``bitops``), each shown in its own column and front panel."""
    from nastk.evaluators.multi_objective import parse_objectives, score_objective

    try:
        objectives = parse_objectives(view.config.get("objectives"))
    except NastkError:  # a run of a plug-in objective not installed here: its score alone
        objectives = parse_objectives(None)
    measured = view.trials[0].result.objective if view.trials else None
    score = objectives[0] if objectives[0].score else score_objective(measured)
    return score, objectives[1:]


EPOCH_COLUMNS = ("lr", "train_loss", "train_acc", "valid_acc", "test_acc", "epoch_s")


def _show_oneshot(view: OneShotView, args) -> int:
    epochs = view.epochs[-args.last:] if args.last else view.epochs
    alphas = view.alphas("cpu")  # printed: read onto the CPU
    info = view.describe()
    if args.format == "json":
        print_json({**info, "config": view.config, "summary": view.summary, "epochs": epochs,
                    "sampler_state": view.sampler_state(), "alphas": alphas, "selected_arch": view.selected_arch,
                    "selections": view.selections})
        return 0
    print(f"run {info['run']}: {info['kind']}, {info['space']} / {info['strategy']} seed {info['seed']}, "
          f"{info['evaluations']}/{info['budget']} epochs, {info['status']}")
    parts = [key for key in ("stage", "node") if any(key in r for r in epochs)]
    columns = [c for c in EPOCH_COLUMNS if any(r.get(c) is not None for r in epochs)]
    _table([[number] + [r.get(p, "-") for p in parts] + [_number(r.get(c)) for c in columns]
            for number, r in enumerate(epochs, start=len(view.epochs) - len(epochs) + 1)],
           ["epoch"] + parts + [c.replace("_", " ") for c in columns])
    state = view.sampler_state()
    if state:
        print("sampler state (last epoch): " + "; ".join(f"{key.replace('_', ' ')} {value}" for key, value in state.items()))
    if alphas:
        print("architecture weights (mixture weights of the architecture parameters):")
        for row in alphas:
            ranked = sorted(row["weights"].items(), key=lambda item: -item[1])
            print(f"  {row['decision']}: " + "  ".join(f"{name} {weight:.3f}" for name, weight in ranked))
    for name, selection in view.selections.items():
        print(f"selection ({name}): {selection.get('arch')}")
    print(f"selected architecture: {view.selected_arch or '- (none recorded; nastk supernet select, or rank)'}")
    return 0


def compare_runs(args) -> int:
    runs = _gather(args.run_dirs)
    if args.per_seed:
        rows = [run.describe() for run in runs]
    else:
        rows = [_group_row(group) for group in group_seeds(runs)]
    if args.format == "json":
        print_json(rows)
        return 0
    if args.per_seed:
        _table([[r["run"], r["kind"], r["space"], r["strategy"], r["seed"], r["evaluations"], _number(r["best_objective"]),
                 _number(r["test_accuracy"]), _number(r["cost_s"], 1), r["best_arch"]] for r in rows],
               ["run", "kind", "space", "method", "seed", "done", "best", "test", "cost s", "best architecture"])
        return 0
    _table([[r["run"], r["kind"], r["space"], r["strategy"], ",".join(map(str, r["seeds"])), r["evaluations"],
             _mean_std(r["best_objective"], r["best_objective_std"]), r["objective"],
             _mean_std(r["test_accuracy"], r["test_accuracy_std"]), _number(r["cost_s"], 1), r["best_arch"] or "-"]
            for r in rows],
           ["run", "kind", "space", "method", "seeds", "done", "best", "objective", "test", "cost s",
            "best architecture (best seed)"])
    return 0


def _mean_std(mean, std) -> str:
    return _number(mean) if std is None else f"{_number(mean)} +- {_number(std)}"


def _group_row(group: List[View]) -> Dict[str, Any]:
    """One row per configuration: a single run's own row; seeds as means (std alongside) and the per-seed rows."""
    rows = [view.describe() for view in group]
    if len(group) == 1:
        return {**rows[0], "seeds": [rows[0]["seed"]], "best_objective_std": None, "test_accuracy_std": None,
                "per_seed": rows}
    aggregate = seed_aggregate(group)
    best = max(rows, key=lambda r: objective_key(r["best_objective"]))

    def part(key, what):
        return (aggregate[key] or {}).get(what)

    return {**rows[0], "run": _common_folder([r["run"] for r in rows]), "seed": None, "seeds": aggregate["seeds"],
            "evaluations": _whole(part("evaluations", "mean")), "status": ",".join(sorted({r["status"] for r in rows})),
            "best_objective": part("best_objective", "mean"), "best_objective_std": part("best_objective", "std"),
            "test_accuracy": part("test_accuracy", "mean"), "test_accuracy_std": part("test_accuracy", "std"),
            "cost_s": part("cost_s", "mean"), "best_arch": best["best_arch"], "per_seed": rows}


def _whole(value):
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _common_folder(paths: List[str]) -> str:
    import os

    common = os.path.commonpath([str(Path(p).resolve()) for p in paths]) if paths else ""
    return common + " (seeds)"


def distinct_colors(count: int) -> List[Any]:
    """``count`` colours no two of which are the same: matplotlib's tab10 up to 10, tab20 up to 20,
    else evenly spaced hues."""
    import matplotlib
    import numpy as np

    if count <= 10:
        return [matplotlib.colormaps["tab10"](i) for i in range(count)]
    if count <= 20:
        return [matplotlib.colormaps["tab20"](i) for i in range(count)]
    return [matplotlib.colors.hsv_to_rgb((h, 0.75, 0.85)) for h in np.linspace(0, 1, count, endpoint=False)]


def _series(view: View, x: str) -> List[List[float]]:
    if isinstance(view, OneShotView):
        return view.curve(view.score_key)
    return [[a, b] for a, b in view.curve(x) if b is not None and b > float("-inf")]


def band(curves: List[List[List[float]]]):
    """Mean and std of step curves over their common x range: each curve holds its last value until its
    next point; the range runs from where every curve has a point to where the first one ends."""
    import numpy as np

    curves = [c for c in curves if c]
    if not curves:
        return np.array([]), np.array([]), np.array([])
    start, end = max(c[0][0] for c in curves), min(c[-1][0] for c in curves)
    xs = np.array(sorted({p[0] for c in curves for p in c if start <= p[0] <= end}))
    values = []
    for curve in curves:
        px, py = np.array([p[0] for p in curve]), np.array([p[1] for p in curve])
        values.append(py[np.searchsorted(px, xs, side="right") - 1])
    values = np.array(values)
    return xs, values.mean(axis=0), values.std(axis=0)


def plot_runs(args) -> int:
    runs = _gather(args.run_dirs)
    out = Path(args.out)
    if out.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise ConfigError(f"--out {out} must end in .png, .pdf or .svg")
    check_writable(out)
    try:
        import matplotlib
    except ModuleNotFoundError:
        raise ConfigError("runs plot needs matplotlib (pip install 'nastk[plot]')") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [[run] for run in runs] if args.per_seed else group_seeds(runs)
    panels: Dict[str, List[List[View]]] = {}  # one axis per objective (and x axis)
    for group in groups:
        panels.setdefault(_panel(group[0], args.x), []).append(group)
    colors = distinct_colors(len(groups))
    fronts = _front_panels(groups, colors)
    count = len(panels) + len(fronts)
    fig, axes = plt.subplots(1, count, figsize=(6.4 * count, 4.2), squeeze=False)
    lines = []
    index = 0
    for axis, (panel, members) in zip(axes[0][len(panels):], fronts.items()):
        _draw_fronts(axis, panel, members, lines)
    for axis, (panel, members) in zip(axes[0], panels.items()):
        for group in members:
            color = colors[index]
            index += 1
            label = _label(group)
            curves = [_series(view, args.x) for view in group]
            # a search's best so far holds between evaluations (steps); a training curve is a line over epochs
            where = None if isinstance(group[0], OneShotView) else "post"
            if len(group) == 1:
                xs, mean, std = [p[0] for p in curves[0]], [p[1] for p in curves[0]], None
            else:
                xs, mean, std = band(curves)
                label = f"{label}, mean of {len(group)} seeds"
            if where:
                axis.step(xs, mean, where=where, label=label, lw=1.4, color=color)
            else:
                axis.plot(xs, mean, marker="o", ms=3, label=label, lw=1.4, color=color)
            if std is not None:
                axis.fill_between(xs, mean - std, mean + std, step=where, alpha=0.2, color=color, lw=0)
            lines.append({"label": label, "runs": [str(v.directory) for v in group], "panel": panel,
                          "color": matplotlib.colors.to_hex(color)})
        objective, xlabel = panel.split("\n")
        axis.set_xlabel(xlabel)
        axis.set_ylabel(objective)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    fig.tight_layout()
    try:
        save_figure(fig, out, dpi=120)
    finally:
        plt.close(fig)
    if args.format == "json":
        print_json({"plot": str(out), "runs": [str(run.directory) for run in runs], "lines": lines,
                    "axes": list(panels) + list(fronts)})
    else:
        print(f"plot: {out} ({len(runs)} runs, {len(lines)} lines, {count} axes"
              + (f", {len(fronts)} of them Pareto fronts" if fronts else "") + ")")
    return 0


def _front_panels(groups: List[List[View]], colors) -> Dict[str, List[Any]]:
    """One axis per pair (score, other objective) of the multi-objective searches: ``{"PSNR (dB)\nBitOps (M)":
    [(run, score objective, other objective, colour, group label), ...]}``."""
    from nastk.evaluators.multi_objective import parse_objectives

    fronts: Dict[str, List[Any]] = {}
    for group, color in zip(groups, colors):
        for view in group:
            if not isinstance(view, RunView) or not view.trials:
                continue
            score, others = _objectives(view)
            quality = parse_objectives(None)[0] if score is None else score
            for objective in others:
                label = quality.label if score is not None else f"score ({view.trials[0].result.objective})"
                fronts.setdefault(f"{label}\n{objective.label}", []).append(
                    (view, quality, objective, color, _label(group)))
    return fronts


def _draw_fronts(axis, panel: str, members: List[Any], lines: List[Dict[str, Any]]) -> None:
    """Each run's evaluations (faint) and its front of the two objectives (a staircase) on one axis."""
    import matplotlib

    from nastk.evaluators.multi_objective import front_staircase

    labelled = set()
    for view, quality, objective, color, label in members:
        xs = [objective.value(t.result) for t in view.trials]
        ys = [quality.value(t.result) for t in view.trials]
        axis.scatter(xs, ys, s=8, color=color, alpha=0.3, lw=0)
        front_x, front_y = front_staircase(view.trials, quality, objective)
        shown = f"{label}, Pareto front" if label not in labelled else None
        labelled.add(label)
        axis.step(front_x, front_y, where="post", color=color, lw=1.4, marker="o", ms=3, label=shown)
        lines.append({"label": f"{label}, Pareto front", "runs": [str(view.directory)], "panel": panel,
                      "color": matplotlib.colors.to_hex(color), "front": [[x, y] for x, y in zip(front_x, front_y)]})
    quality_label, objective_label = panel.split("\n")
    axis.set_xlabel(objective_label)
    axis.set_ylabel(quality_label)
    axis.set_title("Pareto front (every evaluation faint)", fontsize=9)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)


def _panel(view: View, x: str) -> str:
    """The axis a run is drawn on: its objective (y) and x axis, as 'y label\\nx label'."""
    if isinstance(view, OneShotView):
        return f"{view.score_key} (one-shot training)\nepochs"
    measured = view.trials[0].result.objective if view.trials and view.objective == "objective" else view.objective
    return (f"best so far ({measured})\n"
            + ("evaluations" if x == "queries" else "cumulative evaluation cost (s)"))


def _label(group: List[View]) -> str:
    view = group[0]
    info = view.describe()
    seeds = f"seed {info['seed']}" if len(group) == 1 else f"seeds {','.join(str(v.describe()['seed']) for v in group)}"
    return f"{info['strategy']} {seeds} ({view.directory.name if len(group) == 1 else view.directory.parent.name})"


def write_study(args) -> int:
    from nastk.optuna_view import write_view

    view = read_any(args.run_dir)
    check_writable(args.out)
    name = write_view(view, args.out)
    if args.format == "json":
        print_json({"study": name, "storage": str(args.out), "run": str(view.directory), "kind": view.kind})
    else:
        print(f"wrote the optuna view of {view.directory} ({view.kind}) to {args.out} as study {name!r}; "
              f"open it with: optuna-dashboard {args.out}")
    return 0
