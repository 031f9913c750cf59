"""The mixed-precision transform: quant:SPACE spaces, their supernets, BitOps / model size objectives."""
import numpy as np
import pytest
import torch

from nastk.errors import ConfigError, NastkError
from nastk.evaluators.multi_objective import get_objective, parse_constraints
from nastk.registry import get_space


@pytest.fixture(scope="module")
def space():
    return get_space("quant:mobilenet")


def test_quant_prefix_gives_a_product_space(space):
    base = get_space("mobilenet")
    names = space.get_choice_model().names
    base_names = base.get_choice_model().names
    assert tuple(names[:len(base_names)]) == tuple(base_names)
    quant = names[len(base_names):]
    assert len(quant) == 2 * 28 and quant[:2] == ("q0_wbits", "q0_abits")
    arch = space.sample(np.random.default_rng(0))
    assert space.from_str(space.to_str(arch)) == arch
    assert space.base_arch(arch).space == "mobilenet"
    with pytest.raises(NastkError):
        get_space("quant:no-such-space")
    with pytest.raises(ConfigError):
        get_space("quant:")


@pytest.mark.slow
def test_32_bits_is_the_float_supernet_exactly(space):
    torch.manual_seed(0)
    base = get_space("mobilenet").supernet(num_classes=10)
    torch.manual_seed(0)
    net = space.supernet(num_classes=10)
    x = torch.randn(2, 3, 16, 16)
    base.eval(), net.eval()
    arch = space.sample(np.random.default_rng(1))
    base.set_active(space.base_arch(arch))
    net.set_active(arch)
    net.set_uniform(32)
    assert torch.equal(net(x), base(x))
    net.set_active(arch)  # the path's bits again (tables uncalibrated: step 1, far from float)
    assert not torch.equal(net(x), base(x))


def test_path_sets_bits_and_fixes_first_and_last_at_8(space):
    net = space.supernet(num_classes=10)
    arch = space.smallest()
    net.set_active(arch)
    layers = net.layers()
    assert (layers[0].weight_bits, layers[0].act_bits) == (8, 8)
    assert (layers[-1].weight_bits, layers[-1].act_bits) == (8, 8)
    assert {(q.weight_bits, q.act_bits) for q in layers[1:-1]} == {(2, 2)}
    assert net.arch_of_path(net.path_of_arch(arch)) == arch
    with pytest.raises(ConfigError):
        net.set_path([torch.ones(net.width)] * len(net.decisions))


def test_bitops_and_size_costs(space):
    largest, smallest = space.cost(space.largest()), space.cost(space.smallest())
    assert largest["bitops_m"] == pytest.approx(largest["quant_macs_m"] * 64)
    assert largest["quant_macs_m"] == pytest.approx(largest["flops_m"], abs=1e-4)  # the classifier's bias adds 10
    assert smallest["bitops_m"] < largest["bitops_m"]
    assert (largest["avg_wbits"], smallest["avg_abits"]) == (8.0, 2.0)
    # 8-bit weights of the largest child: its parameters (conv / linear weights) x 8 bits, biases at 32 bits
    assert largest["model_size_kb"] < largest["params_m"] * 1e6 * 8 / 8 / 1024 + 1
    assert get_objective("bitops").metric == "bitops_m" and get_objective("bitops").direction == "minimize"
    assert get_objective("model_size").metric == "model_size_kb"
    (constraint,) = parse_constraints(["bitops<=100"])
    assert constraint.bound == 100


@pytest.mark.slow
def test_nb201_units_are_cells():
    space = get_space("quant:nb201")
    units = space.unit_names()
    assert units[0].startswith("cells.") and len(units) == len(set(units))
    cost = space.cost(space.largest())
    assert cost["bitops_m"] == pytest.approx(cost["quant_macs_m"] * 64)
