"""A tiny named registry with lazy built-in entries, and the registry of search spaces.

Built-in spaces, strategies and proxies register as ``"module:attribute"`` strings, so importing
nastk stays cheap and an unknown name fails with the list of known ones. A name that is not
registered is looked up, in order, among the installed packages' entry points of the registry's
group (``nastk.spaces``, ``nastk.strategies``, ``nastk.proxies``: a user's package plugs in without
touching nastk) and, when it has the form ``package.module:Attribute``, imported directly (so
``--space mypkg.spaces:MySpace`` works in every command).

The space registry lives here, not in :mod:`nastk.space`, so that an
:class:`~nastk.architecture.Architecture` can find its space (for ``to_str``/``from_str``) without
importing the ``SearchSpace`` base class: imports run one way, space -> architecture -> registry.
"""
from __future__ import annotations

import importlib
from functools import lru_cache
from typing import Any, Dict, Generic, List, Optional, TypeVar, Union

from nastk.errors import UnknownNameError

T = TypeVar("T")


def _import(spec: str):
    module_name, _, attribute = spec.partition(":")
    module = importlib.import_module(module_name)
    for part in attribute.split("."):
        module = getattr(module, part)
    return module


class Registry(Generic[T]):
    def __init__(self, kind: str, group: Optional[str] = None):
        self.kind = kind
        #: the entry-point group searched for names not registered here (e.g. ``nastk.spaces``)
        self.group = group
        self._entries: Dict[str, Union[str, T]] = {}
        #: objects loaded by ``module:attribute`` names (not listed among the registered names)
        self._loaded: Dict[str, T] = {}

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
        if not isinstance(name, str):
            raise UnknownNameError(f"{self.kind} name must be a string, got {type(name).__name__}")
        entry = self._entries.get(name, self._loaded.get(name))
        if entry is None:
            entry = self._external(name)
        if isinstance(entry, str):
            entry = _import(entry)
            self._entries[name] = entry
        return entry

    def _external(self, name: str) -> Union[str, T]:
        """An installed package's entry point named ``name``, or ``name`` itself as ``module:attribute``."""
        for point in self._entry_points():
            if point.name == name:
                self._entries[name] = point.value
                return point.value
        if ":" in name and all(part.isidentifier() for part in name.replace(":", ".").split(".")):
            try:
                entry = _import(name)
            except (ImportError, AttributeError) as error:
                raise UnknownNameError(f"cannot load {self.kind} {name!r}: {error}") from None
            self._loaded[name] = entry
            return entry
        raise UnknownNameError(f"unknown {self.kind} {name!r}; known {self.kind}s: {', '.join(self.names())} "
                               f"(or give package.module:Attribute)")

    def _entry_points(self):
        if not self.group:
            return []
        from importlib.metadata import entry_points

        return entry_points(group=self.group)

    def names(self) -> List[str]:
        """Registered names and the installed packages' entry points of this registry's group."""
        return sorted(set(self._entries) | {point.name for point in self._entry_points()})

    def __contains__(self, name: str) -> bool:
        return name in self._entries


#: Search-space classes by name (``nastk search --space NAME``).
SPACES: Registry[type] = Registry("search space", group="nastk.spaces")
SPACES.register("nb201", "search_spaces.nb201:NB201Space")
SPACES.register("darts", "search_spaces.darts:DartsSpace")
SPACES.register("mobilenet", "search_spaces.mobilenet:TinyMobileNetSpace")
SPACES.register("mobilenet-ofa", "search_spaces.mobilenet:OFAMobileNetSpace")
SPACES.register("mobilenet-bignas", "search_spaces.mobilenet:BigNASMobileNetSpace")


@lru_cache(maxsize=None)
def get_space(name: str) -> Any:
    """The (shared, stateless) :class:`~nastk.space.SearchSpace` instance registered as ``name``.

    A space loaded by entry point or ``module:Class`` is also registered under its own ``name``, so
    its architectures (which carry that name) find it again.
    """
    space = SPACES.get(name)()
    if space.name and space.name != name and space.name not in SPACES:
        SPACES.register(space.name, type(space))
    return space
