"""Fake quantizers as modules whose bit-width a supernet switches at run time (methods.md 11A, 11B).

* :class:`UniformQuantizer`: the tensor's own range (per tensor or per channel), symmetric or asymmetric,
  rounded with a straight-through estimator; no parameters.
* :class:`LSQQuantizer`: LSQ with a learnable step (and, asymmetric, a learnable real-valued offset) per bit
  option, as EQ-Net's ``base_lsq.py`` configures it: ``x^ = clamp(round((x - b) / (s + eps)), n, p) (s + eps) + b``
  with the step's gradient scaled by ``1 / sqrt(Q_p numel)`` (per channel ``2 / sqrt(Q_p numel_per_channel)``).
  One table row per bit option, so one module serves every bit-width of a supernet; ``bits = 32`` is the identity.
* :class:`ElasticQuantizer`: one :class:`LSQQuantizer` per (granularity, symmetry) form, the form and bits
  being run-time attributes: EQ-Net's elastic quantizer (bits x granularity x symmetry).
* :func:`quantization_noise_std`: QuantNAS' noise scale ``range / (2 (2^b - 1))``.

Tables are initialised from data by :func:`calibrate` (EQ-Net: one forward of a calibration batch; per bit,
shrink the range toward zero and keep the candidate minimising ``mean |x - x^|^2.4``). Do it before the
optimiser is built and before DDP wraps the model (DDP then broadcasts rank 0's tables).
"""
from __future__ import annotations

import contextlib
import functools
import math
from typing import Iterable, Optional, Sequence, Tuple

import torch
from torch import nn

from nastk.errors import ConfigError

#: bit-width that means "not quantized"
FULL_PRECISION = 32
#: EQ-Net's bit options (2..8)
DEFAULT_BIT_OPTIONS = (2, 3, 4, 5, 6, 7, 8)
#: EQ-Net's step epsilon
STEP_EPS = 1e-6
#: EQ-Net's calibration error exponent
INIT_ERROR_POWER = 2.4
#: elements per channel the calibration error is measured on
CALIBRATION_ELEMENTS = 1024
#: stride of the coarse pass of the per-tensor shrink search
COARSE_STRIDE = 8
#: elements per chunk of the eager per-tensor LSQ kernels (1 MiB of float32: a chunk and its temporary stay in cache)
CHUNK_ELEMENTS = 1 << 18
#: compiled kernel variants (shapes x layouts x bit-widths) kept by :func:`use_compiled_kernels`
COMPILED_SHAPES = 256


def check_bits(bits, options: Optional[Sequence[int]] = None, what: str = "bits") -> int:
    """``bits`` as an int in 1..16 or 32 (and among ``options`` when given); one clear error otherwise."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not (1 <= bits <= 16 or bits == FULL_PRECISION):
        raise ConfigError(f"{what} must be an integer in 1..16 or 32, got {bits!r}")
    if options is not None and bits != FULL_PRECISION and bits not in options:
        raise ConfigError(f"{what}={bits} is not among this quantizer's bit options {tuple(options)} (or 32)")
    return bits


def quantization_noise_std(value_range, bits: int):
    """Standard deviation of QuantNAS' quantization noise: ``range / (2 (2^b - 1))`` (the noise is
    ``range / (2^b - 1) * eps`` with ``eps ~ N(0, 1) / 2``)."""
    check_bits(bits)
    return value_range / (2 * (2 ** bits - 1))


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round with the straight-through estimator (identity gradient)."""
    return x + (torch.round(x) - x).detach()


def scale_gradient(x: torch.Tensor, scale: float) -> torch.Tensor:
    """``x`` in the forward pass, gradient multiplied by ``scale`` in the backward pass (LSQ)."""
    return x * scale + (x - x * scale).detach()


def _scaled(x, step, offset, out=None):
    """``v = (x - offset) / step`` (``offset`` None: zero), into ``out`` (None: a fresh tensor)."""
    return torch.div(x, step, out=out) if offset is None else torch.sub(x, offset, out=out).div_(step)


