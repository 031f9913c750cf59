"""The typed choice model: what a search space (and later its supernet) lets an architecture choose.

A :class:`ChoiceModel` is an ordered list of choices. An architecture's ``choices`` tuple holds one
value per choice, in that order:

* :class:`Categorical` - one of a tuple of unordered options (an op on an edge);
* :class:`Ordered` - one of strictly increasing numbers (kernel 3/5/7, expand ratio), so a largest
  and a smallest value exist (the sandwich rule samples both);
* :class:`Integer` - an integer in an inclusive range (an ordered choice without a value list);
* :class:`ChooseK` - ``k`` distinct options of a pool (a DARTS node keeps 2 of its inputs); the value
  is a tuple of the chosen options in the pool's order.

Any choice can be conditional: ``active_if=Condition("depth", (3, 4))`` makes it exist only while an
*earlier* choice's value is in the allowed set; an inactive choice's value is ``None``.

From the model alone come every generic operator strategies need (sample, validate, mutate,
neighbors, crossover, encode, optuna suggest, size, enumerate, largest/smallest) and a readable
``name=value,name=value`` codec, so a user's space declares its choices once and gets them all.

Every operator walks the choices in order and *completes* a partial proposal: a choice that is
inactive under the values before it becomes ``None``; an active one keeps its proposed value, or,
when it has none (it just became active), gets one from a rule (random, all options, largest...).
That one walk (:meth:`ChoiceModel._complete` / :meth:`ChoiceModel._expand`) is why conditions need
to refer to earlier choices only.
"""
from __future__ import annotations

import itertools
import math
import numbers
import re
from collections import defaultdict
from typing import Any, Callable, Dict, Hashable, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from nastk.errors import ArchitectureError, ConfigError

Values = Tuple[Any, ...]
#: Characters the text codec uses; names and option texts must avoid them.
_NAME_RESERVED, _VALUE_RESERVED, _K_SEPARATOR = ",=", ",", "+"


class Condition:
    """``choice``'s value must be one of ``allowed`` for the conditioned choice to exist."""

    def __init__(self, choice: str, allowed):
        if not isinstance(allowed, (list, tuple, set, frozenset, range)):
            raise ConfigError(f"Condition on {choice!r} needs a collection of allowed values, got {allowed!r}")
        if not allowed:
            raise ConfigError(f"Condition on {choice!r} allows no value")
        self.choice, self.allowed = choice, frozenset(allowed)

    def __repr__(self) -> str:
        return f"Condition({self.choice!r}, {sorted(self.allowed, key=repr)!r})"


class Choice:
    """One named choice. Subclasses define :attr:`options` and how a value is checked, drawn, encoded."""

    #: Whether values are numbers with a largest and a smallest one.
    ordered = False

    def __init__(self, name: str, active_if: Optional[Condition] = None):
        if not isinstance(name, str) or not name or any(c in name for c in _NAME_RESERVED) or name != name.strip():
            raise ConfigError(f"choice name {name!r} must be a non-empty string without ',', '=' or outer spaces")
        if active_if is not None and not isinstance(active_if, Condition):
            raise ConfigError(f"choice {name!r}: active_if must be a Condition, got {active_if!r}")
        self.name, self.active_if = name, active_if

    # --- what subclasses define -------------------------------------------------------------------
    @property
    def options(self) -> Sequence:
        """Every possible value, in a fixed order (the order of enumeration and neighbours)."""
        raise NotImplementedError

    def position(self, value) -> int:
        """Where ``value`` is in :attr:`options`; :class:`ArchitectureError` when it is not a value."""
        raise NotImplementedError

    @property
    def encoding_length(self) -> int:
        raise NotImplementedError

    def encode(self, value, out: np.ndarray) -> None:
        """Write ``value``'s encoding into ``out`` (a zeroed slice of length :attr:`encoding_length`)."""
        raise NotImplementedError

    def suggest(self, trial):
        """The value an optuna trial suggests (same parameter name and distribution every call)."""
        raise NotImplementedError

    def text(self, value) -> str:
        return str(value)

    def parse(self, text: str):
        raise NotImplementedError

    # --- shared behaviour ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.options)

    def canonical(self, value):
        """The stored form of ``value`` (e.g. numpy ints become ints); raises if it is not a value."""
        return self.options[self.position(value)]

    def sample(self, rng: np.random.Generator):
        return self.options[int(rng.integers(len(self)))]

    def other(self, value, rng: np.random.Generator):
        """A uniformly random value different from ``value`` (mutation; one draw from the generator)."""
        if len(self) < 2:
            raise ArchitectureError(f"choice {self.name!r} has a single value and cannot change")
        draw = int(rng.integers(len(self) - 1))
        return self.options[draw + (draw >= self.position(value))]

    def others(self, value) -> Iterator:
        """All values different from ``value``, in option order."""
        current = self.position(value)
        return (option for i, option in enumerate(self.options) if i != current)

    @property
    def first(self):
        return self.options[0]

    def _bad(self, value, why: str) -> ArchitectureError:
        return ArchitectureError(f"choice {self.name!r}: {value!r} {why}")

    def __repr__(self) -> str:
        condition = f", active_if={self.active_if!r}" if self.active_if else ""
        return f"{type(self).__name__}({self.name!r}, {self._describe()}{condition})"

    def _describe(self) -> str:
        return repr(tuple(self.options))


