"""NATS-Bench size space (Ss) ground truth and BossNAS' released ratings, from ``$NASTK_DATA/nats_sss/``.

* ``nats_sss_cifar10_test90_bossnas.csv.gz``: the CIFAR-10 test accuracy after NATS-Bench's 90-epoch
  schedule of all 32,768 networks (single runs, as BossNAS ships them). Protocol ``cifar10/test/90``
  (shorthand ``test90``). There is no validation split and no training time in it, so a search on this
  table selects by test accuracy (an oracle, named as such) and every query costs 0 simulated seconds,
  as with the DARTS 214-genotype table.
* ``nats_sss_official_sample3.csv.gz``: NATS-Bench's own records of 3 networks (idx 0, 11, 284): every
  dataset, hp 1/12/90, params and FLOPs; used to check the table and nastk's networks.
* ``nats_sss_bossnas_rating_cifar10.csv.gz``: BossNAS' per-block ratings ("potentials") of the 64 / 64 /
  8 paths of its three CIFAR-10 blocks, repeated on every row (:func:`shipped_block_ratings`).

Every file is checked against its sha256 (from the data folder's README) and row count; a missing or
damaged file is one :class:`~nastk.errors.DataError` line.
"""
from __future__ import annotations

import csv
import gzip
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from nastk.architecture import Architecture
from nastk.benchmarks.registry import Benchmark
from nastk.errors import ArchitectureError, ConfigError, CorruptDataError, NastkError
from nastk.paths import data_file, data_root, verify_sha256
from nastk.protocol import BenchmarkProtocol
from nastk.space import get_space

ACCURACY_FILE = "nats_sss/nats_sss_cifar10_test90_bossnas.csv.gz"
RATING_FILE = "nats_sss/nats_sss_bossnas_rating_cifar10.csv.gz"
OFFICIAL_FILE = "nats_sss/nats_sss_official_sample3.csv.gz"
#: From the sha256 list in the shared data folder's README.
SHA256 = {ACCURACY_FILE: "1d367d1460d300329fb36f52962d689d2568acfb447e7d2b1f92c1aa57e96b6d",
          RATING_FILE: "d2756122574ee9685dd32b0ba4c656389a3dedc4cc93f1e19ffa0156a6bfb38b",
          OFFICIAL_FILE: "b4b970036e61c04e3a2838b5da3da43d8e00e43276b309401542bf9df7e4f7ca"}
ROWS = {ACCURACY_FILE: 32768, RATING_FILE: 32768, OFFICIAL_FILE: 135}
DATASET = "cifar10"
REPORT = BenchmarkProtocol(DATASET, "test", 90)
OBJECTIVES = {"test90": REPORT}

# --- the networks the files describe (the nats-sss space imports these) --------------------------------
#: The channel counts every layer chooses from.
CHANNELS: Tuple[int, ...] = (8, 16, 24, 32, 40, 48, 56, 64)
#: The five layers' names, in NATS-Bench's string order (``c0:c1:c2:c3:c4``).
LAYERS: Tuple[str, ...] = ("c0", "c1", "c2", "c3", "c4")
#: Which layers are cells (the others are stride-2 residual reductions).
CELL_LAYERS: Tuple[int, ...] = (0, 2, 4)
#: The fixed cell (NB201's best CIFAR-10 topology), as NB201 edge ops in NB201's edge order.
CELL: Tuple[str, ...] = ("nor_conv_3x3", "nor_conv_3x3", "nor_conv_3x3", "skip_connect", "nor_conv_3x3", "nor_conv_3x3")
CELL_STR = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
SIZE = len(CHANNELS) ** len(LAYERS)
#: BossNAS' CIFAR-10 blocks (methods.md 10.3), the grouping of its released ratings:
#: [cell c0, reduction c1], [cell c2, reduction c3], [cell c4].
BOSSNAS_BLOCKS: Tuple[Tuple[int, ...], ...] = ((0, 1), (2, 3), (4,))


def index_of(arch: Architecture) -> int:
    """NATS-Bench's index of a nats-sss architecture: its position in ``itertools.product(CHANNELS, repeat=5)``."""
    if not isinstance(arch, Architecture) or arch.space != "nats-sss":
        raise NastkError(f"the NATS size table holds nats-sss architectures, not {arch!r}")
    value = 0
    for channels in get_space("nats-sss").choices_of(arch).values():  # validated, in LAYERS order
        value = value * len(CHANNELS) + CHANNELS.index(channels)
    return value