def _memory_order(t: torch.Tensor):
    """``t``'s dimensions from the outermost in memory to the innermost."""
    return sorted(range(t.dim()), key=lambda d: -t.stride(d))


def _chunked_order(x, step, offset):
    """:func:`_memory_order` of ``x`` when the eager kernels run it in chunks: a per-tensor quantizer, ``x`` on the
    CPU, dense and at least two :data:`CHUNK_ELEMENTS` long; else None. Chunks of the memory-order flattening are
    then quantized one after the other: every pass after a chunk's first finds its data in cache, and the
    backward's temporary is one chunk, reused, not a fresh full-size tensor (on a CPU, the in-place passes over a
    whole activation and the page faults of a fresh one cost about as much as the arithmetic; an accelerator would
    only pay more launches)."""
    if step.dim() or (offset is not None and offset.dim()) or not x.is_floating_point() \
            or x.device.type != "cpu" or x.numel() < 2 * CHUNK_ELEMENTS:
        return None
    order = _memory_order(x)
    return order if x.permute(order).is_contiguous() else None


def _chunks(order, *tensors):
    """Matching chunks of the ``order``-flattenings of ``tensors`` (views where a tensor has ``order``'s layout)."""
    flat = [t.permute(order).reshape(-1) for t in tensors]
    return [[f[i:i + CHUNK_ELEMENTS] for f in flat] for i in range(0, flat[0].numel(), CHUNK_ELEMENTS)]


def _lsq_forward(x, step, offset, n: int, p: int, out=None):
    """``clamp(round(v), n, p) step + offset``: the first pass into ``out`` (None: a fresh tensor), the others in
    place on it."""
    out = _scaled(x, step, offset, out).round_().clamp_(n, p).mul_(step)
    return out if offset is None else out.add_(offset)


def _lsq_forward_in_chunks(x, step, offset, n: int, p: int):
    """:func:`_lsq_forward`, chunk by chunk where :func:`_chunked_order` says so."""
    order = _chunked_order(x, step, offset)
    if order is None:
        return _lsq_forward(x, step, offset, n, p)
    out = torch.empty_like(x)  # x's layout: its order-flattening is a view
    for x_part, out_part in _chunks(order, x, out):
        _lsq_forward(x_part, step, offset, n, p, out_part)
    return out


@functools.lru_cache(maxsize=None)
def _open_bounds(n: int, p: int, dtype: torch.dtype) -> Tuple[float, float]:
    """``(lo, hi)`` in ``dtype`` with ``lo < v < hi`` exactly when ``n <= round(v) <= p``; ``round`` breaks ties
    to even, so a tie ``n - 0.5`` (``p + 0.5``) is inside when ``n`` (``p``) is even: the bound then moves one
    representable value outwards."""
    lo, hi = torch.tensor(n - 0.5, dtype=dtype), torch.tensor(p + 0.5, dtype=dtype)
    if torch.round(lo) >= n:
        lo = torch.nextafter(lo, torch.tensor(-math.inf, dtype=dtype))
    if torch.round(hi) <= p:
        hi = torch.nextafter(hi, torch.tensor(math.inf, dtype=dtype))
    return float(lo), float(hi)


def _sum_of_products(a, b, shape):
    """``sum(a b)`` reduced to ``shape`` (the broadcast shape of a step or offset). For a scalar, a dot product of
    the two flattened in ``b``'s memory order: no temporary, and a view, not a copy, when the two share a layout
    (channels_last, say)."""
    if len(shape) > 0:
        return _reduce_to(a * b, shape)
    if not b.is_contiguous():
        order = _memory_order(b)
        a, b = a.permute(order), b.permute(order)
    return torch.dot(a.reshape(-1), b.reshape(-1))


