"""The MobileNet spaces and their elastic supernet (methods.md 12): codec, extremes, extraction (eval and
train mode), analytic cost against measured cost, expected cost, depth skipping, BN recalibration."""
import time

import numpy as np
import pytest
import torch
from torch import nn

from nastk.architecture import Architecture
from nastk.cost import model_cost
from nastk.elastic import DynamicBatchNorm2d, ElasticMBConv
from nastk.errors import ArchitectureError, CapabilityError, ConfigError
from nastk.oneshot.ranking import recalibrate_bn
from nastk.space import get_space
from search_spaces.mobilenet import MobileNetSpace, MobileNetSpec, Stage, resolution_of
from test_elastic_ops import randomize  # tests/ is on sys.path under pytest

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SPACES = ("mobilenet", "mobilenet-ofa", "mobilenet-bignas")


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    space = get_space("mobilenet")
    return space, randomize(space.supernet())


@pytest.fixture(scope="module")
def ofa():
    torch.manual_seed(1)
    space = get_space("mobilenet-ofa")
    return space, randomize(space.supernet())


@pytest.fixture(scope="module")
def bignas():
    torch.manual_seed(2)
    space = get_space("mobilenet-bignas")
    return space, randomize(space.supernet())


def children(space, count=2, seed=0):
    rng = np.random.default_rng(seed)
    return [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(count)]


def same_output(supernet, arch, x, train: bool) -> float:
    """Max |supernet - extracted child| for ``arch`` in one mode (dropout drawn from the same seed)."""
    child = supernet.extract(arch)
    supernet.set_active(arch)
    supernet.train(train), child.train(train)
    with torch.no_grad():
        torch.manual_seed(5)
        expected = supernet(x)
        torch.manual_seed(5)
        return float((child(x) - expected).abs().max())


@pytest.mark.parametrize("name", SPACES)
def test_every_space_samples_and_round_trips_its_strings(name):
    space = get_space(name)
    assert {"supernet", "build", "mutate", "optuna"} <= space.capabilities
    rng = np.random.default_rng(0)
    for arch in [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(5)]:
        text = space.to_str(arch)
        assert space.from_str(text) == arch and Architecture.from_str(text, name) == arch
    model = space.get_choice_model()
    assert model.names[0] == ("s1_depth" if name == "mobilenet" else "resolution")
    with pytest.raises(ArchitectureError, match="s1_depth"):
        space.from_str(space.to_str(space.largest()).replace("s1_depth=", "s1_depth=9"))


def test_choice_names_follow_the_spec():
    tiny = get_space("mobilenet").get_choice_model()
    assert len(tiny.choices) == 3 * (1 + 2 * 3) and tiny["s1_b2_kernel"].options == (3, 5)
    assert tiny["s3_b3_expand"].options == (3, 4, 6) and tiny["s2_depth"].options == (1, 2, 3)
    ofa = get_space("mobilenet-ofa").get_choice_model()
    assert ofa["resolution"].options == tuple(range(128, 225, 4)) and len(ofa.choices) == 1 + 5 * (1 + 2 * 4)
    # every block's kernel and expand are choices, skipped blocks' too (as OFA samples them): ~1e22 tuples
    assert ofa["s5_b4_kernel"].options == (3, 5, 7) and ofa.size() == 25 * (3 * 9 ** 4) ** 5
    big = get_space("mobilenet-bignas").get_choice_model()
    assert big["s5_depth"].options == (3, 4, 5, 6, 7, 8) and "s1_expand" not in big.names and "s6_expand" not in big.names
    assert big["s2_expand"].options == (4, 5, 6) and big["head_width"].options == (1792, 1984)


@pytest.mark.parametrize("fixture", ["tiny", "ofa", "bignas"])
def test_largest_and_smallest_paths_are_the_extremes(fixture, request):
    space, supernet = request.getfixturevalue(fixture)
    assert supernet.largest_path() == tuple(len(d.options) - 1 for d in supernet.decisions)
    assert supernet.smallest_path() == (0,) * len(supernet.decisions)
    largest, smallest = space.cost(space.largest()), space.cost(space.smallest())
    for arch in children(space, 6)[2:]:
        cost = space.cost(arch)
        for key in cost:
            assert smallest[key] <= cost[key] <= largest[key]


@pytest.mark.parametrize("train", [False, True])
def test_tiny_extract_equals_supernet_for_largest_smallest_and_random(tiny, train):
    space, supernet = tiny
    x = torch.randn(4, 3, 32, 32)
    for arch in children(space, 3, seed=1):
        assert same_output(supernet, arch, x, train) < 1e-5


def test_extracted_child_is_a_plain_network_of_slices(tiny):
    space, supernet = tiny
    arch = space.smallest()
    child = supernet.extract(arch)
    kinds = {type(m) for m in child.modules()}
    assert not any(issubclass(k, (ElasticMBConv, DynamicBatchNorm2d)) for k in kinds)
    assert nn.Conv2d in kinds and nn.BatchNorm2d in kinds and nn.Linear in kinds
    blocks = [m for m in child.modules() if type(m).__name__ == "MBConv"]
    assert len(blocks) == 3  # depth 1 in every stage: the other six blocks are skipped
    assert sum(p.numel() for p in child.parameters()) / 1e6 == pytest.approx(space.cost(arch)["params_m"])
    before = [p.clone() for p in supernet.parameters()]
    with torch.no_grad():
        next(child.parameters()).add_(1.0)  # copies, not views of the supernet
    assert all(torch.equal(a, b) for a, b in zip(before, supernet.parameters()))


