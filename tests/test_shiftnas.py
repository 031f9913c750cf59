"""ShiftNAS (methods.md 2): complexity bins, Gumbel bin draws, the Eq. 8 probability shift, the architecture
generator, the matrix mapping and an exactly resumable step."""
import json

import numpy as np
import pytest
import torch

import toy_steps
from nastk.cli import main
from nastk.errors import CapabilityError, ConfigError
from nastk.oneshot.complexity import make_bins, path_cost, uniform_histogram, uniform_paths
from nastk.oneshot.generator import ArchitectureGenerator, MaskMapping, fit_resource, gumbel_softmax
from nastk.oneshot.shiftnas import BinPathSampler, ShiftedBinPathSampler, generated_child, load_generator
from nastk.oneshot.trainer import OneShotConfig, OneShotTrainer
from nastk.registry import get_space

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def supernet():
    torch.manual_seed(0)
    return get_space("mobilenet").supernet(10)


def test_bins_cover_the_space_cost_range(supernet):
    space = supernet.space
    low, high = path_cost(supernet, supernet.path_of_arch(space.smallest())), path_cost(supernet, supernet.path_of_arch(space.largest()))
    assert low == pytest.approx(space.cost(space.smallest())["flops_m"]) and high == pytest.approx(space.cost(space.largest())["flops_m"])
    for bins in (make_bins(supernet, count=4), make_bins(supernet, step=0.77)):
        assert bins.edges[0] == pytest.approx(low) and bins.edges[-1] >= high - 1e-9
        assert all(a < b for a, b in zip(bins.edges, bins.edges[1:]))
        for path in uniform_paths(supernet, 50, seed=1):
            cost = path_cost(supernet, path)
            k = bins.index(cost)
            assert bins.edges[k] <= cost <= bins.edges[k + 1] + 1e-9
    assert make_bins(supernet, step=0.77).count == 9  # ceil(6.18 / 0.77)
    histogram = uniform_histogram(supernet, make_bins(supernet, count=4), samples=300, seed=0)
    assert sum(histogram["counts"]) == 300 and histogram["shares"][1] > histogram["shares"][3]  # the imbalance
    with pytest.raises(ConfigError):
        make_bins(supernet, count=4, step=0.5)
    with pytest.raises(ConfigError):
        make_bins(supernet, count=0)


def test_gumbel_softmax_draws_follow_the_distribution():
    logits = torch.tensor([0.0, 1.0, 2.0, float("-inf")], dtype=torch.float64)
    generator = torch.Generator().manual_seed(0)
    counts = np.zeros(4)
    for _ in range(4000):
        y, index = gumbel_softmax(logits, 1.0, generator)
        assert float(y.sum()) == pytest.approx(1.0) and float(y[index]) == pytest.approx(1.0)
        counts[int(index)] += 1
    assert counts[3] == 0
    assert np.abs(counts[:3] / 4000 - torch.softmax(logits[:3], 0).numpy()).max() < 0.03


def test_eq8_shift_moves_probability_toward_the_bin_whose_held_out_loss_fell(supernet):
    shifted, fixed = ShiftedBinPathSampler(supernet), BinPathSampler(supernet)
    for sampler in (shifted, fixed):
        sampler.configure(bins=4, shift_lr=0.2)
    generator = torch.Generator().manual_seed(0)
    for iteration in range(10):
        draws = [shifted.draw_bin(generator) for _ in range(4)]
        deltas = [-0.5 if k == 2 else 0.2 for k, _ in draws]  # bin 2's loss still falls, the others' rose
        for sampler in (shifted, fixed):
            sampler.shift(draws, deltas, iteration)
    p = shifted.bin_probabilities()
    assert p[2] > 0.4 and p[2] == p.max(), p
    assert np.allclose(fixed.bin_probabilities(), 0.25) and fixed.updates == 0
    assert shifted.updates == 10 and len(shifted.trajectory) == 10


def test_bin_sampler_draws_children_of_the_drawn_bin(supernet):
    sampler = BinPathSampler(supernet)
    sampler.configure(bins=4)
    rng = np.random.default_rng(0)
    for k in range(4):
        assert sampler.bins.index(path_cost(supernet, sampler.path_in_bin(k, rng))) == k


