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


class OneLineParser(argparse.ArgumentParser):
    """Argument errors as a single line naming the problem (exit status 2)."""

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