def test_ofa_extract_bakes_in_kernel_transforms_eval_and_train(ofa):
    space, supernet = ofa
    arch = space.sample(np.random.default_rng(3))
    assert supernet.kernel_transform and supernet.dropout.p == pytest.approx(0.1)
    x = torch.randn(2, 3, 40, 40)
    assert same_output(supernet, arch, x, train=False) < 1e-5
    assert same_output(supernet, arch, x, train=True) < 1e-5


def test_bignas_extract_with_elastic_widths(bignas):
    space, supernet = bignas
    x = torch.randn(2, 3, 32, 32)
    for arch in (space.smallest(), space.sample(np.random.default_rng(4))):
        assert same_output(supernet, arch, x, train=False) < 1e-5
    assert same_output(supernet, space.smallest(), x, train=True) < 1e-5


def test_analytic_cost_equals_measured_cost(tiny, ofa, bignas):
    cases = [(tiny, arch, None) for arch in children(tiny[0], 2)]
    cases += [(ofa, ofa[0].smallest(), None), (ofa, ofa[0].sample(np.random.default_rng(5)), 48),
              (bignas, bignas[0].sample(np.random.default_rng(6)), 40)]
    for (space, supernet), arch, size in cases:
        analytic = space.cost(arch, input_size=size)
        measured = model_cost(supernet.extract(arch), input_size=space.input_size(arch, size))
        assert analytic == pytest.approx(measured, rel=1e-12), space.to_str(arch)
    assert resolution_of(ofa[0].smallest()) == 128 and ofa[0].input_size(ofa[0].largest()) == 224
    wide = get_space("mobilenet-ofa")
    arch = wide.smallest()
    net = wide.build(arch, num_classes=5, width_mult=1.2)
    assert wide.cost(arch, 5, input_size=32, width_mult=1.2) == pytest.approx(model_cost(net, 32))
    assert wide.cost(arch, 5, 32, width_mult=1.2)["params_m"] > wide.cost(arch, 5, 32)["params_m"]


def test_every_weight_is_created_on_the_given_device():
    supernet = get_space("mobilenet-ofa").supernet(device="meta")
    assert {t.device.type for t in list(supernet.parameters()) + list(supernet.buffers())} == {"meta"}


