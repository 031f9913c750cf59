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


class Mapping(Value):
    """A mapping of option names to values (a nested section of a config file, e.g. a step's options)."""

    def describe(self) -> str:
        return "a mapping of names to values"

    def convert(self, value: Any) -> Any:
        if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
            raise ValueError(value)
        return dict(value)


class Items(Value):
    """A list (a config file's sequence section, e.g. the stages of a schedule); items checked by their owner."""

    def describe(self) -> str:
        return "a list"

    def convert(self, value: Any) -> Any:
        if not isinstance(value, (list, tuple)):
            raise ValueError(value)
        return list(value)


class Bool(Value):
    """A yes/no option: ``--name`` / ``--no-name`` on the command line, a YAML boolean in a config file."""

    def describe(self) -> str:
        return "true or false"

    def parse(self, text: str) -> Any:
        words = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}
        if not isinstance(text, str) or text.strip().lower() not in words:
            raise ValueError(text)
        return words[text.strip().lower()]

    def convert(self, value: Any) -> Any:
        if not isinstance(value, bool):
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


# --- options a plug-in declares ------------------------------------------------------------------------
class _FromSignature:
    def __repr__(self) -> str:
        return "<the constructor's default>"


#: An :class:`Option`'s default when it is the declaring constructor's own keyword default.
FROM_SIGNATURE: Any = _FromSignature()


class Option:
    """One option a strategy, evaluator or space declares: its name (keyword argument, config key, and
    flag ``--name-with-dashes``), its type and range, and a one-line help.

    The default is the declaring constructor's keyword default unless given here, so it is written
    once; :func:`declared` fills it in. Plug-ins list theirs in a class attribute ``OPTIONS``; the CLI
    builds its flags and checks config files from these declarations, never from a table of its own.
    """

    __slots__ = ("name", "value", "help", "default")

    def __init__(self, name: str, value: Value, help: str, default: Any = FROM_SIGNATURE):
        self.name, self.value, self.help, self.default = name, value, help, default

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def with_default(self, default: Any) -> "Option":
        return Option(self.name, self.value, self.help, default)

    def check(self, value: Any, source: str = "") -> Any:
        return self.value.check(self.name, value, source)

    def __repr__(self) -> str:
        return f"Option({self.name!r}, {self.value.describe()}, default={self.default!r})"


def declared(owner: Any, options: Optional[Sequence[Option]] = None) -> "tuple[Option, ...]":
    """``owner.OPTIONS`` (or ``options``) with every default resolved from ``owner``'s constructor.

    An option whose default should come from the constructor but that the constructor does not take is
    a programming error in the plug-in, said here rather than as a TypeError in the middle of a run (an
    option with an explicit default is the plug-in's to handle, e.g. in its own ``from_config``).
    """
    import inspect

    options = tuple(getattr(owner, "OPTIONS", ()) if options is None else options)
    target = owner.__init__ if isinstance(owner, type) else owner
    try:
        parameters = inspect.signature(target).parameters
    except (TypeError, ValueError):
        parameters = {}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    out = []
    for option in options:
        parameter = parameters.get(option.name)
        if option.default is FROM_SIGNATURE:
            if parameter is None and not takes_any:
                raise TypeError(f"{getattr(owner, '__name__', owner)} declares option {option.name!r}, "
                                f"which its constructor does not take")
            has_default = parameter is not None and parameter.default is not inspect.Parameter.empty
            option = option.with_default(parameter.default if has_default else None)
        out.append(option)
    return tuple(out)