class _Listed(Choice):
    """A choice whose values are an explicit tuple of distinct options with distinct texts."""

    def __init__(self, name: str, options, active_if: Optional[Condition] = None):
        super().__init__(name, active_if)
        if isinstance(options, (str, bytes)) or not isinstance(options, Sequence):
            raise ConfigError(f"choice {name!r}: options must be a tuple or list, got {options!r}")
        options = tuple(options)
        if not options:
            raise ConfigError(f"choice {name!r} has no options")
        if any(option is None for option in options):
            raise ConfigError(f"choice {name!r}: None cannot be an option (it means 'inactive')")
        try:
            self._index: Dict[Hashable, int] = {option: i for i, option in enumerate(options)}
        except TypeError:
            raise ConfigError(f"choice {name!r}: options must be hashable, got {options!r}") from None
        texts = [str(option) for option in options]
        if len(self._index) != len(options) or len(set(texts)) != len(texts):
            raise ConfigError(f"choice {name!r}: options must be distinct and print distinctly, got {options!r}")
        if any(_VALUE_RESERVED in t or t != t.strip() or not t for t in texts):
            raise ConfigError(f"choice {name!r}: option texts must be non-empty, without ',' or outer spaces")
        self._options, self._by_text = options, dict(zip(texts, options))

    @property
    def options(self) -> Tuple:
        return self._options

    def position(self, value) -> int:
        try:
            return self._index[value]
        except (KeyError, TypeError):
            raise self._bad(value, f"is not one of {', '.join(map(str, self._options))}") from None

    def parse(self, text: str):
        if text not in self._by_text:
            raise self._bad(text, f"is not one of {', '.join(self._by_text)}")
        return self._by_text[text]


class Categorical(_Listed):
    """One of ``options`` (hashable, unordered). Encoded one-hot."""

    @property
    def encoding_length(self) -> int:
        return len(self)

    def encode(self, value, out: np.ndarray) -> None:
        out[self.position(value)] = 1.0

    def suggest(self, trial):
        # optuna stores only None/bool/int/float/str; other options are suggested by their text
        if all(isinstance(o, (bool, int, float, str)) for o in self._options):
            return trial.suggest_categorical(self.name, self._options)
        return self._by_text[trial.suggest_categorical(self.name, list(self._by_text))]


class _Numeric:
    """Mix-in of ordered choices: a largest and a smallest value, encoded as one scalar in [0, 1]."""

    ordered = True

    @property
    def smallest(self):
        return self.options[0]

    @property
    def largest(self):
        return self.options[-1]

    @property
    def encoding_length(self) -> int:
        return 1

    def encode(self, value, out: np.ndarray) -> None:
        span = self.largest - self.smallest
        out[0] = (self.canonical(value) - self.smallest) / span if span else 0.0