def _lsq_backward(grad, x, step, offset, n: int, p: int, lo: float, hi: float, step_shape, offset_shape,
                  needs_step: bool, needs_offset: bool, grad_x=None):
    """``(grad_x, grad_step, grad_offset)``: ``grad`` straight through where ``round(v)`` lies in ``[n, p]``
    (EQ-Net's base_lsq: the clamp follows the rounding), i.e. where ``lo < v < hi`` (:func:`_open_bounds`), in one
    pass by torch's hardtanh backward (into ``grad_x`` when given); the step's gradient is ``c - v`` there and
    ``c`` outside, i.e. ``sum(grad c) - sum(grad_x v)``; the offset's is 1 outside, i.e. ``sum(grad) - sum(grad_x)``
    (each reduced to its parameter's shape; None where not needed)."""
    v = _scaled(x, step, offset)
    if grad_x is None:
        grad_x = torch.ops.aten.hardtanh_backward(grad, v, lo, hi)
    else:
        torch.ops.aten.hardtanh_backward.grad_input(grad, v, lo, hi, grad_input=grad_x)
    grad_step = grad_offset = None
    if needs_step:
        inside = _sum_of_products(grad_x, v, step_shape)
        grad_step = _sum_of_products(grad, v.round_().clamp_(n, p), step_shape) - inside  # v is c from here on
    if needs_offset:
        grad_offset = _reduce_to(grad, offset_shape) - _reduce_to(grad_x, offset_shape)
    return grad_x, grad_step, grad_offset


def _lsq_backward_in_chunks(grad, x, step, offset, n: int, p: int, lo: float, hi: float, step_shape,
                            offset_shape, needs_step: bool, needs_offset: bool):
    """:func:`_lsq_backward`, chunk by chunk where :func:`_chunked_order` says so, the reductions summed."""
    order = _chunked_order(x, step, offset)
    if order is None:
        return _lsq_backward(grad, x, step, offset, n, p, lo, hi, step_shape, offset_shape, needs_step, needs_offset)
    grad_x = torch.empty_like(x)
    parts = [_lsq_backward(grad_part, x_part, step, offset, n, p, lo, hi, step_shape, offset_shape, needs_step,
                           needs_offset, grad_x_part)[1:]
             for grad_part, x_part, grad_x_part in _chunks(order, grad, x, grad_x)]
    return (grad_x, torch.stack([part[0] for part in parts]).sum() if needs_step else None,
            torch.stack([part[1] for part in parts]).sum() if needs_offset else None)


class _Kernels:
    """The elementwise bodies of :class:`_LSQRound`, eager or compiled (:func:`use_compiled_kernels`)."""

    forward = staticmethod(_lsq_forward_in_chunks)
    backward = staticmethod(_lsq_backward_in_chunks)


def use_compiled_kernels(enabled: bool = True) -> None:
    """Fuse the LSQ forward and backward with ``torch.compile`` (``dynamic=False``: one compilation per input
    shape, layout and bit-width, a few seconds each on a CPU, so the first steps of a network compile all of its
    layers; dynamo's recompile limit is raised to :data:`COMPILED_SHAPES` to hold them). Off by default."""
    if enabled:
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, COMPILED_SHAPES)
        _Kernels.forward = staticmethod(torch.compile(_lsq_forward, dynamic=False))
        _Kernels.backward = staticmethod(torch.compile(_lsq_backward, dynamic=False))
    else:
        _Kernels.forward = staticmethod(_lsq_forward_in_chunks)
        _Kernels.backward = staticmethod(_lsq_backward_in_chunks)


