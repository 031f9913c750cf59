"""Progress of a long command: a bar on a terminal, one log line per step otherwise.

Output that goes to a file or a pipe (a cluster job's log) gets no bar, which would be unreadable
there, but a line per step: ``search 5/20 evaluations  best 0.9123  elapsed 3.2 s  about 9.6 s left``.
Both go to stderr (the lines through the ``nastk`` logger, :mod:`nastk.log`), so ``--format json`` on
stdout stays machine-readable; a quiet logger (``-q``) shows neither. A resumed run counts the work it
replayed, and estimates the time left from the steps it timed itself.
"""
from __future__ import annotations

import logging
import math
import time
from typing import Optional, TextIO

from nastk.log import LOGGER


#: the shortest interval between two progress lines at the default level (a 0.4 s search logs 2 lines, not 1,000)
LOG_EVERY_S = 1.0


class Progress:
    """``update()`` after each of ``total`` steps; ``close()`` at the end (or use it as a context manager)."""

    def __init__(self, total: int, what: str, unit: str, enabled: bool = True, stream: Optional[TextIO] = None):
        self.total, self.what, self.unit = total, what, unit
        self.stream = stream  # None: the nastk logger (and a bar on stderr when that is a terminal)
        self.done, self.started = 0, time.monotonic()
        self.last_logged = float("-inf")
        self.timed_from: Optional[int] = None  # steps done before the first one this process timed (replayed)
        self.enabled = enabled and (stream is not None or LOGGER.isEnabledFor(logging.INFO))
        self.bar = None
        if self.enabled and _is_terminal(self.stream or _stderr()):
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=what, unit=unit, leave=False, dynamic_ncols=True, file=self.stream or _stderr())

    def update(self, done: Optional[int] = None, best: Optional[float] = None) -> None:
        """Record progress: one more step, or ``done`` steps in all; ``best`` is the best value so far."""
        previous, self.done = self.done, self.done + 1 if done is None else done
        if self.timed_from is None:  # a first jump of more than one step is replayed work, not timed here
            self.timed_from = self.done - 1 if self.done - previous > 1 else previous
        if not self.enabled or self.done == previous:
            return
        if self.bar is not None:
            if best is not None:
                self.bar.set_postfix_str(f"best {format_score(best)}", refresh=False)
            self.bar.update(self.done - previous)
            return
        elapsed = time.monotonic() - self.started
        line = f"{self.what} {self.done}/{self.total} {self.unit}"
        if self.timed_from:
            line += f" ({self.timed_from} replayed)"
        if best is not None:
            line += f"  best {format_score(best)}"
        line += f"  elapsed {_duration(elapsed)}"
        timed = self.done - (self.timed_from or 0)
        if 0 < self.done < self.total and timed > 0:
            line += f"  about {_duration(elapsed / timed * (self.total - self.done))} left"
        if self.stream is None:  # a line per step at most every LOG_EVERY_S (the rest at debug level: -v)
            now = time.monotonic()
            due = now - self.last_logged >= LOG_EVERY_S or self.done >= self.total
            LOGGER.log(logging.INFO if due else logging.DEBUG, line)
            self.last_logged = now if due else self.last_logged
        else:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _stderr():
    import sys

    return sys.stderr


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def format_score(value: float) -> str:
    """Accuracies as they are; tiny or huge proxy scores in scientific notation."""
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return "nan"
    return f"{value:.4f}" if 1e-3 <= abs(value) < 1e5 or value == 0 else f"{value:.3e}"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
