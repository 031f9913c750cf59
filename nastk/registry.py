"""A tiny named registry with lazy built-in entries, and the registry of search spaces.

Built-in spaces, strategies and proxies register as ``"module:attribute"`` strings, so importing
nastk stays cheap and an unknown name fails with the list of known ones. A name that is not
registered is looked up, in order, among the installed packages' entry points of the registry's
group (``nastk.spaces``, ``nastk.strategies``, ``nastk.proxies``: a user's package plugs in without
touching nastk) and, when it has the form ``package.module:Attribute``, imported directly (so
``--space mypkg.spaces:MySpace`` works in every command).

Each registry declares the kind its names must resolve to (a SearchSpace subclass, a Strategy subclass,
an Objective, a selection function, ...) and checks it whichever way a name was found, so a name that
resolves to something else (``--strategy os:system``) or a module that fails to import is one line
saying so, with the module's own error, never a traceback from wherever the object is first used.

The space registry lives here, not in :mod:`nastk.space`, so that an
:class:`~nastk.architecture.Architecture` can find its space (for ``to_str``/``from_str``) without
importing the ``SearchSpace`` base class: imports run one way, space -> architecture -> registry.
"""
from __future__ import annotations

import difflib
import importlib
import inspect
import traceback
from functools import lru_cache
from typing import Any, Callable, Dict, Generic, List, Optional, Tuple, TypeVar, Union

from nastk.errors import PluginError, UnknownNameError

T = TypeVar("T")


def _import(spec: str, kind: str = "plug-in", name: Optional[str] = None):
    """The object ``"package.module:Attribute"`` names; every way that fails is one :class:`PluginError`
    line: no such module, the module's own error while importing (a syntax error, an exception it
    raises, a dependency it lacks) with its file and line, or no such attribute."""
    module_name, _, attribute = spec.partition(":")
    what = f"cannot load {kind} {spec if name is None else name!r}"
    try:
        obj = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        missing = error.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            raise PluginError(f"{what}: no module named {missing!r}") from None
        raise PluginError(f"{what}: importing {module_name} failed: {import_failure(error)}") from error
    except Exception as error:  # the module's own failure: SyntaxError, anything raised at import time
        # chained: `nastk --debug` prints the module's own traceback above this line
        raise PluginError(f"{what}: importing {module_name} failed: {import_failure(error)}") from error
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise PluginError(f"{what}: module {module_name} has no attribute {attribute!r}") from None
    return obj


def import_failure(error: BaseException) -> str:
    """An import's error as one line: its type, message and where it was raised."""
    if isinstance(error, SyntaxError):
        return f"{type(error).__name__}: {error.msg} ({error.filename}, line {error.lineno})"
    message = " ".join(str(error).split())
    frames = traceback.extract_tb(error.__traceback__)
    where = f" ({frames[-1].filename}, line {frames[-1].lineno})" if frames else ""
    return f"{type(error).__name__}{': ' + message if message else ''}{where}"


def describe_object(obj: Any) -> str:
    """What an object is, in words: ``the class pkg.mod.Name``, ``the built-in function os.system``."""
    if inspect.ismodule(obj):
        return f"the module {obj.__name__}"
    qualified = f"{getattr(obj, '__module__', None) or '?'}.{getattr(obj, '__qualname__', getattr(obj, '__name__', '?'))}"
    if inspect.isclass(obj):
        return f"the class {qualified}"
    if inspect.isbuiltin(obj):
        return f"the built-in function {qualified}"
    if inspect.isfunction(obj) or inspect.ismethod(obj):
        return f"the function {qualified}"
    return f"a {type(obj).__name__} object"


def _a(noun: str) -> str:
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def plural(kind: str) -> str:
    """``strategy`` -> ``strategies``, ``search space`` -> ``search spaces``."""
    return kind[:-1] + "ies" if kind.endswith("y") and kind[-2:-1] not in "aeiou" else kind + "s"


