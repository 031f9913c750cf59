"""The NATS-Bench size space, its networks and supernet, its benchmark, and the exact reproduction of
BossNAS' released NATS ranking (methods.md 10.3 / 10.5)."""
import itertools
import shutil

import numpy as np
import pytest
import torch

from nastk.errors import ArchitectureError, ConfigError, CorruptDataError, MissingDataError
from nastk.space import get_space


@pytest.fixture(scope="module")
def space():
    return get_space("nats-sss")


@pytest.fixture(scope="module")
def nats_data(nastk_data):
    if not (nastk_data / "nats_sss" / "nats_sss_cifar10_test90_bossnas.csv.gz").is_file():
        pytest.skip("nats_sss data not found under NASTK_DATA")
    return nastk_data


def test_index_is_the_product_order_and_the_codec_round_trips(space):
    from nastk.benchmarks.registry import benchmark_for

    benchmark = benchmark_for("nats-sss")  # it owns the index order (no data needed)
    archs = list(space.enumerate())
    expected = list(itertools.product(range(8, 65, 8), repeat=5))
    assert len(archs) == 32768 and [space.channels(a) for a in archs[:20]] == expected[:20]
    assert [benchmark.index(archs[i]) for i in (0, 11, 284, 31102, 32767)] == [0, 11, 284, 31102, 32767]
    assert space.to_str(benchmark.arch_at(31102)) == "64:40:48:64:56"
    assert space.from_str("c0=8,c1=8,c2=40,c3=32,c4=40") == benchmark.arch_at(284)
    for bad in ("8:8:8:8", "8:8:8:8:9", "8:8:8:8:72", "a:8:8:8:8", "８:8:8:8:8"):
        with pytest.raises(ArchitectureError):
            space.from_str(bad)
    with pytest.raises(ArchitectureError):
        benchmark.arch_at(32768)
    assert not hasattr(space, "index") and not hasattr(space, "from_index")


def test_networks_have_the_official_parameter_and_flop_counts(space, nats_data):
    from nastk.benchmarks.nats_sss import official_records
    from nastk.benchmarks.registry import benchmark_for

    records = {r["idx"]: r for r in official_records() if r["dataset"] == "cifar10" and r["hp"] == 90}
    assert sorted(records) == [0, 11, 284]
    for idx, record in records.items():
        cost = space.cost(benchmark_for("nats-sss").arch_at(idx))
        assert cost["params_m"] == pytest.approx(record["params_m"], abs=1e-6)
        assert cost["flops_m"] == pytest.approx(record["flops_m"], abs=1e-6)


@pytest.mark.parametrize("bn", ["switchable", pytest.param("shared", marks=pytest.mark.slow)])
def test_supernet_child_computes_the_stand_alone_network_with_its_weight_slices(space, bn):
    """Copy a supernet child's slices into the stand-alone network: identical outputs (eval mode)."""
    torch.manual_seed(0)
    supernet = space.supernet(bn=bn).eval()
    arch = space.from_str("16:8:24:40:32")
    supernet.set_active(arch)
    net = space.build(arch).eval()
    widths = space.channels(arch)

    def copy_bn(target, source, width):
        bn_ = source.by_width[[8, 16, 24, 32, 40, 48, 56, 64].index(width)] if source.kind == "switchable" else source.shared
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(target, name).data.copy_(getattr(bn_, name).data[:width])

    def copy_conv(target, source, c_in):
        target.weight.data.copy_(source.weight.data[:target.out_channels, :c_in])

    copy_conv(net.stem[0], supernet.stem.op.conv, 3)
    copy_bn(net.stem[1], supernet.stem.op.bn, widths[0])
    previous = widths[0]
    for layer, (plain, slim, width) in enumerate(zip(net.cells, supernet.cells, widths)):
        if layer % 2 == 0:
            for e, (p_op, s_op) in enumerate(zip(plain.ops, slim.ops)):
                c_in = previous if e in (0, 1, 3) else width
                if isinstance(p_op, torch.nn.Identity):
                    continue
                conv, norm = (p_op[1], p_op[2]) if len(p_op) == 3 else (p_op[0], p_op[1])
                copy_conv(conv, s_op.conv, c_in)
                copy_bn(norm, s_op.bn, width)
        else:
            copy_conv(plain.conv_a[1], slim.conv_a.conv, previous)
            copy_bn(plain.conv_a[2], slim.conv_a.bn, width)
            copy_conv(plain.conv_b[1], slim.conv_b.conv, width)
            copy_bn(plain.conv_b[2], slim.conv_b.bn, width)
            copy_conv(plain.shortcut[1], slim.shortcut, previous)
        previous = width
    copy_bn(net.head[0], supernet.head_bn, widths[-1])
    net.classifier.weight.data.copy_(supernet.classifier.weight.data[:, :widths[-1]])
    net.classifier.bias.data.copy_(supernet.classifier.bias.data)
    x = torch.randn(2, 3, 16, 16)
    assert torch.allclose(supernet(x), net(x), atol=1e-5)
    assert supernet(x, block=0).shape == (2, 8, 8, 8) and supernet(x, block=2).shape == (2, 32, 4, 4)


