"""read_official on small synthetic files built with nas_201_api's own classes in the official layout."""
import math

import numpy as np
import pytest
import torch
from nas_201_api.api_utils import ArchResults, ResultsCount

from nastk.benchmarks.nb201_official import read_official
from nastk.errors import CorruptDataError, DataError, MissingDataError

ARCHS = [
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|",
    "|nor_conv_1x1~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|",
    "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_3x3~0|none~1|nor_conv_1x1~2|",
    "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",  # listed in meta_archs but never evaluated
]
#: The eval sets each dataset has in the official file (ori-test on cifar100/ImageNet is valid+test).
EVAL_SETS = {"cifar10-valid": ["x-valid", "ori-test"], "cifar10": ["ori-test"],
             "cifar100": ["x-valid", "x-test", "ori-test"], "ImageNet16-120": ["x-valid", "x-test", "ori-test"]}
DATASET_OFFSET = {"cifar10-valid": 0.0, "cifar10": 1.0, "cifar100": 2.0, "ImageNet16-120": 3.0}
SET_OFFSET = {"train": 0.1, "x-valid": 0.2, "x-test": 0.3, "ori-test": 0.4}


def seeds(arch, hp):
    return [777, 888] if arch == 1 else [777]  # architecture 1 has two seeds on every dataset


def final_acc(arch, hp, dataset, setname, seed):
    """A distinct final-epoch accuracy for every combination; earlier epochs hold 1.0."""
    return 10.0 * (arch + 1) + (50.0 if hp == "200" else 0.0) + DATASET_OFFSET[dataset] + SET_OFFSET[setname] + (
        seed - 777) / 100.0


def epoch_time(arch, seed):
    return 2.0 + arch + (seed - 777) / 1000.0


def present(arch, hp, dataset):
    return not (arch == 2 and hp == "12" and dataset == "ImageNet16-120")  # one gap -> NaN


def make_run(arch, hp, dataset, seed, number=float):
    epochs = int(hp)
    accs = {i: 1.0 for i in range(epochs)}
    accs[epochs - 1] = final_acc(arch, hp, dataset, "train", seed)
    run = ResultsCount(dataset, None, accs, {i: 0.5 for i in range(epochs)}, number(0.1 + arch + DATASET_OFFSET[dataset]),
                       number(10.0 * (arch + 1) + DATASET_OFFSET[dataset]), {"arch_str": ARCHS[arch]}, seed, epochs, None)
    run.update_train_info(accs, None, {i: 0.5 for i in range(epochs)}, {i: epoch_time(arch, seed) for i in range(epochs)})
    for setname in EVAL_SETS[dataset]:
        accs, losses, times = {}, {}, {}
        for i in range(epochs):
            key = f"{setname}@{i}"
            accs[key] = final_acc(arch, hp, dataset, setname, seed) if i == epochs - 1 else 1.0
            losses[key], times[key] = 0.5, 0.1
        run.update_eval(accs, losses, times)
    return run


def official_dict(number=float):
    arch2infos = {}
    for arch in range(3):
        info = {}
        for hp, name in (("12", "less"), ("200", "full")):
            results = ArchResults(arch, ARCHS[arch])
            for dataset in EVAL_SETS:
                if present(arch, hp, dataset):
                    for seed in seeds(arch, hp):
                        results.update(dataset, seed, make_run(arch, hp, dataset, seed, number))
            info[name] = results.state_dict()
        arch2infos[arch] = info
    return {"meta_archs": list(ARCHS), "arch2infos": arch2infos, "evaluated_indexes": [0, 1, 2]}


@pytest.fixture(scope="module")
def official_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("nb201") / "NAS-Bench-201-synthetic.pth"
    torch.save(official_dict(), path)
    return path


@pytest.fixture(scope="module")
def table(official_file):
    return read_official(official_file)


def expected_acc(arch, hp, dataset, setname):
    return np.mean([final_acc(arch, hp, dataset, setname, seed) for seed in seeds(arch, hp)])


