"""Unit facts of the quantizers, quantized layers and BitOps (methods.md 11A / 11B)."""
import pytest
import torch
from torch import nn

from nastk.errors import ConfigError
from nastk.quantization import quantizers
from nastk.quantization.bitops import conv_bitops, model_size_bits
from nastk.quantization.layers import QConv2d, QLinear
from nastk.quantization.quantizers import (ACTIVATION_FORMS, STEP_EPS, WEIGHT_FORMS, ElasticQuantizer,
                                           LSQQuantizer, UniformQuantizer, calibrating, lsq_round,
                                           integer_range, quantization_noise_std, round_ste, scale_gradient)


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


def _reference_tables(q: LSQQuantizer, x: torch.Tensor):
    """The active step and offset broadcast to ``x``, with LSQ's gradient scale (by ``scale_gradient``)."""
    r, (n, p) = q.row(), q.levels()
    if q.per_channel:
        g = 2.0 / (p * x.numel() / x.shape[q.channel_axis]) ** 0.5
    else:
        g = 1.0 / (p * x.numel()) ** 0.5
    step = scale_gradient(q.step[r], g).abs() + STEP_EPS
    off = q.offset[r]
    if isinstance(q.offset, nn.Parameter):
        off = scale_gradient(off, g)
        off = off.abs() if q.abs_offset else off
    shape = [1] * x.dim()
    shape[q.channel_axis] = -1
    return (step.reshape(shape), off.reshape(shape)) if q.per_channel else (step.reshape(()), off.reshape(()))


def _reference_quantize(q: LSQQuantizer, x: torch.Tensor) -> torch.Tensor:
    """LSQQuantizer.quantize written the straightforward way (methods.md 11B, EQ-Net's base_lsq): autograd
    through ``clamp(round_ste((x - b) / s), n, p) s + b``."""
    n, p = q.levels()
    step, off = _reference_tables(q, x)
    return torch.clamp(round_ste((x - off) / step), n, p) * step + off


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("per_channel,symmetric,signed,abs_offset,chunked", [
    (False, True, True, False, False), (False, False, False, False, False), (False, False, True, True, False),
    (False, True, True, False, True), (False, False, False, False, True),
    (True, True, True, False, False), (True, False, True, False, False), (True, False, False, True, False)])
def test_fast_lsq_equals_the_straightforward_reference(per_channel, symmetric, signed, abs_offset, chunked, dtype,
                                                       monkeypatch):
    """The fast forward / hand-written backward: outputs and every gradient (input, step table, offset table)
    equal autograd through the reference on random data, with elements clamped on both sides; also for a
    channels_last input (the per-tensor reductions flatten in memory order), with a gradient of another layout,
    for an input that needs no gradient, and per tensor with the kernels run chunk by chunk (``chunked``: chunks
    of 100 elements, the last one short)."""
    if chunked:
        monkeypatch.setattr(quantizers, "CHUNK_ELEMENTS", 100)
    torch.manual_seed(4)
    shape = (6, 5, 7, 9)
    assert (quantizers._chunked_order(torch.zeros(shape), torch.tensor(1.0), None) is not None) == chunked
    q = LSQQuantizer(4, symmetric=symmetric, per_channel=per_channel, channels=shape[0], signed=signed,
                     abs_offset=abs_offset).to(dtype)
    data = torch.randn(shape, dtype=dtype) * 2 + (0 if signed else 1.5)
    q.calibrate(data)
    with torch.no_grad():  # tables moved off their calibrated values; outliers that clamp on both sides
        q.step.mul_(0.5 + torch.rand_like(q.step))
        if not symmetric:
            q.offset.add_(0.3 * torch.randn_like(q.offset))
        data[:, :, 0, :2] = torch.tensor([50.0, -50.0], dtype=dtype)
    plain, last = torch.contiguous_format, torch.channels_last
    for layout, grad_layout in [(plain, plain), (last, last), (last, plain)]:
        for input_grad in (True, False):
            x = data.contiguous(memory_format=layout).requires_grad_(input_grad)
            upstream = torch.randn(shape, dtype=dtype).contiguous(memory_format=grad_layout)
            results = []
            for quantize in (q.quantize, lambda t: _reference_quantize(q, t)):
                q.zero_grad(set_to_none=True)
                x.grad = None
                out = quantize(x)
                (out * upstream).sum().backward()
                grads = [x.grad, q.step.grad, q.offset.grad if isinstance(q.offset, nn.Parameter) else None]
                results.append([out.detach()] + grads)
            fast, reference = results
            tol = dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-5)
            for name, a, b in zip(("output", "x", "step", "offset"), fast, reference):
                assert (a is None) == (b is None), name
                if a is not None:
                    assert torch.allclose(a, b, **tol), (name, float((a - b).abs().max()))
            assert torch.count_nonzero(fast[1] if input_grad else fast[0]) > 0
    # the data reached below and above the levels of the active bit-width
    n, p = q.levels()
    with torch.no_grad():
        step, off = _reference_tables(q, data)
        rounded = torch.round((data - off) / step)
    assert bool((rounded < n).any()) and bool((rounded > p).any())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_straight_through_region_at_exact_ties(dtype):
    """Rounding breaks ties to even, so ``v = n - 0.5`` is inside ``[n, p]`` when ``n`` is even and ``v = p + 0.5``
    when ``p`` is; the fast backward's open bounds reproduce ``round(v) == clamp(round(v))`` exactly at every tie
    (signed and unsigned levels, odd and even ends: 1-bit signed is ``[-1, 0]``)."""
    for bits, signed in [(1, True), (2, True), (3, False), (4, True), (8, True), (8, False)]:
        n, p = integer_range(bits, signed)
        v = torch.arange(2 * n - 6, 2 * p + 7, dtype=dtype) / 2  # every half-integer and integer around [n, p]
        x = (v * 0.25).requires_grad_()  # step 0.25: (x - 0) / step is v exactly
        lsq_round(x, torch.tensor(0.25, dtype=dtype), None, n, p).backward(torch.ones_like(x))
        expected = (torch.round(v) == torch.round(v).clamp(n, p)).to(dtype)
        assert torch.equal(x.grad, expected), (bits, signed)
        assert float(expected[v == n - 0.5]) == float(n % 2 == 0) and float(expected[v == p + 0.5]) == float(p % 2 == 0)
