"""``nastk spaces`` and ``nastk strategies``: what exists."""
from __future__ import annotations

from typing import Callable, Dict

from nastk.commands import print_json
from nastk.space import SPACES, get_space
from nastk.strategy import STRATEGIES


def register(subparsers) -> None:
    for name, help_text, rows, line in (
        ("spaces", "list search spaces and their capabilities", space_rows,
         lambda name, caps: f"{name:10s} {', '.join(caps)}"),
        ("strategies", "list query strategies", strategy_rows,
         lambda name, row: f"{name:10s} {row['doc']}  (needs: {', '.join(row['requires']) or 'nothing'})"),
    ):
        parser = subparsers.add_parser(name, help=help_text)
        parser.add_argument("--format", choices=["text", "json"], default="text")
        parser.set_defaults(func=_lister(rows, line))


def space_rows() -> Dict[str, list]:
    return {name: sorted(get_space(name).capabilities) for name in SPACES.names()}


def strategy_rows() -> Dict[str, dict]:
    rows = {}
    for name in STRATEGIES.names():
        cls = STRATEGIES.get(name)
        doc = (cls.__doc__ or "").strip().splitlines()
        rows[name] = {"requires": list(cls.requires), "doc": doc[0] if doc else ""}
    return rows


def _lister(rows: Callable[[], dict], line: Callable[[str, object], str]):
    def run(args) -> int:
        data = rows()
        if args.format == "json":
            print_json(data)
        else:
            for name, row in data.items():
                print(line(name, row))
        return 0

    return run
