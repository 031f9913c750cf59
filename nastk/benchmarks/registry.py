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
    """Recorded results of (some) architectures of one space: its tables, index order and ground truth.

    A benchmark hands out tables; the look-up evaluator (:class:`nastk.evaluators.benchmark.BenchmarkEvaluator`)
    reads one through this interface: :meth:`load_table`, :meth:`protocols`, :attr:`default_dataset`
    and :attr:`default_objective`. A table has ``source``, ``evaluator_protocols(dataset, objective)``,
    ``accuracy(arch, protocol)`` and ``train_time(arch, dataset, epochs)``."""

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
    #: the dataset a look-up uses when none is given (None: one must be named)
    default_dataset: Optional[str] = None
    #: shorthand names of the protocols a search may optimise (``valid12``, ``test600``, ...)
    objectives: Tuple[str, ...] = ()
    #: the objective a look-up optimises when none is given
    default_objective: str = ""

    @abc.abstractmethod
    def load_table(self, path: Optional[str] = None, trust_pickle: bool = False):
        """The results table: the shared one, or the file ``path`` in a format the benchmark reads
        (``trust_pickle``: allow a full unpickle, for formats that need one)."""

    def protocols(self, table, dataset: str, objective: str) -> Tuple[Any, Any]:
        """(search protocol, report protocol) of a look-up in ``table`` on ``dataset`` optimising ``objective``."""
        return table.evaluator_protocols(dataset, objective)

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

    def network_options(self, dataset: str) -> Dict[str, Any]:
        """Build keywords (``num_classes``, ``input_size``) of the networks its numbers on ``dataset``
        describe; empty when it does not say."""
        return {}

    def index(self, arch: Architecture) -> int:
        """The benchmark's own index of ``arch`` (the order of its data files)."""
        raise CapabilityError(f"benchmark {self.name!r} defines no index order")

    def arch_at(self, index: int) -> Architecture:
        """The architecture at the benchmark's ``index`` (the inverse of :meth:`index`)."""
        raise CapabilityError(f"benchmark {self.name!r} defines no index order")


_BENCHMARKS: Registry[type] = Registry("benchmark", group="nastk.benchmarks", subclass_of=Benchmark)


def register_benchmark(space: str, provider: Union[str, type]) -> None:
    """Make ``provider`` (a :class:`Benchmark` subclass or its ``"module:attr"``) the benchmark of ``space``."""
    _BENCHMARKS.register(space, provider)
    benchmark_for.cache_clear()
    dataset_network_options.cache_clear()


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


@lru_cache(maxsize=None)
def dataset_network_options(dataset: str) -> Dict[str, Any]:
    """Build keywords (``num_classes``, ``input_size``) of networks for the benchmark dataset ``dataset``
    (NB201's cifar100, ImageNet16-120, ...), from the first benchmark that states them; empty for a
    dataset no benchmark describes (the space's own defaults apply)."""
    for space in benchmark_spaces():
        options = benchmark_for(space).network_options(dataset)
        if options:
            return dict(options)
    return {}


register_benchmark("nb201", "nastk.benchmarks.nb201:NB201Benchmark")
register_benchmark("darts", "nastk.benchmarks.darts:DartsBenchmark")
register_benchmark("nats-sss", "nastk.benchmarks.nats_sss:NATSSizeBenchmark")
