"""The ``nastk`` command line. Each sub-command lives in :mod:`nastk.commands` and registers itself.

Every :class:`~nastk.errors.NastkError` (and every usage error) becomes one line on stderr and exit
status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

from nastk.errors import NastkError

#: Sub-command modules; each defines ``register(subparsers)`` and sets ``func`` on its parser.
COMMAND_MODULES = ("query", "search", "runs", "export", "listing", "proxies", "supernet", "reproduce")


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Every option's help shows its default, unless the help text already says it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if _shows_default(action) and "default" not in text:
            text = f"{text} (default: %(default)s)".strip()
        return text


def _shows_default(action) -> bool:
    return (bool(action.option_strings) and action.default is not None and action.default is not argparse.SUPPRESS
            and not isinstance(action.default, bool))


class OneLineParser(argparse.ArgumentParser):
    """Argument errors as a single line naming the problem (exit status 2); defaults shown in --help.

    ``defer(add_flags)`` adds flags only when this parser is used (parsing, --help): flags built from
    plug-in declarations import those plug-ins, which ``nastk --help`` and other commands need not pay for.
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)
        self._deferred = []

    def defer(self, add_flags) -> None:
        """Call ``add_flags(parser, argv)`` before this parser first parses or prints help."""
        self._deferred.append(add_flags)

    def populate(self, argv=()) -> "OneLineParser":
        while self._deferred:
            self._deferred.pop(0)(self, list(argv or ()))
        return self

    def parse_known_args(self, args=None, namespace=None):
        self.populate(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        self.populate()
        return super().format_help()

    def add_argument(self, *args, **kwargs):
        action = super().add_argument(*args, **kwargs)
        if action.help is None and _shows_default(action):  # argparse prints no help line for help=None
            action.help = "(default: %(default)s)"
        return action

    def error(self, message: str):
        self.exit(2, f"nastk: error: {message} (see '{self.prog} --help')\n")


#: Longest error message printed; a message quoting a huge input is cut, not echoed whole.
MAX_MESSAGE = 400


def one_line(message: str) -> str:
    """A message as one line of readable length."""
    message = " ".join(message.split())
    if len(message) <= MAX_MESSAGE:
        return message
    return f"{message[:MAX_MESSAGE]}... (message cut, {len(message)} characters)"


def build_parser() -> argparse.ArgumentParser:
    from nastk import __version__

    parser = OneLineParser(prog="nastk", description="Neural architecture search toolkit.")
    parser.add_argument("--version", action="version", version=f"nastk {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"nastk.commands.{name}")
        except ModuleNotFoundError as error:  # a command whose module is not written yet
            if error.name == f"nastk.commands.{name}":
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        # `nastk` with no command runs the embedded default search.
        args = parser.parse_args(["search"] + list(argv if argv is not None else sys.argv[1:]))
    try:
        if getattr(args, "device", None) is not None:  # every command that runs a network takes --device
            from nastk.devices import check_device

            check_device(args.device)
        return int(args.func(args) or 0)
    except NastkError as error:
        print(f"nastk: error: {one_line(str(error))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into head and the like
        return 0
    except KeyboardInterrupt:
        print("nastk: interrupted; journaled evaluations are kept (use --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
