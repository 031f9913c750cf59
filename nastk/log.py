"""nastk's messages (progress lines, notes, warnings) go through one logger, ``nastk``.

Results a command prints (tables, JSON) go to stdout; everything else is logged to stderr through a
handler that writes around tqdm bars. A library user silences or redirects nastk with the standard
``logging`` API (``logging.getLogger("nastk").setLevel(logging.WARNING)``, or their own handlers) or
with :func:`configure`; the CLI's ``-q`` / ``-v`` set the level.
"""
from __future__ import annotations

import logging
import sys
from typing import Optional, TextIO

LOGGER = logging.getLogger("nastk")


class TqdmHandler(logging.Handler):
    """Writes each line to ``stream`` (None: whatever ``sys.stderr`` is at the time, so a test's or a user's
    replaced stderr receives it) without tearing a progress bar drawn on the same terminal."""

    def __init__(self, stream: Optional[TextIO] = None):
        super().__init__()
        self.target = stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            stream = self.target or sys.stderr
            line = self.format(record)
            if getattr(tqdm, "_instances", None):  # a bar is drawn in this process: write around it
                # nolock: tqdm's write lock is shared with forked workers, and one killed while holding it
                # (parallel searches SIGKILL workers) would block every later line forever
                tqdm.write(line, file=stream, nolock=True)
            else:
                stream.write(line + "\n")
            stream.flush()
        except Exception:  # logging must never take the command down
            self.handleError(record)


_default_handler: Optional[logging.Handler] = None


def configure(level: int = logging.INFO, stream: Optional[TextIO] = None) -> None:
    """nastk's own handler (installed on import) at ``level``, writing to ``stream`` (default: stderr)."""
    global _default_handler
    if _default_handler is not None:
        LOGGER.removeHandler(_default_handler)
    _default_handler = TqdmHandler(stream)
    _default_handler.setFormatter(logging.Formatter("%(message)s"))
    LOGGER.addHandler(_default_handler)
    LOGGER.setLevel(level)
    LOGGER.propagate = False


def level_from(quiet: int, verbose: int) -> int:
    """The CLI's level: INFO, WARNING with -q, ERROR with -qq, DEBUG with -v."""
    return max(logging.DEBUG, min(logging.ERROR, logging.INFO + 10 * (quiet - verbose)))


configure()
