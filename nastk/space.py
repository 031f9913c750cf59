"""The search-space interface every strategy, proxy and evaluator is written against.

A space is a codec (architecture <-> string), a sampler, an encoder for models, a builder of
stand-alone networks and, optionally, a set of capabilities (mutate, neighbors, crossover,
enumerate, graph, supernet, optuna). Strategies call :meth:`SearchSpace.require` for what they need,
so a space that lacks a capability fails with a clear :class:`CapabilityError` instead of an
AttributeError deep inside a search.

A space that declares its choices (:meth:`SearchSpace.choice_model`, see :mod:`nastk.choices`) gets
the codec (``name=value,...``), sample, encode, mutate, neighbors, crossover, optuna ``suggest`` and,
when small enough, enumerate from the base class, and the matching capabilities; it overrides only
what means something else in it (NB201 keeps its official string). A space without a choice model
writes these itself.
"""
from __future__ import annotations

from functools import cached_property
from typing import Any, Dict, FrozenSet, Iterator, List, Mapping, Optional, Tuple

import numpy as np

from nastk.architecture import Architecture
from nastk.choices import ChoiceModel, Values
from nastk.errors import ArchitectureError, CapabilityError
from nastk.options import FROM_SIGNATURE, Option, declared
from nastk.registry import SPACES, get_space  # noqa: F401 (the registry lives there; re-exported)

#: Capability names a space may declare.
CAPABILITIES = ("enumerate", "mutate", "neighbors", "crossover", "graph", "build", "supernet", "optuna")
#: What any choice model gives a space.
MODEL_CAPABILITIES = frozenset({"mutate", "neighbors", "crossover", "optuna"})
#: A space with a choice model can enumerate (and has a ``len``) up to this many architectures.
ENUMERATE_LIMIT = 1_000_000


