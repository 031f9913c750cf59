"""QuantNAS (methods.md 11A): a differentiable search over (operation, bit-width) pairs per layer.

The pieces, each what the released code does unless said otherwise:

* :class:`QuantConv` -- a bias-free convolution whose input is ReLU'd and quantized with HWGQ (fixed step per
  bit-width) and whose weights are quantized with LSQ (per output channel, :class:`LSQQuantizer` of
  :mod:`nastk.quantization.quantizers`, initialised to ``2 mean|W| / sqrt(Q_p)``). It runs one bit-width
  (``fixed``: a child, the final model) or a mixture over its bit options during the search:
  ``noise`` -- ``W~ = w_fp W + sum_b a_b (W + n_b(W))`` and the same for the input, ``w_fp = 1 / (|B| + 1)``,
  ``a_b = p_b / (sum p + w_fp)``, noisy copies detached (:mod:`nastk.quantization.noise`); or ``shared`` --
  ``W~ = sum_b a_b LSQ_b(W)``, ``x~ = sum_b a_b HWGQ_b(x)``, ``a_b = p_b / sum p``. The convolution runs once.
  The released code keeps the searched layers' shared-weights LSQ quantizers in a plain Python list (never
  registered: their steps are not trained, not saved, frozen at the initialisation from the random weights);
  ``shared_lsq="code_unregistered"`` reproduces that for the searched layers, the default registers them (the fixed
  8-bit layers are always registered). ``quantize_input=False``: a first layer, whose input (the image) is taken
  as it comes. :func:`quantize_convs` turns a float op's convolutions into QuantConvs (NB201's ReLU-Conv-BN),
  :class:`QuantLinear` is a classifier as a 1x1 QuantConv.
* :class:`OpBitsChoice` -- one searched layer, a :class:`~nastk.supernet.ChoicePoint` whose options are the
  (op, bits) pairs, op-major; an op without QuantConvs (skip, pooling, zero) is one option without bits. In a
  mixture every op runs once, a quantized one on the bit mixture of its own probabilities and scaled by their
  sum; a single path runs one op at one bit-width with real quantization. :class:`QuantMixedOp` is the SR space's
  (every candidate a :class:`QuantOp`); :func:`option_flops` measures any such supernet's search-time FLOPs.
* :func:`extract_child` / :func:`inherit_path` -- a supernet's child as the network the space's ``build()`` makes,
  holding the path's inherited weights and the LSQ rows of its bit-widths: what the (op, bits) supernets' ``extract``
  gives, so ``nastk export`` writes a state dict that loads into ``build()``. :func:`hwgq` runs as plain ops where no
  gradient is taken, so such a network also traces (TorchScript).
* :class:`ADQ` -- ``out = f(BN(x)) phi(std(s)) + s`` around a residual function (``phi`` a 1x1 conv on the
  per-sample standard deviation of the skip input, weight 1.5, bias 0).
* :func:`entropy_weight` / :func:`arch_entropy` -- the entropy regulariser and its schedule.
* :func:`search_bitops` / :func:`model_bitops` -- BitOps as the search computes them (linear in the bits,
  ``sum_b p FLOPs b``) and of a final model (``MACs b_w b_a``, :func:`~nastk.quantization.bitops.conv_bitops`);
  :func:`model_macs` the multiply-adds they weigh.
* :class:`QuantNASStep` -- the training step ``quantnas``: the ``darts`` step's first-order alpha update on
  held-out batches (alpha loss + entropy term + ``eta BitOps / BitOps_init``), then Adam on the weights. The task
  loss is the data module's: L1 on ``image_pairs`` (the ``sr`` space), cross-entropy on ``labelled`` images
  (``qnas-nb201``).
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from nastk.devices import HOST
from nastk.errors import CapabilityError, ConfigError
from nastk.options import Float, Int, Option, Text
from nastk.oneshot.context import seed_of
from nastk.oneshot.steps import Batch, DartsStep, StepOutput
from nastk.quantization.bitops import conv_bitops, layer_macs
from nastk.quantization.noise import DISTRIBUTIONS, NoiseSource
from nastk.quantization.quantizers import LSQQuantizer
from nastk.supernet import ChoicePoint

#: HWGQ's fixed activation step per bit-width (the released code's table)
HWGQ_STEPS = {2: 0.6356, 3: 0.3721, 4: 0.2131, 8: 0.0203}
#: how a searched layer mixes its bit-widths during the search
QUANTIZATION_MODES = ("noise", "shared")
#: the shared-weights LSQ steps: registered (the paper's intent) or the released code's unregistered list
SHARED_LSQ = ("registered", "code_unregistered")
#: the entropy schedules: QuantNAS' w1 w2, a constant weight after the warm-up, none
ENTROPY_SCHEDULES = ("quantnas", "constant", "off")


def check_bits_options(bits: Sequence[int]) -> Tuple[int, ...]:
    bits = tuple(int(b) for b in bits)
    unknown = [b for b in bits if b not in HWGQ_STEPS]
    if not bits or unknown or len(set(bits)) != len(bits):
        raise ConfigError(f"QuantNAS bit-widths must be distinct values among {sorted(HWGQ_STEPS)} (HWGQ's table), "
                          f"got {list(bits)}")
    return bits


class _HWGQ(torch.autograd.Function):
    """Round to the fixed step within the clip range; straight-through gradient inside it, zero outside."""

    @staticmethod
    def forward(ctx, x, step: float, top: float):
        inside = (x >= 0) & (x <= top)
        ctx.save_for_backward(inside)
        return torch.round(x.clamp(0.0, top) / step) * step

    @staticmethod
    def backward(ctx, grad):
        (inside,) = ctx.saved_tensors
        return grad * inside, None, None


def hwgq(x: torch.Tensor, bits: int) -> torch.Tensor:
    """HWGQ activation quantization: clip to ``[0, step (2^b - 1)]``, round to the fixed step, straight through.

    Where no gradient is taken (inference, a traced export) the same values come from plain ops: the custom
    backward is not needed there, and ``torch.jit.trace`` cannot save a Python autograd Function."""
    step = HWGQ_STEPS[bits]
    top = step * (2 ** bits - 1)
    if torch.jit.is_tracing() or not (torch.is_grad_enabled() and x.requires_grad):
        return torch.round(x.clamp(0.0, top) / step) * step
    return _HWGQ.apply(x, step, top)


def lsq_initial_steps(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """QuantNAS' LSQ initial step per output channel, ``2 mean|W| / sqrt(Q_p)``."""
    q_p = 2 ** (bits - 1) - 1
    return 2 * weight.detach().abs().flatten(1).mean(1) / math.sqrt(q_p)


