"""The NB201 table: protocols, known values, vectorised look-ups, caching and corrupt data."""
import json

import numpy as np
import pytest

from nastk.benchmarks.nb201 import NB201Table, convert_compact_csv, load_table, objective_protocol, MANIFEST
from nastk.benchmarks.registry import benchmark_for
from nastk.errors import ArchitectureError, ConfigError, CorruptDataError, MissingDataError
from nastk.evaluators.benchmark import BenchmarkEvaluator
from nastk.protocol import Protocol


@pytest.mark.parametrize("dataset, optimum, index", [
    ("cifar10", 94.3733, 6111), ("cifar100", 73.5133, 9930), ("ImageNet16-120", 47.3111, 857)])
def test_known_optima(nb201_table, dataset, optimum, index):
    column = nb201_table.column(Protocol(dataset, "test", 200))
    assert column.max() == pytest.approx(optimum, abs=1e-4)
    assert int(column.argmax()) == index


def test_cifar10_valid_arch0_matches_the_api_docstring(nb201_table, nb201):
    assert nb201_table.accuracy(benchmark_for("nb201").arch_at(0), Protocol("cifar10-valid", "valid", 200)) == pytest.approx(81.98266665690103)


def test_protocol_rules():
    with pytest.raises(ConfigError, match="cifar10-valid"):
        Protocol("cifar10", "valid", 200)
    with pytest.raises(ConfigError, match="12 or 200"):
        Protocol("cifar10", "test", 100)
    with pytest.raises(ConfigError, match="unknown NB201 dataset"):
        Protocol("cifar11", "test", 200)
    assert Protocol.parse("cifar10-valid/valid/12").key == "cifar10-valid/valid/12"
    with pytest.raises(ConfigError):
        Protocol.parse("cifar10/test")


def test_family_resolution_is_explicit(nb201_table):
    assert nb201_table.resolve(Protocol("cifar10", "test", 200)).family == "nb201api"
    assert nb201_table.resolve(Protocol("cifar10", "test", 200, "nats")).key == "cifar10/test/200/nats"
    with pytest.raises(ConfigError, match="available for cifar100"):
        nb201_table.resolve(Protocol("cifar100", "valid", 200))  # not in the compact table


def test_12_and_200_epochs_differ(nb201_table):
    test12 = nb201_table.column(Protocol("cifar10", "test", 12))
    test200 = nb201_table.column(Protocol("cifar10", "test", 200))
    assert np.nanmean(test200) - np.nanmean(test12) > 5


def test_vectorised_equals_single(nb201_table, nb201):
    rng = np.random.default_rng(0)
    archs = [nb201.sample(rng) for _ in range(200)]
    protocol = Protocol("cifar100", "test", 200)
    assert nb201_table.accuracies(archs, protocol).tolist() == [nb201_table.accuracy(a, protocol) for a in archs]


def test_default_objectives_follow_nb201_search_protocol():
    assert objective_protocol("cifar10").key == "cifar10-valid/valid/12"
    assert objective_protocol("cifar100", "valid200").key == "cifar100/valid/200"
    assert objective_protocol("cifar10", "test200").key == "cifar10/test/200"


def test_benchmark_evaluator_charges_simulated_time(nb201_table, nb201):
    evaluator = BenchmarkEvaluator(benchmark_for("nb201"), "cifar10", table=nb201_table)
    arch = benchmark_for("nb201").arch_at(6111)
    result = evaluator.evaluate(arch)
    assert result.metrics["test_accuracy"] == pytest.approx(94.3733, abs=1e-4)
    assert result.metrics["accuracy"] == nb201_table.accuracy(arch, Protocol("cifar10-valid", "valid", 12))
    assert result.cost_s > 0 and result.protocol["cost"].startswith("cifar10-valid/train_time_s/12")
    time200 = nb201_table.train_time(arch, "cifar10", 200)
    assert time200["source"].startswith("estimated") and time200["seconds"] > 30 * result.cost_s


def test_cache_round_trip_and_corrupt_cache_is_rebuilt(nb201_table, tmp_path, monkeypatch):
    path = tmp_path / "t.npz"
    nb201_table.save(path)
    again = NB201Table.load(path)
    assert np.array_equal(again.codes, nb201_table.codes) and again.protocols() == nb201_table.protocols()
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CorruptDataError):
        NB201Table.load(path)
    monkeypatch.setenv("NASTK_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    first = load_table()
    cache = next((tmp_path / "cache").glob("*.npz"))
    cache.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="rebuilding"):
        rebuilt = load_table()
    assert np.array_equal(rebuilt.codes, first.codes)


def test_wrong_checksum_and_missing_files(tmp_path, nastk_data):
    manifest = json.loads(MANIFEST.read_text())
    fake = tmp_path / "fake.csv.gz"
    fake.write_bytes(b"not the table")
    with pytest.raises(CorruptDataError, match="sha256"):
        convert_compact_csv(fake, manifest)
    with pytest.raises(MissingDataError):
        load_table(str(tmp_path / "absent.pth"))
    with pytest.raises(ConfigError, match="unsupported"):
        (tmp_path / "x.txt").write_text("x")
        load_table(str(tmp_path / "x.txt"))


def test_missing_data_folder_names_the_variable(tmp_path, monkeypatch):
    from nastk.paths import data_file

    monkeypatch.setenv("NASTK_DATA", str(tmp_path))
    with pytest.raises(MissingDataError, match="NASTK_DATA"):
        data_file("nb201/nb201_groundtruth.csv.gz")


def test_architecture_outside_a_partial_table(nb201):
    table = NB201Table(np.array([0, 1, 2]), {"cifar10/test/200/x": np.array([1.0, 2.0, 3.0])}, "tiny")
    assert table.accuracy(nb201.from_code(2), Protocol("cifar10", "test", 200)) == 3.0
    with pytest.raises(ArchitectureError, match="not in the NB201 table"):
        table.accuracy(nb201.from_code(3), Protocol("cifar10", "test", 200))
