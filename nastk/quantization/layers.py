"""Quantized conv / linear layers whose weight and input bit-widths (and forms) are run-time decisions.

:class:`QuantizedLayer` wraps any layer that computes with its ``weight`` parameter (``nn.Conv2d``,
``nn.Linear``, nastk's elastic ``DynamicConv2d`` / ``DynamicLinear``): the input goes through an input
quantizer, the weight through a weight quantizer (substituted with :func:`torch.func.functional_call`, so the
wrapped layer's own slicing and kernel transforms still run), each an
:class:`~nastk.quantization.quantizers.ElasticQuantizer`. At 32 / 32 bits it is the float layer exactly.
Elastic layers quantize their whole stored weight (per-channel tables cover every stored output channel;
the active slice reads its prefix). Each forward records the multiply-adds it ran (:attr:`macs`, per sample),
from which BitOps follow for any bit-widths.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
from torch import nn
from torch.func import functional_call

from nastk.errors import ConfigError
from nastk.quantization.quantizers import (ACTIVATION_FORMS, DEFAULT_BIT_OPTIONS, FULL_PRECISION, WEIGHT_FORMS,
                                           ElasticQuantizer, check_bits)


def _kernel_area(layer: nn.Module) -> int:
    k = getattr(layer, "kernel_size", 1)
    return int(k[0] * k[1]) if isinstance(k, (tuple, list)) else int(k) * int(k)


def _is_depthwise(layer: nn.Module, in_channels: int) -> bool:
    if getattr(layer, "depthwise", False):
        return True
    groups = getattr(layer, "groups", 1)
    return isinstance(groups, int) and groups > 1 and groups == in_channels


class QuantizedLayer(nn.Module):
    """``layer`` with switchable weight / input fake quantization (see the module docstring).

    ``weight_forms`` / ``act_forms``: the (per_channel, symmetric) forms the quantizers can switch between
    (EQ-Net: weights per-channel / per-tensor x sym / asym, activations per-tensor sym / asym).
    Attribute access the wrapper does not know goes to the wrapped layer (``out_channels``, ``set_active``).
    """

    def __init__(self, layer: nn.Module, weight_bits: int = FULL_PRECISION, act_bits: int = FULL_PRECISION,
                 bit_options: Sequence[int] = DEFAULT_BIT_OPTIONS,
                 weight_forms: Sequence[Tuple[bool, bool]] = WEIGHT_FORMS,
                 act_forms: Sequence[Tuple[bool, bool]] = ACTIVATION_FORMS, abs_offset: bool = False):
        super().__init__()
        weight = getattr(layer, "weight", None)
        if not isinstance(weight, nn.Parameter) or weight.dim() < 2:
            raise ConfigError(f"cannot quantize a {type(layer).__name__}: it has no conv / linear weight")
        self.layer = layer
        self.weight_quantizer = ElasticQuantizer(weight_forms, channels=weight.shape[0], channel_axis=0, signed=True,
                                                 bit_options=bit_options, abs_offset=abs_offset)
        self.input_quantizer = ElasticQuantizer(act_forms, bit_options=bit_options, abs_offset=abs_offset)
        self.weight_bits, self.act_bits = weight_bits, act_bits
        self.macs = self.active_weights = self.active_out = self.input_elements = 0

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "layer":
                raise
            return getattr(super().__getattr__("layer"), name)

    def __setattr__(self, name: str, value) -> None:
        # a setting of the wrapped layer (an elastic layer's ``out_channels``) goes to the layer
        layer = self.__dict__.get("_modules", {}).get("layer")
        if layer is not None and not hasattr(type(self), name) and name not in self.__dict__ \
                and not isinstance(value, (nn.Module, nn.Parameter)) and hasattr(layer, name):
            setattr(layer, name, value)
        else:
            super().__setattr__(name, value)

    # -- decisions -----------------------------------------------------------------------------------
    @property
    def weight_bits(self) -> int:
        return self.weight_quantizer.bits

    @weight_bits.setter
    def weight_bits(self, bits: int) -> None:
        self.weight_quantizer.bits = check_bits(bits, self.weight_quantizer.bit_options, "weight_bits")

    @property
    def act_bits(self) -> int:
        return self.input_quantizer.bits

    @act_bits.setter
    def act_bits(self, bits: int) -> None:
        self.input_quantizer.bits = check_bits(bits, self.input_quantizer.bit_options, "act_bits")

    def configure(self, weight_bits: int, act_bits: int, weight_form: Optional[Tuple[bool, bool]] = None,
                  act_symmetric: Optional[bool] = None) -> None:
        """Bits of weight and input; optionally the weight's (per_channel, symmetric) form and the input's symmetry."""
        self.weight_bits, self.act_bits = weight_bits, act_bits
        if weight_form is not None:
            self.weight_quantizer.set_form(*weight_form)
        if act_symmetric is not None:
            self.input_quantizer.set_form(False, act_symmetric)

    def weight_elements(self) -> int:
        return int(self.layer.weight.numel())

    # -- forward -------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xq = self.input_quantizer(x)
        weight = self.layer.weight
        wq = self.weight_quantizer(weight)
        out = self.layer(xq) if wq is weight else functional_call(self.layer, {"weight": wq}, (xq,))
        self._count(x, out)
        return out

    def _count(self, x: torch.Tensor, out: torch.Tensor) -> None:
        in_channels = x.shape[1] if x.dim() == 4 else x.shape[-1]
        per_sample_outputs = out[0].numel()
        fan_in = 1 if _is_depthwise(self.layer, in_channels) else in_channels
        self.macs = int(per_sample_outputs * fan_in * (_kernel_area(self.layer) if x.dim() == 4 else 1))
        self.active_out = int(out.shape[1] if out.dim() == 4 else out.shape[-1])
        spatial = per_sample_outputs // max(self.active_out, 1)
        self.active_weights = self.macs // max(spatial, 1)
        self.input_elements = int(x[0].numel())

    def bitops(self) -> int:
        """BitOps of the last forward: multiply-adds x weight bits x input bits."""
        return self.macs * self.weight_bits * self.act_bits


class QConv2d(QuantizedLayer):
    """A quantized ``nn.Conv2d``: ``QConv2d(in, out, kernel, stride=..., weight_bits=8, act_bits=8)``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias: bool = True, weight_bits: int = 8, act_bits: int = 8, device=None, **quantizer_options):
        super().__init__(nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                                   device=device), weight_bits, act_bits, **quantizer_options)


