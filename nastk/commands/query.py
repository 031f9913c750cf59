"""``nastk query``: one architecture's benchmark numbers under an explicit protocol.

Spaces with a benchmark (:func:`nastk.benchmarks.registry.benchmark_for`) and a query form here:

* ``nb201``: NAS-Bench-201, every cell; ``--dataset`` is required, ``--epochs`` 12 or 200.
* ``darts``: the 214 trained random DARTS genotypes (CIFAR-10 test accuracy after 300/450/600
  epochs and the curve maximum); ``--dataset`` defaults to cifar10, the only one it has. A genotype
  outside the 214 is one error line (exit status 2).

``--index N`` looks up the benchmark's N-th entry instead of ``--arch`` (NB201's index, the DARTS
table's row).
"""
from __future__ import annotations

from nastk.commands import print_json
from nastk.errors import NastkError
from nastk.protocol import DATASETS, Protocol
from nastk.space import get_space
from nastk.options import Int


def register(subparsers) -> None:
    parser = subparsers.add_parser("query", help="look up an architecture in a benchmark table")
    parser.add_argument("--space", default="nb201", choices=list(QUERIES))
    parser.add_argument("--dataset", default=None,
                        help=f"nb201 (required): one of {', '.join(DATASETS)}; darts: cifar10 (the default, its only one)")
    parser.add_argument("--arch", help="architecture string, e.g. |nor_conv_3x3~0|+|...| (nb201); the compact "
                                      "normal:...;reduce:... string or Genotype(...) notation (darts)")
    parser.add_argument("--index", type=Int(minimum=0), help="the benchmark's N-th entry instead of --arch "
                                                 "(NB201 index; DARTS table row, 0..213)")
    parser.add_argument("--epochs", type=Int(minimum=1), default=None,
                        help="training length of the reported test accuracy: nb201 12 or 200 (default 200); "
                             "darts 300, 450 or 600 (default 600)")
    parser.add_argument("--table", default=None, help="NB201 table: compact .csv.gz (default: $NASTK_DATA), official .pth, "
                                                      "or nastk .npz; DARTS: a CSV in the 214-genotype table's columns")
    parser.add_argument("--trust-pickle", action="store_true", help="allow loading an official .pth that holds arbitrary pickled objects")
    parser.add_argument("--format", choices=["text", "json"], default="text")
    parser.set_defaults(func=run, query_parser=parser)


def run(args) -> int:
    # --dataset (nb201) and one of --arch / --index are required; the messages (exit status 2) are
    # argparse's own, the ones these options gave while they were plain required options
    query, default_dataset = QUERIES[args.space]
    missing = (["--dataset"] if args.dataset is None and default_dataset is None else []) + \
        (["--arch"] if args.arch is None and args.index is None else [])
    if missing:
        args.query_parser.error(f"the following arguments are required: {', '.join(missing)}")
    if args.arch is not None and args.index is not None:
        args.query_parser.error("argument --index: not allowed with argument --arch")
    if args.dataset is None:
        args.dataset = default_dataset
    return query(args)


# --- NAS-Bench-201 -------------------------------------------------------------------------------------
def query_nb201(args) -> int:
    from nastk.benchmarks.registry import benchmark_for

    epochs = 200 if args.epochs is None else args.epochs
    space, benchmark = get_space(args.space), benchmark_for(args.space)
    arch = space.from_str(args.arch) if args.arch is not None else None
    Protocol(args.dataset, "test", epochs)  # validates dataset and epochs before loading anything
    table = benchmark.load_table(args.table, trust_pickle=args.trust_pickle)
    if arch is None:
        arch = table.arch_at(args.index)  # the given table's order: NB201's index in every release
    metrics = table.metrics(arch, args.dataset, epochs)
    test_protocol = table.resolve(Protocol(args.dataset, "test", epochs))
    out = {
        "space": args.space,
        "arch": arch.to_str(),
        "index": table.index_of(space.code(arch)),
        "canonical": space.canonical(arch),
        "dataset": args.dataset,
        "epochs": epochs,
        "table": table.source,
        "test_accuracy": table.accuracy(arch, test_protocol),
        "test_protocol": test_protocol.key,
        "metrics": metrics,
        "cost": space.cost(arch, **benchmark.network_options(args.dataset)),
    }
    if args.format == "json":
        print_json(out)
    else:
        print(f"{out['arch']}  (NB201 index {out['index']}, {args.dataset}, {epochs} epochs, {table.source})")
        for key, value in metrics.items():
            print(f"  {key:40s} {value:10.4f}")
        print(f"  params {out['cost']['params_m']:.4f} M, FLOPs {out['cost']['flops_m']:.2f} M")
    return 0


# --- the DARTS 214-genotype table --------------------------------------------------------------------------
#: DARTS' CIFAR-10 evaluation network, the one the table's genotypes were trained as (no auxiliary head)
DARTS_COST = {"num_classes": 10, "input_size": 32, "C": 36, "layers": 20}


def query_darts(args) -> int:
    from nastk.benchmarks import darts as darts_benchmark
    from nastk.benchmarks.registry import benchmark_for

    space = get_space(args.space)
    arch = space.from_str(args.arch) if args.arch is not None else None
    dataset = args.dataset
    epochs = 600 if args.epochs is None else args.epochs
    # validates dataset and epochs before loading anything
    test_protocol = darts_benchmark.parse_protocol(f"{dataset}/test/{epochs}")
    benchmark = (darts_benchmark.DartsBenchmark(darts_benchmark.load_table(args.table)) if args.table
                 else benchmark_for(args.space))
    table = benchmark.table
    if arch is None:
        arch = benchmark.arch_at(args.index)
    try:
        index = benchmark.index(arch)
    except NastkError:
        raise NastkError(f"DARTS genotype {arch.to_str()} is not among the {len(table)} trained genotypes of "
                         f"{table.source}; the benchmark scores only these (list them with --index 0..{len(table) - 1})") from None
    metrics = table.metrics(arch)
    out = {
        "space": args.space,
        "arch": arch.to_str(),
        "genotype": space.genotype_str(arch),
        "index": index,
        "canonical": space.canonical(arch),
        "dataset": dataset,
        "epochs": epochs,
        "table": table.source,
        "test_accuracy": table.accuracy(arch, test_protocol),
        "test_protocol": test_protocol.key,
        "metrics": metrics,
        "cost": space.cost(arch, **DARTS_COST),
        "cost_network": dict(DARTS_COST, auxiliary=False),
    }
    if args.format == "json":
        print_json(out)
    else:
        print(f"{out['arch']}  (DARTS benchmark row {index}, {dataset}, {table.source})")
        print(f"  {out['genotype']}")
        for key, value in metrics.items():
            print(f"  {key:40s} {value:10.4f}")
        print(f"  params {out['cost']['params_m']:.4f} M, FLOPs {out['cost']['flops_m']:.2f} M "
              f"(C={DARTS_COST['C']}, {DARTS_COST['layers']} cells, {DARTS_COST['input_size']}x{DARTS_COST['input_size']}, "
              f"no auxiliary head)")
    return 0


#: the spaces ``nastk query`` knows (each with a benchmark in :mod:`nastk.benchmarks.registry`):
#: the query and the dataset used without ``--dataset`` (None: the option is required)
QUERIES = {"nb201": (query_nb201, None), "darts": (query_darts, "cifar10")}