class QuantizationState:
    """Shared by every quantized layer of one supernet: how mixtures are quantized, and the noise source."""

    def __init__(self, mode: str = "noise", distribution: str = "normal"):
        self.mode = mode
        self.noise = NoiseSource(distribution)


class QuantConv(nn.Module):
    """A bias-free convolution with HWGQ inputs and LSQ weights at one of ``bits`` or mixed over them."""

    def __init__(self, c_in: int, c_out: int, kernel: int, bits: Sequence[int], state: QuantizationState,
                 groups: int = 1, stride: int = 1, padding: Optional[int] = None, shared_lsq: str = "registered",
                 quantize_input: bool = True):
        super().__init__()
        if shared_lsq not in SHARED_LSQ:
            raise ConfigError(f"unknown shared_lsq {shared_lsq!r}; known: {', '.join(SHARED_LSQ)}")
        if not quantize_input and len(bits) != 1:
            raise ConfigError("a QuantConv that takes its input as it comes (the network's first layer) has one bit-width")
        #: False: the input is used as it comes, neither ReLU'd nor HWGQ-quantized (a first layer: the image's
        #: pixels are 8-bit already, affinely normalised, and signed after the normalisation)
        self.quantize_input = bool(quantize_input)
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2 if padding is None else padding,
                              groups=groups, bias=False)
        self.bits = check_bits_options(bits)
        self.state = state
        quantizer = LSQQuantizer(bits=self.bits[0], symmetric=True, per_channel=True, learn_offset=False,
                                 channels=c_out, signed=True, bit_options=self.bits)
        with torch.no_grad():
            for row, b in enumerate(self.bits):
                quantizer.step[row] = lsq_initial_steps(self.conv.weight, b)
                quantizer.initialized[row] = True
        if shared_lsq == "registered":
            self.weight_quantizer = quantizer
        else:  # the released code: a plain list, so the steps are neither parameters nor state
            quantizer.step.requires_grad_(False)
            self._unregistered = [quantizer]
        #: ("fixed", bits) or ("mixture", (probabilities over self.bits, allowed mask)); set by the owning op
        self.setting: Tuple[str, Any] = ("fixed", self.bits[-1])

    @property
    def lsq(self) -> LSQQuantizer:
        if hasattr(self, "weight_quantizer"):
            return self.weight_quantizer
        quantizer = self._unregistered[0]
        if quantizer.step.device != self.conv.weight.device:  # not a submodule: .to() does not reach it
            self._unregistered[0] = quantizer = quantizer.to(self.conv.weight.device)
        return quantizer

    def quantized_weight(self, bits: int) -> torch.Tensor:
        quantizer = self.lsq
        quantizer.bits = bits
        return quantizer.quantize(self.conv.weight)

    def _conv(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, weight, None, self.conv.stride, self.conv.padding, self.conv.dilation, self.conv.groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kind, value = self.setting
        if not self.quantize_input:
            return self._conv(x, self.quantized_weight(value))
        x = F.relu(x)
        if kind == "fixed":
            return self._conv(hwgq(x, value), self.quantized_weight(value))
        probs, allowed = value
        bits = [(i, b) for i, b in enumerate(self.bits) if allowed[i]]
        weight = self.conv.weight
        if self.state.mode == "noise":
            # sum_b a_b (T + n_b(T)), T detached = (sum_b a_b) T + sum_b a_b n_b(T): the same value and gradients
            w_fp = 1.0 / (len(bits) + 1)
            index = [i for i, _ in bits]
            a = probs[index] / (probs[index].sum() + w_fp)
            noise, widths = self.state.noise, [b for _, b in bits]
            w_mix = w_fp * weight + a.sum() * weight.detach() + noise.mixture(weight, a, widths)
            x_mix = w_fp * x + a.sum() * x.detach() + noise.mixture(x, a, widths)
        else:
            a = probs / sum(probs[i] for i, _ in bits)
            w_mix = sum(a[i] * self.quantized_weight(b) for i, b in bits)
            x_mix = sum(a[i] * hwgq(x, b) for i, b in bits)
        return self._conv(x_mix, w_mix)

    def extra_repr(self) -> str:
        return f"bits={self.bits}"


def fixed_conv(c_in: int, c_out: int, kernel: int, state: QuantizationState, bits: int = 8, **options) -> QuantConv:
    """A layer the search does not touch (QuantNAS' fixed 8-bit 1x1 / 3x3 / attention convolutions)."""
    return QuantConv(c_in, c_out, kernel, (bits,), state, **options)


def quant_conv_like(conv: nn.Conv2d, bits: Sequence[int], state: QuantizationState, **options) -> QuantConv:
    """A :class:`QuantConv` of ``conv``'s geometry (channels, kernel, stride, padding, groups) at ``bits``: how a
    float network's layer becomes a quantized one (its float weights are not carried over: a search starts fresh)."""
    if conv.bias is not None or conv.dilation != (1, 1) or conv.kernel_size[0] != conv.kernel_size[1]:
        raise ConfigError(f"QuantConv replaces bias-free, undilated square convolutions, not {conv}")
    return QuantConv(conv.in_channels, conv.out_channels, conv.kernel_size[0], bits, state, groups=conv.groups,
                     stride=conv.stride[0], padding=conv.padding[0], **options)


def quantize_convs(module: nn.Module, bits: Sequence[int], state: QuantizationState, **options) -> nn.Module:
    """Replace (in place) every float ``nn.Conv2d`` below ``module`` that is not a QuantConv's own by
    :func:`quant_conv_like` at ``bits``: a float op (NB201's ReLU-Conv-BN) becomes its quantized form, its
    ReLU and BatchNorm kept. Returns ``module``."""
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Conv2d):
            setattr(module, name, quant_conv_like(child, bits, state, **options))
        elif not isinstance(child, QuantConv):
            quantize_convs(child, bits, state, **options)
    return module


