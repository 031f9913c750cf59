"""``nastk reproduce nb201``: random, REA, BO-TPE, BO-GP and NSGA-II on NAS-Bench-201 (see :mod:`nastk.reproduce`)."""
from __future__ import annotations

import shlex
import sys

from nastk.commands import print_json
from nastk.options import Int


def register(subparsers) -> None:
    parser = subparsers.add_parser("reproduce", help="reproduce a published comparison (nb201: search strategies)")
    add = parser.add_argument
    add("benchmark", choices=["nb201"], help="what to reproduce")
    add("--quick", action="store_true", help="small version for CI: cifar10, 2 seeds, 20 queries")
    add("--seeds", type=Int(minimum=1), help="number of seeds, 0..N-1 (default 20)")
    add("--budget", type=Int(minimum=1), help="queries per search (default 100)")
    add("--max-queries", type=Int(minimum=1), help="cap on queries while spending the equal-time budget (default 3 x budget)")
    add("--datasets", help="comma-separated (default cifar10,cifar100,ImageNet16-120)")
    add("--strategies", help="comma-separated, must include random (default random,re,bo-tpe,bo-gp,nsga2)")
    add("--jobs", type=Int(minimum=1), default=1, help="parallel processes (default 1)")
    add("--out", default="runs/reproduce", help="output folder (default runs/reproduce; the committed report "
                                                "lives in docs/results and is only rewritten with --out docs/results)")
    add("--format", choices=["text", "json"], default="text")
    parser.set_defaults(func=run)


def run(args) -> int:
    from nastk.reproduce import Settings, compare, write_report

    settings = Settings.quick() if args.quick else Settings()
    if args.seeds is not None:
        settings.seeds = tuple(range(args.seeds))
    if args.budget is not None:
        settings.budget = args.budget
        settings.max_queries = 3 * args.budget
    if args.max_queries is not None:
        settings.max_queries = args.max_queries
    if args.datasets:
        settings.datasets = tuple(d.strip() for d in args.datasets.split(","))
    if args.strategies:
        settings.strategies = tuple(s.strip() for s in args.strategies.split(","))
    settings.jobs = args.jobs
    done = []

    def progress(trace) -> None:
        done.append(trace)
        if args.format == "text":
            print(f"\r{len(done)} searches done ({trace.strategy}, {trace.dataset}, seed {trace.seed})",
                  end="", file=sys.stderr, flush=True)

    report = compare(settings, progress)
    if args.format == "text":
        print(file=sys.stderr)
    command = "nastk " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["reproduce"] \
        else "nastk reproduce nb201" + (" --quick" if args.quick else "")
    paths = write_report(report, args.out, "nb201_search_quick" if args.quick else "nb201_search", command)
    if args.format == "json":
        print_json({"files": paths, "time_budget_s": report["time_budget_s"],
                    "results": {d: {n: {b: {k: row[b][k] for k in ("mean", "std", "ri_percent")} for b in ("queries", "time")}
                                    for n, row in rows.items()} for d, rows in report["results"].items()}})
    else:
        for dataset, rows in report["results"].items():
            print(f"{dataset}: " + ", ".join(f"{n} {r['queries']['mean']:.2f}±{r['queries']['std']:.2f}"
                                             for n, r in rows.items()))
        print(f"report: {paths['markdown']}")
    return 0