def test_build_gives_a_fresh_standalone_network_on_a_device():
    space = get_space("mobilenet")
    arch = space.sample(np.random.default_rng(7))
    net = space.build(arch, num_classes=7, device="cpu")
    assert isinstance(net, nn.Sequential) and net(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    with pytest.raises(ArchitectureError):
        space.build(Architecture("mobilenet", (1,)))


class SmallPerBlock(MobileNetSpace):
    name = "test-mbv-block"
    spec = MobileNetSpec(stem=(8,), stem_act="relu", head_act="relu", head_expand=16, stages=(
        Stage((8,), (1, 2), (3, 5), (3, 6), 1, "relu"), Stage((16,), (1, 2), (3,), (2, 4), 2, "relu", se=True)))


class SmallPerStage(MobileNetSpace):
    name = "test-mbv-stage"
    spec = MobileNetSpec(stem=(8, 16), stem_act="swish", head_act="swish", head_expand_ratio=6, feature_mix=(32, 48),
                         per_block=False, resolutions=(16, 24), dropout=0.2, stages=(
                             Stage((8, 16), (1, 2), (3, 5), (1,), 1, "swish"),
                             Stage((16, 24), (1, 2), (3,), (4, 6), 2, "swish", se=True)))


def random_weights(supernet, seed):
    g = torch.Generator().manual_seed(seed)
    weights = torch.zeros(len(supernet.decisions), supernet.width, dtype=torch.float64)
    for i, decision in enumerate(supernet.decisions):
        weights[i, :len(decision.options)] = torch.softmax(torch.randn(len(decision.options), generator=g).double() * 2, 0)
    return weights


@pytest.mark.parametrize("space_class", [SmallPerBlock, SmallPerStage])
def test_expected_cost_is_the_exact_average_over_all_children(space_class):
    space = space_class()
    supernet = space.supernet()
    archs = list(space.enumerate())
    assert len(archs) in (256, 512)  # every child, each with its own cost
    weights = random_weights(supernet, 0).requires_grad_(True)
    for metric, key in (("flops", "flops_m"), ("params", "params_m")):
        exact = sum(float(np.prod([weights[d, o].item() for d, o in enumerate(supernet.path_of_arch(arch))]))
                    * space.cost(arch)[key] for arch in archs)
        expected = supernet.expected_cost(weights, metric)
        assert expected.item() == pytest.approx(exact, rel=1e-9)
    expected.backward()
    assert torch.isfinite(weights.grad).all() and weights.grad.abs().sum() > 0
    small = supernet.expected_cost(weights.detach(), input_size=8)
    assert float(small) < float(supernet.expected_cost(weights.detach()))


@pytest.mark.parametrize("fixture", ["tiny", "ofa", "bignas"])
def test_expected_cost_of_one_hot_weights_is_the_cost(fixture, request):
    space, supernet = request.getfixturevalue(fixture)
    for arch in children(space, 1, seed=8):
        one_hot = torch.zeros(len(supernet.decisions), supernet.width)
        one_hot[torch.arange(len(supernet.decisions)), torch.tensor(supernet.path_of_arch(arch))] = 1
        for metric in ("flops", "params"):
            assert float(supernet.expected_cost(one_hot, metric)) == pytest.approx(
                space.cost(arch)[f"{metric}_m"], rel=1e-6)
        assert float(supernet.expected_cost(one_hot, input_size=64)) == pytest.approx(
            space.cost(arch, input_size=64)["flops_m"], rel=1e-6)


def test_depth_skipping_ignores_the_weights_of_skipped_blocks(tiny):
    space, supernet = tiny
    shallow = space.arch_of({**space.choices_of(space.largest()), "s2_depth": 1})
    supernet.set_active(shallow)
    supernet.eval()
    x = torch.randn(2, 3, 32, 32)
    blocks = [m for m in supernet.layers if isinstance(m, ElasticMBConv)]
    skipped, running = blocks[4], blocks[3]  # stage 2, blocks 2 and 1
    assert not skipped.active and running.active
    with torch.no_grad():
        before = supernet(x)
        saved = skipped.project.conv.weight.clone()
        skipped.project.conv.weight.fill_(float("nan"))
        assert torch.equal(supernet(x), before)
        skipped.project.conv.weight.copy_(saved)
        running.project.conv.weight.mul_(2)
        assert not torch.allclose(supernet(x), before)
        running.project.conv.weight.div_(2)


def test_recalibration_of_a_child_touches_only_its_running_stats(tiny):
    space, supernet = tiny
    arch = space.smallest()
    supernet.set_active(arch)
    params = [p.clone() for p in supernet.parameters()]
    norms = [m for m in supernet.modules() if isinstance(m, DynamicBatchNorm2d)]
    stats = [m.running_var.clone() for m in norms]
    assert recalibrate_bn(supernet, [torch.randn(8, 3, 32, 32) for _ in range(2)])
    assert all(torch.equal(a, b) for a, b in zip(params, supernet.parameters()))
    changed = [not torch.equal(m.running_var, s) for m, s in zip(norms, stats)]
    assert any(changed) and not all(changed)  # skipped blocks keep theirs
    for m, s in zip(norms, stats):
        width = int((m.running_var != s).nonzero().max()) + 1 if not torch.equal(m.running_var, s) else 0
        assert torch.equal(m.running_var[width:], s[width:])


def test_sorting_the_supernet_keeps_the_largest_child():
    torch.manual_seed(3)
    space = get_space("mobilenet")
    supernet = randomize(space.supernet()).eval()
    supernet.set_active(space.largest())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = supernet(x)
        supernet.sort_channels()
        assert torch.allclose(supernet(x), before, atol=1e-5)


def test_bad_inputs_raise_clear_errors(tiny):
    space, supernet = tiny
    with pytest.raises(ConfigError, match="width_mult"):
        space.supernet(width_mult=0)
    with pytest.raises(ConfigError, match="dropout"):
        space.supernet(dropout=1.5)
    with pytest.raises(ConfigError, match="shape"):
        supernet.expected_cost(torch.ones(3, 3))
    with pytest.raises(ConfigError, match="metric"):
        supernet.expected_cost(torch.ones(len(supernet.decisions), supernet.width), "latency")
    with pytest.raises(CapabilityError, match="one child at a time"):
        supernet.set_mixture(torch.ones(len(supernet.decisions), supernet.width) / 3)
    supernet.set_active(space.largest())
    with pytest.raises(ArchitectureError, match="input channels"):
        supernet(torch.randn(1, 4, 32, 32))
    with pytest.raises(ConfigError, match="MobileNet"):
        resolution_of(get_space("nb201").sample(np.random.default_rng(0)))
    assert resolution_of(space.largest()) is None


def test_tiny_supernet_trains_a_batch_well_under_a_second():
    torch.manual_seed(0)
    space = get_space("mobilenet")
    supernet = space.supernet()
    supernet.set_active(space.largest())
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    start = time.perf_counter()
    nn.functional.cross_entropy(supernet(x), y).backward()
    elapsed = time.perf_counter() - start
    assert elapsed < 0.5, f"forward + backward took {elapsed:.2f} s"
    assert all(p.grad is not None for p in supernet.layers[0].parameters())


def test_measured_latency_orders_the_extremes_on_the_device():
    space = get_space("mobilenet")
    small = space.latency(space.smallest(), device="cpu", batch_size=8, repeats=5)
    large = space.latency(space.largest(), device="cpu", batch_size=8, repeats=5)
    assert 0 < small < large
