"""Elastic layers (nastk.elastic): prefix slicing, OFA's kernel transform, sliced BatchNorm, the elastic
MBConv block (depth skipping, export) and OFA's channel sorting (methods.md 12.1, 12.3 unit tests)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nastk.elastic import (DynamicBatchNorm2d, DynamicConv2d, DynamicLinear, DynamicMBConv, DynamicSE, ElasticMBConv,
                           hidden_channels, make_divisible, mbconv_cost, se_channels)
from nastk.cost import count_flops, count_parameters
from nastk.errors import ArchitectureError, CapabilityError, ConfigError
from nastk.oneshot.ranking import recalibrate_bn

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ALLOWED = [[True] * 3] * 4


def randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN affine parameters, running statistics and kernel transforms (so tests see them)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            if isinstance(m, DynamicConv2d):
                for matrix in m.transforms.values():
                    matrix.add_(torch.randn(matrix.shape, generator=g) * 0.1)
    return module


def test_make_divisible_rounds_to_multiples_never_far_below():
    assert [make_divisible(v) for v in (1, 7, 12, 16, 18, 20, 100, 960)] == [8, 8, 16, 16, 24, 24, 104, 960]
    for v in range(1, 400):
        assert make_divisible(v) % 8 == 0 and make_divisible(v) >= 0.9 * v
    assert hidden_channels(16, 6) == 96 and hidden_channels(24, 1) == 24 and se_channels(72) == 24


def test_dynamic_conv_runs_prefix_slices_and_centre_crops():
    torch.manual_seed(0)
    conv = DynamicConv2d(8, 12, 5, stride=2, bias=True)
    conv.set_active(out_channels=6, kernel=3)
    x = torch.randn(2, 5, 9, 9)
    expected = F.conv2d(x, conv.weight[:6, :5, 1:4, 1:4], conv.bias[:6], 2, 1)
    assert torch.allclose(conv(x), expected)
    exported = conv.export(5)
    assert type(exported) is nn.Conv2d and exported.weight.shape == (6, 5, 3, 3) and torch.allclose(exported(x), expected)
    depthwise = DynamicConv2d(8, 8, 5, groups="depthwise")
    depthwise.set_active(kernel=5)
    assert torch.allclose(depthwise(x), F.conv2d(x, depthwise.weight[:5], None, 1, 2, 1, 5))
    with pytest.raises(ConfigError):
        conv.set_active(kernel=7)
    with pytest.raises(ConfigError):
        DynamicConv2d(8, 12, 3, groups="depthwise")
    with pytest.raises(ArchitectureError, match="at most 8 input channels"):
        conv(torch.randn(1, 9, 5, 5))


def test_kernel_transform_shapes_identity_init_and_chain():
    torch.manual_seed(0)
    conv = DynamicConv2d(4, 6, 7, groups="full", kernel_transform=True)
    assert {k: tuple(m.shape) for k, m in conv.transforms.items()} == {"5": (25, 25), "3": (9, 9)}
    assert all(torch.equal(m, torch.eye(m.shape[0])) for m in conv.transforms.values())
    for kernel, start in ((7, 0), (5, 1), (3, 2)):  # identity: plain centre crops
        conv.set_active(kernel=kernel)
        assert torch.equal(conv.active_weight(4), conv.weight[:, :, start:start + kernel, start:start + kernel])
    randomize(conv)
    conv.set_active(kernel=3)
    five = F.linear(conv.weight[:, :, 1:6, 1:6].reshape(-1, 25), conv.transforms["5"]).reshape(6, 4, 5, 5)
    three = F.linear(five[:, :, 1:4, 1:4].reshape(-1, 9), conv.transforms["3"]).reshape(6, 4, 3, 3)
    assert torch.allclose(conv.active_weight(4), three)  # 3x3 = centre of the *transformed* 5x5, transformed
    conv(torch.randn(1, 4, 6, 6)).sum().backward()
    assert conv.transforms["5"].grad is not None and conv.transforms["3"].grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="not available"):
        DynamicConv2d(4, 6, 7, kernel_transform=True, kernel_sizes=(3, 7)).set_active(kernel=5)
    conv.set_active(kernel=5)
    assert torch.allclose(conv.export(3).weight, conv.active_weight(3))  # transformed kernels are baked in


def test_sliced_batchnorm_updates_only_its_slice_in_place_like_batchnorm():
    torch.manual_seed(0)
    dynamic, reference = DynamicBatchNorm2d(16), nn.BatchNorm2d(6)
    randomize(dynamic)
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(reference, name).copy_(getattr(dynamic, name)[:6])
    before = {name: getattr(dynamic, name).clone() for name in ("running_mean", "running_var")}
    for _ in range(3):
        x = torch.randn(4, 6, 5, 5) * 2 + 1
        assert torch.allclose(dynamic(x), reference(x), atol=1e-6)
    for name, old in before.items():
        new = getattr(dynamic, name)
        assert torch.allclose(new[:6], getattr(reference, name)) and torch.equal(new[6:], old[6:])
        assert not torch.allclose(new[:6], old[:6])
    dynamic.eval(), reference.eval()
    x = torch.randn(2, 6, 3, 3)
    assert torch.allclose(dynamic(x), reference(x), atol=1e-6)
    exported = dynamic.export(6)
    assert type(exported) is nn.BatchNorm2d and torch.allclose(exported.eval()(x), reference(x), atol=1e-6)
    assert int(exported.num_batches_tracked) == 3


def test_sliced_batchnorm_honours_cumulative_momentum_and_untracked_stats():
    torch.manual_seed(0)
    dynamic, reference = DynamicBatchNorm2d(8, momentum=None), nn.BatchNorm2d(5, momentum=None)
    for _ in range(4):
        x = torch.randn(3, 5, 4, 4) * 3 - 1
        dynamic(x), reference(x)
    assert torch.allclose(dynamic.running_mean[:5], reference.running_mean)
    assert torch.allclose(dynamic.running_var[:5], reference.running_var)
    untracked = DynamicBatchNorm2d(8, track_running_stats=False).eval()
    x = torch.randn(3, 5, 4, 4)
    assert torch.allclose(untracked(x), F.batch_norm(x, None, None, training=True), atol=1e-6)


def test_recalibration_touches_only_running_stats_of_the_active_slice():
    torch.manual_seed(0)
    block = randomize(DynamicMBConv(8, 8, (3, 5), (3, 6), se=True, residual=True))
    block.set_active(expand=3)  # hidden 24 of 48
    params = {name: p.clone() for name, p in block.named_parameters()}
    stats = block.depthwise.bn.running_mean.clone()
    batches = [torch.randn(4, 8, 6, 6) for _ in range(3)]
    assert recalibrate_bn(block, batches)
    assert all(torch.equal(p, params[name]) for name, p in block.named_parameters())
    new = block.depthwise.bn.running_mean
    assert torch.equal(new[24:], stats[24:]) and not torch.allclose(new[:24], stats[:24])
    with torch.no_grad():
        means = torch.stack([block.expand.conv.export(8)(x).mean((0, 2, 3)) for x in batches])
    assert torch.allclose(block.expand.bn.running_mean[:24], means.mean(0), atol=1e-5)  # the batch means' average


def test_dynamic_linear_and_se_slices_export_the_same_function():
    torch.manual_seed(0)
    linear = DynamicLinear(32, 10)
    x = torch.randn(3, 20)
    assert torch.allclose(linear(x), F.linear(x, linear.weight[:, :20], linear.bias))
    assert torch.allclose(linear.export(20)(x), linear(x))
    se = DynamicSE(48)
    assert se.reduce.max_out == se_channels(48) == 16
    y = torch.randn(2, 24, 5, 5)
    assert torch.allclose(se.export(24)(y), se(y)) and se.export(24).reduce.out_channels == 8


def test_elastic_block_reads_kernel_expand_depth_and_skips_beyond_the_stage_depth():
    torch.manual_seed(0)
    block = randomize(ElasticMBConv(16, (16,), (3, 5, 7), (3, 4, 6), (2, 3, 4), index=2, residual=True,
                                   kernel_transform=True, decisions=("k", "e", "d")))
    assert block.roles == ("kernel", "expand", "depth") and block.active and block.kernel_size == 7
    x = torch.randn(2, 16, 8, 8)
    block.configure([1, 0, 0], ALLOWED)  # k5, e3, depth 2: the third block (index 2) is skipped
    assert (block.kernel_size, block.expand_ratio, block.active) == (5, 3, False)
    assert block(x) is x and block.export(16) is None
    block.configure([0, 2, 1], ALLOWED)  # depth 3: it runs
    assert block.active and not torch.allclose(block(x), x)
    exported = block.export(16)
    for mode in (True, False):
        block.train(mode), exported.train(mode)
        assert torch.allclose(exported(x), block(x), atol=1e-5)
    assert (count_parameters(exported), count_flops(exported, 8, channels=16)) == mbconv_cost(16, 16, 3, 6, 1, 8)
    with pytest.raises(CapabilityError, match="one child at a time"):
        block.configure([torch.ones(3) / 3, 0, 0], ALLOWED)
    with pytest.raises(ConfigError, match="one value"):
        ElasticMBConv(16, (16, 24), (3,), (3,), decisions=(None, None, "d"))


def test_zero_gamma_makes_a_residual_block_the_identity():
    block = DynamicMBConv(8, 8, (3,), (4,), residual=True)
    block.zero_last_bn()
    x = torch.randn(2, 8, 4, 4)
    assert torch.allclose(block(x), x)


def _importance(block):
    return block.project.conv.weight.abs().sum(dim=(0, 2, 3))


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_sorting_keeps_the_largest_child_and_orders_channels_by_importance(mode):
    torch.manual_seed(0)
    block = randomize(DynamicMBConv(16, 24, (3, 5), (3, 4, 6), stride=2, se=True, act="h_swish"))
    block.train(mode == "train")
    x = torch.randn(4, 16, 8, 8)
    with torch.no_grad():
        before = block(x)
    order = block.sort_channels()
    assert sorted(order.tolist()) == list(range(96))
    importance = _importance(block)
    assert torch.all(importance[:-1] >= importance[1:])
    se_importance = block.se.expand.weight.abs().sum(dim=(0, 2, 3))
    assert torch.all(se_importance[:-1] >= se_importance[1:])
    with torch.no_grad():
        assert torch.allclose(block(x), before, atol=1e-5)


def test_band_protection_sorts_only_inside_the_phase_one_bands():
    torch.manual_seed(0)
    # no SE: OFA re-sorts the SE bottleneck without bands, which would change the small child's SE slice
    block = randomize(DynamicMBConv(16, 16, (3,), (3, 4, 6))).eval()
    w4, w6 = hidden_channels(16, 4), hidden_channels(16, 6)
    with torch.no_grad():
        block.project.conv.weight[:, w4:] *= 10  # the phase-1 band [w4, w6) holds the most important channels
    x = torch.randn(2, 16, 6, 6)
    band_copy = {k: v.clone() for k, v in block.state_dict().items()}
    block.set_active(expand=4)
    with torch.no_grad():
        child4 = block(x)
    order = block.sort_channels(expand_ratios_in_band=(4, 6))
    assert set(order[:w4].tolist()) == set(range(w4)) and set(order[w4:].tolist()) == set(range(w4, w6))
    importance = _importance(block)
    assert torch.all(importance[:w4 - 1] >= importance[1:w4]) and torch.all(importance[w4:-1] >= importance[w4 + 1:])
    with torch.no_grad():
        assert torch.allclose(block(x), child4, atol=1e-5)  # the e=4 child keeps its channel set
    block.load_state_dict(band_copy)
    block.sort_channels()  # without bands the important channels move to the front
    assert set(torch.argsort(_importance(block), descending=True)[:w4].tolist()) == set(range(w4))
    with torch.no_grad():
        assert not torch.allclose(block(x), child4, atol=1e-3)
