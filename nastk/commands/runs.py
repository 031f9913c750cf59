"""``nastk runs list|show|compare|plot``: the search runs under a folder, one run's trajectory, several
runs side by side and their anytime curves in one plot (see :mod:`nastk.runs`)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List

from nastk.commands import print_json
from nastk.errors import ConfigError
from nastk.options import Int
from nastk.paths import check_writable, save_figure
from nastk.progress import format_score
from nastk.runs import RunView, find_runs, read_run
from nastk.trial import objective_key


def register(subparsers) -> None:
    parser = subparsers.add_parser("runs", help="list, inspect, compare and plot search runs")
    commands = parser.add_subparsers(dest="runs_command", metavar="ACTION", required=True,
                                     parser_class=type(parser))
    listing = commands.add_parser("list", help="every search run under a folder: space, strategy, budget, best, status")
    listing.add_argument("root", nargs="?", default="runs", help="folder to search (default runs)")
    listing.set_defaults(func=list_runs)
    show = commands.add_parser("show", help="one run's config and trajectory, one labelled row per evaluation")
    show.add_argument("run_dir", help="the run folder")
    show.add_argument("--last", type=Int(minimum=1), help="only the last N evaluations (default all)")
    show.set_defaults(func=show_run)
    compare = commands.add_parser("compare", help="several runs side by side")
    compare.add_argument("run_dirs", nargs="+", help="run folders (or folders holding runs)")
    compare.set_defaults(func=compare_runs)
    plot = commands.add_parser("plot", help="the anytime curve (best so far) of several runs in one plot")
    plot.add_argument("run_dirs", nargs="+", help="run folders (or folders holding runs)")
    plot.add_argument("--x", choices=["queries", "cost"], default="queries",
                      help="x axis: evaluations or cumulative (simulated or measured) cost (default queries)")
    plot.add_argument("--out", default="runs.png", help="image file to write (default runs.png)")
    plot.set_defaults(func=plot_runs)
    for sub in (listing, show, compare, plot):
        sub.add_argument("--format", choices=["text", "json"], default="text", help="output format (default text)")


def _gather(paths: List[str]) -> List[RunView]:
    """The runs under each path; a damaged folder is skipped with one line, a path without any readable run
    is one error line (naming why when its only runs are damaged)."""
    runs, skipped = [], []
    for path in paths:
        found, problems = find_runs(path)
        if not found:
            why = "" if not problems else f": {problems[0]}" + (
                f" (and {len(problems) - 1} more damaged)" if len(problems) > 1 else "")
            raise ConfigError(f"no search run in {path}{why}")
        runs += found
        skipped += problems
    for problem in skipped:
        print(f"nastk: skipped: {problem}", file=sys.stderr)
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
        print(f"nastk: skipped: {problem}", file=sys.stderr)
    _warn_unreadable(runs)
    rows = [run.describe() for run in runs]
    if args.format == "json":
        print_json(rows)
    elif not rows:
        print(f"no search runs under {args.root}")
    else:
        _table([[r["run"], r["space"], r["strategy"], r["seed"], f"{r['evaluations']}/{r['budget']}", r["status"],
                 _number(r["best_objective"]), _number(r["test_accuracy"])] for r in rows],
               ["run", "space", "strategy", "seed", "evaluations", "status", "best", "test"])
    return 0


def _warn_unreadable(runs: List[RunView]) -> None:
    """One line per run whose journal has lines that are not evaluation records (left out of its rows)."""
    for run in runs:
        if run.journal_warning:
            print(f"nastk: warning: {run.journal_warning}", file=sys.stderr)


def show_run(args) -> int:
    run = read_run(args.run_dir, partial=True)  # the evaluations it can read, and how many lines it could not
    _warn_unreadable([run])
    rows, best, cost = [], None, 0.0
    for trial in run.trials:
        cost += trial.result.cost_s
        if best is None or objective_key(trial.result.value) > objective_key(best):
            best = trial.result.value
        rows.append({"step": trial.step, "arch": trial.arch, "objective": trial.result.value, "best_so_far": best,
                     "test_accuracy": trial.result.metrics.get("test_accuracy"), "cost_s": trial.result.cost_s,
                     "cumulative_cost_s": round(cost, 3), "wall_s": round(trial.wall_s, 3), "worker": trial.worker})
    rows = rows[-args.last:] if args.last else rows
    if args.format == "json":
        print_json({**run.describe(), "config": run.config, "unreadable_lines": run.unreadable, "trajectory": rows})
        return 0
    info = run.describe()
    print(f"run {info['run']}: {info['space']} / {info['strategy']} seed {info['seed']}, {info['evaluator']} evaluator, "
          f"{info['evaluations']}/{info['budget']} evaluations, {info['status']}")
    print(f"best {_number(info['best_objective'])} ({run.config['evaluator'].get('objective', 'objective')}): "
          f"{info['best_arch']}")
    if not rows and run.summary:
        print("(a parallel study: its trials are in its optuna storage; the summary's trajectory is in summary.json)")
    _table([[r["step"], _number(r["objective"]), _number(r["best_so_far"]), _number(r["test_accuracy"], 2),
             _number(r["cost_s"], 1), _number(r["cumulative_cost_s"], 1), _number(r["wall_s"], 3), r["arch"]] for r in rows],
           ["step", "objective", "best so far", "test acc", "cost s", "total cost s", "wall s", "architecture"])
    return 0


def compare_runs(args) -> int:
    rows = [run.describe() for run in _gather(args.run_dirs)]
    if args.format == "json":
        print_json(rows)
        return 0
    _table([[r["run"], r["space"], r["strategy"], r["seed"], r["evaluations"], _number(r["best_objective"]),
             _number(r["test_accuracy"]), _number(r["cost_s"], 1), r["best_arch"]] for r in rows],
           ["run", "space", "strategy", "seed", "evaluations", "best", "test", "cost s", "best architecture"])
    return 0


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

    fig, axis = plt.subplots(figsize=(6.4, 4.2))
    for run in runs:
        points = [(x, y) for x, y in run.curve(args.x) if y is not None and y > float("-inf")]
        label = f"{run.config.get('strategy')} seed {run.config.get('seed')} ({run.directory.name})"
        axis.step([x for x, _ in points], [y for _, y in points], where="post", label=label, lw=1.3)
    axis.set_xlabel("evaluations" if args.x == "queries" else "cumulative evaluation cost (s)")
    axis.set_ylabel(f"best so far ({runs[0].config['evaluator'].get('objective', 'objective')})")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    fig.tight_layout()
    try:
        save_figure(fig, out, dpi=120)
    finally:
        plt.close(fig)
    if args.format == "json":
        print_json({"plot": str(out), "runs": [str(run.directory) for run in runs]})
    else:
        print(f"plot: {out} ({len(runs)} runs)")
    return 0
