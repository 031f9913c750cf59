"""Elastic (weight-sharing) layers: each stores its largest weights and runs a prefix slice of them.

OFA, BigNAS and AttentiveNAS train one MobileNet-style network whose children differ in width,
kernel size, expand ratio and depth (methods.md 12.1). Every child reuses the largest layer's weights:

* channels: the first ``C`` output / input channels (``W[:out, :in]``; depthwise ``W[:C]``); a layer's
  *input* width is always the width of the tensor it receives, so only output widths are set;
* kernels: the centre crop of the stored largest kernel, optionally through OFA's learned kernel
  transform (:class:`DynamicConv2d`);
* BatchNorm: one per layer, sliced ``[:C]`` including its running statistics, which training updates
  in place (:class:`DynamicBatchNorm2d`);
* depth: a block beyond its stage's depth is an identity skip (:class:`ElasticMBConv`).

Each elastic module can ``export(in_channels)`` a plain ``nn.Conv2d`` / ``nn.BatchNorm2d`` /
``nn.Linear`` module holding copies of the slices it would run, which is how a supernet extracts a
stand-alone child. The ``*_cost`` functions give the parameters and multiply-adds of the exported
layers with :mod:`nastk.cost`'s conventions (conv and linear multiply-adds, a bias adds one per
output; BN counts its two affine vectors as parameters), so costs are known without building anything.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from nastk.errors import ArchitectureError, CapabilityError, ConfigError
from nastk.supernet import ChoicePoint

#: activation names the MBConv spaces use
ACTIVATIONS = ("relu", "h_swish", "swish")
#: roles an :class:`ElasticMBConv` can read from decisions, in the order of its ``decisions``
ROLES = ("kernel", "expand", "depth", "width")


def make_divisible(v: float, divisor: int = 8, min_value: Optional[int] = None) -> int:
    """``v`` rounded to a multiple of ``divisor`` (at least ``min_value``, default ``divisor``), never
    more than 10% below ``v``: the channel rounding of MobileNet-style networks (hardware-friendly widths)."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(v + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * v else rounded


def hidden_channels(in_channels: int, expand_ratio: float) -> int:
    """An MBConv's hidden width: ``make_divisible(round(C_in * e), 8)``; ``C_in`` itself when ``e`` is 1
    (such blocks have no expand convolution)."""
    return in_channels if expand_ratio == 1 else make_divisible(round(in_channels * expand_ratio), 8)


def se_channels(channels: int, reduction: int = 4) -> int:
    """The squeeze-excite bottleneck of ``channels``: ``make_divisible(C / reduction, 8)``."""
    return make_divisible(channels / reduction, 8)


def make_activation(name: Optional[str]) -> nn.Module:
    """A fresh activation module: ``relu``, ``h_swish``, ``swish`` or None (identity)."""
    if name is None:
        return nn.Identity()
    if name not in ACTIVATIONS:
        raise ConfigError(f"unknown activation {name!r}; known: {', '.join(ACTIVATIONS)}")
    return {"relu": nn.ReLU, "h_swish": nn.Hardswish, "swish": nn.SiLU}[name]()


def _check_odd(kernel: int, what: str) -> int:
    if isinstance(kernel, bool) or not isinstance(kernel, int) or kernel < 1 or kernel % 2 == 0:
        raise ConfigError(f"{what} must be an odd positive integer, got {kernel!r}")
    return kernel


