"""A tiny named registry with lazy built-in entries, and the registry of search spaces.

Built-in spaces, strategies and proxies register as ``"module:attribute"`` strings, so importing
nastk stays cheap and an unknown name fails with the list of known ones.

The space registry lives here, not in :mod:`nastk.space`, so that an
:class:`~nastk.architecture.Architecture` can find its space (for ``to_str``/``from_str``) without
importing the ``SearchSpace`` base class: imports run one way, space -> architecture -> registry.
"""
from __future__ import annotations

import importlib
from functools import lru_cache
from typing import Any, Dict, Generic, List, TypeVar, Union

from nastk.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: Dict[str, Union[str, T]] = {}

    def register(self, name: str, target: Union[str, T, None] = None):
        """Register ``target`` under ``name``; usable as a decorator when ``target`` is omitted."""
        if target is not None:
            self._entries[name] = target
            return target

        def decorator(obj: T) -> T:
            self._entries[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        try:
            entry = self._entries[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; known {self.kind}s: {', '.join(self.names())}"
            ) from None
        if isinstance(entry, str):
            module_name, attribute = entry.split(":")
            entry = getattr(importlib.import_module(module_name), attribute)
            self._entries[name] = entry
        return entry

    def names(self) -> List[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries


#: Search-space classes by name (``nastk search --space NAME``).
SPACES: Registry[type] = Registry("search space")
SPACES.register("nb201", "search_spaces.nb201:NB201Space")
SPACES.register("darts", "search_spaces.darts:DartsSpace")


@lru_cache(maxsize=None)
def get_space(name: str) -> Any:
    """The (shared, stateless) :class:`~nastk.space.SearchSpace` instance registered as ``name``."""
    return SPACES.get(name)()