class _LSQRound(torch.autograd.Function):
    """``clamp(round((x - b) / s), n, p) s + b`` with LSQ's gradients written out (straight through where the
    rounded value lies in ``[n, p]``; step: ``round(v) - v`` there, ``n`` / ``p`` outside; offset: 0 / 1; both
    times ``grad_scale``), so a training step runs a few elementwise passes instead of autograd's graph of about
    twelve. It keeps nothing but its inputs (which the network keeps anyway) and recomputes ``v`` and the levels
    in the backward, bit for bit: one tensor fewer written per pass and none held between them (so ``x`` must
    not be modified in place before the backward; autograd checks)."""

    @staticmethod
    def forward(ctx, x, step, offset, n: int, p: int, grad_scale: float):
        out = _Kernels.forward(x, step, offset, n, p)
        ctx.save_for_backward(x, step, offset)
        ctx.levels, ctx.grad_scale = (n, p), grad_scale
        return out

    @staticmethod
    def backward(ctx, grad):
        x, step, offset = ctx.saved_tensors
        needs_x, needs_step, needs_offset = ctx.needs_input_grad[:3]
        lo, hi = _open_bounds(*ctx.levels, grad.dtype)
        grad_x, grad_step, grad_offset = _Kernels.backward(grad, x, step, offset, *ctx.levels, lo, hi, step.shape,
                                                           None if offset is None else offset.shape, needs_step,
                                                           needs_offset)
        if ctx.grad_scale != 1:
            grad_step = None if grad_step is None else grad_step * ctx.grad_scale
            grad_offset = None if grad_offset is None else grad_offset * ctx.grad_scale
        return grad_x if needs_x else None, grad_step, grad_offset, None, None, None


def _reduce_to(t: torch.Tensor, shape) -> torch.Tensor:
    """Sum ``t`` over the dimensions a broadcast of ``shape`` expanded."""
    if t.shape == shape:
        return t
    if len(shape) == 0:
        return t.sum()
    dims = tuple(d for d, size in enumerate(shape) if size == 1 and t.shape[d] != 1)
    return t.sum(dim=dims, keepdim=True)


def lsq_round(x: torch.Tensor, step: torch.Tensor, offset: Optional[torch.Tensor], n: int, p: int,
              grad_scale: float = 1.0) -> torch.Tensor:
    """LSQ's fake quantization ``clamp(round((x - offset) / step), n, p) step + offset`` (step / offset broadcast
    to ``x``; ``offset`` None: zero), the step's and offset's gradients multiplied by ``grad_scale`` (LSQ's
    gradient scale). Without a gradient to compute (inference) or under ``torch.jit`` tracing (an export, which
    cannot save a Python autograd Function) it runs the same forward in plain ops."""
    if torch.jit.is_tracing():
        return _lsq_forward(x, step, offset, n, p)
    if not (torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, step, offset))):
        return _lsq_forward_in_chunks(x, step, offset, n, p)
    return _LSQRound.apply(x, step, offset, n, p, grad_scale)


def integer_range(bits: int, signed: bool) -> Tuple[int, int]:
    """``(n, p)``: signed ``[-2^(b-1), 2^(b-1) - 1]``, unsigned ``[0, 2^b - 1]``."""
    return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)


def _reduce_dims(x: torch.Tensor, axis: int) -> Tuple[int, ...]:
    return tuple(d for d in range(x.dim()) if d != axis % x.dim())


def _per_channel_view(v: torch.Tensor, x: torch.Tensor, axis: int) -> torch.Tensor:
    shape = [1] * x.dim()
    shape[axis % x.dim()] = -1
    return v.reshape(shape)


class SwitchableBits:
    """A ``bits`` attribute a supernet switches at run time, checked against ``bit_options`` on every switch."""

    @property
    def bits(self) -> int:
        return self._bits

    @bits.setter
    def bits(self, value: int) -> None:
        self._bits = check_bits(value, self.bit_options)


