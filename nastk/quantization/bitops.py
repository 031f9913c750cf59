"""BitOps and model size of quantized layers (methods.md 11A/11B): the costs a mixed-precision search trades
accuracy against.

* BitOps of a conv / linear layer = multiply-adds x weight bits x activation bits (QuantNAS' final-model
  formula ``FLOPs b^2 / 2`` with ``FLOPs = 2 MACs``); MACs = ``C_in / groups x C_out x k_h x k_w x H_out x W_out``.
* Model size = stored weight bits: weight elements x weight bits (+ a bias at 32 bits).

Sliced (elastic) layers pass their active ``in_channels`` / ``out_channels`` / ``kernel_size``.
"""
from __future__ import annotations

from typing import Iterable, Optional, Sequence, Tuple, Union

from torch import nn

from nastk.errors import ConfigError
from nastk.quantization.quantizers import check_bits

BIAS_BITS = 32


def _pair(v) -> Tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def layer_macs(layer: Union[nn.Conv2d, nn.Linear], output_hw: Sequence[int] = (1, 1),
               in_channels: Optional[int] = None, out_channels: Optional[int] = None,
               kernel_size=None) -> int:
    """Multiply-adds of one conv / linear layer at ``output_hw`` (a linear layer: ``(1, 1)`` per sample)."""
    if isinstance(layer, nn.Linear):
        cin = in_channels if in_channels is not None else layer.in_features
        cout = out_channels if out_channels is not None else layer.out_features
        return int(cin * cout)
    if not isinstance(layer, nn.Conv2d):
        raise ConfigError(f"BitOps are defined for nn.Conv2d and nn.Linear layers, got {type(layer).__name__}")
    h, w = _pair(output_hw)
    kh, kw = _pair(kernel_size if kernel_size is not None else layer.kernel_size)
    cin = in_channels if in_channels is not None else layer.in_channels
    cout = out_channels if out_channels is not None else layer.out_channels
    groups = layer.groups
    if groups == layer.in_channels and groups == layer.out_channels:  # depthwise: follows the active width
        groups = cin
    return int(cin // groups * cout * kh * kw * h * w)


def conv_bitops(conv: Union[nn.Conv2d, nn.Linear], output_hw: Sequence[int], weight_bits: int, act_bits: int,
                **active) -> int:
    """BitOps of one layer: MACs x weight bits x activation bits."""
    return layer_macs(conv, output_hw, **active) * check_bits(weight_bits, what="weight_bits") \
        * check_bits(act_bits, what="act_bits")


def weight_elements(layer: Union[nn.Conv2d, nn.Linear], in_channels: Optional[int] = None,
                    out_channels: Optional[int] = None, kernel_size=None) -> Tuple[int, int]:
    """``(weight elements, bias elements)`` of a layer (optionally at an active slice)."""
    if isinstance(layer, nn.Linear):
        cin = in_channels if in_channels is not None else layer.in_features
        cout = out_channels if out_channels is not None else layer.out_features
        return cin * cout, (cout if layer.bias is not None else 0)
    macs_per_pixel = layer_macs(layer, (1, 1), in_channels, out_channels, kernel_size)
    cout = out_channels if out_channels is not None else layer.out_channels
    return macs_per_pixel, (cout if layer.bias is not None else 0)


def model_size_bits(layers: Iterable[Tuple[Union[nn.Module, int], int]], bias_bits: int = BIAS_BITS) -> int:
    """Stored bits of a model: for each ``(layer, weight_bits)`` (a conv / linear layer, or a plain number of
    weight elements), weight elements x bits, plus any bias at ``bias_bits``."""
    total = 0
    for layer, bits in layers:
        bits = check_bits(bits, what="weight_bits")
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            w, b = weight_elements(layer)
            total += w * bits + b * bias_bits
        elif isinstance(layer, int) and not isinstance(layer, bool) and layer >= 0:
            total += layer * bits
        else:
            raise ConfigError(f"model_size_bits takes conv / linear layers or element counts, got {layer!r}")
    return int(total)
