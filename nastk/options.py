"""Typed, ranged option values: one declaration checks a command-line flag and a config-file value alike.

Every numeric flag of every command is declared with one of these (a test walks the parsers to keep it
so), so ``--seed -1``, ``--C 0`` or ``budget: "abc"`` in a YAML file are one clear line before anything
is created, instead of a traceback or a run with a silently wrong value.

    add("--budget", type=Int(minimum=1))        # argparse: "argument --budget: must be ... got '0'"
    Int(minimum=1).check("budget", value)        # config files: ConfigError naming the option
"""
from __future__ import annotations

import argparse
import math
from typing import Any, Optional, Sequence

from nastk.errors import ConfigError

_MAX_SHOWN = 60


def shown(value: Any) -> str:
    """A value as it appears in a message: repr, cut to a readable length (a 10 kB input is not echoed)."""
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else f"{text[:_MAX_SHOWN]}... ({len(text)} characters)"


class Value:
    """Base: ``parse`` turns command-line text into a value, ``check`` validates a config value."""

    nullable = True

    def describe(self) -> str:
        raise NotImplementedError

    def convert(self, value: Any) -> Any:
        """The value, converted where that is lossless; raises ValueError if it has the wrong type or range."""
        raise NotImplementedError

    def parse(self, text: str) -> Any:
        return self.convert(text)

    def __call__(self, text: str) -> Any:  # argparse's ``type=``
        try:
            return self.parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {self.describe()}, got {shown(text)}") from None

    def check(self, name: str, value: Any, source: str = "") -> Any:
        """The value converted, or a :class:`ConfigError` naming the option (and ``source``, e.g. the file)."""
        if value is None and self.nullable:
            return None
        try:
            return self.convert(value)
        except (ValueError, TypeError):
            where = f" in {source}" if source else ""
            raise ConfigError(f"option {name}{where} must be {self.describe()}, got {shown(value)}") from None

    def __repr__(self) -> str:  # argparse names the type in some messages
        return self.describe()


class Number(Value):
    kind: type = float
    noun = "a number"

    def __init__(self, minimum: Optional[float] = None, maximum: Optional[float] = None, *,
                 above: Optional[float] = None, below: Optional[float] = None):
        self.minimum, self.maximum, self.above, self.below = minimum, maximum, above, below

    def describe(self) -> str:
        bounds = [f">= {self.minimum:g}" if self.minimum is not None else None,
                  f"> {self.above:g}" if self.above is not None else None,
                  f"<= {self.maximum:g}" if self.maximum is not None else None,
                  f"< {self.below:g}" if self.below is not None else None]
        bounds = [b for b in bounds if b]
        return f"{self.noun} {' and '.join(bounds)}".strip() if bounds else self.noun

    def parse(self, text: str) -> Any:
        if not isinstance(text, str) or not text.isascii():  # int("٣") would be 3
            raise ValueError(text)
        return self.convert(self.kind(text.strip()))

    def convert(self, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(value)
        if self.kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            value = int(value)
        else:
            value = float(value)
            if not math.isfinite(value):
                raise ValueError(value)
        if ((self.minimum is not None and value < self.minimum) or (self.maximum is not None and value > self.maximum)
                or (self.above is not None and value <= self.above) or (self.below is not None and value >= self.below)):
            raise ValueError(value)
        return value


class Int(Number):
    kind = int
    noun = "a whole number"


class Float(Number):
    kind = float
    noun = "a finite number"


class Text(Value):
    """A string; ``choices`` restricts it, ``lists=True`` also takes a YAML list (joined with commas)."""

    def __init__(self, choices: Optional[Sequence[str]] = None, lists: bool = False, nullable: bool = True):
        self.choices, self.lists, self.nullable = choices, lists, nullable

    def describe(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        return "a string or a list of strings" if self.lists else "a string"

    def convert(self, value: Any) -> Any:
        if self.lists and isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            value = ",".join(value)
        if not isinstance(value, str) or "\x00" in value:
            raise ValueError(value)
        if self.choices and value not in self.choices:
            raise ValueError(value)
        return value


class Seeds(Value):
    """Seeds for repeated runs: ``0-9`` (a range, both ends included), ``3`` or ``0,4,7``."""

    MAX = 10_000  # repeated runs, not a loop over every integer

    def describe(self) -> str:
        return "seeds such as 0-9, 3 or 0,4,7 (whole numbers >= 0)"

    def convert(self, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(value)
        if isinstance(value, int):
            parts = [str(value)]
        elif isinstance(value, (list, tuple)):
            parts = [str(v) for v in value]
        elif isinstance(value, str):
            parts = value.split(",")
        else:
            raise ValueError(value)
        seeds = []
        for part in parts:
            low, _, high = part.strip().partition("-")
            if not low.isascii() or not low.isdigit() or (high and not (high.isascii() and high.isdigit())):
                raise ValueError(value)
            first, last = int(low), int(high) if high else int(low)
            if last < first or last - first >= self.MAX:
                raise ValueError(value)
            seeds += range(first, last + 1)
        if not seeds or len(seeds) > self.MAX or len(set(seeds)) != len(seeds):
            raise ValueError(value)
        return tuple(seeds)


def check_all(options: dict, schema: dict, source: str = "") -> dict:
    """Every option of ``options`` checked (and converted) by its declaration in ``schema``."""
    return {name: schema[name].check(name, value, source) if name in schema else value for name, value in options.items()}
