"""Layer-wise zero-cost statistics of NB201 networks (ParZC's inputs, methods.md 8.1 and 16).

The values come from :func:`nastk.proxies.compute_proxies` (per-layer ``grad_norm``, ``snip`` and
``synflow`` of every Conv/Linear weight, methods.md 16) with the reference conventions: each network
freshly built after ``torch.manual_seed(seed)``, one CIFAR-10 batch of 64
(``load_dataset("cifar10").batch(64, seed)``), seed 42 by default.

Layers are stored in a **fixed slot layout** of the full-size network (C=16, N=5, 98 slots: stem,
6 edge slots per cell, 3 convolutions per reduction block, classifier), with NaN where an
architecture has no layer (a ``none``/``skip``/``pool`` edge). :func:`compact` turns that into the
reference code's layout (present layers in module order, zero-padded at the end).
:meth:`LayerwisePool.protocol` names all of this, so a saved predictor can compute a new
architecture's inputs exactly as its training pool's (:func:`extractor_for`, :func:`features_of`).

Pools are cached in ``<cache>/parzc_layerwise_*.npz`` and extended in chunks with atomic writes, so
a killed computation resumes where it stopped.

The statistics are proxy names (``statistics=``, default :data:`STATISTICS`): any per-layer proxy,
including a user's (``package.module:function`` or a registered name, see ``nastk.proxies.register_proxy``),
computed in the same shared passes. A pool of other statistics records them in its meta and cache name.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from nastk.architecture import Architecture
from nastk.errors import ConfigError, CorruptDataError
from nastk.integrity import read_npz, write_npz
from nastk.paths import cache_root, write_cache

STATISTICS = ("grad_norm", "snip", "synflow")
FORMAT_VERSION = 1
#: How slotted statistics become x_zc: ``compact`` (the reference code's) or ``slots`` (the fixed layout).
LAYOUTS = ("compact", "slots")
#: The pool meta keys that decide the values (the extraction settings).
EXTRACTION_KEYS = ("format", "seed", "batch_size", "C", "N", "dataset", "slots")


@dataclass
class LayerwisePool:
    """Per-layer statistics of a pool of architectures, in the fixed slot layout."""

    codes: np.ndarray                 # (n,) NB201 product codes, in computation order
    values: Dict[str, np.ndarray]     # statistic -> (n, slots), NaN where the layer is absent
    seconds: np.ndarray               # (n,) extraction time per architecture
    meta: Dict[str, object]

    def __len__(self) -> int:
        return len(self.codes)

    def subset(self, rows: np.ndarray) -> "LayerwisePool":
        return LayerwisePool(self.codes[rows], {k: v[rows] for k, v in self.values.items()},
                             self.seconds[rows], dict(self.meta))

    @property
    def statistics(self) -> Tuple[str, ...]:
        return tuple(self.meta.get("statistics", STATISTICS))

    def features(self, layout: str = "compact") -> np.ndarray:
        """ParZC's x_zc of every architecture (see :func:`features_of`)."""
        return features_of(self.values, layout, self.statistics)

    def protocol(self, layout: str = "compact") -> Dict[str, object]:
        """How :meth:`features` were computed: the extraction settings, statistics, layout and width."""
        width = len(self.statistics) * self.values[self.statistics[0]].shape[1]
        return {**self.meta, "statistics": list(self.statistics), "layout": layout, "width": width}

    def totals(self) -> Dict[str, np.ndarray]:
        """Network-level proxies (sum over layers), for the 'best single proxy' baseline."""
        return {name: np.nansum(values, axis=1) for name, values in self.values.items()}


def features_of(values: Mapping[str, np.ndarray], layout: str = "compact",
                statistics: Sequence[str] = STATISTICS) -> np.ndarray:
    """ParZC's x_zc from slotted statistics (each (n, slots)): the statistics' sequences concatenated,
    NaN -> 0, shape (n, len(statistics) * slots). The one place pools and new architectures become inputs."""
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown layer-wise layout {layout!r}; known: {', '.join(LAYOUTS)}")
    parts = [compact(values[name]) if layout == "compact" else values[name] for name in statistics]
    return np.nan_to_num(np.concatenate(parts, axis=1), nan=0.0, posinf=0.0, neginf=0.0)


def compact(slotted: np.ndarray) -> np.ndarray:
    """Reference layout: each row's present layers in module order, zero-padded at the end."""
    out = np.zeros_like(slotted)
    for row, values in enumerate(slotted):
        present = values[~np.isnan(values)]
        out[row, :len(present)] = present
    return out


