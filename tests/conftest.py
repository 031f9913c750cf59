"""Shared fixtures. Tests needing the shared benchmark data find it through NASTK_DATA and skip with a
reason when it is absent, except in CI (NASTK_REQUIRE_DATA=1), where a missing folder is a failure."""
import os
from pathlib import Path

import pytest

from nastk.paths import data_root


def pytest_configure(config):
    """One torch thread per xdist worker: ``-n 2`` on two cores already uses both, and a second thread
    per worker (which an in-process command may set) oversubscribes them and slows small networks ~10x."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small networks run fastest single-threaded, and the test machine's cores are shared."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def nastk_data() -> Path:
    root = data_root()
    if not (root / "nb201" / "nb201_groundtruth.csv.gz").is_file():
        message = f"shared benchmark data not found at {root}; set NASTK_DATA"
        if os.environ.get("NASTK_REQUIRE_DATA"):
            pytest.fail(message)
        pytest.skip(message)
    return root


@pytest.fixture(scope="session")
def nb201_table(nastk_data):
    from nastk.benchmarks.nb201 import default_table

    return default_table()


@pytest.fixture(scope="session")
def nb201_rows(nastk_data):
    """The raw compact CSV rows, read independently of nastk's table code."""
    import csv
    import gzip

    with gzip.open(nastk_data / "nb201" / "nb201_groundtruth.csv.gz", "rt", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="session")
def nb201():
    from nastk.space import get_space

    return get_space("nb201")


@pytest.fixture(scope="session")
def darts_rows():
    """The raw 214-genotype DARTS benchmark CSV rows, read independently of nastk's table code."""
    import csv
    import gzip

    path = data_root() / "darts" / "darts_random214_cifar10_nasbenchmark.csv.gz"
    if not path.is_file():
        message = f"DARTS benchmark file not found at {path}; set NASTK_DATA"
        if os.environ.get("NASTK_REQUIRE_DATA"):
            pytest.fail(message)
        pytest.skip(message)
    with gzip.open(path, "rt", newline="") as handle:
        return list(csv.DictReader(handle))
