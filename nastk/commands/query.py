"""``nastk query``: one architecture's benchmark numbers under an explicit protocol."""
from __future__ import annotations

from nastk.benchmarks.nb201 import load_table
from nastk.commands import print_json
from nastk.protocol import DATASETS, Protocol
from nastk.space import get_space


def register(subparsers) -> None:
    parser = subparsers.add_parser("query", help="look up an architecture in a benchmark table")
    parser.add_argument("--space", default="nb201", choices=["nb201"])
    parser.add_argument("--dataset", required=True, help=f"one of {', '.join(DATASETS)}")
    parser.add_argument("--arch", required=True, help="architecture string, e.g. |nor_conv_3x3~0|+|...|")
    parser.add_argument("--epochs", type=int, default=200, help="training length of the reported numbers (12 or 200; default 200)")
    parser.add_argument("--table", default=None, help="NB201 table: compact .csv.gz (default: $NASTK_DATA), official .pth, or nastk .npz")
    parser.add_argument("--trust-pickle", action="store_true", help="allow loading an official .pth that holds arbitrary pickled objects")
    parser.add_argument("--format", choices=["text", "json"], default="text")
    parser.set_defaults(func=run)


def run(args) -> int:
    space = get_space(args.space)
    arch = space.from_str(args.arch)
    Protocol(args.dataset, "test", args.epochs)  # validates dataset and epochs before loading anything
    table = load_table(args.table, trust_pickle=args.trust_pickle)
    metrics = table.metrics(arch, args.dataset, args.epochs)
    test_protocol = table.resolve(Protocol(args.dataset, "test", args.epochs))
    out = {
        "space": args.space,
        "arch": arch.to_str(),
        "index": table.index_of(space.code(arch)),
        "canonical": space.canonical(arch),
        "dataset": args.dataset,
        "epochs": args.epochs,
        "table": table.source,
        "test_accuracy": table.accuracy(arch, test_protocol),
        "test_protocol": test_protocol.key,
        "metrics": metrics,
        "cost": space.cost(arch, num_classes=_classes(args.dataset), input_size=_size(args.dataset)),
    }
    if args.format == "json":
        print_json(out)
    else:
        print(f"{out['arch']}  (NB201 index {out['index']}, {args.dataset}, {args.epochs} epochs, {table.source})")
        for key, value in metrics.items():
            print(f"  {key:40s} {value:10.4f}")
        print(f"  params {out['cost']['params_m']:.4f} M, FLOPs {out['cost']['flops_m']:.2f} M")
    return 0


def _classes(dataset: str) -> int:
    from search_spaces.nb201 import NUM_CLASSES

    return NUM_CLASSES[dataset]


def _size(dataset: str) -> int:
    return 16 if dataset == "ImageNet16-120" else 32