# --- extraction -----------------------------------------------------------------------------------
def _slot_names(net) -> List[str]:
    from nastk.proxies.layers import weight_layers

    return [name for name, _ in weight_layers(net)]


def layerwise_statistics(statistics: Sequence[str]) -> Tuple[str, ...]:
    """``statistics`` checked: proxy names (a user's included), each a per-layer proxy."""
    from nastk.proxies import get_proxy

    statistics = tuple(statistics)
    if not statistics:
        raise ConfigError("layer-wise features need at least one statistic (a per-layer proxy name)")
    flat = [name for name in statistics if not get_proxy(name).layerwise]
    if flat:
        raise ConfigError(f"layer-wise features need per-layer proxies; {', '.join(flat)} "
                          f"{'is' if len(flat) == 1 else 'are'} not layerwise")
    return statistics


class Extractor:
    """Builds NB201 networks and maps their per-layer statistics onto the fixed slot layout.

    ``device``: where the proxies are computed (None: where the network is built, the CPU)."""

    def __init__(self, seed: int = 42, batch_size: int = 64, C: int = 16, N: int = 5, num_classes: int = 10,
                 statistics: Sequence[str] = STATISTICS, device=None):
        from nastk.datasets import load_dataset
        from nastk.space import get_space

        self.space = get_space("nb201")
        self.seed, self.C, self.N, self.num_classes = seed, C, N, num_classes
        self.statistics, self.device = layerwise_statistics(statistics), device
        self.x, self.y = load_dataset("cifar10").batch(batch_size, seed)
        full = self.space.build(self.space.from_ops(["nor_conv_3x3"] * 6), num_classes, C=C, N=N)
        self.slots = _slot_names(full)
        self._slot_index = {name: i for i, name in enumerate(self.slots)}

    def meta(self) -> Dict[str, object]:
        """The extraction settings; ``statistics`` only when not the default (older pools lack it)."""
        meta = {"format": FORMAT_VERSION, "seed": self.seed, "batch_size": int(len(self.x)), "C": self.C,
                "N": self.N, "dataset": "cifar10", "slots": len(self.slots)}
        if self.statistics != STATISTICS:
            meta["statistics"] = list(self.statistics)
        return meta

    def __call__(self, arch: Union[Architecture, int]) -> Dict[str, np.ndarray]:
        """One architecture's (or product code's) statistics, each a row in the slot layout."""
        import torch

        from nastk.proxies import compute_proxies

        if not isinstance(arch, Architecture):
            arch = self.space.from_code(int(arch))
        torch.manual_seed(self.seed)
        net = self.space.build(arch, self.num_classes, C=self.C, N=self.N)
        scores = compute_proxies(net, (self.x, self.y), self.statistics, self.device, seed=self.seed)
        # a nor_conv_1x1 edge has the same module path (hence slot) as a nor_conv_3x3 edge
        positions = [self._slot_index[name] for name in scores.layer_names]
        out = {}
        for name in self.statistics:
            row = np.full(len(self.slots), np.nan)
            row[positions] = scores.layerwise[name]
            out[name] = row
        return out


def extractor_for(protocol: Mapping[str, object]) -> Extractor:
    """The extractor that reproduces a pool's :meth:`~LayerwisePool.protocol`; a protocol this code
    cannot reproduce (another format or statistics) is a :class:`ConfigError` saying what differs."""
    missing = [key for key in EXTRACTION_KEYS if key not in protocol]
    if missing:
        raise ConfigError(f"a layer-wise statistics protocol needs {', '.join(missing)}; it has {sorted(protocol)}")
    statistics = tuple(protocol.get("statistics", ()))
    extractor = Extractor(int(protocol["seed"]), int(protocol["batch_size"]), int(protocol["C"]), int(protocol["N"]),
                          statistics=statistics or STATISTICS)
    wanted = {key: protocol.get(key) for key in EXTRACTION_KEYS}
    computed = {key: extractor.meta()[key] for key in EXTRACTION_KEYS}
    if wanted != computed or statistics != extractor.statistics:
        raise ConfigError(f"layer-wise statistics {wanted} of {list(statistics)} cannot be computed by this nastk, "
                          f"which computes {computed} of {list(extractor.statistics)}")
    return extractor


