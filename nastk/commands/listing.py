"""``nastk spaces`` and ``nastk strategies``: what exists."""
from __future__ import annotations

from nastk.commands import print_json
from nastk.space import SPACES, get_space
from nastk.strategy import STRATEGIES


def register(subparsers) -> None:
    spaces = subparsers.add_parser("spaces", help="list search spaces and their capabilities")
    spaces.add_argument("--format", choices=["text", "json"], default="text")
    spaces.set_defaults(func=list_spaces)
    strategies = subparsers.add_parser("strategies", help="list query strategies")
    strategies.add_argument("--format", choices=["text", "json"], default="text")
    strategies.set_defaults(func=list_strategies)


def list_spaces(args) -> int:
    rows = {name: sorted(get_space(name).capabilities) for name in SPACES.names()}
    if args.format == "json":
        print_json(rows)
    else:
        for name, capabilities in rows.items():
            print(f"{name:10s} {', '.join(capabilities)}")
    return 0


def list_strategies(args) -> int:
    rows = {}
    for name in STRATEGIES.names():
        cls = STRATEGIES.get(name)
        rows[name] = {"requires": list(cls.requires), "doc": (cls.__doc__ or "").strip().splitlines()[0]}
    if args.format == "json":
        print_json(rows)
    else:
        for name, row in rows.items():
            print(f"{name:10s} {row['doc']}  (needs: {', '.join(row['requires']) or 'nothing'})")
    return 0
