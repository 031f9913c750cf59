"""Precomputed zero-cost proxy tables: a pool of architecture strings and a float matrix of proxies.

RoBoT (and any proxy-ensemble method) needs proxy values for a whole candidate pool. Those come
either from nastk's own proxies or from published tables such as NAS-Bench-Suite-Zero's
(``$NASTK_DATA/nb201/nb201_zc_proxies_nbsuitezero.csv.gz``: 9,445 archs, cifar10 and
ImageNet16-120) and its earlier 725-arch sample (``nb201_zc_proxies_naslib_early_sample.csv.gz``,
the only one with cifar100). Any CSV (optionally gzip) with an ``arch_str`` column, numeric proxy
columns and optionally a ``dataset`` column is read the same way, without pandas. Missing values
stay NaN: what to do with them is the consumer's decision. Suite-Zero (NASLib) writes a failed
computation as -1e8 (or -inf); those are read as NaN too, so a failure is never mistaken for a score
(min-max normalisation over a pool would otherwise squash every real value of that column to ~1).
"""
from __future__ import annotations

import csv
import gzip
import math
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy as np

from nastk.errors import ConfigError, CorruptDataError, MissingDataError
from nastk.paths import data_file, verify_sha256

SUITE_ZERO = "nb201/nb201_zc_proxies_nbsuitezero.csv.gz"
EARLY_SAMPLE = "nb201/nb201_zc_proxies_naslib_early_sample.csv.gz"
#: sha256 and row count of the shared tables (the data folder's README), checked whenever one is read:
#: half a table or altered values are an error, not a smaller pool.
SHIPPED = {SUITE_ZERO: ("3f0a8badfb10f652cc70151d511a1cc6b0e373db0798e68f1bb61ca30579e661", 18890),
           EARLY_SAMPLE: ("93cfefb7fb132480c29c30d85873276e581297579267f3f91b4e03220074e675", 2174)}
#: nastk / RoBoT proxy names that the NAS-Bench-Suite-Zero files spell differently (used when a
#: table lacks the nastk spelling, so nastk's own score files are read under their own names).
ALIASES = {"jacob_cov": "jacov", "naswot": "nwot"}
#: NASLib's value for a proxy whose computation failed.
FAILED = -1e8
#: Dataset names as the NB-Suite-Zero files write them (cifar10-valid searches use cifar10's proxies).
TABLE_DATASET = {"cifar10": "cifar10", "cifar10-valid": "cifar10", "cifar100": "cifar100",
                 "ImageNet16-120": "ImageNet16-120"}


@dataclass(frozen=True)
class ProxyTable:
    """``values[i, j]`` is proxy ``names[j]`` of architecture ``arch_strs[i]`` (NaN when missing)."""

    arch_strs: List[str]
    names: List[str]
    values: np.ndarray
    source: str

    def __len__(self) -> int:
        return len(self.arch_strs)

    def column(self, name: str) -> np.ndarray:
        key = _column_name(name, self.names)
        if key not in self.names:
            raise ConfigError(f"proxy table {self.source} has no column {name!r}; it has {', '.join(self.names)}")
        return self.values[:, self.names.index(key)]


def default_table_path(dataset: str) -> Path:
    """The shared table covering ``dataset``: Suite-Zero's 9,445 archs, or the 725 sample for cifar100."""
    if dataset not in TABLE_DATASET:
        raise ConfigError(f"no proxy table covers dataset {dataset!r}; known: {', '.join(TABLE_DATASET)}")
    relative = EARLY_SAMPLE if TABLE_DATASET[dataset] == "cifar100" else SUITE_ZERO
    path = data_file(relative)
    verify_sha256(path, SHIPPED[relative][0])
    return path


def _column_name(name: str, header: Sequence[str]) -> str:
    return name if name in header else ALIASES.get(name, name)


def _float(text: str) -> float:
    try:
        value = float(text) if text not in ("", "nan", "NaN", "None") else math.nan
    except ValueError:
        return math.nan
    return math.nan if value == FAILED or math.isinf(value) else value


def read_proxy_table(path: Union[str, Path], dataset: Optional[str] = None,
                     names: Optional[Sequence[str]] = None) -> ProxyTable:
    """Rows of ``dataset`` (all rows when None or the file has no ``dataset`` column).

    ``names`` picks and orders proxy columns (aliases such as ``jacob_cov`` accepted); by default
    every column other than the identifiers and ``*_time_s`` is returned.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingDataError(f"proxy table {path} not found")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", newline="") as handle:
            reader = csv.DictReader(handle)
            header = list(reader.fieldnames or [])
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise CorruptDataError(f"cannot read proxy table {path}: {error}") from None
    expected = next((rows_ for relative, (_, rows_) in SHIPPED.items() if path.name == Path(relative).name), None)
    if expected is not None and len(rows) != expected:
        raise CorruptDataError(f"proxy table {path} has {len(rows)} rows, expected {expected} (truncated or altered)")
    if "arch_str" not in header:
        raise CorruptDataError(f"proxy table {path} has no arch_str column (columns: {', '.join(header)})")
    if dataset is not None and "dataset" in header:
        wanted = TABLE_DATASET.get(dataset, dataset)
        present = sorted({row["dataset"] for row in rows})
        rows = [row for row in rows if row["dataset"] == wanted]
        if not rows:
            raise ConfigError(f"proxy table {path} has no rows for {dataset!r}; it covers {', '.join(present)}")
    identifiers = {"dataset", "idx", "arch_str", "naslib_tuple", "naslib_sample_idx"}
    available = [c for c in header if c not in identifiers and not c.endswith("_time_s")]
    columns = [_column_name(n, header) for n in names] if names else available
    missing = [c for c in columns if c not in header]
    if missing:
        raise ConfigError(f"proxy table {path} lacks column(s) {', '.join(missing)}; it has {', '.join(available)}")
    values = np.array([[_float(row[c]) for c in columns] for row in rows], dtype=np.float64).reshape(len(rows), len(columns))
    arch_strs = [row["arch_str"] for row in rows]
    if len(set(arch_strs)) != len(arch_strs):
        raise CorruptDataError(f"proxy table {path} lists some architecture twice for {dataset or 'its rows'}")
    return ProxyTable(arch_strs, columns, values, f"{path.name}" + (f":{dataset}" if dataset else ""))