def arch_at(index: int) -> Architecture:
    """The nats-sss architecture at NATS-Bench's ``index`` (0 = ``8:8:8:8:8``, 32767 = ``64:64:64:64:64``)."""
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < SIZE:
        raise ArchitectureError(f"NATS size index {index!r} out of range 0..{SIZE - 1}")
    index, values = int(index), []
    for _ in LAYERS:
        index, position = divmod(index, len(CHANNELS))
        values.append(CHANNELS[position])
    return Architecture("nats-sss", tuple(reversed(values)))


def parse_protocol(objective: str) -> BenchmarkProtocol:
    """``test90`` or ``cifar10/test/90``: the only protocol the table holds."""
    if objective in OBJECTIVES:
        return OBJECTIVES[objective]
    if str(objective) == REPORT.key:
        return REPORT
    raise ConfigError(f"the NATS size table has no {objective!r}: it holds CIFAR-10 test accuracy after 90 epochs "
                      f"only (no validation split); use test90 or {REPORT.key}")


def _read_rows(relative: str, root: Optional[str] = None, columns: Sequence[str] = ()) -> List[Dict[str, str]]:
    """The rows of a shared file, sha256, row count and columns checked; one line per problem."""
    path = data_file(relative, root)
    verify_sha256(path, SHA256[relative])
    try:
        with gzip.open(path, "rt", newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, EOFError, csv.Error, UnicodeDecodeError) as error:
        raise CorruptDataError(f"{path} is not a readable CSV ({type(error).__name__}: {error})") from None
    if len(rows) != ROWS[relative]:
        raise CorruptDataError(f"{path} has {len(rows)} rows, expected {ROWS[relative]}")
    missing = [c for c in columns if c not in rows[0]]
    if missing:
        raise CorruptDataError(f"{path} lacks the column(s) {', '.join(missing)}")
    return rows


def _in_index_order(rows: List[Dict[str, str]], relative: str) -> List[Dict[str, str]]:
    """Rows sorted by ``idx``, each ``arch_str`` checked against the space's index order."""
    import itertools

    try:
        ordered = sorted(rows, key=lambda r: int(r["idx"]))
    except ValueError as error:
        raise CorruptDataError(f"{relative}: a non-integer idx ({error})") from None
    expected = (":".join(map(str, c)) for c in itertools.product(CHANNELS, repeat=len(LAYERS)))
    for position, (row, arch_str) in enumerate(zip(ordered, expected)):
        if int(row["idx"]) != position or row["arch_str"] != arch_str:
            raise CorruptDataError(f"{relative}: row idx {row['idx']} ({row['arch_str']}) is not NATS-Bench's "
                                   f"index order (itertools.product of 8..64, 5 times)")
    return ordered


class NATSSizeTable:
    """CIFAR-10 test accuracy (90 epochs) of every NATS size network, in index order."""

    def __init__(self, accuracy: np.ndarray, source: str):
        self.test90 = np.asarray(accuracy, dtype=float)
        self.source = source

    def __len__(self) -> int:
        return len(self.test90)

    def _index(self, arch: Architecture) -> int:
        return index_of(arch)

    # --- the benchmark-table interface BenchmarkEvaluator uses ---------------------------------------
    def evaluator_protocols(self, dataset: str, objective: str) -> Tuple[BenchmarkProtocol, BenchmarkProtocol]:
        if dataset != DATASET:
            raise ConfigError(f"the NATS size table has results on cifar10 only, not {dataset!r} (cifar100 and "
                              f"ImageNet16-120 exist for 3 networks only: nats_sss_official_sample3)")
        return parse_protocol(objective), REPORT

    def resolve(self, protocol) -> BenchmarkProtocol:
        return parse_protocol(protocol.key if hasattr(protocol, "key") else str(protocol))

    def protocols(self) -> List[str]:
        return [REPORT.key]

    def accuracy(self, arch: Architecture, protocol=REPORT) -> float:
        self.resolve(protocol)
        return float(self.test90[self._index(arch)])

    def accuracies(self, archs: Sequence[Architecture], protocol=REPORT) -> np.ndarray:
        self.resolve(protocol)
        return self.test90[[self._index(arch) for arch in archs]]

    def train_time(self, arch: Architecture, dataset: str, epochs: int) -> Dict[str, object]:
        """The table records no training times: every query costs 0 simulated seconds."""
        self._index(arch)
        return {"seconds": 0.0, "source": "not recorded"}