def test_benchmark_look_ups_and_protocols(space, nats_data):
    from nastk.benchmarks.registry import benchmark_for

    from nastk.evaluators.benchmark import BenchmarkEvaluator, benchmark_evaluator

    benchmark = benchmark_for("nats-sss")
    truth, protocol = benchmark.truth([benchmark.arch_at(i) for i in (0, 11, 284)], "cifar10")
    assert protocol == "cifar10/test/90" and truth.tolist() == [79.79, 85.77, 89.51]  # = NATS' own records
    assert benchmark.optimum("cifar10") == 93.65 and benchmark.complete
    result = BenchmarkEvaluator(benchmark, "cifar10", "test90").evaluate(space.from_str("64:64:64:64:64"))
    assert result.metrics["test_accuracy"] == 93.40 and result.cost_s == 0.0
    assert BenchmarkEvaluator(benchmark).search_protocol.key == "cifar10/test/90"  # the benchmark's defaults
    with pytest.raises(ConfigError, match="valid12"):
        BenchmarkEvaluator(benchmark, "cifar10", "valid12")
    with pytest.raises(ConfigError, match="cifar10 only"):
        BenchmarkEvaluator(benchmark, "cifar100")
    with pytest.raises(ConfigError, match="no --table file"):
        benchmark_evaluator(benchmark, {"dataset": "cifar10", "table": "x.csv"})


def test_a_query_strategy_searches_the_space_on_its_benchmark(space, nats_data):
    from nastk.benchmarks.registry import benchmark_for
    from nastk.run_folder import run_search
    from nastk.strategy import make_strategy

    from nastk.evaluators.benchmark import BenchmarkEvaluator

    outcome = run_search(make_strategy("re", space, seed=0), BenchmarkEvaluator(benchmark_for("nats-sss"), "cifar10"), 40)
    assert len(outcome.trials) == 40 and outcome.best.result.metrics["test_accuracy"] > 91.0


def test_missing_and_corrupt_data_are_one_line_errors(space, nats_data, tmp_path, monkeypatch):
    from nastk.benchmarks import nats_sss

    monkeypatch.setenv("NASTK_DATA", str(tmp_path))
    with pytest.raises(MissingDataError, match="nats_sss_cifar10_test90_bossnas.csv.gz"):
        nats_sss.default_table()
    (tmp_path / "nats_sss").mkdir()
    broken = tmp_path / "nats_sss" / "nats_sss_cifar10_test90_bossnas.csv.gz"
    shutil.copy(nats_data / "nats_sss" / "nats_sss_cifar10_test90_bossnas.csv.gz", broken)
    with open(broken, "r+b") as handle:
        handle.seek(100)
        handle.write(b"\0\0\0")
    with pytest.raises(CorruptDataError, match="sha256"):
        nats_sss.default_table()


def test_released_bossnas_ratings_reproduce_the_readme(nats_data, capsys):
    """``nastk reproduce bossnas`` (no training): tau 0.534 / rho 0.734 / r 0.718, channel count 0.785 / 0.925."""
    import json

    from nastk.cli import main
    from nastk.oneshot.block_rating import report_lines

    assert main(["reproduce", "bossnas", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["networks"] == 32768
    assert report["bossnas"]["kendall_tau"] == pytest.approx(0.534, abs=0.005)
    assert report["bossnas"]["spearman_rho"] == pytest.approx(0.734, abs=0.005)
    assert report["bossnas"]["pearson_r"] == pytest.approx(0.718, abs=0.005)
    assert report["channel_count"]["kendall_tau"] == pytest.approx(0.785, abs=0.005)
    assert report["channel_count"]["spearman_rho"] == pytest.approx(0.925, abs=0.005)
    taus = [b["kendall_tau"] for b in report["per_block"]]
    assert np.allclose(taus, [0.319, 0.378, 0.154], atol=0.005)
    assert report["greedy_choice"]["arch"] == "64:40:48:64:56" and report["greedy_choice"]["test90"] == 93.29
    assert any("channel count" in line for line in report_lines(report))