class QLinear(QuantizedLayer):
    """A quantized ``nn.Linear``: ``QLinear(in, out, weight_bits=8, act_bits=8)``."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, weight_bits: int = 8, act_bits: int = 8,
                 device=None, **quantizer_options):
        super().__init__(nn.Linear(in_features, out_features, bias, device=device), weight_bits, act_bits,
                         **quantizer_options)


#: layer classes :func:`quantize_layers` wraps (by class name too, so elastic layers need no import here)
QUANTIZABLE = (nn.Conv2d, nn.Linear)
QUANTIZABLE_NAMES = ("DynamicConv2d", "DynamicLinear")


def quantizable(module: nn.Module) -> bool:
    return (isinstance(module, QUANTIZABLE) or type(module).__name__ in QUANTIZABLE_NAMES) \
        and not isinstance(module, QuantizedLayer)


def quantize_layers(model: nn.Module, **options) -> list:
    """Replace every conv / linear layer of ``model`` (in module order) by a :class:`QuantizedLayer` around it,
    in place; returns ``[(qualified name, QuantizedLayer)]`` in module order."""
    targets = [(name, m) for name, m in model.named_modules() if name and quantizable(m)]
    wrapped = []
    for name, module in targets:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        q = QuantizedLayer(module, **options)
        if isinstance(parent, (nn.ModuleList, nn.Sequential)) and attr.isdigit():
            parent[int(attr)] = q
        else:
            setattr(parent, attr, q)
        wrapped.append((name, q))
    return wrapped

