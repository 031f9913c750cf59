"""The immutable architecture value that flows between spaces, strategies, evaluators and runs."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

from nastk.registry import get_space


@dataclass(frozen=True)
class Architecture:
    """A point of a search space: the space's name plus a tuple of choices.

    It is hashable and compares by value, so it can key caches and journals. The human-readable
    string (e.g. the official NB201 cell string) belongs to the space; :meth:`to_str` and
    :meth:`from_str` delegate to it through the space registry.
    """

    space: str
    choices: Tuple

    def to_str(self) -> str:
        return get_space(self.space).to_str(self)

    @classmethod
    def from_str(cls, text: str, space: str) -> "Architecture":
        return get_space(space).from_str(text)

    def __str__(self) -> str:
        return self.to_str()