def committed_cache(path: Path) -> Path:
    """Where a checkout keeps the committed copy of the cache file ``path`` names (docs/results/caches)."""
    return Path(__file__).resolve().parents[2] / "docs" / "results" / "caches" / Path(path).name


def cache_path(seed: int = 42, batch_size: int = 64, C: int = 16, N: int = 5, root: Optional[Path] = None,
               statistics: Sequence[str] = STATISTICS) -> Path:
    """The pool's cache file; statistics other than the default are named in it (one file per set)."""
    extra = "" if tuple(statistics) == STATISTICS else "_" + "-".join(
        "".join(c if c.isalnum() or c == "_" else "." for c in name) for name in statistics)
    return Path(root or cache_root()) / f"parzc_layerwise_cifar10_C{C}N{N}_b{batch_size}_s{seed}{extra}.npz"


def save_pool(pool: LayerwisePool, path: Path) -> None:
    arrays = {"codes": pool.codes, "seconds": pool.seconds, **{f"stat:{name}": values for name, values in pool.values.items()}}
    write_npz(path, arrays, pool.meta, len(pool.codes))


def load_pool(path: Path) -> LayerwisePool:
    """A pool written by :func:`save_pool`, checked whole (row count and content checksum)."""
    arrays, meta = read_npz(path, "layer-wise cache")
    meta.pop("integrity")
    values = {name[5:]: array for name, array in arrays.items() if name.startswith("stat:")}
    return LayerwisePool(arrays["codes"], values, arrays["seconds"], meta)


def pool_order(pool_seed: int = 0, size: int = 15625) -> np.ndarray:
    """The fixed random order in which architectures (product codes) enter the pool."""
    return np.random.default_rng(pool_seed).permutation(size)


def extend_pool(target: int, path: Optional[Path] = None, seed: int = 42, batch_size: int = 64, C: int = 16,
                N: int = 5, chunk: int = 25, pool_seed: int = 0,
                log: Optional[Callable[[str], None]] = None, progress: bool = False,
                start: Optional[LayerwisePool] = None, statistics: Sequence[str] = STATISTICS,
                device=None) -> LayerwisePool:
    """Grow the cached pool to ``target`` architectures (resuming; ``start``: the pool to grow instead
    of the cached one), saving every ``chunk``. The cache is optional: when it cannot be written, a note
    says so and the pool grows in memory only.

    ``progress`` shows a :class:`~nastk.progress.Progress` line (or bar) per architecture with the time
    left; without it ``log`` gets a line per saved chunk (the reproduction script's log).
    """
    from nastk.progress import Progress

    path = path or cache_path(seed, batch_size, C, N, statistics=statistics)
    extractor = Extractor(seed, batch_size, C, N, statistics=statistics, device=device)
    if start is not None or path.is_file():
        pool = start if start is not None else load_pool(path)
        if {k: pool.meta.get(k) for k in extractor.meta()} != extractor.meta() \
                or pool.statistics != extractor.statistics:
            raise CorruptDataError(f"{path} was computed with {pool.meta}, not {extractor.meta()}")
    else:
        empty = {name: np.zeros((0, len(extractor.slots))) for name in extractor.statistics}
        pool = LayerwisePool(np.zeros(0, dtype=np.int64), empty, np.zeros(0), {**extractor.meta(), "pool_seed": pool_seed})
    order = pool_order(pool.meta.get("pool_seed", pool_seed))
    caching = True
    with Progress(max(0, target - len(pool)), "layer-wise statistics", "architectures", enabled=progress) as bar:
        while len(pool) < target:
            codes = order[len(pool):min(target, len(pool) + chunk)]
            rows, seconds = {name: [] for name in extractor.statistics}, []
            for code in codes:
                started = time.perf_counter()
                stats = extractor(int(code))
                seconds.append(time.perf_counter() - started)
                for name in extractor.statistics:
                    rows[name].append(stats[name])
                bar.update()
            pool = LayerwisePool(np.concatenate([pool.codes, codes]),
                                 {name: np.vstack([pool.values[name]] + rows[name]) for name in extractor.statistics},
                                 np.concatenate([pool.seconds, seconds]), pool.meta)
            if caching:
                caching = write_cache(lambda: save_pool(pool, path), "the layer-wise statistics",
                                      "they are computed again next time")
            if log and not progress:
                log(f"{len(pool)}/{target} architectures, {np.mean(seconds):.2f} s each")
    return pool
