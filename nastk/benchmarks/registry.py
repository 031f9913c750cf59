"""Benchmarks by search space: who owns a space's index order and recorded ground truth.

Generic code (evaluators, the CLI, ranking) asks ``benchmark_for(space.name)`` instead of testing
``space.name == "nb201"``, so a new space with a results table plugs in by one
:func:`register_benchmark` call. Entries are lazy ``"module:attribute"`` strings naming a
:class:`Benchmark` subclass, like every nastk registry, so nothing loads a table until asked.
"""
from __future__ import annotations

import abc
from functools import lru_cache
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from nastk.architecture import Architecture
from nastk.errors import CapabilityError
from nastk.registry import Registry


class Benchmark(abc.ABC):
    """Recorded results of (some) architectures of one space: evaluators and ground truth from them."""

    #: The name configs and ``--benchmark`` use.
    name: str = ""
    #: What reports call it (default: ``name``).
    title: str = ""
    #: The space whose architectures it scores.
    space: str = ""
    #: True when every architecture of the space has results (NB201), so any search can report them.
    complete: bool = False
    #: the datasets it has results for
    datasets: Tuple[str, ...] = ()

    @abc.abstractmethod
    def evaluator(self, config: Dict[str, Any]):
        """The look-up :class:`~nastk.evaluator.Evaluator` for a run's ``evaluator`` config
        (``dataset``, optional ``objective``, ``table`` file, ...)."""

    @abc.abstractmethod
    def truth(self, archs: Sequence[Architecture], dataset: str,
              protocol: Optional[str] = None) -> Tuple[np.ndarray, str]:
        """Ground-truth accuracies of ``archs`` and the protocol key they come from (default: the
        benchmark's final reported accuracy on ``dataset``)."""

    def archs(self) -> List[Architecture]:
        """Every architecture it has results for: an incomplete benchmark's whole reach (the pool a
        search of it must stay in); by default a complete benchmark's space, enumerated."""
        if not self.complete:
            raise CapabilityError(f"benchmark {self.name!r} does not list the architectures it has results for")
        from nastk.space import get_space

        return list(get_space(self.space).enumerate())

    def optimum(self, dataset: str, protocol: Optional[str] = None) -> float:
        """The best ground-truth accuracy among :meth:`archs` (the space's optimum when ``complete``),
        under ``protocol`` (default as in :meth:`truth`)."""
        values, _ = self.truth(self.archs(), dataset, protocol)
        return float(np.nanmax(values))

    def index(self, arch: Architecture) -> int:
        """The benchmark's own index of ``arch``."""
        raise CapabilityError(f"benchmark {self.name!r} defines no index order")

    def arch_at(self, index: int) -> Architecture:
        raise CapabilityError(f"benchmark {self.name!r} defines no index order")


_BENCHMARKS: Registry[type] = Registry("benchmark", group="nastk.benchmarks", subclass_of=Benchmark)


def register_benchmark(space: str, provider: Union[str, type]) -> None:
    """Make ``provider`` (a :class:`Benchmark` subclass or its ``"module:attr"``) the benchmark of ``space``."""
    _BENCHMARKS.register(space, provider)
    benchmark_for.cache_clear()


def has_benchmark(space: str) -> bool:
    """Whether ``space`` has a benchmark: registered here or an installed entry point (group nastk.benchmarks)."""
    return space in _BENCHMARKS or space in _BENCHMARKS.names()


def benchmark_spaces() -> List[str]:
    return _BENCHMARKS.names()


@lru_cache(maxsize=None)
def benchmark_for(space: str) -> Benchmark:
    """The (shared) benchmark of ``space``; :class:`CapabilityError` when it has none."""
    if not has_benchmark(space):
        raise CapabilityError(f"no benchmark gives ground truth for space {space!r} "
                              f"(benchmarks exist for: {', '.join(benchmark_spaces()) or 'none'})")
    return _BENCHMARKS.get(space)()


register_benchmark("nb201", "nastk.benchmarks.nb201:NB201Benchmark")
register_benchmark("darts", "nastk.benchmarks.darts:DartsBenchmark")
register_benchmark("nats-sss", "nastk.benchmarks.nats_sss:NATSSizeBenchmark")