class SearchSpace:
    """Base class of search spaces. Subclasses set ``name`` and either define :meth:`choice_model` or
    write the codec, :meth:`sample` and :meth:`encode` themselves; ``capabilities = {...}`` declares
    what they add (kept as :attr:`declared_capabilities`; :attr:`capabilities` is the union with the
    derived ones)."""

    name: str = ""
    declared_capabilities: FrozenSet[str] = frozenset()
    #: what the train evaluator trains a network of this space on when it is no image classifier:
    #: ``{"dataset": ..., "data": a data module, "data_options": {...}}`` (None: labelled images, top-1 accuracy)
    TRAINING_DATA: Optional[Dict[str, Any]] = None

    def __init_subclass__(cls, **kwargs):
        # A subclass's ``capabilities = frozenset(...)`` is its declaration; moving it aside lets the
        # base class's ``capabilities`` property add what the choice model and ``build`` provide.
        super().__init_subclass__(**kwargs)
        declared = cls.__dict__.get("capabilities")
        if declared is not None and not isinstance(declared, property):
            cls.declared_capabilities = frozenset(declared)
            del cls.capabilities

    # --- the choice model ----------------------------------------------------------------------
    def choice_model(self) -> Optional[ChoiceModel]:
        """The space's typed choices (None: the space writes its operators itself). Called once."""
        return None

    @cached_property
    def _choices(self) -> Optional[ChoiceModel]:
        return self.choice_model()

    def _model_for(self, method: str) -> ChoiceModel:
        if self._choices is None:
            raise CapabilityError(f"search space {self.name!r} has no choice_model() and does not define {method}()")
        return self._choices

    def get_choice_model(self) -> ChoiceModel:
        """The space's typed choice model (a :class:`CapabilityError` when it has none)."""
        return self._model_for("get_choice_model")

    def largest(self) -> Architecture:
        """Every active choice at its largest value (ordered choices; first option otherwise)."""
        return self._arch(self._model_for("largest").largest())

    def smallest(self) -> Architecture:
        """Every active choice at its smallest value (ordered choices; first option otherwise)."""
        return self._arch(self._model_for("smallest").smallest())

    def _values(self, arch: Architecture) -> Values:
        """``arch``'s validated choice values (an :class:`ArchitectureError` names what is wrong)."""
        if not isinstance(arch, Architecture) or arch.space != self.name:
            raise ArchitectureError(f"expected an Architecture of space {self.name!r}, got {arch!r}")
        return self._model_for("validate").validate(arch.choices)

    def _arch(self, values: Values) -> Architecture:
        return Architecture(self.name, values)

    def choices_of(self, arch: Architecture) -> Dict[str, Any]:
        """``{choice name: value}`` of ``arch`` (inactive choices: None), e.g. inside :meth:`build`."""
        return dict(zip(self._model_for("choices_of").names, self._values(arch)))

    def arch_of(self, values: Mapping[str, Any]) -> Architecture:
        """The architecture with these ``{choice name: value}`` (inactive choices may be left out)."""
        return self._arch(self._model_for("arch_of").from_dict(values))

    # --- capabilities ----------------------------------------------------------------------------
    @property
    def capabilities(self) -> FrozenSet[str]:
        return self.declared_capabilities | self._derived_capabilities

    @cached_property
    def _derived_capabilities(self) -> FrozenSet[str]:
        derived = set()
        if self._choices is not None:
            derived |= MODEL_CAPABILITIES
            if self._size <= ENUMERATE_LIMIT:
                derived.add("enumerate")
        if type(self).build is not SearchSpace.build:
            derived.add("build")
        return frozenset(derived)

    @cached_property
    def _size(self) -> int:
        return self._model_for("size").size()

    def require(self, *capabilities: str) -> None:
        missing = [c for c in capabilities if c not in self.capabilities]
        if missing:
            raise CapabilityError(
                f"search space {self.name!r} lacks capability {', '.join(missing)} "
                f"(it declares: {', '.join(sorted(self.capabilities)) or 'none'})"
            )

    # --- codec -------------------------------------------------------------------------------
    def to_str(self, arch: Architecture) -> str:
        """The space's canonical string of ``arch`` (default ``name=value,...`` over active choices)."""
        return self._model_for("to_str").format(self._values(arch))

    def from_str(self, text: str) -> Architecture:
        """Parse a string; raises :class:`nastk.errors.ArchitectureError` naming what is wrong."""
        return self._arch(self._model_for("from_str").parse(text))

    # --- sampling and encoding ---------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> Architecture:
        """A random architecture (choice model: every active choice uniform)."""
        return self._arch(self._model_for("sample").sample(rng))

    def encode(self, arch: Architecture) -> np.ndarray:
        """A fixed-length numeric vector (one-hot for categorical choices) for BO and predictors."""
        return self._model_for("encode").encode(self._values(arch))

    # --- optional capabilities ---------------------------------------------------------------
    def enumerate(self) -> Iterator[Architecture]:
        self.require("enumerate")
        return (self._arch(values) for values in self._model_for("enumerate").enumerate())

    def __len__(self) -> int:
        self.require("enumerate")
        return self._size

    def __bool__(self) -> bool:  # a space is never "empty", even one too large for len()
        return True

    def mutate(self, arch: Architecture, rng: np.random.Generator) -> Architecture:
        self.require("mutate")
        return self._arch(self._model_for("mutate").mutate(self._values(arch), rng))

    def neighbors(self, arch: Architecture) -> List[Architecture]:
        self.require("neighbors")
        return [self._arch(values) for values in self._model_for("neighbors").neighbors(self._values(arch))]

    def crossover(self, a: Architecture, b: Architecture, rng: np.random.Generator) -> Architecture:
        self.require("crossover")
        return self._arch(self._model_for("crossover").crossover(self._values(a), self._values(b), rng))

    def suggest(self, trial) -> Architecture:
        """Draw an architecture through an optuna trial's ``suggest_*`` calls (capability ``optuna``).

        Declaring the space's own dimensions lets optuna's samplers (TPE, GP, NSGA-II) model them
        directly instead of a generic encoding; each call must suggest the same named parameters.
        """
        self.require("optuna")
        return self._arch(self._model_for("suggest").suggest(trial))

    #: Keywords of :meth:`build` a search may set (``nastk search --C 16``; a run config's ``build``),
    #: with the defaults a search that trains networks uses when they are not given (explicit here,
    #: e.g. smaller than the space's own network so that CPU searches are quick, or build()'s own).
    BUILD_OPTIONS: Tuple[Option, ...] = ()

    @classmethod
    def build_options(cls, full_size: bool = False) -> Tuple[Option, ...]:
        """:attr:`BUILD_OPTIONS` with their defaults resolved; ``full_size``: every default is
        :meth:`build`'s own (the space's published network, which zero-cost proxies score)."""
        options = cls.BUILD_OPTIONS
        if full_size:
            options = tuple(option.with_default(FROM_SIGNATURE) for option in options)
        return declared(cls.build, options)

    #: Keywords of ``supernet(num_classes, **options)`` that ``nastk supernet train`` and one-shot configs
    #: may set (``--C 8``; a config's ``supernet`` section), checked against these declarations; defaults
    #: are ``supernet()``'s own.
    SUPERNET_OPTIONS: Tuple[Option, ...] = ()

    @classmethod
    def supernet_options(cls) -> Tuple[Option, ...]:
        """:attr:`SUPERNET_OPTIONS` with their defaults resolved from :meth:`supernet`'s signature."""
        supernet = getattr(cls, "supernet", None)
        return declared(supernet, cls.SUPERNET_OPTIONS) if supernet is not None else tuple(cls.SUPERNET_OPTIONS)

    @classmethod
    def supernet_run_defaults(cls) -> Dict[str, Any]:
        """Declared supernet option defaults that differ from :meth:`supernet`'s own keyword defaults
        (NB201: the command line's small C=8, N=1 vs the published C=16, N=5). ``nastk supernet train``
        records them in a new run's config, so the network a run trained is written down and a later
        change of either default never rebuilds an old run at another size."""
        import inspect

        supernet = getattr(cls, "supernet", None)
        parameters = inspect.signature(supernet).parameters if supernet is not None else {}
        own = {name: p.default for name, p in parameters.items() if p.default is not inspect.Parameter.empty}
        return {option.name: option.default for option in cls.SUPERNET_OPTIONS
                if option.default is not FROM_SIGNATURE and option.name in own and own[option.name] != option.default}

    def build(self, arch: Architecture, num_classes: int = 10, **options):
        """A stand-alone ``torch.nn.Module`` for ``arch``."""
        self.require("build")
        raise CapabilityError(f"search space {self.name!r} declares build but does not define build()")

    def cost(self, arch: Architecture, num_classes: int = 10, input_size: int = 32) -> Dict[str, float]:
        """Params and FLOPs (in millions) of the built network, without training."""
        from nastk.cost import model_cost

        return model_cost(self.build(arch, num_classes), input_size=input_size)

    def __repr__(self) -> str:
        return f"<SearchSpace {self.name}>"
