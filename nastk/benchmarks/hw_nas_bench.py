"""HW-NAS-Bench hardware costs of every NB201 architecture: latency (ms) and energy (mJ) per device.

Reads ``$NASTK_DATA/nb201/nb201_hw_nas_bench.csv.gz`` (long format: one row per dataset and NB201
index). Values the source marks as missing (``-1``, e.g. ``edgetpu_latency`` for 4,699 cells) become
NaN, so a multi-objective search sees them as unknown rather than as impossibly fast.
"""
from __future__ import annotations

import csv
import gzip
from functools import lru_cache
from typing import Dict, Optional, Tuple

import numpy as np

from nastk.architecture import Architecture
from nastk.errors import ConfigError, CorruptDataError
from nastk.paths import data_file, verify_sha256

#: The only space HW-NAS-Bench measures; rows are that space's benchmark indexes.
SPACE = "nb201"
FILE = "nb201/nb201_hw_nas_bench.csv.gz"
SHA256 = "a2862dac0ae08f3023c9c42b80151cb463dc48476e0f3ecef86e360e7845ba7e"
DATASETS = ("cifar10", "cifar100", "ImageNet16-120")
#: Cost columns, each ``<device>_<latency|energy>``; latency in ms, energy in mJ.
COLUMNS = ("edgegpu_latency", "edgegpu_energy", "raspi4_latency", "edgetpu_latency", "pixel3_latency",
           "eyeriss_latency", "eyeriss_energy", "fpga_latency", "fpga_energy")
NUM_ARCHS = 15_625


class HWNASBench:
    """``{dataset: {column: array over NB201 indexes}}``; look-ups take an Architecture."""

    def __init__(self, columns: Dict[str, Dict[str, np.ndarray]]):
        self.columns = columns

    @classmethod
    def read(cls, path=None) -> "HWNASBench":
        source = data_file(FILE) if path is None else path
        if path is None:
            verify_sha256(source, SHA256)
        values = {d: {c: np.full(NUM_ARCHS, np.nan) for c in COLUMNS} for d in DATASETS}
        seen = {d: np.zeros(NUM_ARCHS, dtype=bool) for d in DATASETS}
        with gzip.open(source, "rt", newline="") as handle:
            for row in csv.DictReader(handle):
                dataset, index = row["dataset"], int(row["idx"])
                if dataset not in values or not 0 <= index < NUM_ARCHS:
                    raise CorruptDataError(f"{source}: unexpected row dataset={dataset!r} idx={index}")
                seen[dataset][index] = True
                for column in COLUMNS:
                    value = float(row[column])
                    values[dataset][column][index] = value if value >= 0 else np.nan
        missing = [d for d in DATASETS if not seen[d].all()]
        if missing:
            raise CorruptDataError(f"{source} lacks some architectures for {', '.join(missing)}")
        return cls(values)

    def metrics(self, arch: Architecture, dataset: str, index: Optional[int] = None) -> Dict[str, float]:
        """Every hardware cost of ``arch`` on ``dataset`` (``cifar10-valid`` reads ``cifar10``)."""
        from nastk.benchmarks.registry import benchmark_for

        table = self.columns.get(_dataset(dataset))
        position = benchmark_for(SPACE).index(arch) if index is None else index
        return {column: float(values[position]) for column, values in table.items()}


def _dataset(dataset: str) -> str:
    name = "cifar10" if dataset == "cifar10-valid" else dataset
    if name not in DATASETS:
        raise ConfigError(f"HW-NAS-Bench has no dataset {dataset!r}; known: {', '.join(DATASETS)}")
    return name


@lru_cache(maxsize=None)
def default_hw_table() -> HWNASBench:
    return HWNASBench.read()


def units(column: str) -> Tuple[str, str]:
    """(device, unit) of a column, for axis labels."""
    device, kind = column.rsplit("_", 1)
    return device, "ms" if kind == "latency" else "mJ"