def test_arch_strings_and_order_round_trip(table):
    arch_strs, columns = table
    assert arch_strs == ARCHS
    assert all(values.dtype == np.float64 and values.shape == (len(ARCHS),) for values in columns.values())


def test_key_set(table):
    _, columns = table
    splits = {"cifar10-valid": ("train", "valid", "test"), "cifar10": ("train", "test"),
              "cifar100": ("train", "valid", "test"), "ImageNet16-120": ("train", "valid", "test")}
    expected = {f"{d}/{s}/{e}/official" for d, ss in splits.items() for s in ss for e in (12, 200)}
    expected |= {f"{d}/train_time_s/{e}/official" for d in splits for e in (12, 200)}
    expected |= {f"{d}/{c}" for d in splits for c in ("params_m", "flops_m")}
    assert set(columns) == expected


def test_accuracies_are_final_epoch_seed_means_with_nb201_split_mapping(table):
    _, columns = table
    mapping = {("cifar10-valid", "train"): "train", ("cifar10-valid", "valid"): "x-valid",
               ("cifar10-valid", "test"): "ori-test", ("cifar10", "train"): "train", ("cifar10", "test"): "ori-test",
               ("cifar100", "train"): "train", ("cifar100", "valid"): "x-valid", ("cifar100", "test"): "x-test",
               ("ImageNet16-120", "train"): "train", ("ImageNet16-120", "valid"): "x-valid",
               ("ImageNet16-120", "test"): "x-test"}
    for hp in ("12", "200"):
        for (dataset, split), setname in mapping.items():
            values = columns[f"{dataset}/{split}/{hp}/official"]
            for arch in range(3):
                want = expected_acc(arch, hp, dataset, setname) if present(arch, hp, dataset) else math.nan
                np.testing.assert_allclose(values[arch], want, err_msg=f"{dataset}/{split}/{hp} arch {arch}")
            assert math.isnan(values[3])  # never evaluated


def test_spot_values_written_out(table):
    _, columns = table
    # arch 1, two seeds (777, 888): valid 70 + 0.2 + {0, 1.11} -> mean 70.755; test uses ori-test (+0.4)
    assert columns["cifar10-valid/valid/200/official"][1] == pytest.approx(70.755)
    assert columns["cifar10-valid/test/200/official"][1] == pytest.approx(70.955)
    # cifar100 test is x-test (+0.3), not ori-test (+0.4); 12 epochs has no +50
    assert columns["cifar100/test/12/official"][0] == pytest.approx(12.3)
    assert columns["ImageNet16-120/valid/12/official"][1] == pytest.approx(23.2 + 0.555)
    assert math.isnan(columns["ImageNet16-120/valid/12/official"][2])


def test_params_flops_and_train_time(table):
    _, columns = table
    for arch in range(3):
        for dataset, offset in DATASET_OFFSET.items():
            assert columns[f"{dataset}/params_m"][arch] == pytest.approx(0.1 + arch + offset)
            assert columns[f"{dataset}/flops_m"][arch] == pytest.approx(10.0 * (arch + 1) + offset)
            for hp in ("12", "200"):
                times = [int(hp) * epoch_time(arch, seed) for seed in seeds(arch, hp)]
                want = np.mean(times) if present(arch, hp, dataset) else math.nan
                np.testing.assert_allclose(columns[f"{dataset}/train_time_s/{hp}/official"][arch], want)
    assert columns["cifar10/train_time_s/200/official"][1] == pytest.approx(200 * 3.0555)
    assert columns["cifar10/train_time_s/12/official"][0] == pytest.approx(24.0)
    for key in ("cifar10/params_m", "cifar10/flops_m", "cifar10/train_time_s/200/official"):
        assert math.isnan(columns[key][3])


def test_pickled_objects_need_trust_pickle(tmp_path):
    path = tmp_path / "numpy-scalars.pth"
    torch.save(official_dict(number=np.float64), path)  # numpy scalars are not allowed by weights_only
    with pytest.raises(CorruptDataError, match="trust_pickle=True.*--trust-pickle") as caught:
        read_official(path)
    assert "\n" not in str(caught.value)
    arch_strs, columns = read_official(path, trust_pickle=True)
    assert arch_strs == ARCHS
    assert columns["cifar100/params_m"][2] == pytest.approx(4.1)
    assert columns["cifar10-valid/valid/200/official"][1] == pytest.approx(70.755)