class QuantLinear(nn.Module):
    """A bias-free linear layer (a classifier on pooled features) as a 1x1 :class:`QuantConv` on a 1x1 map."""

    def __init__(self, c_in: int, c_out: int, bits: Sequence[int], state: QuantizationState, **options):
        super().__init__()
        self.conv = QuantConv(c_in, c_out, 1, bits, state, **options)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.view(x.shape[0], -1, 1, 1)).flatten(1)


def quant_convs(module: nn.Module) -> List[QuantConv]:
    return [m for m in module.modules() if isinstance(m, QuantConv)]


def set_quant_setting(module: nn.Module, kind: str, value) -> None:
    """Every QuantConv of ``module`` (one candidate op) runs ``("fixed", bits)`` or ``("mixture", (probs, allowed))``."""
    for conv in quant_convs(module):
        conv.setting = (kind, value)


def parse_op(name: str) -> Tuple[str, int, int]:
    """``simple_3x3`` / ``simple_3x3_grouped_2`` / ``growth1_5x5`` -> (kind, kernel, groups)."""
    parts = name.split("_")
    try:
        kind, size = parts[0], parts[1]
        kernel = int(size.split("x")[0])
        groups = int(parts[3]) if len(parts) == 4 and parts[2] == "grouped" else 1
        if kind not in ("simple", "growth1") or len(parts) not in (2, 4) or size != f"{kernel}x{kernel}":
            raise ValueError(name)
    except (IndexError, ValueError):
        raise ConfigError(f"unknown QuantNAS operation {name!r} (simple_KxK, simple_KxK_grouped_G, growth1_KxK)") from None
    return kind, kernel, groups


