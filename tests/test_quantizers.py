"""Unit facts of the quantizers, quantized layers and BitOps (methods.md 11A / 11B)."""
import pytest
import torch
from torch import nn

from nastk.errors import ConfigError
from nastk.quantization.bitops import conv_bitops, model_size_bits
from nastk.quantization.layers import QConv2d, QLinear
from nastk.quantization.quantizers import (ACTIVATION_FORMS, WEIGHT_FORMS, ElasticQuantizer, LSQQuantizer,
                                           UniformQuantizer, calibrating, lsq_round, quantization_noise_std,
                                           round_ste)


def test_noise_std_is_range_over_twice_the_levels():
    assert quantization_noise_std(3.0, 2) == pytest.approx(3.0 / (2 * 3))
    assert quantization_noise_std(1.0, 8) == pytest.approx(1.0 / 510)
    # QuantNAS draws range / (2^b - 1) * eps, eps ~ N(0, 1) / 2: its empirical std is the formula's
    torch.manual_seed(0)
    x = torch.rand(1000) * 4 - 1
    value_range = float(x.max() - x.min())
    noise = value_range / (2 ** 4 - 1) * torch.randn(200_000) / 2
    assert float(noise.std()) == pytest.approx(quantization_noise_std(value_range, 4), rel=0.01)
    with pytest.raises(ConfigError):
        quantization_noise_std(1.0, 0)


def test_bitops_and_model_size_of_known_layers_by_hand():
    conv = nn.Conv2d(16, 32, 3, padding=1, bias=False)
    # MACs = C_in x C_out x k^2 x H x W = 16 * 32 * 9 * 8 * 8 = 294,912; x 4 weight bits x 8 activation bits
    assert conv_bitops(conv, (8, 8), 4, 8) == 294_912 * 32
    depthwise = nn.Conv2d(24, 24, 3, groups=24)
    assert conv_bitops(depthwise, (5, 5), 8, 8) == 24 * 9 * 25 * 64
    linear = nn.Linear(64, 10)
    assert conv_bitops(linear, (1, 1), 2, 3) == 640 * 6
    # weights x bits, the linear bias at 32 bits
    assert model_size_bits([(conv, 4), (linear, 8)]) == 16 * 32 * 9 * 4 + 640 * 8 + 10 * 32
    with pytest.raises(ConfigError):
        conv_bitops(nn.ReLU(), (1, 1), 8, 8)


def test_32_bits_is_the_float_layer_exactly():
    torch.manual_seed(0)
    q = QConv2d(3, 8, 3, padding=1, weight_bits=32, act_bits=32)
    x = torch.randn(2, 3, 6, 6)
    assert torch.equal(q(x), q.layer(x))
    q.configure(4, 4)
    with calibrating(q):
        q(x)
    assert not torch.equal(q(x), q.layer(x))
    lin = QLinear(5, 3, weight_bits=32, act_bits=32)
    v = torch.randn(4, 5)
    assert torch.equal(lin(v), lin.layer(v))


def _surrogate(x, s, o, n, p, v0):
    """LSQ's straight-through function around the point v0: round(v) replaced by round(v0) + (v - v0)."""
    v = (x - o) / s
    r0 = torch.round(v0)
    inside = (r0 >= n) & (r0 <= p)
    return torch.where(inside, (r0 + v - v0) * s + o, r0.clamp(n, p) * s + o)


