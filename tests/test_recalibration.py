"""BatchNorm recalibration (methods.md 12.1 OFA's exact averages, 12.2 BigNAS' cumulative average)."""
import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from nastk.errors import ConfigError
from nastk.oneshot.recalibration import recalibrate_bn

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class PrefixBN(nn.BatchNorm2d):
    """An elastic BN: an input of C channels uses the prefix slices [:C] of the parameters and buffers."""

    def forward(self, x):
        c = x.shape[1]
        factor = 0.0
        if self.training and self.track_running_stats:
            self.num_batches_tracked += 1
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        return F.batch_norm(x, self.running_mean[:c], self.running_var[:c], self.weight[:c], self.bias[:c],
                            self.training, factor, self.eps)


def conv_bn_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Conv2d(4, 5, 3, padding=1), nn.BatchNorm2d(5))


def unequal_batches(seed=1):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(n, 3, 6, 6, generator=generator) * scale + shift
            for n, scale, shift in ((3, 1.0, 0.5), (7, 2.0, -1.0), (12, 0.5, 2.0))]


def weighted(stats):
    """Batch-size-weighted averages of per-batch (n, mean, biased variance)."""
    total = sum(n for n, _, _ in stats)
    return sum(n * m for n, m, _ in stats) / total, sum(n * v for n, _, v in stats) / total


def batch_stats(h):
    return h.shape[0], h.mean((0, 2, 3)), h.var((0, 2, 3), unbiased=False)


def state(model):
    return {name: value.clone() for name, value in model.state_dict().items()}


def test_exact_recipe_is_the_batch_size_weighted_average_of_batch_means_and_biased_variances():
    model, batches = conv_bn_net(), unequal_batches()
    model.eval()
    before = state(model)
    assert recalibrate_bn(model, batches, recipe="exact")
    conv1, bn1, _, conv2, bn2 = model
    first, second = [], []
    with torch.no_grad():
        for x in batches:
            h = conv1(x)
            first.append(batch_stats(h))
            _, mean, var = first[-1]  # train mode: the next layer sees batch-normalised activations
            h = F.relu((h - mean[:, None, None]) / torch.sqrt(var[:, None, None] + bn1.eps)
                       * bn1.weight[:, None, None] + bn1.bias[:, None, None])
            second.append(batch_stats(conv2(h)))
    for bn, stats in ((bn1, first), (bn2, second)):
        mean, var = weighted(stats)
        assert torch.allclose(bn.running_mean, mean, atol=1e-5) and torch.allclose(bn.running_var, var, atol=1e-5)
        assert int(bn.num_batches_tracked) == len(batches)
    after = state(model)
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed == {f"{i}.{buffer}" for i in (1, 4) for buffer in ("running_mean", "running_var", "num_batches_tracked")}
    assert not model.training and all(not m.training for m in model.modules())  # eval mode as it was
    assert bn1.momentum == 0.1


def test_cumulative_recipe_is_momentum_none_accumulation_and_restores_the_momentum():
    model, batches = conv_bn_net(), unequal_batches()
    for bn in (model[1], model[4]):
        bn.momentum = 0.3
    reference = copy.deepcopy(model)
    params = [p.clone() for p in model.parameters()]
    with torch.no_grad():
        for bn in (reference[1], reference[4]):
            bn.reset_running_stats()
            bn.momentum = None
        reference.train()
        for x in batches:
            reference(x)
    model.train()
    assert recalibrate_bn(model, batches, recipe="cumulative")
    for bn, ref in ((model[1], reference[1]), (model[4], reference[4])):
        assert torch.equal(bn.running_mean, ref.running_mean) and torch.equal(bn.running_var, ref.running_var)
        assert int(bn.num_batches_tracked) == len(batches) and bn.momentum == 0.3
    assert all(torch.equal(a, b) for a, b in zip(params, model.parameters())) and model.training


