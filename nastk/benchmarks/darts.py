"""The 214 trained random DARTS genotypes (antoyang/NAS-Benchmark, "NAS evaluation is frustratingly
hard"): CIFAR-10 test accuracy of each genotype after DARTS' 600-epoch evaluation training.

This is real training, not a surrogate, but only 214 points of a ~1e18-architecture space, all
sampled uniformly: it can check a proxy's or predictor's ranking, and a strategy restricted to these
214 candidates, against true accuracies. It cannot score an arbitrary genotype (a look-up outside the
214 is a :class:`NastkError`) and has no validation split and no training times, so a "search" on it
selects by test accuracy and costs no simulated time. The accuracy range is narrow (96.0-97.6).

Protocols are ``cifar10/test/{300,450,600}`` (the curve's value at that epoch, family ``last``) and
``cifar10/test/600/max`` (the curve's maximum, the value the source paper reports); shorthands
``test300``, ``test450``, ``test600``, ``testmax``. File and checks: ``$NASTK_DATA/README.md``.
"""
from __future__ import annotations

import csv
import gzip
import math
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from nastk.architecture import Architecture
from nastk.benchmarks.registry import Benchmark
from nastk.errors import ConfigError, CorruptDataError, MissingDataError, NastkError
from nastk.paths import data_file, data_root, verify_sha256
from nastk.protocol import BenchmarkProtocol

RELATIVE_PATH = "darts/darts_random214_cifar10_nasbenchmark.csv.gz"
#: From the sha256 list in the shared data folder's README.
SHA256 = "09f574bec34fedc2f5e90162edc5c05942eba8e06ae0c0e6af43ed2dc89e455a"
ROWS = 214
DATASET = "cifar10"
#: (epochs, family) -> CSV column.
COLUMNS: Dict[Tuple[int, str], str] = {(300, "last"): "test_acc_ep300", (450, "last"): "test_acc_ep450",
                                       (600, "last"): "test_acc_ep600", (600, "max"): "test_acc_max"}
OBJECTIVES: Dict[str, Tuple[int, str]] = {"test300": (300, "last"), "test450": (450, "last"),
                                          "test600": (600, "last"), "testmax": (600, "max")}
#: What a benchmark evaluator reports for the winner: the last epoch's value, not the curve maximum
#: (which picks the epoch by test accuracy).
REPORT = "test600"


def _available() -> str:
    return ", ".join(list(OBJECTIVES) + [BenchmarkProtocol(DATASET, "test", e, f).key for e, f in COLUMNS])


def parse_protocol(objective: str) -> BenchmarkProtocol:
    """A shorthand (``test600``) or a key (``cifar10/test/600[/max]``); the family defaults to ``last``."""
    if objective in OBJECTIVES:
        epochs, family = OBJECTIVES[objective]
        return BenchmarkProtocol(DATASET, "test", epochs, family)
    parts = str(objective).split("/")
    if len(parts) in (3, 4) and parts[2].isdigit():
        protocol = BenchmarkProtocol(parts[0], parts[1], int(parts[2]), parts[3] if len(parts) == 4 else "last")
        if protocol.dataset == DATASET and protocol.split == "test" and (protocol.epochs, protocol.family) in COLUMNS:
            return protocol
    raise ConfigError(f"the DARTS 214-genotype table has no {objective!r}: it holds CIFAR-10 test accuracies only "
                      f"(no validation split); use one of {_available()}")


class DartsTable:
    """Accuracies of the 214 genotypes, keyed by (canonical) :class:`Architecture`."""

    def __init__(self, archs: Sequence[Architecture], columns: Dict[str, np.ndarray], source: str):
        self._archs = list(archs)
        self._row = {arch: row for row, arch in enumerate(self._archs)}
        if len(self._row) != len(self._archs):
            raise CorruptDataError(f"{source} lists a genotype twice (up to the order of a node's inputs)")
        self.columns = columns
        self.source = source

    def __len__(self) -> int:
        return len(self._archs)

    def __contains__(self, arch: Architecture) -> bool:
        return arch in self._row

    def archs(self) -> List[Architecture]:
        """The genotypes in file order (a strategy's candidate pool)."""
        return list(self._archs)

    def row(self, arch: Architecture) -> int:
        """The row (the source's ``idx``) of ``arch``; a :class:`NastkError` if it is not one of the 214."""
        try:
            return self._row[arch]
        except (KeyError, TypeError):
            pass
        if not isinstance(arch, Architecture) or arch.space != "darts":
            raise NastkError(f"the DARTS 214-genotype table holds DARTS architectures, not {arch!r}")
        raise NastkError(f"DARTS architecture {arch.to_str()} is not among the {len(self)} trained genotypes of "
                         f"{self.source}; the table covers only these (see DartsTable.archs())")

    # --- the benchmark-table interface BenchmarkEvaluator uses --------------------------------------
    def evaluator_protocols(self, dataset: str, objective: str) -> Tuple[BenchmarkProtocol, BenchmarkProtocol]:
        """(search protocol, report protocol) for a benchmark evaluator on ``dataset``."""
        if dataset != DATASET:
            raise ConfigError(f"the DARTS 214-genotype table has results on cifar10 only, not {dataset!r}")
        return parse_protocol(objective), parse_protocol(REPORT)

    def resolve(self, protocol) -> BenchmarkProtocol:
        return parse_protocol(protocol.key if hasattr(protocol, "key") else str(protocol))

    def protocols(self) -> List[str]:
        return [BenchmarkProtocol(DATASET, "test", epochs, family).key for epochs, family in COLUMNS]

    def accuracy(self, arch: Architecture, protocol) -> float:
        protocol = self.resolve(protocol)
        return float(self.columns[COLUMNS[protocol.epochs, protocol.family]][self.row(arch)])

    def accuracies(self, archs: Sequence[Architecture], protocol) -> np.ndarray:
        protocol = self.resolve(protocol)
        column = self.columns[COLUMNS[protocol.epochs, protocol.family]]
        return column[[self.row(arch) for arch in archs]]

    def train_time(self, arch: Architecture, dataset: str, epochs: int) -> Dict[str, object]:
        """The source records no training times: every query costs 0 simulated seconds."""
        self.row(arch)
        return {"seconds": 0.0, "source": "not recorded"}

    def metrics(self, arch: Architecture) -> Dict[str, float]:
        """Every number of ``arch``'s row: accuracies by protocol key, plus ``argmax_epoch``."""
        row = self.row(arch)
        out = {BenchmarkProtocol(DATASET, "test", e, f).key: float(self.columns[c][row]) for (e, f), c in COLUMNS.items()}
        out["argmax_epoch"] = float(self.columns["argmax_epoch"][row])
        return out