def test_missing_file(tmp_path):
    with pytest.raises(MissingDataError, match="not found"):
        read_official(tmp_path / "absent.pth")


@pytest.mark.parametrize("content", [[1, 2, 3], {"meta_archs": ARCHS}], ids=["not-a-dict", "missing-keys"])
def test_wrong_content(tmp_path, content):
    path = tmp_path / "wrong.pth"
    torch.save(content, path)
    with pytest.raises(CorruptDataError, match="not an official NAS-Bench-201 file") as caught:
        read_official(path)
    assert str(path) in str(caught.value)


def test_broken_structure(tmp_path):
    data = official_dict()
    del data["arch2infos"][1]["full"]  # the API asserts on this deep inside
    path = tmp_path / "broken.pth"
    torch.save(data, path)
    with pytest.raises(CorruptDataError, match="unexpected NAS-Bench-201 structure"):
        read_official(path)


@pytest.mark.parametrize("zipfile", [True, False], ids=["zip", "legacy"])
@pytest.mark.parametrize("trust", [False, True])
def test_truncated_file(tmp_path, zipfile, trust):
    source = tmp_path / "full.pth"
    torch.save(official_dict(), source, _use_new_zipfile_serialization=zipfile)
    data = source.read_bytes()
    path = tmp_path / "truncated.pth"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as caught:
        read_official(path, trust_pickle=trust)
    assert isinstance(caught.value, CorruptDataError) and str(path) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_garbage_and_empty_files(tmp_path):
    for name, content in (("text.pth", b"hello world"), ("empty.pth", b"")):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(CorruptDataError, match="cannot read"):
            read_official(path, trust_pickle=True)


def test_official_file_through_the_table_and_cli(official_file, tmp_path, monkeypatch, capsys):
    """End to end: the .pth is converted once into nastk's cache and queried like the compact table."""
    import json

    from nastk.benchmarks.nb201 import load_table
    from nastk.cli import main
    from nastk.protocol import Protocol

    monkeypatch.setenv("NASTK_CACHE", str(tmp_path / "cache"))
    table = load_table(str(official_file))
    arch = table.space.from_str(ARCHS[1])
    assert table.source == f"official:{official_file.name}"
    assert table.accuracy(arch, Protocol("cifar100", "valid", 200)) == pytest.approx(expected_acc(1, "200", "cifar100", "x-valid"))
    assert table.resolve(Protocol("cifar10", "test", 200)).family == "official"
    assert len(list((tmp_path / "cache").glob("nb201-official-*.npz"))) == 1
    assert "ImageNet16-120/valid/12/official" in table.columns  # partly present columns are kept
    assert main(["query", "--dataset", "cifar10-valid", "--arch", ARCHS[0], "--table", str(official_file),
                 "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["test_accuracy"] == pytest.approx(expected_acc(0, "200", "cifar10-valid", "ori-test"))
    assert main(["query", "--dataset", "cifar10", "--arch", ARCHS[3], "--table", str(official_file)]) == 0  # NaN, listed
    assert main(["query", "--dataset", "cifar10", "--arch", ARCHS[3].replace("none~2", "skip_connect~2"),
                 "--table", str(official_file)]) == 2
    assert "not in the NB201 table" in capsys.readouterr().err


def test_an_official_release_must_hold_every_cell(tmp_path, monkeypatch):
    from nastk.benchmarks.nb201 import OFFICIAL_RELEASES, load_table

    monkeypatch.setenv("NASTK_CACHE", str(tmp_path / "cache"))
    path = tmp_path / OFFICIAL_RELEASES[1]  # a 3-cell file under the name of the full release
    torch.save(official_dict(), path)
    with pytest.raises(CorruptDataError, match=f"{OFFICIAL_RELEASES[1]} has [0-9]+ rows, expected 15625"):
        load_table(str(path))
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())  # nothing cached