class Ordered(_Numeric, _Listed):
    """One of strictly increasing numbers. Optuna sees the position (``suggest_int``), so samplers
    that model distances (GP, TPE) know 5 lies between 3 and 7."""

    def __init__(self, name: str, values, active_if: Optional[Condition] = None):
        if isinstance(values, (list, tuple, np.ndarray)):  # numpy numbers are stored as Python numbers
            values = tuple(v.item() if isinstance(v, np.generic) else v for v in values)
        super().__init__(name, values, active_if)
        if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) for v in self._options):
            raise ConfigError(f"ordered choice {name!r} needs finite numbers, got {self._options!r}")
        if any(a >= b for a, b in zip(self._options, self._options[1:])):
            raise ConfigError(f"ordered choice {name!r} needs strictly increasing values, got {self._options!r}")

    @property
    def values(self) -> Tuple:
        return self._options

    def suggest(self, trial):
        return self._options[trial.suggest_int(self.name, 0, len(self) - 1)]


class Integer(_Numeric, Choice):
    """An integer in ``low..high`` (inclusive). Optuna: ``suggest_int(name, low, high)``."""

    def __init__(self, name: str, low: int, high: int, active_if: Optional[Condition] = None):
        super().__init__(name, active_if)
        if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in (low, high)) or low > high:
            raise ConfigError(f"integer choice {name!r} needs integers low <= high, got {low!r}..{high!r}")
        self.low, self.high = int(low), int(high)

    @property
    def options(self) -> range:
        return range(self.low, self.high + 1)

    def position(self, value) -> int:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool) and self.low <= value <= self.high:
            return int(value) - self.low
        raise self._bad(value, f"is not an integer in {self.low}..{self.high}")

    def suggest(self, trial):
        return trial.suggest_int(self.name, self.low, self.high)

    def parse(self, text: str):
        if not re.fullmatch(r"-?[0-9]+", text):  # int() would also take '٣', ' 3' and '3_0'
            raise self._bad(text, f"is not an integer in {self.low}..{self.high}")
        return self.canonical(int(text))

    def _describe(self) -> str:
        return f"{self.low}, {self.high}"


class ChooseK(Choice):
    """``k`` distinct items of ``options``. A value is a tuple of items in the order of ``options``
    (any order is accepted and put into it); :attr:`options` lists all k-combinations
    (``itertools.combinations`` order), :attr:`items` the pool. Encoded k-hot over the pool. Optuna
    sees one categorical over the combinations' texts (``"a+b"``): k sequential categoricals would
    need a different distribution per draw (chosen items removed), which optuna's samplers reject."""

    def __init__(self, name: str, options, k: int, active_if: Optional[Condition] = None):
        super().__init__(name, active_if)
        self._pool = Categorical(name, options)  # the pool's checks and item look-up
        if any(_K_SEPARATOR in str(item) for item in self._pool.options):
            raise ConfigError(f"choice {name!r}: item texts must not contain {_K_SEPARATOR!r}")
        if not isinstance(k, numbers.Integral) or not 1 <= k <= len(self._pool):
            raise ConfigError(f"choice {name!r}: k must be an integer in 1..{len(self._pool)}, got {k!r}")
        self.k = int(k)
        self._combinations = tuple(itertools.combinations(self._pool.options, self.k))
        self._index = {combination: i for i, combination in enumerate(self._combinations)}

    @property
    def items(self) -> Tuple:
        return self._pool.options

    @property
    def options(self) -> Tuple[Tuple, ...]:
        return self._combinations

    def position(self, value) -> int:
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise self._bad(value, f"must be a tuple of {self.k} distinct items of {self.items!r}")
        positions = sorted(self._pool.position(item) for item in value)
        if len(positions) != self.k or len(set(positions)) != self.k:
            raise self._bad(value, f"must hold {self.k} distinct items")
        return self._index[tuple(self.items[p] for p in positions)]

    @property
    def encoding_length(self) -> int:
        return len(self.items)

    def encode(self, value, out: np.ndarray) -> None:
        for item in self.canonical(value):
            out[self._pool.position(item)] = 1.0

    def text(self, value) -> str:
        return _K_SEPARATOR.join(str(item) for item in self.canonical(value))

    def parse(self, text: str):
        return self.canonical(tuple(self._pool.parse(part) for part in text.split(_K_SEPARATOR)))

    def suggest(self, trial):
        texts = [self.text(c) for c in self._combinations]
        return self._combinations[texts.index(trial.suggest_categorical(self.name, texts))]

    def _describe(self) -> str:
        return f"{self.items!r}, k={self.k}"