@pytest.mark.parametrize("recipe", ["exact", "cumulative"])
def test_only_the_active_prefix_slice_of_an_elastic_bn_changes(recipe):
    bn = PrefixBN(8, momentum=0.1)
    with torch.no_grad():
        bn.running_mean.copy_(torch.arange(8.0))
        bn.running_var.copy_(torch.arange(1.0, 9.0))
        bn.weight.copy_(torch.linspace(0.5, 2, 8))
    before = state(bn)
    batches = [x[:, :3] * 3 + 1 for x in unequal_batches()]  # 3 of 8 channels active
    assert recalibrate_bn(bn, batches, recipe=recipe)
    if recipe == "exact":
        mean, var = weighted([batch_stats(x) for x in batches])
    else:  # the cumulative average of PyTorch's (unbiased) batch variances
        mean = sum(x.mean((0, 2, 3)) for x in batches) / len(batches)
        var = sum(x.var((0, 2, 3), unbiased=True) for x in batches) / len(batches)
    assert torch.allclose(bn.running_mean[:3], mean, atol=1e-5) and torch.allclose(bn.running_var[:3], var, atol=1e-4)
    assert torch.equal(bn.running_mean[3:], before["running_mean"][3:])
    assert torch.equal(bn.running_var[3:], before["running_var"][3:])
    assert torch.equal(bn.weight, before["weight"]) and torch.equal(bn.bias, before["bias"])
    assert bn.momentum == 0.1 and int(bn.num_batches_tracked) == len(batches)


@pytest.mark.parametrize("recipe", ["exact", "cumulative"])
def test_forward_picks_the_path_and_layers_off_it_keep_their_statistics(recipe):
    torch.manual_seed(0)
    model = nn.ModuleDict({"a": nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)),
                           "b": nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))})
    with torch.no_grad():
        model["b"][1].running_mean.fill_(0.25)
        model["b"][1].num_batches_tracked.fill_(17)
    before = state(model)
    batches = [(x, torch.zeros(len(x))) for x in unequal_batches()]  # (images, labels) pairs
    assert recalibrate_bn(model, batches, recipe=recipe, forward=lambda batch: model["a"](batch[0]))
    after = state(model)
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("b."))
    assert not torch.equal(before["a.1.running_mean"], after["a.1.running_mean"])


def test_batch_statistics_bn_is_left_alone_and_bad_calls_change_nothing():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4, track_running_stats=False))
    assert not recalibrate_bn(model, unequal_batches())
    model = conv_bn_net()
    before = state(model)
    with pytest.raises(ConfigError, match="unknown BN recalibration recipe"):
        recalibrate_bn(model, unequal_batches(), recipe="ofa")
    with pytest.raises(ValueError, match="at least one batch"):
        recalibrate_bn(model, [], recipe="cumulative")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model[1].momentum == 0.1


def quadrant_task(n, generator):
    """4 classes: which quadrant of an 8x8 image is bright; offset far from mean 0 / variance 1 on purpose
    (so that BN statistics of mean 0, variance 1 wreck the eval-mode network)."""
    y = torch.randint(0, 4, (n,), generator=generator)
    x = torch.randn(n, 3, 8, 8, generator=generator) * 0.5
    for k in range(4):
        rows, cols = divmod(k, 2)
        x[y == k, :, 4 * rows:4 * rows + 4, 4 * cols:4 * cols + 4] += 2.0
    return x * 10 + 300, y


def test_negative_control_momentum_zero_bn_is_near_chance_until_recalibrated():
    """BigNAS trains with BN momentum 0: the running statistics stay mean 0 / variance 1, so the
    eval-mode network is near chance; recalibration alone makes it accurate (methods.md 12.3 (i))."""
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8, momentum=0.0), nn.ReLU(),
                          nn.Flatten(), nn.Linear(8 * 4 * 4, 4))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    for _ in range(40):
        x, y = quadrant_task(64, generator)
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    bn = model[1]
    assert torch.equal(bn.running_mean, torch.zeros(8)) and torch.equal(bn.running_var, torch.ones(8))
    x_test, y_test = quadrant_task(400, generator)

    def accuracy():
        model.eval()
        with torch.no_grad():
            return float((model(x_test).argmax(1) == y_test).float().mean())

    assert accuracy() < 0.4  # chance is 0.25
    for recipe in ("cumulative", "exact"):
        bn.reset_running_stats()
        assert recalibrate_bn(model, [quadrant_task(100, generator)[0] for _ in range(5)], recipe=recipe)
        assert accuracy() > 0.9, recipe
        assert bn.momentum == 0.0
