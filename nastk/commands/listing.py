"""``nastk spaces``, ``nastk strategies`` and ``nastk evaluators``: what exists, and the options each takes."""
from __future__ import annotations

from typing import Callable, Dict

from nastk.commands import print_json


def register(subparsers) -> None:
    for name, help_text, rows, line in (
        ("spaces", "list search spaces and their capabilities", space_rows,
         lambda name, caps: f"{name:10s} {', '.join(caps)}"),
        ("strategies", "list query strategies and their options", strategy_rows,
         lambda name, row: f"{name:12s} {row['doc']}  (needs: {', '.join(row['requires']) or 'nothing'}; "
                           f"options: {_options_text(row['options'])})"),
        ("evaluators", "list evaluators (--evaluator) and their options", evaluator_rows,
         lambda name, row: f"{row['form']:18s} {row['doc']}  (options: {_options_text(row['options'])})"),
    ):
        parser = subparsers.add_parser(name, help=help_text)
        parser.add_argument("--format", choices=["text", "json"], default="text")
        parser.set_defaults(func=_lister(rows, line))


def space_rows() -> Dict[str, list]:
    from nastk.space import SPACES, get_space

    return {name: sorted(get_space(name).capabilities) for name in SPACES.names()}


def strategy_rows() -> Dict[str, dict]:
    from nastk.options import declared
    from nastk.strategy import STRATEGIES

    rows = {}
    for name in STRATEGIES.names():
        cls = STRATEGIES.get(name)
        rows[name] = {"requires": list(cls.requires), "doc": _first_line(cls),
                      "options": {option.name: option.default for option in declared(cls)},
                      "run_options": list(cls.RUN_OPTIONS)}
    return rows


def evaluator_rows() -> Dict[str, dict]:
    from nastk.evaluators import EVALUATORS
    from nastk.options import declared

    rows = {}
    for name in EVALUATORS.names():
        cls = EVALUATORS.get(name)
        rows[name] = {"form": f"{name}:{cls.target_metavar}" if cls.target else name, "doc": _first_line(cls),
                      "options": {option.name: option.default for option in declared(cls)},
                      "builds_networks": cls.builds_networks, "reports_benchmark": cls.reports_benchmark}
    return rows


def _first_line(cls) -> str:
    doc = (cls.__doc__ or "").strip().splitlines()
    return doc[0] if doc else ""


def _options_text(options: Dict[str, object]) -> str:
    return ", ".join(f"{name}={value}" for name, value in options.items()) or "none"


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
