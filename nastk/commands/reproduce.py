"""``nastk reproduce SPACE``: search strategies compared on the space's benchmark (see :mod:`nastk.reproduce`)."""
from __future__ import annotations

import shlex
import sys

from nastk.commands import print_json
from nastk.options import Int


def register(subparsers) -> None:
    parser = subparsers.add_parser("reproduce", help="compare search strategies on a space's benchmark "
                                                     "(nb201, darts; the NB201 search report)")
    add = parser.add_argument
    add("space", metavar="SPACE", help="a search space with a registered benchmark: nb201, darts or "
                                       "package.module:Class; or bossnas (BossNAS' released NATS ratings)")
    add("--quick", action="store_true", help="small version for CI: the first dataset, 2 seeds, 20 queries")
    add("--seeds", type=str, help="the seeds, as in 'nastk search --seeds': 0-19 (default), 3 or 0,4,7 (a lone "
                                 "number N still meaning 0..N-1 is deprecated)")
    add("--budget", type=Int(minimum=1), help="queries per search (default 100)")
    add("--max-queries", type=Int(minimum=1), help="cap on queries while spending the equal-time budget (default 3 x budget)")
    add("--datasets", help="comma-separated (default: the benchmark's datasets; nb201: cifar10,cifar100,ImageNet16-120, "
                           "cifar10-valid being cifar10's search split; darts: cifar10)")
    add("--strategies", help="comma-separated, must include random (default: those the space and its benchmark can run; "
                             "nb201: random,re,bo-tpe,bo-gp,nsga2; darts, whose benchmark knows 214 architectures: "
                             "random,bo-encoding, searching only those)")
    add("--jobs", type=Int(minimum=1), default=1, help="parallel processes (default 1)")
    add("--out", default="runs/reproduce", help="output folder for <space>_search[_quick].{md,json} and _anytime.png "
                                                "(default runs/reproduce; the committed NB201 report lives in "
                                                "docs/results and is only rewritten with --out docs/results)")
    add("--format", choices=["text", "json"], default="text")
    add("--no-progress", action="store_true", help="no progress bar (or, when stderr is not a terminal, no line per search)")
    parser.set_defaults(func=run)


def settings_of(args):
    """The comparison the flags ask for, defaults filled in and every value checked (nothing run yet)."""
    from nastk.reproduce import Settings, resolve

    settings = Settings.quick(args.space) if args.quick else Settings(space=args.space)
    if args.seeds is not None:
        settings.seeds = seeds_of(args.seeds)
    if args.budget is not None:
        settings.budget = args.budget
        settings.max_queries = 3 * args.budget
    if args.max_queries is not None:
        settings.max_queries = args.max_queries
    if args.datasets is not None:
        settings.datasets = _names(args.datasets)
    if args.strategies is not None:
        settings.strategies = _names(args.strategies)
    settings.jobs = args.jobs
    return resolve(settings)


def seeds_of(text: str) -> tuple:
    """``--seeds`` as ``nastk search`` reads it; a lone number N keeps its old meaning here (N seeds, 0..N-1)
    for one release, with a deprecation line."""
    from nastk.errors import ConfigError
    from nastk.log import LOGGER
    from nastk.options import Seeds

    text = text.strip()
    if text.isascii() and text.isdigit():
        count = int(text)
        if count < 1:
            raise ConfigError(f"--seeds {text}: give seeds such as 0-9, 3 or 0,4,7")
        LOGGER.warning(f"nastk: deprecated: 'reproduce --seeds {text}' as a count of seeds; write --seeds 0-{count - 1} "
                       f"(the form 'nastk search --seeds' takes)")
        return tuple(range(count))
    try:
        return tuple(Seeds().convert(text))
    except ValueError:
        raise ConfigError(f"--seeds {text}: give seeds such as 0-9, 3 or 0,4,7 (whole numbers >= 0)") from None


def _names(text: str) -> tuple:
    """A comma-separated list; an empty item stays (and is refused by name) rather than vanishing."""
    return tuple(name.strip() for name in text.split(","))


def run(args) -> int:
    if args.space == "bossnas":  # a method's published ranking, not a space's search comparison
        return run_bossnas(args)
    from nastk.progress import Progress
    from nastk.reproduce import check_out_dir, compare, space_benchmark, write_report

    settings = settings_of(args)
    check_out_dir(args.out)
    space, _ = space_benchmark(settings.space)
    best = {}

    def progress(trace) -> None:
        best[trace.dataset] = max(best.get(trace.dataset, float("-inf")), trace.best_test(settings.budget))
        bar.update(best=best[trace.dataset])

    with Progress(settings.searches, "reproduce", "searches", enabled=not args.no_progress) as bar:
        report = compare(settings, progress)
    command = "nastk " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["reproduce"] \
        else f"nastk reproduce {shlex.quote(args.space)}" + (" --quick" if args.quick else "")
    paths = write_report(report, args.out, f"{space.name}_search" + ("_quick" if args.quick else ""), command)
    if args.format == "json":
        print_json({"files": paths, "equal_time": report["equal_time"], "time_budget_s": report["time_budget_s"],
                    "optimum": report["optimum"],
                    "results": {d: {n: {b: {k: row[b][k] for k in ("mean", "std", "ri_percent")}
                                        for b in ("queries", "time") if b in row}
                                    for n, row in rows.items()} for d, rows in report["results"].items()}})
    else:
        facts = report["benchmark"]
        optimum_label = "optimum" if facts["complete"] else f"best of the {facts['architectures']} known"
        for dataset, rows in report["results"].items():
            print(f"{dataset}: " + ", ".join(f"{n} {r['queries']['mean']:.2f}±{r['queries']['std']:.2f}"
                                             for n, r in rows.items())
                  + f" ({optimum_label} {report['optimum'][dataset]:.2f})")
        if not report["equal_time"]:
            print("equal-time comparison skipped: the benchmark records no training time")
        print(f"report: {paths['markdown']}")
    return 0


def run_bossnas(args) -> int:
    """``nastk reproduce bossnas``: BossNAS' released NATS Ss CIFAR-10 block ratings, aggregated by nastk,
    against the 90-epoch table, beside the channel-count baseline and each block alone (no training)."""
    from nastk.oneshot.block_rating import report_lines, shipped_rating_report

    report = shipped_rating_report()
    if args.format == "json":
        print_json(report)
    else:
        print("\n".join(report_lines(report)))
    return 0
