"""The NAS-Bench-201 result table: every architecture's accuracies under explicit protocols.

Two sources become one compact cached format (an ``.npz`` of float columns keyed by protocol, plus
the benchmark's index order), converted once and then loaded in milliseconds:

* the compact CSV in ``$NASTK_DATA/nb201/nb201_groundtruth.csv.gz`` (checked against the sha256 in
  ``benchmarks_data/nb201_groundtruth.json``), the default;
* the official ``NAS-Bench-201-v1_*.pth`` file, read through ``nas_201_api``
  (:mod:`nastk.benchmarks.nb201_official`).

Column keys are ``dataset/split/epochs/family`` (see :class:`nastk.protocol.Protocol`), plus
``dataset/train_time_s/epochs/family`` and ``dataset/params_m``.
"""
from __future__ import annotations

import csv
import gzip
import json
import math
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from nastk.architecture import Architecture
from nastk.benchmarks.registry import Benchmark
from nastk.errors import ArchitectureError, ConfigError, CorruptDataError, MissingDataError
from nastk.integrity import read_npz, write_npz
from nastk.paths import cache_root, data_file, verify_sha256, write_cache
from nastk.protocol import Protocol
from nastk.space import get_space

FORMAT_VERSION = 1
MANIFEST = Path(__file__).resolve().parents[2] / "benchmarks_data" / "nb201_groundtruth.json"
#: When a protocol names no family, the first family the table has for it is used (and recorded).
FAMILY_PREFERENCE = ("official", "nb201api", "v1_1", "naswot", "nats", "robot")
#: Training-set sizes and input resolutions, used only to *estimate* times the table lacks.
TRAIN_IMAGES = {"cifar10-valid": 25_000, "cifar10": 50_000, "cifar100": 50_000, "ImageNet16-120": 151_700}
PIXELS = {"cifar10-valid": 32 * 32, "cifar10": 32 * 32, "cifar100": 32 * 32, "ImageNet16-120": 16 * 16}
#: The dataset whose validation split stands in for each dataset during search (NB201 convention:
#: ``cifar10`` has no validation split, so searches use ``cifar10-valid``).
SEARCH_DATASET = {"cifar10": "cifar10-valid", "cifar10-valid": "cifar10-valid",
                  "cifar100": "cifar100", "ImageNet16-120": "ImageNet16-120"}