class Registry(Generic[T]):
    """Names -> plug-ins of one kind. What a name resolves to is checked once, whichever way it was found
    (registered, an entry point, ``module:Attribute``): ``subclass_of`` (a class, or ``"module:Class"``
    resolved on first use) requires a subclass of it, ``instance_of`` an instance, ``check`` a
    ``(predicate, "what it must be")`` pair; a mismatch is one :class:`~nastk.errors.PluginError` line
    saying what the name is and what it must be."""

    def __init__(self, kind: str, group: Optional[str] = None, subclass_of: Union[type, str, None] = None,
                 instance_of: Union[type, str, None] = None,
                 check: Optional[Tuple[Callable[[Any], bool], str]] = None):
        self.kind = kind
        #: the entry-point group searched for names not registered here (e.g. ``nastk.spaces``)
        self.group = group
        self.subclass_of, self.instance_of, self.check = subclass_of, instance_of, check
        self._entries: Dict[str, Union[str, T]] = {}
        #: objects loaded by ``module:attribute`` names (not listed among the registered names)
        self._loaded: Dict[str, T] = {}
        #: names whose object passed the kind check
        self._checked: Dict[str, Any] = {}

    def register(self, name: str, target: Union[str, T, None] = None):
        """Register ``target`` under ``name``; usable as a decorator when ``target`` is omitted."""
        self._checked.pop(name, None)
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
            entry = _import(entry, self.kind, name)
            self._entries[name] = entry
        if self._checked.get(name) is not entry:
            self._check_kind(name, entry)
            self._checked[name] = entry
        return entry

    def expected(self) -> Optional[str]:
        """What every entry must be, in words (None: anything)."""
        if self.subclass_of is not None:
            return _a(f"{self._base(self.subclass_of).__name__} subclass")
        if self.instance_of is not None:
            return _a(self._base(self.instance_of).__name__)
        return self.check[1] if self.check else None

    def _check_kind(self, name: str, obj: Any) -> None:
        if self.subclass_of is not None:
            ok = inspect.isclass(obj) and issubclass(obj, self._base(self.subclass_of))
        elif self.instance_of is not None:
            ok = isinstance(obj, self._base(self.instance_of))
        elif self.check is not None:
            ok = bool(self.check[0](obj))
        else:
            return
        if not ok:
            raise PluginError(f"{self.kind} {name!r} is {describe_object(obj)}, not {self.expected()}")

    @staticmethod
    def _base(base: Union[type, str]) -> type:
        return _import(base) if isinstance(base, str) else base

    def _external(self, name: str) -> Union[str, T]:
        """An installed package's entry point named ``name``, or ``name`` itself as ``module:attribute``."""
        for point in self._entry_points():
            if point.name == name:
                self._entries[name] = point.value
                return point.value
        if ":" in name and all(part.isidentifier() for part in name.replace(":", ".").split(".")):
            entry = _import(name, self.kind, name)
            self._loaded[name] = entry
            return entry
        close = difflib.get_close_matches(name, self.names(), n=1)
        raise UnknownNameError(f"unknown {self.kind} {name!r}" + (f" (did you mean {close[0]}?)" if close else "")
                               + f"; known {plural(self.kind)}: {', '.join(self.names())} (or give package.module:Attribute)")

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
SPACES: Registry[type] = Registry("search space", group="nastk.spaces", subclass_of="nastk.space:SearchSpace")
SPACES.register("nb201", "search_spaces.nb201:NB201Space")
SPACES.register("darts", "search_spaces.darts:DartsSpace")
SPACES.register("mobilenet", "search_spaces.mobilenet:TinyMobileNetSpace")
SPACES.register("mobilenet-ofa", "search_spaces.mobilenet:OFAMobileNetSpace")
SPACES.register("mobilenet-bignas", "search_spaces.mobilenet:BigNASMobileNetSpace")
SPACES.register("gan-g-digits", "search_spaces.gan:DigitsGeneratorSpace")
SPACES.register("gan-g-cifar", "search_spaces.gan:CifarGeneratorSpace")
SPACES.register("gan-d-digits", "search_spaces.gan:DigitsDiscriminatorSpace")
SPACES.register("gan-d-cifar", "search_spaces.gan:CifarDiscriminatorSpace")
SPACES.register("nats-sss", "search_spaces.nats_sss:NATSSizeSpace")
SPACES.register("hytra", "search_spaces.hytra:HyTraSpace")
SPACES.register("sr", "search_spaces.sr:SRSpace")
SPACES.register("qnas-nb201", "search_spaces.quantnas_nb201:QuantNB201Space")


#: space-name prefixes resolved by a function of the rest of the name (``quant:mobilenet``: a transform of
#: another space), as lazy ``"module:function"`` entries
SPACE_PREFIXES: Dict[str, str] = {"quant:": "search_spaces.quantized:quantized_space"}


@lru_cache(maxsize=None)
def get_space(name: str) -> Any:
    """The (shared, stateless) :class:`~nastk.space.SearchSpace` instance registered as ``name``.

    A space loaded by entry point or ``module:Class`` is also registered under its own ``name``, so
    its architectures (which carry that name) find it again. A name with a prefix of
    :data:`SPACE_PREFIXES` is that prefix's resolver applied to the rest of the name.
    """
    for prefix, resolver in SPACE_PREFIXES.items():
        if isinstance(name, str) and name.startswith(prefix) and name not in SPACES:
            return _import(resolver, "space prefix", prefix)(name[len(prefix):])
    space = SPACES.get(name)()
    if space.name and space.name != name and space.name not in SPACES:
        SPACES.register(space.name, type(space))
    return space