class ChoiceModel:
    """An ordered list of choices and every generic operator on their value tuples."""

    def __init__(self, choices: Sequence[Choice]):
        self.choices: Tuple[Choice, ...] = tuple(choices)
        if not self.choices:
            raise ConfigError("a choice model needs at least one choice")
        self._position: Dict[str, int] = {}
        #: position -> (position of the choice its condition reads, canonical allowed values)
        self._conditions: Dict[int, Tuple[int, frozenset]] = {}
        for i, choice in enumerate(self.choices):
            if not isinstance(choice, Choice):
                raise ConfigError(f"choice {i} is not a Choice (Categorical, Ordered, Integer, ChooseK): {choice!r}")
            if choice.name in self._position:
                raise ConfigError(f"choice name {choice.name!r} is used twice")
            condition = choice.active_if
            if condition is not None:
                if condition.choice not in self._position:
                    raise ConfigError(f"choice {choice.name!r} is conditioned on {condition.choice!r}, "
                                      f"which is not an earlier choice")
                self._conditions[i] = (self._position[condition.choice], self._canonical_allowed(choice, condition))
            self._position[choice.name] = i
        self._offsets = np.cumsum([0] + [c.encoding_length for c in self.choices])
        self.encoding_length = int(self._offsets[-1])

    def _canonical_allowed(self, choice: Choice, condition: Condition) -> frozenset:
        """A condition's allowed values in their stored form (choose-k in pool order); a typo fails here."""
        source = self.choices[self._position[condition.choice]]
        try:
            return frozenset(source.canonical(value) for value in condition.allowed)
        except ArchitectureError as error:
            raise ConfigError(f"choice {choice.name!r} is conditioned on a value that is not one: {error}") from None

    @property
    def names(self) -> Tuple[str, ...]:
        return tuple(c.name for c in self.choices)

    def __getitem__(self, name: str) -> Choice:
        return self.choices[self.position_of(name)]

    def position_of(self, name: str) -> int:
        if name not in self._position:
            raise ArchitectureError(f"unknown choice {name!r}; known: {', '.join(self.names)}")
        return self._position[name]

    def is_active(self, i: int, values: Sequence) -> bool:
        """Whether choice ``i`` exists given (at least) the values of the choices before it."""
        if i not in self._conditions:
            return True
        source, allowed = self._conditions[i]
        return values[source] is not None and values[source] in allowed

    # --- the one walk behind every operator ---------------------------------------------------------
    def _complete(self, proposed: Sequence, fill: Callable[[Choice], Any]) -> Values:
        """Walk the choices in order: inactive -> None; active -> the proposed value, or ``fill(choice)``
        when none is proposed (the choice has just become active)."""
        values: List = []
        for i, choice in enumerate(self.choices):
            if not self.is_active(i, values):
                values.append(None)
            else:
                values.append(proposed[i] if proposed[i] is not None else fill(choice))
        return tuple(values)

    def _expand(self, proposed: Sequence, start: int = 0, prefix: Values = ()) -> Iterator[Values]:
        """Like :meth:`_complete`, but every active choice without a proposed value branches over all
        its options (product order)."""
        values = list(prefix)
        for i in range(start, len(self.choices)):
            if not self.is_active(i, values):
                values.append(None)
            elif proposed[i] is not None:
                values.append(proposed[i])
            else:
                for option in self.choices[i].options:
                    yield from self._expand(proposed, i + 1, tuple(values) + (option,))
                return
        yield tuple(values)

    # --- values -------------------------------------------------------------------------------------
    def validate(self, values: Sequence) -> Values:
        """The canonical value tuple; :class:`ArchitectureError` names the first bad choice and value."""
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) != len(self.choices):
            raise ArchitectureError(f"expected a tuple of {len(self.choices)} choice values "
                                    f"({', '.join(self.names)}), got {values!r}")
        out: List = []
        for i, (choice, value) in enumerate(zip(self.choices, values)):
            if self.is_active(i, out):
                if value is None:
                    raise ArchitectureError(f"choice {choice.name!r} is active but has no value")
                out.append(choice.canonical(value))
            elif value is not None:
                raise ArchitectureError(f"choice {choice.name!r} is inactive ({choice.active_if.choice}="
                                        f"{out[self._position[choice.active_if.choice]]!r}) and must be None, "
                                        f"got {value!r}")
            else:
                out.append(None)
        return tuple(out)

    def as_dict(self, values: Sequence) -> Dict[str, Any]:
        """``{name: value}`` of a valid tuple (inactive choices map to None), e.g. for a ``build``."""
        return dict(zip(self.names, self.validate(values)))

    def from_dict(self, mapping: Mapping[str, Any]) -> Values:
        """A validated tuple from ``{name: value}``; inactive choices may be left out."""
        unknown = sorted(set(mapping) - set(self.names))
        if unknown:
            raise ArchitectureError(f"unknown choice(s) {', '.join(unknown)}; known: {', '.join(self.names)}")
        return self.validate(tuple(mapping.get(name) for name in self.names))

    # --- sampling and search operators ----------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> Values:
        """Every active choice uniform and independent (so not uniform over tuples when conditional)."""
        return self._complete((None,) * len(self.choices), lambda choice: choice.sample(rng))

    def mutate(self, values: Sequence, rng: np.random.Generator) -> Values:
        """One uniformly chosen active choice takes a uniformly random other value (the common NAS
        mutation; for ordered choices too, so no value is harder to reach than another); choices that
        become active are sampled, those that become inactive are dropped."""
        values = list(self.validate(values))
        mutable = [i for i, c in enumerate(self.choices) if values[i] is not None and len(c) > 1]
        if not mutable:
            raise ArchitectureError("no active choice has a second value, so nothing can mutate")
        i = mutable[int(rng.integers(len(mutable)))]
        values[i] = self.choices[i].other(values[i], rng)
        return self._complete(values, lambda choice: choice.sample(rng))

    def neighbors(self, values: Sequence) -> List[Values]:
        """Every tuple one active choice away: choice-major, then option order; choices that a change
        switches on branch over all their options; duplicates dropped (first kept)."""
        values = self.validate(values)
        out: Dict[Values, None] = {}
        for i, choice in enumerate(self.choices):
            if values[i] is None:
                continue
            for option in choice.others(values[i]):
                proposed = values[:i] + (option,) + values[i + 1:]
                out.update(dict.fromkeys(self._expand(proposed)))
        return list(out)

    def crossover(self, a: Sequence, b: Sequence, rng: np.random.Generator) -> Values:
        """Uniform crossover: each choice from ``a`` or ``b`` with probability 1/2 (one ``rng.random``
        call for all choices); a choice the picked parent lacks comes from the other, or is sampled."""
        a, b = self.validate(a), self.validate(b)
        take_a = rng.random(len(self.choices)) < 0.5
        proposed = [(x if x is not None else y) if t else (y if y is not None else x) for x, y, t in zip(a, b, take_a)]
        return self._complete(proposed, lambda choice: choice.sample(rng))

    def largest(self) -> Values:
        """Ordered choices at their largest value, the others at their first option (sandwich rule)."""
        return self._complete((None,) * len(self.choices), lambda c: c.largest if c.ordered else c.first)

    def smallest(self) -> Values:
        """Ordered choices at their smallest value, the others at their first option."""
        return self._complete((None,) * len(self.choices), lambda c: c.smallest if c.ordered else c.first)

    def suggest(self, trial) -> Values:
        """Values through optuna ``suggest_*`` calls named after the choices; inactive ones are not
        suggested, so every parameter keeps one name and one distribution (as samplers require)."""
        return self._complete((None,) * len(self.choices), lambda choice: choice.suggest(trial))

    # --- encoding -----------------------------------------------------------------------------------
    def encode(self, values: Sequence) -> np.ndarray:
        """Fixed-length float32 vector: one-hot (categorical), k-hot over the pool (choose-k), a
        scalar in [0, 1] (ordered, integer); zeros for an inactive choice."""
        values = self.validate(values)
        vector = np.zeros(self.encoding_length, dtype=np.float32)
        for i, (choice, value) in enumerate(zip(self.choices, values)):
            if value is not None:
                choice.encode(value, vector[self._offsets[i]:self._offsets[i + 1]])
        return vector

    # --- counting -----------------------------------------------------------------------------------
    def size(self) -> int:
        """The exact number of valid tuples, by dynamic programming over the values that later
        conditions read (instant unless a condition reads a choice with very many values)."""
        n = len(self.choices)
        # read[i]: the earlier choices whose values the conditions at positions >= i still read
        read: List[Tuple[int, ...]] = [()] * (n + 1)
        for i in range(n - 1, -1, -1):
            needed = set(read[i + 1]) | ({self._conditions[i][0]} if i in self._conditions else set())
            read[i] = tuple(sorted(j for j in needed if j < i))
        counts: Dict[Tuple, int] = {(): 1}  # values of read[i] -> number of valid prefixes
        for i, choice in enumerate(self.choices):
            following: Dict[Tuple, int] = defaultdict(int)
            for known, count in counts.items():
                state = dict(zip(read[i], known))
                options = choice.options if self.is_active(i, state) else (None,)
                if i not in read[i + 1]:  # no later condition reads this value: its options count alike
                    following[tuple(state[j] for j in read[i + 1])] += count * len(options)
                    continue
                for value in options:
                    state[i] = value
                    following[tuple(state[j] for j in read[i + 1])] += count
            counts = following
        return sum(counts.values())

    def enumerate(self) -> Iterator[Values]:
        """Every valid tuple once, in product order of the choices' options."""
        return self._expand((None,) * len(self.choices))

    # --- text codec -----------------------------------------------------------------------------------
    def format(self, values: Sequence) -> str:
        """``name=value,name=value`` over the active choices (choose-k values as ``a+b``)."""
        values = self.validate(values)
        return ",".join(f"{c.name}={c.text(v)}" for c, v in zip(self.choices, values) if v is not None)

    def parse(self, text: str) -> Values:
        """The inverse of :meth:`format` (any order of the pairs; inactive choices must be absent)."""
        if not isinstance(text, str) or not text.strip():
            raise ArchitectureError(f"expected 'name=value,...' over choices {', '.join(self.names)}, got {text!r}")
        given: Dict[str, str] = {}
        for pair in text.split(","):
            name, sep, value = (part.strip() for part in pair.partition("="))
            if not sep:
                raise ArchitectureError(f"{pair.strip()!r} in {text!r} is not name=value")
            if name in given:
                raise ArchitectureError(f"choice {name!r} appears twice in {text!r}")
            self.position_of(name)
            given[name] = value
        values: List = []
        for i, choice in enumerate(self.choices):
            active = self.is_active(i, values)
            if active and choice.name not in given:
                raise ArchitectureError(f"{text!r} lacks active choice {choice.name!r}")
            if not active and choice.name in given:
                raise ArchitectureError(f"choice {choice.name!r} is inactive in {text!r} and must be left out")
            values.append(choice.parse(given[choice.name]) if active else None)
        return tuple(values)

    def __repr__(self) -> str:
        return "ChoiceModel([\n" + "".join(f"    {c!r},\n" for c in self.choices) + "])"