@pytest.mark.parametrize("per_channel", [False, True])
def test_lsq_gradients_match_a_finite_difference_of_the_straight_through_function(per_channel):
    torch.manual_seed(1)
    x = (torch.randn(6, 4, 3, 3, dtype=torch.double) * 2).requires_grad_()
    shape = (6, 1, 1, 1) if per_channel else ()
    s = (torch.rand(shape, dtype=torch.double) * 0.2 + 0.2).requires_grad_()
    o = (torch.randn(shape, dtype=torch.double) * 0.1).requires_grad_()
    g = torch.randn(6, 4, 3, 3, dtype=torch.double)
    n, p = -4, 3
    (lsq_round(x, s, o, n, p) * g).sum().backward()
    v0 = ((x - o) / s).detach()
    h = 1e-6

    def f(xx, ss, oo):
        return float((_surrogate(xx, ss, oo, n, p, v0) * g).sum())

    with torch.no_grad():
        for index in [(0,) * s.dim()] + ([(3, 0, 0, 0)] if per_channel else []):
            e = torch.zeros_like(s)
            e[index] = h
            fd = (f(x, s + e, o) - f(x, s - e, o)) / (2 * h)
            assert float(s.grad[index]) == pytest.approx(fd, rel=1e-5, abs=1e-8)
            fd = (f(x, s, o + e) - f(x, s, o - e)) / (2 * h)
            assert float(o.grad[index]) == pytest.approx(fd, rel=1e-5, abs=1e-8)
        for index in [(0, 0, 0, 0), (2, 1, 2, 0), (5, 3, 1, 1)]:
            e = torch.zeros_like(x)
            e[index] = h
            fd = (f(x + e, s, o) - f(x - e, s, o)) / (2 * h)
            assert float(x.grad[index]) == pytest.approx(fd, rel=1e-5, abs=1e-8)
    # and the hand-written backward equals autograd through clamp(round_ste(.))
    grads = [t.grad.clone() for t in (x, s, o)]
    for t in (x, s, o):
        t.grad = None
    ((torch.clamp(round_ste((x - o) / s), n, p) * s + o) * g).sum().backward()
    for mine, reference in zip(grads, (x.grad, s.grad, o.grad)):
        assert torch.allclose(mine, reference, atol=1e-12)


def test_lsq_step_gradient_is_scaled_by_one_over_sqrt_qp_numel():
    torch.manual_seed(2)
    q = LSQQuantizer(4, symmetric=True, per_channel=False, learn_offset=False, signed=True)
    x = torch.randn(3, 5, 4, 4)
    q.calibrate(x)
    q(x).sum().backward()
    scaled = float(q.step.grad[q.row()].sum())
    step = q.step.detach()[q.row()].reshape(()).abs() + 1e-6
    s = step.clone().requires_grad_()
    lsq_round(x, s, torch.zeros(()), -8, 7).sum().backward()
    assert scaled == pytest.approx(float(s.grad) / (7 * x.numel()) ** 0.5, rel=1e-5)


def test_bits_switch_at_run_time_and_calibration_orders_the_errors():
    torch.manual_seed(3)
    w = torch.randn(8, 4, 3, 3)
    quantizer = ElasticQuantizer(WEIGHT_FORMS, channels=8, signed=True)
    with calibrating(quantizer):
        quantizer(w)
    for form in WEIGHT_FORMS:
        quantizer.set_form(*form)
        errors = []
        for bits in (2, 4, 8):
            quantizer.bits = bits
            errors.append(float((quantizer(w) - w).abs().mean().detach()))
        assert errors[0] > errors[1] > errors[2] > 0
    quantizer.bits = 32
    assert torch.equal(quantizer(w), w)
    with pytest.raises(ConfigError):
        quantizer.bits = 9
    acts = ElasticQuantizer(ACTIVATION_FORMS)
    with calibrating(acts):
        acts(torch.relu(w))
    assert not bool(acts.active.signed_flag)  # non-negative calibration data: unsigned levels
    with pytest.raises(ConfigError):
        LSQQuantizer(4, per_channel=True)  # per channel needs channels


def test_uniform_quantizer_levels():
    x = torch.linspace(-1, 1, 101)
    q = UniformQuantizer(2, symmetric=True)
    assert len(torch.unique(q(x))) <= 4
    asym = UniformQuantizer(3, symmetric=False, per_channel=True, channel_axis=0)
    y = torch.rand(4, 50) * torch.arange(1, 5).unsqueeze(1)
    out = asym(y)
    assert all(len(torch.unique(row)) <= 8 for row in out)
    assert float((out - y).abs().max()) <= float((y.max(1).values - y.min(1).values).max()) / 7 / 2 + 1e-6