class DartsBenchmark(Benchmark):
    """The 214-genotype table as the ``darts`` space's benchmark (:mod:`nastk.benchmarks.registry`).

    Incomplete (``complete = False``): it scores 214 of ~1e18 architectures; its index is the row.
    """

    name = "darts"
    title = "the DARTS 214-genotype benchmark"
    space = "darts"
    complete = False
    datasets = (DATASET,)
    default_dataset = DATASET
    objectives = tuple(OBJECTIVES)
    #: there is no validation protocol: a search names its test objective (the CLI requires it)
    default_objective = REPORT

    def __init__(self, table: Optional[DartsTable] = None):
        self._table = table

    @property
    def table(self) -> DartsTable:
        return self._table if self._table is not None else default_table()

    def load_table(self, path: Optional[str] = None, trust_pickle: bool = False) -> DartsTable:
        """This benchmark's table, or a CSV at ``path`` with the same columns (structure checked only)."""
        return load_table(path) if path else self.table

    def truth(self, archs: Sequence[Architecture], dataset: str = DATASET,
              protocol: Optional[str] = None) -> Tuple[np.ndarray, str]:
        search, _ = self.table.evaluator_protocols(dataset, protocol or REPORT)
        return self.table.accuracies(archs, search), search.key

    def archs(self) -> List[Architecture]:
        """The 214 genotypes, the only ones it can score (in row order)."""
        return self.table.archs()

    def index(self, arch: Architecture) -> int:
        return self.table.row(arch)

    def arch_at(self, index: int) -> Architecture:
        archs = self.table.archs()
        if not 0 <= index < len(archs):
            raise NastkError(f"DARTS benchmark index {index} out of range 0..{len(archs) - 1}")
        return archs[index]


def read_table(path: Path, expect_rows: Optional[int] = None) -> DartsTable:
    """Parse the CSV (``genotype`` + accuracy columns); any problem is one :class:`CorruptDataError` line."""
    from nastk.space import get_space

    space = get_space("darts")
    needed = ["genotype", "argmax_epoch", *COLUMNS.values()]
    if not Path(path).is_file():
        raise MissingDataError(f"DARTS benchmark table {path} not found")
    try:
        with gzip.open(path, "rt", newline="") if str(path).endswith(".gz") else open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, EOFError, csv.Error, UnicodeDecodeError) as error:
        raise CorruptDataError(f"{path} is not a readable CSV ({type(error).__name__}: {error})") from None
    if not rows or any(name not in rows[0] for name in needed):
        raise CorruptDataError(f"{path} lacks the columns {', '.join(needed)}")
    if expect_rows is not None and len(rows) != expect_rows:
        raise CorruptDataError(f"{path} has {len(rows)} genotypes, expected {expect_rows}")
    archs = []
    for number, row in enumerate(rows):
        try:
            archs.append(space.from_str(row["genotype"]))
        except NastkError as error:
            raise CorruptDataError(f"{path} row {number}: {error}") from None
    try:
        columns = {name: np.array([float(r[name]) if r[name] != "" else math.nan for r in rows])
                   for name in needed[1:]}
    except ValueError as error:
        raise CorruptDataError(f"{path} has a non-numeric accuracy ({error})") from None
    return DartsTable(archs, columns, source=Path(path).name)


def load_table(path: Optional[str] = None) -> DartsTable:
    """The shared file from ``$NASTK_DATA/darts/`` (sha256 and row count checked), or any CSV with the
    same columns at ``path`` (structure checked only)."""
    if path is None:
        return default_table()
    return read_table(Path(path).expanduser())


@lru_cache(maxsize=4)
def _default_table(root: str) -> DartsTable:
    path = data_file(RELATIVE_PATH, root)
    verify_sha256(path, SHA256)
    return read_table(path, expect_rows=ROWS)


def default_table() -> DartsTable:
    """The shared table, read once per process (and per data folder)."""
    return _default_table(str(data_root()))