def test_generator_resource_loss_decreases_when_trained_alone(supernet):
    bins = make_bins(supernet, count=4)
    torch.manual_seed(3)
    generator = ArchitectureGenerator.for_supernet(supernet, hidden=16)
    targets = np.linspace(bins.low + 0.5, bins.high - 0.5, 6)

    def argmax_gap():
        return np.mean([(path_cost(supernet, generator.argmax_path(bins.normalise(c))) - c) ** 2 for c in targets])

    before = argmax_gap()
    losses = fit_resource(generator, supernet, bins.low, bins.high, steps=60, lr=0.01, batch=8,
                          noise=torch.Generator().manual_seed(3))
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5]), losses
    assert argmax_gap() < 0.5 * before


def test_mask_mapping_runs_the_child_exactly_and_lets_gradients_reach_the_generator(supernet):
    torch.manual_seed(1)
    with torch.no_grad():  # non-trivial BN scales (zero-gamma would hide the residual branches)
        for module in supernet.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
    generator = ArchitectureGenerator.for_supernet(supernet, hidden=16)
    mapping = MaskMapping(supernet)
    rows, index = generator(torch.tensor([0.5]), generator=torch.Generator().manual_seed(0))
    path = tuple(int(i) for i in index[0])
    x = torch.randn(4, 3, 16, 16)
    supernet.train()
    supernet.set_active(path)
    with torch.no_grad():
        child = supernet(x)
    with mapping.applied(rows[0]):
        supernet.set_active(mapping.execution_path(path))
        out = supernet(x)
    assert torch.allclose(out, child, atol=1e-5)
    assert mapping.execution_path(path) != path or path == tuple(supernet.largest_path())
    out.logsumexp(1).mean().backward()
    grads = [p.grad for p in generator.parameters() if p.grad is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0
    assert not hasattr(supernet.blocks()[0].depthwise.conv, "__dict__") or "active_weight" not in vars(supernet.blocks()[0].depthwise.conv)
    with pytest.raises(CapabilityError):
        MaskMapping(toy_steps.ToySupernet())


def _trainer(folder, epochs, sampler="shifted"):
    config = OneShotConfig.for_step("shiftnas", space="mobilenet", epochs=epochs, batch_size=16, valid_size=0,
                                    held_out_fraction=0.25, lr=0.05, sampler=sampler,
                                    step_options={"bins": 3, "shift_every": 1, "warmup_fraction": 0.0, "shift_lr": 0.05,
                                                  "generator_warmup": 2, "generator_hidden": 16})
    return OneShotTrainer(config, folder, data=toy_steps.toy_data(), progress=False)


@pytest.mark.slow
def test_exact_resume_two_epochs_equal_one_plus_one(tmp_path):
    straight = _trainer(tmp_path / "straight", 2)
    straight.fit()
    first = _trainer(tmp_path / "resumed", 2)
    first.fit(until=1)
    resumed = _trainer(tmp_path / "resumed", 2)
    assert resumed.load_checkpoint()
    resumed.fit()
    for a, b in ((straight.supernet, resumed.supernet), (straight.step.generator, resumed.step.generator)):
        for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.equal(p, q), name
    assert torch.equal(straight.step.sampler.logits, resumed.step.sampler.logits)
    assert straight.step.sampler.updates == resumed.step.sampler.updates > 0
    assert not np.allclose(straight.step.sampler.bin_probabilities(), 1 / 3)  # B moved
    assert straight.history[-1]["bin_probs"] == resumed.history[-1]["bin_probs"]
    # deployment: the trained generator's argmax child with inherited weights
    supernet, generator, bins = load_generator(tmp_path / "straight")
    arch, cost, child = generated_child(supernet, generator, bins, float(bins.values[1]))
    assert cost == pytest.approx(supernet.space.cost(arch)["flops_m"])
    supernet.eval().set_active(supernet.path_of_arch(arch))
    x = toy_steps.toy_data().x_train[:4]
    assert torch.allclose(child.eval()(x), supernet(x), atol=1e-5)


def test_step_refuses_a_sampler_without_bins_and_bad_options(tmp_path):
    with pytest.raises(ConfigError, match="sampler shifted"):
        _trainer(tmp_path / "a", 1, sampler="uniform")
    with pytest.raises(ConfigError):
        OneShotConfig.for_step("shiftnas", space="mobilenet", step_options={"shift_every": 0})


def test_histogram_command(tmp_path, capsys):
    plot = tmp_path / "h.png"
    assert main(["supernet", "histogram", "--space", "mobilenet", "--bins", "4", "--samples", "100", "--plot", str(plot),
                 "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert sum(result["counts"]) == 100 and len(result["counts"]) == 4 and plot.stat().st_size > 0