class QuantOp(nn.Sequential):
    """One candidate operation of a searched layer: ``simple`` (one k x k conv, optionally grouped) or
    ``growth1`` (two k x k convs ``C_in -> C -> C_out``); all its convs share the layer's bit-width."""

    def __init__(self, name: str, c_in: int, c_out: int, C: int, bits: Sequence[int], state: QuantizationState,
                 shared_lsq: str = "registered"):
        kind, kernel, groups = parse_op(name)
        if c_in % groups or c_out % groups:
            raise ConfigError(f"operation {name} needs channels divisible by {groups}, got {c_in} -> {c_out}")
        if kind == "simple":
            convs = [QuantConv(c_in, c_out, kernel, bits, state, groups=groups, shared_lsq=shared_lsq)]
        else:
            convs = [QuantConv(c_in, C, kernel, bits, state, shared_lsq=shared_lsq),
                     QuantConv(C, c_out, kernel, bits, state, shared_lsq=shared_lsq)]
        super().__init__(*convs)
        self.op_name = name

    def set_setting(self, kind: str, value) -> None:
        set_quant_setting(self, kind, value)


class OpBitsChoice(ChoicePoint):
    """A searched layer over (op, bits) options, op-major: a candidate with QuantConvs (a quantized op) is one
    option per bit-width of ``bits`` (option ``(op, b)``), a candidate without (skip, pooling, zero) one option.

    In a mixture every candidate runs once: a quantized op on the bit mixture of its own probabilities, its
    output scaled by their sum (QuantNAS); any other by its weight. A single path runs one op at one bit-width
    with real quantization.
    """

    def __init__(self, decision, candidates: Sequence[nn.Module], bits: Sequence[int]):
        super().__init__(decisions=(decision,))
        self.bits = check_bits_options(bits)
        self.candidates = nn.ModuleList(candidates)
        #: each candidate's QuantConvs (empty: an op without bits), found once
        self.convs = [quant_convs(candidate) for candidate in self.candidates]
        if any({conv.bits for conv in convs} - {self.bits} for convs in self.convs):
            raise ConfigError(f"every QuantConv of a searched layer's ops takes the layer's bits {list(self.bits)}")
        #: per candidate, the slice of the options it owns; per option, (candidate, index into bits or None)
        self.spans: List[slice] = []
        options: List[Tuple[int, Optional[int]]] = []
        for o, convs in enumerate(self.convs):
            self.spans.append(slice(len(options), len(options) + (len(self.bits) if convs else 1)))
            options += [(o, j) for j in range(len(self.bits))] if convs else [(o, None)]
        self.options: Tuple[Tuple[int, Optional[int]], ...] = tuple(options)
        self.value: Any = 0
        self.allowed: Sequence[bool] = (True,) * len(self.options)

    def configure(self, values, allowed) -> None:
        (self.value,), (self.allowed,) = values, allowed

    def candidate_parameters(self, option: int) -> List[nn.Parameter]:
        """An op's weights serve all its bit-widths (shared weights), so every (op, b) option lists them."""
        return list(self.candidates[self.options[option][0]].parameters())

    def _set(self, candidate: int, kind: str, value) -> None:
        for conv in self.convs[candidate]:
            conv.setting = (kind, value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(self.value, torch.Tensor):
            o, j = self.options[int(self.value)]
            if j is not None:
                self._set(o, "fixed", self.bits[j])
            return self.candidates[o](x)
        out = 0
        for o, (candidate, span) in enumerate(zip(self.candidates, self.spans)):
            weights, allowed = self.value[span], [bool(a) for a in self.allowed[span]]
            if not any(allowed):
                continue
            if self.convs[o]:  # a quantized op mixes its own bit-widths
                self._set(o, "mixture", (weights, allowed))
            out = out + sum(w for w, ok in zip(weights, allowed) if ok) * candidate(x)
        return out


class QuantMixedOp(OpBitsChoice):
    """A searched layer of the SR space: every candidate a :class:`QuantOp` (so option ``o * len(bits) + j``)."""

    def __init__(self, decision, ops: Sequence[str], bits: Sequence[int], c_in: int, c_out: int, C: int,
                 state: QuantizationState, shared_lsq: str = "registered"):
        bits = check_bits_options(bits)
        super().__init__(decision, [QuantOp(op, c_in, c_out, C, bits, state, shared_lsq) for op in ops], bits)
        self.ops = tuple(ops)


# --- a supernet's child as the network build() makes ------------------------------------------------------
def extract_child(supernet, arch, network: nn.Module) -> nn.Module:
    """``supernet.space.build(arch, supernet.num_classes, **supernet.child_build_options())`` holding the inherited
    weights of the path ``arch`` (an Architecture or one option per decision) of ``network`` (the supernet's module
    that build() mirrors): what ``extract`` gives for the (op, bits) spaces, so a child's state dict loads into
    build() and its output equals the supernet's for that path. The supernet's own path is kept."""
    from nastk.architecture import Architecture

    previous = supernet.current_path
    choices = supernet.set_active(arch)
    try:
        child_arch = arch if isinstance(arch, Architecture) else supernet.arch_of_path(choices)
        child = supernet.space.build(child_arch, supernet.num_classes, **supernet.child_build_options())
        child.to(next(network.parameters()).device)
        inherit_path(child, network, ignore=supernet.arch_parameters())
    finally:
        if previous:
            supernet.set_path(previous)
    return child.train(supernet.training)


@torch.no_grad()
def inherit_path(child: nn.Module, parent: nn.Module, ignore: Sequence[torch.Tensor] = ()) -> None:
    """Copy every weight and buffer of ``parent``'s current single path into ``child``, the stand-alone network of
    that path: a searched layer (:class:`OpBitsChoice`) gives its active candidate's weights, a :class:`QuantConv`
    its weights and the LSQ row of the child's bit-width, any other module its own tensors by name (but those in
    ``ignore``: architecture parameters). Refused (CapabilityError) where the two do not match or a tensor of
    ``child`` is left unset."""
    written: set = set()
    _inherit(child, parent, "", written, {id(t) for t in ignore})
    unset = [name for name, tensor in child.state_dict(keep_vars=True).items() if id(tensor) not in written]
    if unset:
        raise CapabilityError(f"the supernet's path left {', '.join(unset[:3])} of the child unset")


def _inherit(child: nn.Module, parent: nn.Module, where: str, written: set, ignore: set,
             bits: Optional[int] = None) -> None:
    def mismatch(what: str):
        return CapabilityError(f"the supernet's path does not match the child at {where or 'the top'}: {what}")

    if isinstance(parent, OpBitsChoice):
        if isinstance(parent.value, torch.Tensor):
            raise mismatch("the supernet runs a mixture, not one path")
        o, j = parent.options[int(parent.value)]
        return _inherit(child, parent.candidates[o], where, written, ignore, None if j is None else parent.bits[j])
    if isinstance(parent, QuantConv):
        same = isinstance(child, QuantConv) and child.conv.weight.shape == parent.conv.weight.shape
        if not same or len(child.bits) != 1:
            raise mismatch(f"{type(child).__name__} is not a one-bit-width QuantConv of the same shape")
        (width,) = child.bits
        if (bits is not None and bits != width) or width not in parent.bits:
            raise mismatch(f"the child runs {width} bits, the path {bits}")
        row, source, target = parent.bits.index(width), parent.lsq, child.lsq
        child.conv.weight.copy_(parent.conv.weight)
        for name in ("step", "offset", "initialized"):
            getattr(target, name)[0] = getattr(source, name)[row]
        target.signed_flag.copy_(source.signed_flag)
        written.update(id(t) for t in (child.conv.weight, target.step, target.offset, target.initialized,
                                       target.signed_flag))
        return
    mine = {**dict(child.named_parameters(recurse=False)), **dict(child.named_buffers(recurse=False))}
    theirs = {name: tensor for name, tensor in [*parent.named_parameters(recurse=False),
                                                 *parent.named_buffers(recurse=False)] if id(tensor) not in ignore}
    if set(mine) != set(theirs) or any(mine[k].shape != theirs[k].shape for k in mine):
        raise mismatch(f"tensors {sorted(mine)} vs the supernet's {sorted(theirs)}")
    for name, tensor in mine.items():
        tensor.copy_(theirs[name])
        written.add(id(tensor))
    children = dict(child.named_children())
    for name, module in parent.named_children():
        if name not in children:
            raise mismatch(f"no submodule {name!r}")
        _inherit(children[name], module, f"{where}.{name}".lstrip("."), written, ignore, bits)


class ADQ(nn.Module):
    """Adaptive Deviation for Quantization around a residual function: ``f(BN(x)) phi(std(x)) + x``."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels)
        self.phi = nn.Conv2d(1, 1, 1)
        with torch.no_grad():
            self.phi.weight.fill_(1.5)
            self.phi.bias.zero_()

    def forward(self, residual, x: torch.Tensor) -> torch.Tensor:
        deviation = x.flatten(1).std(dim=1).view(-1, 1, 1, 1)
        return residual(self.norm(x)) * self.phi(deviation) + x


# --- the regularisers ------------------------------------------------------------------------------------
def entropy_weight(epoch: int, epochs: int, warmup: int, schedule: str = "quantnas") -> float:
    """``w1(e) w2(e)``: 0 before the alpha warm-up ``W``; ``w1 = (e - W) / (E - 1 - W)``; ``w2 = 0`` during the
    first quarter ``q = floor((E - W) / 4)`` of the post-warm-up epochs, then ``log_{E-q-W+1}(e - q - W + 2)``
    (both reach 1 at the last epoch). ``constant``: 1 after the warm-up; ``off``: 0."""
    if schedule not in ENTROPY_SCHEDULES:
        raise ConfigError(f"unknown entropy schedule {schedule!r}; known: {', '.join(ENTROPY_SCHEDULES)}")
    if schedule == "off" or epoch < warmup:
        return 0.0
    if schedule == "constant":
        return 1.0
    span = epochs - 1 - warmup
    w1 = (epoch - warmup) / span if span > 0 else 1.0
    q = (epochs - warmup) // 4
    if epoch - warmup < q:
        return 0.0
    w2 = math.log(epoch - q - warmup + 2) / math.log(epochs - q - warmup + 1)
    return w1 * w2


def arch_entropy(weights: torch.Tensor) -> torch.Tensor:
    """``H = sum over layers of -sum p log p`` of the architecture distribution (rows of ``weights``)."""
    return -(weights * weights.clamp_min(1e-12).log()).sum()


def search_bitops(weights: torch.Tensor, flops: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """QuantNAS' search-time BitOps: ``sum_layers sum_(op,b) p[op, b] FLOPs[op] b`` (linear in ``b``), with
    ``flops[d, o]`` and ``bits[d, o]`` the FLOPs (2 MACs) and bit-width of option ``o`` of decision ``d``."""
    return (weights * flops * bits).sum()


def op_macs(op: nn.Module, output_hw: Sequence[int]) -> int:
    """Multiply-adds of a candidate op's QuantConvs (stride 1: every conv's output has the layer's size)."""
    return sum(layer_macs(conv.conv, output_hw) for conv in quant_convs(op))


@torch.no_grad()
def option_flops(supernet, input_shape: Sequence[int]) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(flops, bits)``, each ``(decisions, options)``, of a supernet of :class:`OpBitsChoice` layers whose
    candidates keep their input's size (stride 1): FLOPs (2 MACs) of every (op, b) option, summed over the layers
    that share its decision, at the sizes one single-path forward of zeros of ``input_shape`` gives them, and its
    bit-width; an option without QuantConvs counts 0 and 0. What search-time BitOps weighs with the probabilities."""
    points = [p for p in supernet.choice_points() if isinstance(p, OpBitsChoice)]
    sizes: Dict[int, Tuple[int, int]] = {}
    handles = [p.register_forward_pre_hook(lambda m, inputs: sizes.__setitem__(id(m), tuple(inputs[0].shape[-2:])))
               for p in points]
    was_training, previous = supernet.training, supernet.current_path
    try:
        supernet.eval()
        supernet.set_active([int(i) for i in np.argmax(supernet.allowed, axis=1)])  # any allowed path: sizes only
        device = next(supernet.parameters()).device
        supernet(torch.zeros(tuple(input_shape), device=device))
    finally:
        for handle in handles:
            handle.remove()
        supernet.train(was_training)
        if previous:
            supernet.set_path(previous)
    flops, bits = torch.zeros(supernet.allowed.shape, device=HOST), torch.zeros(supernet.allowed.shape, device=HOST)
    for point in points:
        for option, (o, j) in enumerate(point.options):
            if j is not None:
                flops[point.decision, option] += 2 * op_macs(point.candidates[o], sizes[id(point)])
                bits[point.decision, option] = point.bits[j]
    return flops, bits


@torch.no_grad()
def model_bitops(model: nn.Module, input_shape: Sequence[int]) -> int:
    """BitOps of a model in single-path / fixed form (``MACs b_w b_a`` summed over its quantized convs), from
    one forward of zeros of ``input_shape`` (every :class:`QuantConv` records its output size)."""
    return int(sum(conv_bitops(conv.conv, hw, bits, bits) for conv, hw, bits in _fixed_layers(model, input_shape)))


@torch.no_grad()
def model_macs(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-adds of a model's quantized convs (what BitOps weighs with bits), as :func:`model_bitops` runs it
    (QuantConvs call ``F.conv2d`` themselves, so hooks on ``nn.Conv2d`` never see them)."""
    return int(sum(layer_macs(conv.conv, hw) for conv, hw, _ in _fixed_layers(model, input_shape)))


def _fixed_layers(model: nn.Module, input_shape: Sequence[int]) -> List[Tuple[QuantConv, Tuple[int, int], int]]:
    """``(conv, output size, bits)`` of every QuantConv one eval forward of zeros runs (a mixture is refused)."""
    seen: List[Tuple[QuantConv, Tuple[int, int], int]] = []

    def hook(module, _inputs, output):
        kind, bits = module.setting
        if kind != "fixed":
            raise CapabilityError("model_bitops needs a single path (one bit-width per layer), not a mixture")
        seen.append((module, tuple(output.shape[-2:]), bits))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, QuantConv)]
    was_training = model.training
    try:
        model.eval()
        device = next(model.parameters()).device
        model(torch.zeros(tuple(input_shape), device=device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return seen


# --- the training step ------------------------------------------------------------------------------------
def check_scale(config, supernet) -> None:
    """The network's upscaling factor must be the one the image pairs are made with (one clear line if not)."""
    scale = getattr(supernet, "scale", None)
    if scale is None or config.data != "image_pairs":
        return
    data_scale = int(config.data_options.get("scale", 2))
    if data_scale != scale:
        raise ConfigError(f"the supernet upscales x{scale} but the image_pairs data are made at scale {data_scale}: "
                          f"give the same factor to --upscale and --scale")


class QuantNASStep(DartsStep):
    """QuantNAS' search step (methods.md 11A): per batch, from the alpha warm-up epoch on, a first-order alpha
    step on a held-out batch (task loss + ``c w1(e) w2(e) H`` + ``eta BitOps(alpha) / BitOps_init``,
    Adam betas (0.5, 0.999), no decay), then a weight step on the mixture (task loss only, Adam with the run's
    ``lr`` / ``weight_decay``, per-epoch cosine to ``lr_min``, gradient-norm clip ``grad_clip``). The task loss is
    the run's (its data module's: L1 for super-resolution pairs, cross-entropy for labelled images).

    ``quantization`` picks noise (the paper's method) or shared-weights quantization of the mixtures. ADQ and the
    shared-weights LSQ registration are part of the network (supernet options ``adq`` and ``shared_lsq``). Noise
    is drawn from a generator seeded by (seed, epoch), so a resumed run continues exactly. The genotype is the
    argmax (op, bits) per layer of the last epoch, as the released code keeps it.
    """

    name = "quantnas"
    held_out_fraction = 0.5
    OPTIONS = (Option("quantization", Text(choices=QUANTIZATION_MODES), "search-time quantization of the mixtures: "
                      "noise (QuantNAS) or shared (shared-weights LSQ + HWGQ baseline)"),
               Option("noise_distribution", Text(choices=DISTRIBUTIONS), "eps of the noise: N(0,1)/2 or U(-1/2,1/2)"),
               Option("bitops_penalty", Float(minimum=0), "eta: weight of BitOps(alpha) / BitOps_init in the alpha loss"),
               Option("entropy_coef", Float(minimum=0), "c: weight of the entropy of the architecture distribution"),
               Option("entropy_schedule", Text(choices=ENTROPY_SCHEDULES), "w1 w2 schedule of the entropy term"),
               Option("arch_lr", Float(above=0), "Adam learning rate of alpha"),
               Option("arch_warmup_epochs", Int(minimum=0), "epochs before alpha learns (QuantNAS: 9 of 20)"),
               Option("init_std", Float(minimum=0), "standard deviation of alpha's initial logits"))
    #: QuantNAS' search recipe (methods.md 11A)
    RECIPE = {"epochs": 20, "batch_size": 32, "lr": 1e-3, "lr_min": 0.0, "weight_decay": 3e-8, "grad_clip": 5.0}
    #: seeded stream of the noise generator
    NOISE_STREAM = 20

    def __init__(self, context, quantization: str = "noise", noise_distribution: str = "normal",
                 bitops_penalty: float = 0.0, entropy_coef: float = 1e-3, entropy_schedule: str = "quantnas",
                 arch_lr: float = 3e-4, arch_warmup_epochs: int = 9, init_std: float = 1e-3, **options):
        supernet = context.supernet
        if not callable(getattr(supernet, "search_flops", None)) or not hasattr(supernet, "quantization"):
            raise CapabilityError(f"the quantnas step needs a supernet of (op, bits) layers (--space sr or qnas-nb201), "
                                  f"not {type(supernet).__name__}")
        if quantization not in QUANTIZATION_MODES:
            raise ConfigError(f"unknown quantization {quantization!r}; known: {', '.join(QUANTIZATION_MODES)}")
        if noise_distribution not in DISTRIBUTIONS:
            raise ConfigError(f"unknown noise distribution {noise_distribution!r}; known: {', '.join(DISTRIBUTIONS)}")
        entropy_weight(0, 1, 0, entropy_schedule)  # checks the name
        check_scale(context.config, supernet)
        if bitops_penalty < 0 or entropy_coef < 0:
            raise ConfigError("bitops_penalty and entropy_coef must be at least 0")
        super().__init__(context, order=1, arch_lr=arch_lr, arch_betas=(0.5, 0.999), arch_weight_decay=0.0,
                         arch_warmup_epochs=arch_warmup_epochs, init_std=init_std, **options)
        config = context.config
        self.optimizer = torch.optim.Adam(supernet.weights(), lr=config.lr, weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=config.epochs,
                                                                    eta_min=config.lr_min)
        self.quantization, self.noise_distribution = quantization, noise_distribution
        self.bitops_penalty, self.entropy_coef, self.entropy_schedule = float(bitops_penalty), float(entropy_coef), entropy_schedule
        self.bitops_init: Optional[float] = None
        self.last_terms: Dict[str, float] = {}

    def start_epoch(self, epoch: int) -> None:
        super().start_epoch(epoch)
        supernet, config = self.context.supernet, self.context.config
        supernet.quantization.mode = self.quantization
        supernet.quantization.noise.distribution = self.noise_distribution
        supernet.quantization.noise.seed(seed_of(config.seed, epoch, self.NOISE_STREAM), self.context.device)

    def entropy_weight(self) -> float:
        return entropy_weight(self.epoch, self.context.config.epochs, self.arch_warmup_epochs, self.entropy_schedule)

    def expected_bitops(self, weights: torch.Tensor) -> torch.Tensor:
        flops, bits = self.context.supernet.search_flops()
        return search_bitops(weights, flops.to(weights.device), bits.to(weights.device))

    def _loss(self, x, y, detach_alpha: bool) -> torch.Tensor:
        loss = super()._loss(x, y, detach_alpha)
        if detach_alpha:
            return loss
        weights = self.weights_now()
        entropy, bitops = arch_entropy(weights), self.expected_bitops(weights)
        if self.bitops_init is None:
            self.bitops_init = float(bitops.detach())
        c = self.entropy_coef * self.entropy_weight()
        self.last_terms = {"arch_task_loss": float(loss.detach()), "entropy": float(entropy.detach()),
                           "entropy_weight": c, "bitops_ratio": float(bitops.detach()) / self.bitops_init}
        return loss + c * entropy + self.bitops_penalty * bitops / self.bitops_init

    def step(self, batch: Batch) -> StepOutput:
        out = super().step(batch)
        if self.updates_alpha() and self.last_terms:
            out.metrics.update({k: self.last_terms[k] for k in ("entropy", "bitops_ratio")})
        return out

    def summary(self) -> Dict[str, Any]:
        weights = self.weights_now().detach()
        return {**super().summary(), "arch_entropy_sum": round(float(arch_entropy(weights)), 6),
                "entropy_weight": self.entropy_coef * self.entropy_weight(),
                "expected_bitops": float(self.expected_bitops(weights))}

    def state_dict(self) -> Dict[str, Any]:
        return {**super().state_dict(), "bitops_init": self.bitops_init}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.bitops_init = state.get("bitops_init")