class UniformQuantizer(nn.Module):
    """Min-max fake quantization from the tensor's own range, rounding straight through.

    Symmetric: step ``max|x| / (2^(b-1) - 1)``, levels ``[-2^(b-1), 2^(b-1) - 1]``; asymmetric: step
    ``(max - min) / (2^b - 1)`` with an integer zero point. ``per_channel`` takes the range along
    ``channel_axis``. 32 bits is the identity.
    """

    def __init__(self, bits: int = 8, symmetric: bool = True, per_channel: bool = False, channel_axis: int = 0):
        super().__init__()
        self.bits = check_bits(bits)
        self.symmetric, self.per_channel, self.channel_axis = bool(symmetric), bool(per_channel), channel_axis

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bits == FULL_PRECISION:
            return x
        if self.per_channel:
            dims = _reduce_dims(x, self.channel_axis)
            lo, hi = x.detach().amin(dim=dims), x.detach().amax(dim=dims)
            lo, hi = _per_channel_view(lo, x, self.channel_axis), _per_channel_view(hi, x, self.channel_axis)
        else:
            lo, hi = x.detach().min(), x.detach().max()
        if self.symmetric:
            n, p = integer_range(self.bits, True)
            step = torch.maximum(hi.abs(), lo.abs()).clamp_min(1e-12) / max(p, 1)
            return torch.clamp(round_ste(x / step), n, p) * step
        step = (hi - lo).clamp_min(1e-12) / (2 ** self.bits - 1)
        zero = torch.round(-lo / step)
        return (torch.clamp(round_ste(x / step) + zero, 0, 2 ** self.bits - 1) - zero) * step

    def extra_repr(self) -> str:
        return f"bits={self.bits}, symmetric={self.symmetric}, per_channel={self.per_channel}"


