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
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Union

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

    def features(self, layout: str = "compact") -> np.ndarray:
        """ParZC's x_zc of every architecture (see :func:`features_of`)."""
        return features_of(self.values, layout)

    def protocol(self, layout: str = "compact") -> Dict[str, object]:
        """How :meth:`features` were computed: the extraction settings, statistics, layout and width."""
        width = len(STATISTICS) * self.values[STATISTICS[0]].shape[1]
        return {**self.meta, "statistics": list(STATISTICS), "layout": layout, "width": width}

    def totals(self) -> Dict[str, np.ndarray]:
        """Network-level proxies (sum over layers), for the 'best single proxy' baseline."""
        return {name: np.nansum(values, axis=1) for name, values in self.values.items()}


def features_of(values: Mapping[str, np.ndarray], layout: str = "compact") -> np.ndarray:
    """ParZC's x_zc from slotted statistics (each (n, slots)): the three statistics' sequences
    concatenated, NaN -> 0, shape (n, 3 * slots). The one place pools and new architectures become inputs."""
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown layer-wise layout {layout!r}; known: {', '.join(LAYOUTS)}")
    parts = [compact(values[name]) if layout == "compact" else values[name] for name in STATISTICS]
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


class Extractor:
    """Builds NB201 networks and maps their per-layer statistics onto the fixed slot layout."""

    def __init__(self, seed: int = 42, batch_size: int = 64, C: int = 16, N: int = 5, num_classes: int = 10):
        from nastk.datasets import load_dataset
        from nastk.space import get_space

        self.space = get_space("nb201")
        self.seed, self.C, self.N, self.num_classes = seed, C, N, num_classes
        self.x, self.y = load_dataset("cifar10").batch(batch_size, seed)
        full = self.space.build(self.space.from_ops(["nor_conv_3x3"] * 6), num_classes, C=C, N=N)
        self.slots = _slot_names(full)
        self._slot_index = {name: i for i, name in enumerate(self.slots)}

    def meta(self) -> Dict[str, object]:
        return {"format": FORMAT_VERSION, "seed": self.seed, "batch_size": int(len(self.x)), "C": self.C,
                "N": self.N, "dataset": "cifar10", "slots": len(self.slots)}

    def __call__(self, arch: Union[Architecture, int]) -> Dict[str, np.ndarray]:
        """One architecture's (or product code's) statistics, each a row in the slot layout."""
        import torch

        from nastk.proxies import compute_proxies

        if not isinstance(arch, Architecture):
            arch = self.space.from_code(int(arch))
        torch.manual_seed(self.seed)
        net = self.space.build(arch, self.num_classes, C=self.C, N=self.N)
        scores = compute_proxies(net, (self.x, self.y), STATISTICS, seed=self.seed)
        # a nor_conv_1x1 edge has the same module path (hence slot) as a nor_conv_3x3 edge
        positions = [self._slot_index[name] for name in scores.layer_names]
        out = {}
        for name in STATISTICS:
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
    extractor = Extractor(int(protocol["seed"]), int(protocol["batch_size"]), int(protocol["C"]), int(protocol["N"]))
    wanted = {key: protocol.get(key) for key in EXTRACTION_KEYS}
    if wanted != extractor.meta() or list(protocol.get("statistics", ())) != list(STATISTICS):
        raise ConfigError(f"layer-wise statistics {wanted} of {list(protocol.get('statistics', ()))} cannot be "
                          f"computed by this nastk, which computes {extractor.meta()} of {list(STATISTICS)}")
    return extractor


def committed_cache(path: Path) -> Path:
    """Where a checkout keeps the committed copy of the cache file ``path`` names (docs/results/caches)."""
    return Path(__file__).resolve().parents[2] / "docs" / "results" / "caches" / Path(path).name


def cache_path(seed: int = 42, batch_size: int = 64, C: int = 16, N: int = 5, root: Optional[Path] = None) -> Path:
    return Path(root or cache_root()) / f"parzc_layerwise_cifar10_C{C}N{N}_b{batch_size}_s{seed}.npz"


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
                start: Optional[LayerwisePool] = None) -> LayerwisePool:
    """Grow the cached pool to ``target`` architectures (resuming; ``start``: the pool to grow instead
    of the cached one), saving every ``chunk``. The cache is optional: when it cannot be written, a note
    says so and the pool grows in memory only.

    ``progress`` shows a :class:`~nastk.progress.Progress` line (or bar) per architecture with the time
    left; without it ``log`` gets a line per saved chunk (the reproduction script's log).
    """
    from nastk.progress import Progress

    path = path or cache_path(seed, batch_size, C, N)
    extractor = Extractor(seed, batch_size, C, N)
    if start is not None or path.is_file():
        pool = start if start is not None else load_pool(path)
        if {k: pool.meta.get(k) for k in extractor.meta()} != extractor.meta():
            raise CorruptDataError(f"{path} was computed with {pool.meta}, not {extractor.meta()}")
    else:
        empty = {name: np.zeros((0, len(extractor.slots))) for name in STATISTICS}
        pool = LayerwisePool(np.zeros(0, dtype=np.int64), empty, np.zeros(0), {**extractor.meta(), "pool_seed": pool_seed})
    order = pool_order(pool.meta.get("pool_seed", pool_seed))
    caching = True
    with Progress(max(0, target - len(pool)), "layer-wise statistics", "architectures", enabled=progress) as bar:
        while len(pool) < target:
            codes = order[len(pool):min(target, len(pool) + chunk)]
            rows, seconds = {name: [] for name in STATISTICS}, []
            for code in codes:
                started = time.perf_counter()
                stats = extractor(int(code))
                seconds.append(time.perf_counter() - started)
                for name in STATISTICS:
                    rows[name].append(stats[name])
                bar.update()
            pool = LayerwisePool(np.concatenate([pool.codes, codes]),
                                 {name: np.vstack([pool.values[name]] + rows[name]) for name in STATISTICS},
                                 np.concatenate([pool.seconds, seconds]), pool.meta)
            if caching:
                caching = write_cache(lambda: save_pool(pool, path), "the layer-wise statistics",
                                      "they are computed again next time")
            if log and not progress:
                log(f"{len(pool)}/{target} architectures, {np.mean(seconds):.2f} s each")
    return pool