def _check_positive(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{what} must be a positive integer, got {value!r}")
    return value


def _check_input(x: torch.Tensor, dims: int, max_channels: int, layer: str) -> int:
    if x.dim() != dims:
        raise ArchitectureError(f"{layer} expects a {dims}-d input, got shape {tuple(x.shape)}")
    channels = x.shape[1] if dims == 4 else x.shape[-1]
    if channels > max_channels:
        raise ArchitectureError(f"{layer} holds weights for at most {max_channels} input channels, got {channels}")
    return channels


# --- elastic layers --------------------------------------------------------------------------------------
class DynamicConv2d(nn.Module):
    """A convolution holding ``max_out x max_in x K x K`` weights that runs ``W[:out, :in]`` and a
    centre ``k x k`` crop (``groups="depthwise"``: one filter per channel, ``W[:C]``, ``C`` = the input's).

    ``kernel_transform=True`` is OFA's elastic kernel: going from one kernel size to the next smaller
    one of ``kernel_sizes`` (7 -> 5 -> 3), the centre crop of the *transformed* larger kernel,
    flattened, goes through a learned ``k^2 x k^2`` matrix (identity at initialisation, shared by all
    channels), so small kernels need not equal the large kernel's centre.
    Padding is ``k // 2`` ("same" at stride 1). The active output width and kernel are the attributes
    :attr:`out_channels` and :attr:`kernel_size` (:meth:`set_active`).
    """

    def __init__(self, max_in: int, max_out: int, max_kernel: int, stride: int = 1, groups: str = "full",
                 bias: bool = False, kernel_transform: bool = False, kernel_sizes: Optional[Sequence[int]] = None,
                 device=None):
        super().__init__()
        if groups not in ("full", "depthwise"):
            raise ConfigError(f"groups must be 'full' or 'depthwise', got {groups!r}")
        self.max_in, self.max_out = _check_positive(max_in, "max_in"), _check_positive(max_out, "max_out")
        if groups == "depthwise" and max_in != max_out:
            raise ConfigError(f"a depthwise convolution has as many outputs as inputs, got {max_in} -> {max_out}")
        self.max_kernel = _check_odd(max_kernel, "max_kernel")
        self.stride, self.depthwise = _check_positive(stride, "stride"), groups == "depthwise"
        sizes = sorted({_check_odd(k, "kernel size") for k in (kernel_sizes or range(3, max_kernel + 1, 2))} | {max_kernel},
                       reverse=True)
        if sizes[0] != max_kernel:
            raise ConfigError(f"kernel sizes {sizes} exceed max_kernel {max_kernel}")
        #: the elastic kernel sizes, largest first (the kernel-transform chain)
        self.kernel_sizes: Tuple[int, ...] = tuple(sizes)
        self.weight = nn.Parameter(torch.empty(max_out, 1 if self.depthwise else max_in, max_kernel, max_kernel,
                                               device=device))
        self.bias = nn.Parameter(torch.empty(max_out, device=device)) if bias else None
        #: OFA's kernel-transform matrices by target size ("5": 25 x 25, "3": 9 x 9)
        self.transforms = nn.ParameterDict(
            {str(k): nn.Parameter(torch.empty(k * k, k * k, device=device)) for k in sizes[1:]}
            if kernel_transform else {})
        self.out_channels, self.kernel_size = max_out, max_kernel
        self.reset_parameters()

    @property
    def kernel_transform(self) -> bool:
        return len(self.transforms) > 0

    def reset_parameters(self) -> None:
        nn.init.kaiming_normal_(self.weight, mode="fan_out")
        if self.bias is not None:
            nn.init.zeros_(self.bias)
        with torch.no_grad():
            for matrix in self.transforms.values():
                matrix.copy_(torch.eye(matrix.shape[0]))

    def set_active(self, out_channels: Optional[int] = None, kernel: Optional[int] = None) -> None:
        """Run the first ``out_channels`` filters (ignored by depthwise layers) at kernel size ``kernel``."""
        if out_channels is not None:
            if not 1 <= _check_positive(out_channels, "out_channels") <= self.max_out:
                raise ConfigError(f"out_channels {out_channels} outside 1..{self.max_out}")
            self.out_channels = out_channels
        if kernel is not None:
            _check_odd(kernel, "kernel")
            if kernel > self.max_kernel or (self.kernel_transform and kernel not in self.kernel_sizes):
                available = self.kernel_sizes if self.kernel_transform else tuple(range(self.max_kernel, 0, -2))
                raise ConfigError(f"kernel {kernel} is not available; this layer runs {available}")
            self.kernel_size = kernel

    def active_weight(self, in_channels: int) -> torch.Tensor:
        """The weight the active child runs with ``in_channels`` inputs (kernel transforms applied)."""
        weight = self.weight[:in_channels] if self.depthwise else self.weight[:self.out_channels, :in_channels]
        target = self.kernel_size
        if not self.kernel_transform:
            return _centre(weight, target)
        for smaller in self.kernel_sizes[1:]:  # 7 -> 5 -> 3: crop the transformed kernel, transform again
            if smaller < target:
                break
            cropped = _centre(weight, smaller)
            weight = F.linear(cropped.reshape(-1, smaller * smaller), self.transforms[str(smaller)]).reshape(cropped.shape)
        return weight

    def active_bias(self, out_channels: int) -> Optional[torch.Tensor]:
        return None if self.bias is None else self.bias[:out_channels]

    def output_channels(self, in_channels: int) -> int:
        return in_channels if self.depthwise else self.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = _check_input(x, 4, self.max_in, type(self).__name__)
        out = self.output_channels(channels)
        return F.conv2d(x, self.active_weight(channels), self.active_bias(out), self.stride, self.kernel_size // 2,
                        1, channels if self.depthwise else 1)

    @torch.no_grad()
    def export(self, in_channels: int) -> nn.Conv2d:
        """A plain ``nn.Conv2d`` holding a copy of the active slice (transformed kernels baked in)."""
        out = self.output_channels(in_channels)
        conv = nn.Conv2d(in_channels, out, self.kernel_size, self.stride, self.kernel_size // 2,
                         groups=in_channels if self.depthwise else 1, bias=self.bias is not None,
                         device=self.weight.device, dtype=self.weight.dtype)
        conv.weight.copy_(self.active_weight(in_channels))
        if self.bias is not None:
            conv.bias.copy_(self.active_bias(out))
        return conv

    def extra_repr(self) -> str:
        kind = "depthwise" if self.depthwise else "full"
        return (f"max_in={self.max_in}, max_out={self.max_out}, kernels={self.kernel_sizes}, stride={self.stride}, "
                f"{kind}, bias={self.bias is not None}, kernel_transform={self.kernel_transform}")


def _centre(weight: torch.Tensor, kernel: int) -> torch.Tensor:
    start = (weight.shape[-1] - kernel) // 2
    return weight[..., start:start + kernel, start:start + kernel]


class DynamicBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` over the first ``C`` channels of its ``max_C`` (``C`` = the input's channels).

    ``weight[:C]``, ``bias[:C]``, ``running_mean[:C]`` and ``running_var[:C]`` are used, and training
    updates the running slices in place, exactly as ``nn.BatchNorm2d`` would (momentum, ``momentum=None``
    cumulative averaging through ``num_batches_tracked``, ``track_running_stats``, train/eval), so a
    generic recalibration (reset, momentum None, forward in train mode) works per child.
    """

    def __init__(self, max_C: int, eps: float = 1e-5, momentum: Optional[float] = 0.1, affine: bool = True,
                 track_running_stats: bool = True, device=None):
        super().__init__(_check_positive(max_C, "max_C"), eps, momentum, affine, track_running_stats, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = _check_input(x, 4, self.num_features, type(self).__name__)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        use_running = not self.training or self.track_running_stats
        mean = self.running_mean[:channels] if use_running and self.running_mean is not None else None
        var = self.running_var[:channels] if use_running and self.running_var is not None else None
        weight = self.weight[:channels] if self.weight is not None else None
        bias = self.bias[:channels] if self.bias is not None else None
        return F.batch_norm(x, mean, var, weight, bias, batch_stats, factor, self.eps)

    @torch.no_grad()
    def export(self, channels: int) -> nn.BatchNorm2d:
        """A plain ``nn.BatchNorm2d(channels)`` with copies of the slices and of the batch counter."""
        bn = nn.BatchNorm2d(channels, self.eps, self.momentum, self.affine, self.track_running_stats,
                            device=self.weight.device if self.weight is not None else None)
        if self.affine:
            bn.weight.copy_(self.weight[:channels])
            bn.bias.copy_(self.bias[:channels])
        if self.track_running_stats:
            bn.running_mean.copy_(self.running_mean[:channels])
            bn.running_var.copy_(self.running_var[:channels])
            bn.num_batches_tracked.copy_(self.num_batches_tracked)
        return bn


class DynamicLinear(nn.Module):
    """A linear layer holding ``max_out x max_in`` weights that runs ``W[:out, :in]`` (``in`` = the input's features)."""

    def __init__(self, max_in: int, max_out: int, bias: bool = True, device=None):
        super().__init__()
        self.max_in, self.max_out = _check_positive(max_in, "max_in"), _check_positive(max_out, "max_out")
        self.weight = nn.Parameter(torch.empty(max_out, max_in, device=device))
        self.bias = nn.Parameter(torch.empty(max_out, device=device)) if bias else None
        self.out_features = max_out
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight, 0.0, 0.01)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = _check_input(x, 2, self.max_in, type(self).__name__)
        bias = None if self.bias is None else self.bias[:self.out_features]
        return F.linear(x, self.weight[:self.out_features, :features], bias)

    @torch.no_grad()
    def export(self, in_features: int) -> nn.Linear:
        linear = nn.Linear(in_features, self.out_features, self.bias is not None, device=self.weight.device,
                           dtype=self.weight.dtype)
        linear.weight.copy_(self.weight[:self.out_features, :in_features])
        if self.bias is not None:
            linear.bias.copy_(self.bias[:self.out_features])
        return linear


class SqueezeExcite(nn.Module):
    """Squeeze-excite: global average -> ``reduce`` 1x1 conv -> ReLU -> ``expand`` 1x1 conv ->
    h-sigmoid -> channel scale. Static (exported children) or elastic (:class:`DynamicSE`)."""

    def __init__(self, reduce: nn.Module, expand: nn.Module):
        super().__init__()
        self.reduce, self.expand = reduce, expand

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = F.relu(self.reduce(x.mean((2, 3), keepdim=True)))
        return x * F.hardsigmoid(self.expand(scale))


class DynamicSE(SqueezeExcite):
    """Squeeze-excite over the first ``C`` of ``max_C`` channels, bottleneck ``make_divisible(C / 4, 8)``."""

    def __init__(self, max_C: int, reduction: int = 4, device=None):
        mid = se_channels(_check_positive(max_C, "max_C"), _check_positive(reduction, "reduction"))
        super().__init__(DynamicConv2d(max_C, mid, 1, bias=True, device=device),
                         DynamicConv2d(mid, max_C, 1, bias=True, device=device))
        self.max_C, self.reduction = max_C, reduction

    def _prepare(self, channels: int) -> None:
        self.reduce.out_channels, self.expand.out_channels = se_channels(channels, self.reduction), channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._prepare(_check_input(x, 4, self.max_C, type(self).__name__))
        return super().forward(x)

    def export(self, channels: int) -> SqueezeExcite:
        self._prepare(channels)
        return SqueezeExcite(self.reduce.export(channels), self.expand.export(self.reduce.out_channels))


class ConvBNAct(nn.Module):
    """A dynamic convolution, an optional sliced BatchNorm and an activation (a stem, an MBConv's
    expand / depthwise / project layer, a head layer). :attr:`out_channels` is the active width."""

    def __init__(self, max_in: int, max_out: int, kernel: int = 1, stride: int = 1, act: Optional[str] = None,
                 bn: bool = True, groups: str = "full", kernel_transform: bool = False,
                 kernel_sizes: Optional[Sequence[int]] = None, bn_momentum: Optional[float] = 0.1,
                 bn_eps: float = 1e-5, device=None):
        super().__init__()
        self.conv = DynamicConv2d(max_in, max_out, kernel, stride, groups, bias=False, kernel_transform=kernel_transform,
                                  kernel_sizes=kernel_sizes, device=device)
        self.bn = DynamicBatchNorm2d(max_out, bn_eps, bn_momentum, device=device) if bn else None
        self.act_name = act
        self.act = make_activation(act)

    @property
    def out_channels(self) -> int:
        return self.conv.out_channels

    @out_channels.setter
    def out_channels(self, value: int) -> None:
        self.conv.set_active(out_channels=value)

    def output_channels(self, in_channels: int) -> int:
        return self.conv.output_channels(in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return self.act(self.bn(x) if self.bn is not None else x)

    def export(self, in_channels: int) -> nn.Sequential:
        layers = [self.conv.export(in_channels)]
        if self.bn is not None:
            layers.append(self.bn.export(self.output_channels(in_channels)))
        if self.act_name is not None:
            layers.append(make_activation(self.act_name))
        return nn.Sequential(*layers)


class ElasticConvBNAct(ChoicePoint, ConvBNAct):
    """A :class:`ConvBNAct` whose output width is a decision (an elastic stem or head width).

    ``ElasticConvBNAct(max_in, max_out, ..., widths=(16, 24), decisions=("stem_width",))``: option ``o``
    of the decision runs ``widths[o]`` channels.
    """

    def __init__(self, *args, widths: Sequence[int], decisions, **kwargs):
        super().__init__(*args, decisions=decisions, **kwargs)
        self.widths = tuple(widths)
        if max(self.widths) > self.conv.max_out:
            raise ConfigError(f"widths {self.widths} exceed the layer's {self.conv.max_out} channels")

    def configure(self, values, allowed) -> None:
        (value,) = values
        if isinstance(value, torch.Tensor):
            raise CapabilityError("elastic widths run one child at a time; weighted mixtures are not supported "
                                  "(use Supernet.expected_cost for a differentiable cost)")
        self.out_channels = self.widths[int(value)]


# --- the MBConv block -------------------------------------------------------------------------------
class MBConv(nn.Module):
    """The inverted-residual block: [1x1 expand -> BN -> act] -> depthwise kxk -> BN -> act -> [SE] ->
    1x1 project -> BN [+ input]. The one forward pass of stand-alone (exported) and elastic blocks."""

    def __init__(self, expand: Optional[nn.Module], depthwise: nn.Module, se: Optional[nn.Module], project: nn.Module,
                 residual: bool):
        super().__init__()
        self.expand, self.depthwise, self.se, self.project = expand, depthwise, se, project
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.depthwise(y)
        if self.se is not None:
            y = self.se(y)
        y = self.project(y)
        return x + y if self.residual else y


class DynamicMBConv(MBConv):
    """An MBConv holding its largest weights; runs kernel :attr:`kernel_size`, expand ratio
    :attr:`expand_ratio`, :attr:`out_channels` outputs, or nothing (identity skip) when not :attr:`active`.

    Hidden width ``make_divisible(round(C_in * e), 8)`` (``C_in`` = the input's channels); a block whose
    only expand ratio is 1 has no expand convolution (hidden = ``C_in``). ``residual`` adds the input
    (the caller decides: stride 1 and equal widths).
    """

    def __init__(self, max_in: int, max_out: int, kernels: Sequence[int], expands: Sequence[float], stride: int = 1,
                 act: str = "relu", se: bool = False, residual: bool = False, kernel_transform: bool = False,
                 bn_momentum: Optional[float] = 0.1, bn_eps: float = 1e-5, device=None):
        kernels, expands = tuple(sorted(set(kernels))), tuple(sorted(set(expands)))
        if not kernels or not expands or any(e <= 0 for e in expands):
            raise ConfigError(f"an MBConv needs kernel sizes and positive expand ratios, got {kernels}, {expands}")
        if residual and (stride != 1 or max_in != max_out):
            raise ConfigError(f"an identity residual needs stride 1 and equal widths, got stride {stride}, "
                              f"{max_in} -> {max_out}")
        has_expand = expands != (1,)
        if not has_expand and len(expands) > 1:
            raise ConfigError(f"expand ratio 1 (no expand convolution) cannot be mixed with others: {expands}")
        hidden = hidden_channels(max_in, expands[-1])
        norm = dict(bn_momentum=bn_momentum, bn_eps=bn_eps, device=device)
        super().__init__(
            ConvBNAct(max_in, hidden, 1, act=act, **norm) if has_expand else None,
            ConvBNAct(hidden, hidden, kernels[-1], stride, act, groups="depthwise", kernel_transform=kernel_transform,
                      kernel_sizes=kernels, **norm),
            DynamicSE(hidden, device=device) if se else None,
            ConvBNAct(hidden, max_out, 1, act=None, **norm),
            residual)
        self.max_in, self.max_out, self.kernels, self.expands = max_in, max_out, kernels, expands
        self.kernel_size, self.expand_ratio, self.out_channels, self.active = kernels[-1], expands[-1], max_out, True

    def hidden_for(self, in_channels: int) -> int:
        return hidden_channels(in_channels, self.expand_ratio)

    def set_active(self, kernel: Optional[int] = None, expand: Optional[float] = None,
                   out_channels: Optional[int] = None, active: Optional[bool] = None) -> None:
        """Choose the child this block runs (unchanged settings stay)."""
        if kernel is not None:
            if kernel not in self.kernels:
                raise ConfigError(f"kernel {kernel!r} is not one of {self.kernels}")
            self.kernel_size = kernel
        if expand is not None:
            if expand not in self.expands:
                raise ConfigError(f"expand ratio {expand!r} is not one of {self.expands}")
            self.expand_ratio = expand
        if out_channels is not None:
            if not 1 <= out_channels <= self.max_out:
                raise ConfigError(f"out_channels {out_channels!r} outside 1..{self.max_out}")
            self.out_channels = out_channels
        if active is not None:
            self.active = bool(active)

    def _prepare(self, in_channels: int) -> None:
        if self.residual and in_channels != self.out_channels:
            raise ArchitectureError(f"a residual MBConv needs as many inputs as outputs, got {in_channels} -> "
                                    f"{self.out_channels}")
        if self.expand is not None:
            self.expand.out_channels = self.hidden_for(in_channels)
        self.depthwise.conv.set_active(kernel=self.kernel_size)
        self.project.out_channels = self.out_channels

    def output_channels(self, in_channels: int) -> int:
        return self.out_channels if self.active else in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.active:
            return x
        self._prepare(_check_input(x, 4, self.max_in, type(self).__name__))
        return super().forward(x)

    def export(self, in_channels: int) -> Optional[MBConv]:
        """The stand-alone block of the active child (None when the block is skipped)."""
        if not self.active:
            return None
        self._prepare(in_channels)
        hidden = self.hidden_for(in_channels)
        return MBConv(self.expand.export(in_channels) if self.expand is not None else None,
                      self.depthwise.export(hidden), self.se.export(hidden) if self.se is not None else None,
                      self.project.export(hidden), self.residual)

    def zero_last_bn(self) -> None:
        """BigNAS' zero-gamma initialisation: the block starts as its residual's identity."""
        with torch.no_grad():
            self.project.bn.weight.zero_()

    @torch.no_grad()
    def sort_channels(self, expand_ratios_in_band: Optional[Sequence[float]] = None) -> torch.Tensor:
        """OFA's channel sorting before an elastic-expand phase; returns the permutation of hidden channels.

        Hidden channels are ordered by importance (L1 norm of the projection conv's input slice,
        ``sum |W_project[:, c]|``), largest first, so that small expand ratios keep the most important
        channels. ``expand_ratios_in_band`` (phase 2 of OFA) keeps the order *between* the bands the
        hidden widths of those ratios delimit (e.g. ratios 4 and 6: channels ``[0, w4)`` stay before
        ``[w4, w6)``) and sorts only inside each band, so the children trained in phase 1 keep their
        channel sets. The expand conv + BN, depthwise conv + BN, SE and projection are permuted alike,
        and the SE bottleneck is re-sorted by ``sum |W_se_expand[:, m]|``; the largest child computes
        the same function. Blocks without an expand convolution have nothing to sort (identity).
        """
        hidden = self.depthwise.conv.max_out
        device = self.project.conv.weight.device
        if self.expand is None:
            return torch.arange(hidden, device=device)
        importance = self.project.conv.weight.abs().sum(dim=(0, 2, 3))
        order = torch.argsort(importance, descending=True, stable=True)
        if expand_ratios_in_band:
            edges = sorted({hidden_channels(self.max_in, e) for e in expand_ratios_in_band})
            if any(edge > hidden for edge in edges):
                raise ConfigError(f"expand ratios {tuple(expand_ratios_in_band)} exceed this block's {self.expands}")
            band = torch.bucketize(torch.arange(hidden, device=device), torch.tensor(edges, device=device), right=True)
            order = order[torch.argsort(band[order], stable=True)]  # by band, then by importance
        self._permute_hidden(order)
        if self.se is not None:
            se_order = torch.argsort(self.se.expand.weight.abs().sum(dim=(0, 2, 3)), descending=True, stable=True)
            for tensor, dim in ((self.se.reduce.weight, 0), (self.se.reduce.bias, 0), (self.se.expand.weight, 1)):
                tensor.copy_(tensor.index_select(dim, se_order))
        return order

    def _permute_hidden(self, order: torch.Tensor) -> None:
        targets = [(self.expand.conv.weight, 0), (self.depthwise.conv.weight, 0), (self.project.conv.weight, 1)]
        for bn in (self.expand.bn, self.depthwise.bn):
            targets += [(t, 0) for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var) if t is not None]
        if self.se is not None:
            targets += [(self.se.reduce.weight, 1), (self.se.expand.weight, 0), (self.se.expand.bias, 0)]
        for tensor, dim in targets:
            tensor.copy_(tensor.index_select(dim, order))


class ElasticMBConv(ChoicePoint, DynamicMBConv):
    """An MBConv whose kernel, expand ratio, stage depth and (optionally) width are decisions.

    ``decisions = (kernel, expand, depth[, width])`` (names or indices; None for a role this block has
    fixed, its option tuple then holding one value); option ``o`` of each decision means ``kernels[o]``,
    ``expands[o]``, ``depths[o]``, ``widths[o]``. The block is the ``index``-th (from 0) of its stage and
    runs only when the stage's depth exceeds ``index`` (a stage runs its first ``d`` blocks); otherwise it
    is an identity skip.
    """

    def __init__(self, max_in: int, widths: Sequence[int], kernels: Sequence[int], expands: Sequence[float],
                 depths: Sequence[int] = (1,), index: int = 0, *, decisions, **kwargs):
        decisions = tuple(decisions) + (None,) * (len(ROLES) - len(tuple(decisions)))
        options = {"kernel": tuple(kernels), "expand": tuple(expands), "depth": tuple(depths), "width": tuple(widths)}
        if len(decisions) != len(ROLES):
            raise ConfigError(f"an ElasticMBConv reads at most {len(ROLES)} decisions ({', '.join(ROLES)}), "
                              f"got {decisions}")
        for role, decision in zip(ROLES, decisions):
            if decision is None and len(options[role]) != 1:
                raise ConfigError(f"the fixed {role} of an MBConv must have one value, got {options[role]}")
        super().__init__(max_in, max(options["width"]), kernels, expands,
                         decisions=tuple(d for d in decisions if d is not None), **kwargs)
        self.index = index
        #: the roles this block reads, in the order of :attr:`decisions`, and each role's option values
        self.roles = tuple(role for role, decision in zip(ROLES, decisions) if decision is not None)
        self.options: Dict[str, Tuple] = options
        self.configure_values({role: values[-1] for role, values in options.items()})

    def configure(self, values, allowed) -> None:
        if any(isinstance(value, torch.Tensor) for value in values):
            raise CapabilityError("elastic MBConv blocks run one child at a time; weighted mixtures are not "
                                  "supported (use Supernet.expected_cost for a differentiable cost)")
        self.configure_values({role: self.options[role][int(value)] for role, value in zip(self.roles, values)})

    def configure_values(self, values: Dict[str, object]) -> None:
        depth = values.get("depth")
        self.set_active(kernel=values.get("kernel"), expand=values.get("expand"), out_channels=values.get("width"),
                        active=None if depth is None else depth > self.index)


# --- analytic costs (nastk.cost's conventions) ---------------------------------------------------------------
def spatial(size: int, stride: int) -> int:
    """The output side of a "same"-padded odd-kernel layer at ``stride``."""
    return (size - 1) // stride + 1


def conv_cost(in_channels: int, out_channels: int, kernel: int, out_size: int, depthwise: bool = False,
              bias: bool = False, bn: bool = False) -> Tuple[int, int]:
    """``(parameters, multiply-adds)`` of a convolution (plus its BatchNorm's two affine vectors)."""
    per_output = kernel * kernel * (1 if depthwise else in_channels) + (1 if bias else 0)
    params = out_channels * per_output + (2 * out_channels if bn else 0)
    return params, out_size * out_size * out_channels * per_output


def linear_cost(in_features: int, out_features: int, bias: bool = True) -> Tuple[int, int]:
    per_output = in_features + (1 if bias else 0)
    return out_features * per_output, out_features * per_output


def mbconv_cost(in_channels: int, out_channels: int, kernel: int, expand_ratio: float, stride: int, in_size: int,
                se: bool = False) -> Tuple[int, int]:
    """``(parameters, multiply-adds)`` of an exported MBConv child on an ``in_size`` square input."""
    hidden, out_size = hidden_channels(in_channels, expand_ratio), spatial(in_size, stride)
    parts = [conv_cost(hidden, out_channels, 1, out_size, bn=True),
             conv_cost(hidden, hidden, kernel, out_size, depthwise=True, bn=True)]
    if expand_ratio != 1:
        parts.append(conv_cost(in_channels, hidden, 1, in_size, bn=True))
    if se:
        mid = se_channels(hidden)
        parts += [conv_cost(hidden, mid, 1, 1, bias=True), conv_cost(mid, hidden, 1, 1, bias=True)]
    return sum(p for p, _ in parts), sum(f for _, f in parts)