#: Shorthand objective names accepted by the CLI.
OBJECTIVES = {"valid12": ("valid", 12), "valid200": ("valid", 200), "test200": ("test", 200), "test12": ("test", 12)}
#: The cell's operations and edges (to_node, from_node) in the order of the benchmark's architecture
#: strings (``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``) and one-hot encodings; the nb201 space uses these.
OPS: Tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
EDGES: Tuple[Tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
#: Classes and input resolution of each dataset's networks, the ones the table's numbers describe.
NUM_CLASSES = {"cifar10": 10, "cifar10-valid": 10, "cifar100": 100, "ImageNet16-120": 120}
INPUT_SIZE = {"cifar10": 32, "cifar10-valid": 32, "cifar100": 32, "ImageNet16-120": 16}


def objective_protocol(dataset: str, objective: str = "valid12") -> Protocol:
    """The protocol a search on ``dataset`` optimises: a shorthand (valid12, ...) or a full key."""
    if objective in OBJECTIVES:
        split, epochs = OBJECTIVES[objective]
        if dataset not in SEARCH_DATASET:
            raise ConfigError(f"NB201 has no results for dataset {dataset!r}; known: {', '.join(SEARCH_DATASET)}")
        return Protocol(SEARCH_DATASET[dataset] if split == "valid" else dataset, split, epochs)
    return Protocol.parse(objective)


class NB201Table:
    """All NB201 results of one source. Look-ups take an Architecture (or its product code)."""

    def __init__(self, codes: np.ndarray, columns: Dict[str, np.ndarray], source: str):
        self.space = get_space("nb201")  # its product codes key the table
        self.codes = np.asarray(codes, dtype=np.int64)
        self.columns = {key: np.asarray(values, dtype=np.float64) for key, values in columns.items()}
        self.source = source
        self._position = np.full(len(self.space), -1, dtype=np.int64)
        self._position[self.codes] = np.arange(len(self.codes))
        self._resolved: Dict[Protocol, Protocol] = {}

    def __len__(self) -> int:
        return len(self.codes)

    # --- order --------------------------------------------------------------------------------
    def index_of(self, code: int) -> int:
        position = int(self._position[code])
        if position < 0:
            raise ArchitectureError(f"architecture {self.space.to_str(self.space.from_code(code))} is not in the NB201 table")
        return position

    def code_at(self, index: int) -> int:
        if not 0 <= index < len(self.codes):
            raise ArchitectureError(f"NB201 index {index} out of range 0..{len(self.codes) - 1}")
        return int(self.codes[index])

    def arch_at(self, index: int) -> Architecture:
        return self.space.from_code(self.code_at(index))

    def archs(self) -> List[Architecture]:
        """All architectures in the benchmark's index order."""
        return [self.space.from_code(int(code)) for code in self.codes]

    def positions(self, archs: Iterable[Architecture]) -> np.ndarray:
        positions = self._position[[self.space.code(arch) for arch in archs]]
        if (positions < 0).any():
            raise ArchitectureError("some architectures are not in the NB201 table")
        return positions

    # --- protocols ----------------------------------------------------------------------------
    def protocols(self) -> List[str]:
        """The accuracy columns this table holds, as protocol keys."""
        return sorted(key for key in self.columns if key.split("/")[1] in ("train", "valid", "test"))

    def resolve(self, protocol: Protocol) -> Protocol:
        """The protocol with its family filled in; a clear error when the table lacks it."""
        if protocol in self._resolved:
            return self._resolved[protocol]
        if protocol.family:
            if protocol.key not in self.columns:
                raise ConfigError(self._missing_message(protocol))
            resolved = protocol
        else:
            present = sorted(key.rsplit("/", 1)[1] for key in self.columns if key.rsplit("/", 1)[0] == protocol.key)
            families = sorted(present, key=lambda f: FAMILY_PREFERENCE.index(f) if f in FAMILY_PREFERENCE else len(FAMILY_PREFERENCE))
            if not families:
                raise ConfigError(self._missing_message(protocol))
            resolved = protocol.with_family(families[0])
        self._resolved[protocol] = resolved
        return resolved

    def evaluator_protocols(self, dataset: str, objective: str = "valid12") -> Tuple[Protocol, Protocol]:
        """(search protocol, report protocol) of a benchmark search on ``dataset``: ``objective``
        (default NB201's valid12) and the 200-epoch test accuracy, families filled in."""
        return self.resolve(objective_protocol(dataset, objective)), self.resolve(Protocol(dataset, "test", 200))

    def _missing_message(self, protocol: Protocol) -> str:
        near = [k for k in self.protocols() if k.startswith(protocol.dataset + "/")]
        return (f"the NB201 table ({self.source}) has no results for {protocol.key}; "
                f"available for {protocol.dataset}: {', '.join(near) or 'none'}")

    # --- queries ------------------------------------------------------------------------------
    def column(self, protocol: Protocol) -> np.ndarray:
        """Accuracy of every architecture (index order) under ``protocol``."""
        return self.columns[self.resolve(protocol).key]

    def accuracy(self, arch: Architecture, protocol: Protocol) -> float:
        return float(self.column(protocol)[self.index_of(self.space.code(arch))])

    def accuracies(self, archs: Sequence[Architecture], protocol: Protocol) -> np.ndarray:
        """Vectorised look-up of many architectures."""
        return self.column(protocol)[self.positions(archs)]

    def train_time(self, arch: Architecture, dataset: str, epochs: int) -> Dict[str, object]:
        """Simulated training time in seconds, and whether it is recorded or estimated.

        Where the table lacks the time for (dataset, epochs), it is estimated from the recorded
        cifar10-valid 12-epoch time, scaled by epochs, training images and pixels per image.
        """
        position = self.index_of(self.space.code(arch))
        prefix = f"{dataset}/train_time_s/{epochs}/"
        for key, values in self.columns.items():
            if key.startswith(prefix) and math.isfinite(values[position]):
                return {"seconds": float(values[position]), "source": key}
        base = [k for k in self.columns if k.startswith("cifar10-valid/train_time_s/12/")]
        if not base:
            return {"seconds": float("nan"), "source": "unavailable"}
        scale = (epochs / 12) * (TRAIN_IMAGES[dataset] / TRAIN_IMAGES["cifar10-valid"]) * (
            PIXELS[dataset] / PIXELS["cifar10-valid"])
        return {"seconds": float(self.columns[base[0]][position] * scale), "source": f"estimated from {base[0]}"}

    def metrics(self, arch: Architecture, dataset: str, epochs: Optional[int] = None) -> Dict[str, float]:
        """Every recorded number of ``arch`` on ``dataset`` (optionally one training length)."""
        position = self.index_of(self.space.code(arch))
        out = {}
        for key, values in sorted(self.columns.items()):
            parts = key.split("/")
            if parts[0] != dataset and not (key.endswith("params_m") and dataset.startswith("cifar10")):
                continue
            if epochs is not None and len(parts) >= 3 and parts[2].isdigit() and int(parts[2]) != epochs:
                continue
            out[key] = float(values[position])
        return out

    # --- persistence --------------------------------------------------------------------------
    def save(self, path: Path, source_sha256: Optional[str] = None) -> None:
        arrays = {"codes": self.codes.astype(np.int32), **{f"col:{key}": values for key, values in self.columns.items()}}
        write_npz(path, arrays, {"format": FORMAT_VERSION, "source": self.source}, len(self.codes), source_sha256)

    @classmethod
    def load(cls, path: Path, rows: Optional[int] = None, source_sha256: Optional[str] = None) -> "NB201Table":
        """A cache written by :meth:`save`, checked whole (row count, content and source checksums)."""
        arrays, meta = read_npz(path, "NB201 cache", rows=rows, source_sha256=source_sha256)
        if meta.get("format") != FORMAT_VERSION:
            raise CorruptDataError(f"{path} has cache format {meta.get('format')}, expected {FORMAT_VERSION}")
        columns = {name[4:]: values for name, values in arrays.items() if name.startswith("col:")}
        return cls(arrays["codes"], columns, meta["source"])


# --- conversion ---------------------------------------------------------------------------------
def _from_codes_and_strings(arch_strs: Sequence[str], columns, source: str) -> NB201Table:
    space = get_space("nb201")
    try:
        codes = np.array([space.code(space.from_str(text)) for text in arch_strs], dtype=np.int64)
    except ArchitectureError as error:
        raise CorruptDataError(f"{source}: {error}") from None
    if len(np.unique(codes)) != len(codes):
        raise CorruptDataError(f"{source} lists some architecture twice")
    # a column the source holds no value for (e.g. v1_0's 12-epoch cifar100) must not shadow another family
    columns = {key: values for key, values in columns.items() if not np.isnan(np.asarray(values, dtype=float)).all()}
    return NB201Table(codes, columns, source)


def convert_compact_csv(path: Path, manifest: dict) -> NB201Table:
    """Parse the shared compact CSV after checking its sha256 and shape."""
    verify_sha256(path, manifest["sha256"])
    with gzip.open(path, "rt", newline="") as handle:
        rows = list(csv.DictReader(handle))
    if len(rows) != manifest["rows"]:
        raise CorruptDataError(f"{path} has {len(rows)} rows, expected {manifest['rows']}")
    if [int(row["idx"]) for row in rows] != list(range(len(rows))):
        raise CorruptDataError(f"{path} is not in NB201 index order")
    columns = {key: np.array([float(row[name]) if row[name] else np.nan for row in rows])
               for name, key in manifest["columns"].items()}
    return _from_codes_and_strings([row["arch_str"] for row in rows], columns, f"compact:{path.name}")


def convert_official(path: Path, trust_pickle: bool = False) -> NB201Table:
    """Read the official NB201 ``.pth`` through ``nas_201_api``."""
    from nastk.benchmarks.nb201_official import read_official

    arch_strs, columns = read_official(path, trust_pickle=trust_pickle)
    return _from_codes_and_strings(arch_strs, columns, f"official:{Path(path).name}")


#: The official releases' file names; each must hold every one of NB201's cells.
OFFICIAL_RELEASES = ("NAS-Bench-201-v1_0-e61699.pth", "NAS-Bench-201-v1_1-096897.pth")
NUM_CELLS = 5 ** 6


def _cached(cache_name: str, convert, rows: Optional[int] = None, source_sha256: Optional[str] = None) -> NB201Table:
    """The converted table from its cache, rebuilt from the source when the cache is missing or not whole."""
    cache = cache_root() / cache_name
    if cache.is_file():
        try:
            return NB201Table.load(cache, rows=rows, source_sha256=source_sha256)
        except CorruptDataError as error:
            warnings.warn(f"rebuilding the NB201 cache: {error}")
    table = convert()
    if rows is not None and len(table) != rows:
        raise CorruptDataError(f"NB201 table {table.source} has {len(table)} rows, expected {rows}")
    # a cache is optional: a read-only or misplaced cache folder only means converting again next time
    write_cache(lambda: table.save(cache, source_sha256), "the converted NB201 table",
                "it is converted again next time (set NASTK_CACHE to a writable folder)")
    return table


def load_table(path: Optional[str] = None, trust_pickle: bool = False) -> NB201Table:
    """The NB201 table from ``path`` (compact CSV or official ``.pth``), default the shared compact CSV.

    The first call converts the source into nastk's cache; later calls load the cache only.
    """
    if path is None or str(path).endswith(".csv.gz"):
        manifest = json.loads(MANIFEST.read_text())
        source = Path(path) if path else data_file(manifest["file"])
        if not source.is_file():
            raise MissingDataError(f"NB201 table {source} not found")
        name = f"nb201-compact-v{FORMAT_VERSION}-{manifest['sha256'][:16]}.npz"
        return _cached(name, lambda: convert_compact_csv(source, manifest), manifest["rows"], manifest["sha256"])
    source = Path(path).expanduser()
    if not source.is_file():
        raise MissingDataError(f"NB201 table {source} not found")
    if source.suffix == ".npz":
        return NB201Table.load(source)
    if source.suffix != ".pth":
        raise ConfigError(f"unsupported NB201 table file {source}: expected .csv.gz, .pth (official) or .npz (nastk cache)")
    stat = source.stat()
    name = f"nb201-official-v{FORMAT_VERSION}-{source.stem}-{stat.st_size}-{int(stat.st_mtime)}.npz"
    rows = NUM_CELLS if source.name in OFFICIAL_RELEASES else None  # other names: e.g. a partial dump, allowed
    return _cached(name, lambda: convert_official(source, trust_pickle), rows)


@lru_cache(maxsize=4)
def _default_table(cache: str) -> NB201Table:
    return load_table()


def default_table() -> NB201Table:
    """The shared table, loaded once per process and cache folder: a process that points
    ``NASTK_CACHE`` elsewhere converts and caches it there (or says why it cannot)."""
    return _default_table(str(cache_root()))


def default_order() -> NB201Table:
    """The table that defines NB201's index order (the same in every NB201 release)."""
    return default_table()


class NB201Benchmark(Benchmark):
    """NAS-Bench-201 as the ``nb201`` space's benchmark: its index order and its table's accuracies."""

    name = space = "nb201"
    title = "NAS-Bench-201"
    complete = True
    datasets = tuple(SEARCH_DATASET)
    objectives = tuple(OBJECTIVES)
    default_objective = "valid12"

    def load_table(self, path: Optional[str] = None, trust_pickle: bool = False) -> NB201Table:
        """The shared compact table, or ``path`` (compact CSV, official ``.pth`` or a nastk ``.npz``)."""
        return load_table(path, trust_pickle) if path else default_table()

    def truth(self, archs: Sequence[Architecture], dataset: str,
              protocol: Optional[str] = None) -> Tuple[np.ndarray, str]:
        """Accuracies under ``protocol`` (a key; default the 200-epoch test accuracy on ``dataset``)."""
        table = default_table()
        resolved = table.resolve(Protocol.parse(protocol) if protocol else Protocol(dataset, "test", 200))
        return table.accuracies(archs, resolved), resolved.key

    def network_options(self, dataset: str) -> Dict[str, Any]:
        """NB201's networks for ``dataset``: its classes and input resolution (16x16 for ImageNet16-120)."""
        if dataset not in NUM_CLASSES:
            return {}
        return {"num_classes": NUM_CLASSES[dataset], "input_size": INPUT_SIZE[dataset]}

    def index(self, arch: Architecture) -> int:
        order = default_order()
        return order.index_of(order.space.code(arch))

    def arch_at(self, index: int) -> Architecture:
        return default_order().arch_at(index)
