"""A tiny named registry with lazy built-in entries.

Built-in spaces, strategies and proxies register as ``"module:attribute"`` strings, so importing
nastk stays cheap and an unknown name fails with the list of known ones.
"""
from __future__ import annotations

import importlib
from typing import Callable, Dict, Generic, List, TypeVar, Union

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
