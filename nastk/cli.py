"""The ``nastk`` command line. Each sub-command lives in :mod:`nastk.commands` and registers itself.

Every :class:`~nastk.errors.NastkError` (and every usage error) becomes one line on stderr and exit
status 2, never a traceback. Anything else that escapes a command is a bug, not bad input: the
last-resort handler prints it as one line naming the exception, with a pointer to ``--debug``
(a global flag, accepted anywhere on the command line), which prints the traceback; exit status 1.
"""
from __future__ import annotations

import argparse
import difflib
import importlib
import sys
import traceback
from typing import List, Optional

from nastk.errors import NastkError
from nastk.log import LOGGER, configure as configure_logging, level_from

#: Sub-command modules; each defines ``register(subparsers)`` and sets ``func`` on its parser.
COMMAND_MODULES = ("query", "search", "runs", "export", "listing", "proxies", "supernet", "reproduce",
                   "dashboard", "gan")


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
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:  # innermost parser first: its flags are the ones a mistyped flag was meant to be
            namespace.__dict__.setdefault(PARSERS_SEEN, []).append(self)
        return namespace, extras

    def did_you_mean(self, words: List[str]) -> str:
        """`` (did you mean --budget?)`` for the unknown flags in ``words`` that resemble one of this parser's."""
        known = [flag for flag in self._option_string_actions if flag.startswith("--")]
        guesses = []
        for word in words:
            flag = word.split("=", 1)[0]
            if flag.startswith("-"):
                guesses += [f"{flag} -> {close[0]}" for close in [difflib.get_close_matches(flag, known, n=1, cutoff=0.6)]
                            if close]
        return f" (did you mean: {', '.join(guesses)}?)" if guesses else ""

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


#: where the parsers that left arguments unrecognised note themselves on the namespace (removed after parsing)
PARSERS_SEEN = "_nastk_parsers_with_extras"
#: The flag that makes every error print its traceback (taken out of the arguments wherever it stands).
DEBUG_FLAG = "--debug"
#: Longest error message printed; a message quoting a huge input is cut, not echoed whole.
MAX_MESSAGE = 400


def one_line(message: str, secrets=()) -> str:
    """A message as one line of readable length, without passwords (those of the URLs in ``secrets`` and
    anything shaped like a URL password: :func:`nastk.redaction.redact`)."""
    from nastk.redaction import redact

    message = " ".join(redact(message, secrets).split())
    if len(message) <= MAX_MESSAGE:
        return message
    return f"{message[:MAX_MESSAGE]}... (message cut, {len(message)} characters)"


def build_parser() -> argparse.ArgumentParser:
    from nastk import __version__

    parser = OneLineParser(prog="nastk", description="Neural architecture search toolkit.")
    parser.add_argument("--version", action="version", version=f"nastk {__version__}")
    parser.add_argument("-q", "--quiet", action="count", default=argparse.SUPPRESS, help="fewer messages on stderr: "
                        "-q warnings only and no progress, -qq errors only; accepted anywhere on the command line")
    parser.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more messages on stderr "
                        "(debug lines); accepted anywhere on the command line")
    parser.add_argument(DEBUG_FLAG, action="store_true", default=argparse.SUPPRESS, help="print the traceback of an error (nastk's own "
                        "one-line errors and unexpected ones); accepted anywhere on the command line")
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
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv[:argv.index("--")] if "--" in argv else DEBUG_FLAG in argv
    if debug:
        argv.remove(DEBUG_FLAG)
    argv, quiet, verbose = _verbosity(argv)
    previous = LOGGER.level
    configure_logging(level_from(quiet, verbose))
    try:
        return _main(argv, debug)
    finally:  # the library's level is the caller's again (main also runs in process, in tests and scripts)
        LOGGER.setLevel(previous)


def _main(argv: List[str], debug: bool) -> int:
    from nastk.paths import CLAIMED

    CLAIMED.clear()
    try:
        return _run(argv)
    except NastkError as error:
        if debug:
            traceback.print_exc()
        print(f"nastk: error: {one_line(str(error), _storage_urls(argv))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into head and the like
        return 0
    except KeyboardInterrupt:
        print(f"nastk: interrupted; {interrupted_hint(argv)}", file=sys.stderr)
        return 130
    except Exception as error:  # the last resort: a bug, not bad input
        if debug:
            traceback.print_exc()
        print(f"nastk: unexpected error: {one_line(unexpected(error), _storage_urls(argv))}"
              + ("" if debug else f" (rerun with {DEBUG_FLAG} for the traceback)"), file=sys.stderr)
        return 1


#: flags of every command, accepted anywhere on the command line: fewer messages (-q: warnings only, and no
#: progress; -qq: errors only) or more (-v: debug lines); results on stdout are never affected
QUIET_FLAGS, VERBOSE_FLAGS = ("-q", "--quiet", "-qq"), ("-v", "--verbose", "-vv")


def _verbosity(argv: List[str]):
    """``argv`` without the -q/-v flags (before a ``--``), and how many of each it had."""
    end = argv.index("--") if "--" in argv else len(argv)
    quiet = sum(w.count("q") for w in argv[:end] if w in QUIET_FLAGS and w != "--quiet") + argv[:end].count("--quiet")
    verbose = sum(w.count("v") for w in argv[:end] if w in VERBOSE_FLAGS and w != "--verbose") + argv[:end].count("--verbose")
    kept = [w for w in argv[:end] if w not in QUIET_FLAGS + VERBOSE_FLAGS] + argv[end:]
    return kept, quiet, verbose


#: commands whose ``--resume`` reads the run's own config, so the folder is all a resume needs
RESUMABLE_COMMANDS = (("search",), ("supernet", "train"))


def interrupted_hint(argv: List[str]) -> str:
    """What an interrupted command kept and how to continue it: the run folder it claimed, and the command."""
    from nastk.paths import CLAIMED

    if not CLAIMED:
        return "nothing was written"
    folder = CLAIMED[0]
    words = tuple(w for w in argv[:2] if not w.startswith("-"))
    if words in RESUMABLE_COMMANDS or words[:1] == ("search",):
        command = " ".join(words[:len(words) if words in RESUMABLE_COMMANDS else 1])
        return f"run folder {folder} keeps the finished work; continue it with: nastk {command} --run-dir {folder} --resume"
    return f"run folder {folder} keeps the finished work; rerun the same command with --resume to continue it"


def _storage_urls(argv: List[str]) -> List[str]:
    """The database URLs given on the command line (``--storage URL`` or ``--storage=URL``)."""
    urls = [argv[i + 1] for i, word in enumerate(argv[:-1]) if word == "--storage"]
    return urls + [word.split("=", 1)[1] for word in argv if word.startswith("--storage=")]


def unexpected(error: BaseException) -> str:
    """An exception nastk did not raise on purpose, as one line: its type, message and where it happened."""
    frames = traceback.extract_tb(error.__traceback__)
    where = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    message = str(error)
    return f"{type(error).__name__}{': ' + message if message else ''}{where}"


def _run(argv: List[str]) -> int:
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    seen = args.__dict__.pop(PARSERS_SEEN, [parser])
    if extras:
        seen[0].error(f"unrecognized arguments: {' '.join(extras)}{seen[0].did_you_mean(extras)}")
    if not getattr(args, "func", None):  # `nastk` alone: what it can do (the embedded default is `nastk search`)
        parser.print_help()
        return 0
    if getattr(args, "device", None) is not None:  # every command that runs a network takes --device
        from nastk.devices import check_device

        check_device(args.device)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