@lru_cache(maxsize=4)
def _default_table(root: str) -> NATSSizeTable:
    rows = _in_index_order(_read_rows(ACCURACY_FILE, root, ("idx", "arch_str", "cifar10_test_90")), ACCURACY_FILE)
    try:
        accuracy = np.array([float(r["cifar10_test_90"]) for r in rows])
    except ValueError as error:
        raise CorruptDataError(f"{ACCURACY_FILE}: a non-numeric accuracy ({error})") from None
    if not np.all(np.isfinite(accuracy)):
        raise CorruptDataError(f"{ACCURACY_FILE}: an accuracy is not a finite number")
    return NATSSizeTable(accuracy, source=Path(ACCURACY_FILE).name)


def default_table() -> NATSSizeTable:
    """The shared table, read once per process (and per data folder)."""
    return _default_table(str(data_root()))


@lru_cache(maxsize=4)
def _shipped_block_ratings(root: str) -> Tuple[Dict[str, float], ...]:
    columns = ("stage0_potential", "stage1_potential", "stage2_potential")
    rows = _in_index_order(_read_rows(RATING_FILE, root, ("idx", "arch_str", *columns)), RATING_FILE)
    blocks: List[Dict[str, float]] = [{} for _ in BOSSNAS_BLOCKS]
    for row in rows:
        channels = row["arch_str"].split(":")
        for block, (layers, column) in enumerate(zip(BOSSNAS_BLOCKS, columns)):
            key = ":".join(channels[i] for i in layers)
            try:
                value = float(row[column])
            except ValueError:
                raise CorruptDataError(f"{RATING_FILE}: a non-numeric {column} at idx {row['idx']}") from None
            if blocks[block].setdefault(key, value) != value:
                raise CorruptDataError(f"{RATING_FILE}: block {block} path {key} has two ratings")
    return tuple(blocks)


def shipped_block_ratings() -> Tuple[Dict[str, float], ...]:
    """BossNAS' released block ratings: per block, ``{"c0:c1" (its layers' channels): potential}``
    (64, 64 and 8 paths; raw head losses, lower = better, before BossNAS' +4 per block)."""
    return _shipped_block_ratings(str(data_root()))


def official_records(root: Optional[str] = None) -> List[Dict[str, object]]:
    """NATS-Bench's own records of its 3 fixture networks (every dataset, hp, seed, split), numbers parsed."""
    rows = _read_rows(OFFICIAL_FILE, root, ("idx", "arch_str", "hp", "dataset", "final_acc", "params_m", "flops_m"))
    out = []
    for row in rows:
        try:
            out.append({**row, "idx": int(row["idx"]), "hp": int(row["hp"]), "final_acc": float(row["final_acc"]),
                        "params_m": float(row["params_m"]), "flops_m": float(row["flops_m"])})
        except ValueError as error:
            raise CorruptDataError(f"{OFFICIAL_FILE}: a non-numeric value ({error})") from None
    return out


class NATSSizeBenchmark(Benchmark):
    """The 90-epoch CIFAR-10 table as the ``nats-sss`` space's benchmark (complete: all 32,768 networks).

    Its index is NATS-Bench's (the product order of :data:`CHANNELS` over :data:`LAYERS`: :func:`index_of`)."""

    name = "nats-sss"
    title = "NATS-Bench size space (CIFAR-10, 90 epochs)"
    space = "nats-sss"
    complete = True
    datasets = (DATASET,)
    default_dataset = DATASET
    objectives = tuple(OBJECTIVES)
    #: the table's only protocol (a search from the CLI names it, ``--objective test90``, as DARTS' table needs)
    default_objective = "test90"

    @property
    def table(self) -> NATSSizeTable:
        return default_table()

    def load_table(self, path: Optional[str] = None, trust_pickle: bool = False) -> NATSSizeTable:
        """The shared table (there is no other file of it)."""
        if path:
            raise ConfigError("the nats-sss benchmark reads the shared table from $NASTK_DATA/nats_sss/; "
                              "it takes no --table file")
        return self.table

    def truth(self, archs: Sequence[Architecture], dataset: str = DATASET,
              protocol: Optional[str] = None) -> Tuple[np.ndarray, str]:
        search, _ = self.table.evaluator_protocols(dataset, protocol or "test90")
        return self.table.accuracies(archs, search), search.key

    def index(self, arch: Architecture) -> int:
        return index_of(arch)

    def arch_at(self, index: int) -> Architecture:
        return arch_at(index)

    def optimum(self, dataset: str = DATASET, protocol: Optional[str] = None) -> float:
        self.table.evaluator_protocols(dataset, protocol or "test90")
        return float(self.table.test90.max())