class LSQQuantizer(SwitchableBits, nn.Module):
    """LSQ fake quantizer with one learnable step (and offset) per bit option (EQ-Net's ``base_lsq``).

    ``bits`` is switchable at run time (``quantizer.bits = 4``); 32 is the identity. ``signed`` None means
    "decide at calibration": unsigned when the calibration tensor has ``min >= -1e-9`` (activations after a
    ReLU), else signed; weights pass ``signed=True``. Symmetric quantizers keep the offset at 0; asymmetric ones
    learn it when ``learn_offset`` (EQ-Net) and keep the calibrated value otherwise.
    ``per_channel`` needs ``channels`` (the size along ``channel_axis``).
    ``abs_offset=True`` reproduces the released code's quirk (the offset enters as its absolute value);
    the step always enters as ``|s|`` (the same quirk, harmless for a positive step).
    """

    def __init__(self, bits: int = 8, symmetric: bool = True, per_channel: bool = False, learn_offset: bool = True,
                 channels: Optional[int] = None, channel_axis: int = 0, signed: Optional[bool] = None,
                 bit_options: Sequence[int] = DEFAULT_BIT_OPTIONS, abs_offset: bool = False):
        super().__init__()
        self.bit_options = tuple(check_bits(b, what="bit option") for b in bit_options)
        if not self.bit_options or FULL_PRECISION in self.bit_options:
            raise ConfigError(f"bit_options must be a non-empty list of bit-widths below 32, got {bit_options!r}")
        if per_channel and (isinstance(channels, bool) or not isinstance(channels, int) or channels < 1):
            raise ConfigError(f"a per-channel LSQQuantizer needs channels (a positive integer), got {channels!r}")
        self.symmetric, self.per_channel, self.learn_offset = bool(symmetric), bool(per_channel), bool(learn_offset)
        self.channel_axis, self.abs_offset = channel_axis, bool(abs_offset)
        width = channels if per_channel else 1
        self.step = nn.Parameter(torch.ones(len(self.bit_options), width))
        offset = torch.zeros(len(self.bit_options), width)
        if self.learn_offset and not self.symmetric:
            self.offset = nn.Parameter(offset)
        else:
            self.register_buffer("offset", offset)
        self.register_buffer("initialized", torch.zeros(len(self.bit_options), dtype=torch.bool))
        self.fixed_sign = signed
        self.register_buffer("signed_flag", torch.tensor(bool(signed) if signed is not None else True))
        self.bits = check_bits(bits, self.bit_options)
        self.calibrating = False

    # -- run-time switch (bits: SwitchableBits) -----------------------------------------------------
    def row(self, bits: Optional[int] = None) -> int:
        return self.bit_options.index(self.bits if bits is None else bits)

    def levels(self, bits: Optional[int] = None) -> Tuple[int, int]:
        return integer_range(self.bits if bits is None else bits, bool(self.signed_flag))

    # -- calibration (EQ-Net's init) ---------------------------------------------------------------
    @torch.no_grad()
    def calibrate(self, x: torch.Tensor, shrink_steps: Optional[int] = None) -> None:
        """Initialise every bit option's step (and offset) from ``x``: per bit, shrink ``max`` and ``min`` by
        ``1 - 0.01 i`` for ``i < 80`` (per channel ``i < 5``) and keep the candidate minimising
        ``mean |x - x^|^2.4`` (per channel: per channel). The error is measured on at most
        :data:`CALIBRATION_ELEMENTS` evenly spaced elements per channel, and per tensor the 80 shrinks are searched
        coarse to fine (every 8th, then each one around the best); EQ-Net measures all elements and shrinks."""
        x = x.detach().float()
        if self.fixed_sign is None:
            self.signed_flag.fill_(bool(x.min() < -1e-9))
        signed = bool(self.signed_flag)
        steps = shrink_steps if shrink_steps is not None else (5 if self.per_channel else 80)
        rows = x.movedim(self.channel_axis, 0).reshape(x.shape[self.channel_axis], -1) if self.per_channel \
            else x.reshape(1, -1)
        hi, lo = rows.amax(dim=1), rows.amin(dim=1)  # (C,) from every element
        if rows.shape[1] > CALIBRATION_ELEMENTS:
            rows = rows[:, torch.linspace(0, rows.shape[1] - 1, CALIBRATION_ELEMENTS, device=x.device).long()]
        for r, b in enumerate(self.bit_options):
            n, p = integer_range(b, signed)

            def candidates(indices):
                shrink = 1 - 0.01 * torch.as_tensor(indices, device=x.device, dtype=x.dtype).unsqueeze(1)  # (I, 1)
                mx, mn = hi * shrink, lo * shrink  # (I, C)
                if self.symmetric:
                    span = torch.maximum(mx.abs(), mn.abs())
                    step = (2 * span / (2 ** b - 1)) if signed else span / (2 ** b - 1)
                    off = torch.zeros_like(step)
                else:
                    step = (mx - mn) / (2 ** b - 1)
                    off = mn - step * n
                step = step.clamp_min(1e-8)
                s3, o3 = (step + STEP_EPS).unsqueeze(2), off.unsqueeze(2)
                q = torch.clamp(torch.round((rows - o3) / s3), n, p) * s3 + o3  # (I, C, M)
                return step, off, ((rows - q).abs() ** INIT_ERROR_POWER).mean(dim=2)  # (I, C)

            if self.per_channel or steps <= 2 * COARSE_STRIDE:
                step, off, err = candidates(list(range(steps)))
            else:  # per tensor: every COARSE_STRIDE-th shrink, then every one around the best
                _, _, err = candidates(list(range(0, steps, COARSE_STRIDE)))
                centre = int(err[:, 0].argmin()) * COARSE_STRIDE
                step, off, err = candidates(list(range(max(0, centre - COARSE_STRIDE + 1),
                                                       min(steps, centre + COARSE_STRIDE))))
            best = err.argmin(dim=0, keepdim=True)  # first minimum: the least shrinking among equals
            self.step.data[r] = step.gather(0, best).squeeze(0)
            self.offset.data[r] = off.gather(0, best).squeeze(0)
            self.initialized[r] = True

    # -- forward -----------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.calibrating:
            self.calibrate(x)
        return self.quantize(x)

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` fake-quantized at the current bits with the current tables (no calibration)."""
        if self.bits == FULL_PRECISION:
            return x
        r = self.row()
        n, p = self.levels()
        if self.per_channel:
            per_channel_numel = x.numel() / max(1, x.shape[self.channel_axis])
            g = 2.0 / math.sqrt(p * per_channel_numel) if p > 0 else 1.0
        else:
            g = 1.0 / math.sqrt(max(p, 1) * x.numel())
        step = self.step[r].abs() + STEP_EPS
        off = None if self.symmetric else self.offset[r]  # a symmetric quantizer's offset stays 0: skipped
        if self.abs_offset and isinstance(self.offset, nn.Parameter):
            off = off.abs()
        if self.per_channel:
            step = _per_channel_view(step, x, self.channel_axis)
            off = None if off is None else _per_channel_view(off, x, self.channel_axis)
        else:
            step, off = step.reshape(()), None if off is None else off.reshape(())
        return lsq_round(x, step, off, n, p, grad_scale=g)

    def extra_repr(self) -> str:
        return (f"bits={self.bits}, options={self.bit_options}, symmetric={self.symmetric}, "
                f"per_channel={self.per_channel}, learn_offset={self.learn_offset}")


#: the weight forms EQ-Net switches between: (per_channel, symmetric)
WEIGHT_FORMS = ((True, True), (True, False), (False, True), (False, False))
#: activation forms: per tensor, symmetric or asymmetric
ACTIVATION_FORMS = ((False, True), (False, False))


def form_key(per_channel: bool, symmetric: bool) -> str:
    return f"{'channel' if per_channel else 'tensor'}_{'sym' if symmetric else 'asym'}"


class ElasticQuantizer(SwitchableBits, nn.Module):
    """EQ-Net's elastic quantizer: bits, granularity and symmetry chosen at run time, one
    :class:`LSQQuantizer` table per (granularity, symmetry) form, the bit options being rows of each table."""

    def __init__(self, forms: Iterable[Tuple[bool, bool]], bits: int = 8, channels: Optional[int] = None,
                 channel_axis: int = 0, signed: Optional[bool] = None,
                 bit_options: Sequence[int] = DEFAULT_BIT_OPTIONS, learn_offset: bool = True,
                 abs_offset: bool = False):
        super().__init__()
        self.forms = tuple((bool(c), bool(s)) for c, s in forms)
        if not self.forms:
            raise ConfigError("an ElasticQuantizer needs at least one (per_channel, symmetric) form")
        self.quantizers = nn.ModuleDict({
            form_key(c, s): LSQQuantizer(bits=bits, symmetric=s, per_channel=c, learn_offset=learn_offset,
                                         channels=channels if c else None, channel_axis=channel_axis, signed=signed,
                                         bit_options=bit_options, abs_offset=abs_offset)
            for c, s in self.forms})
        self.bit_options = tuple(bit_options)
        self.per_channel, self.symmetric = self.forms[0]
        self.bits = bits

    def set_form(self, per_channel: bool, symmetric: bool) -> None:
        if (bool(per_channel), bool(symmetric)) not in self.forms:
            raise ConfigError(f"form {form_key(per_channel, symmetric)} is not among {[form_key(*f) for f in self.forms]}")
        self.per_channel, self.symmetric = bool(per_channel), bool(symmetric)

    @property
    def active(self) -> LSQQuantizer:
        return self.quantizers[form_key(self.per_channel, self.symmetric)]

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor) -> None:
        for q in self.quantizers.values():
            q.calibrate(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(q.calibrating for q in self.quantizers.values()):
            self.calibrate(x)
        if self.bits == FULL_PRECISION:
            return x
        q = self.active
        q.bits = self.bits
        return q.quantize(x)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, form={form_key(self.per_channel, self.symmetric)}"


def lsq_modules(model: nn.Module):
    return [m for m in model.modules() if isinstance(m, LSQQuantizer)]


@contextlib.contextmanager
def calibrating(model: nn.Module):
    """Within the block every :class:`LSQQuantizer` of ``model`` that runs initialises all its bit options
    from the tensor it sees (run one forward of a calibration batch; weights need no data)."""
    qs = lsq_modules(model)
    for q in qs:
        q.calibrating = True
    try:
        yield model
    finally:
        for q in qs:
            q.calibrating = False
