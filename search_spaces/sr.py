"""The QuantNAS super-resolution space (methods.md 11A), reduced for CPU runs: ``sr``.

The released macro-architecture: no head (the low-resolution RGB input is channel-repeated to ``C``), a body of
RFDN-style residual-distillation cells (4 searched body layers in series, the first three ``x <- x + op(x)``, the
last ``C -> C/2``, and 3 searched distillation layers ``C -> C/2`` on the inputs of the first three; the four
halves concatenated -> fixed 8-bit 1x1 ``2C -> C`` -> ESA attention; ADQ around the cell with the cell input as
skip), the cell outputs concatenated -> fixed 8-bit 1x1 -> fixed 8-bit 3x3 -> + the repeated input, a searched
upsampling conv ``C -> 3 s^2`` + PixelShuffle(s), and a searched tail ``out = x + op(x)`` (3 -> 3).

Every searched layer is one decision over (op, bits) pairs, named ``op@bits`` (``simple_3x3@4``), op-major.
Reduced from the release: 1 cell (the release has 4), 5 body / skip / upsampling ops of its 9
(:data:`BODY_OPS`) and 3 tail ops of its 6 (:data:`TAIL_OPS`), bits {4, 8}; ``C`` and the scale (x2, x4) are
supernet / build options. Every convolution takes a ReLU'd HWGQ-quantized input (ESA's too, a simplification).
"""
from __future__ import annotations

import functools
from typing import Callable, Dict, List, Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from nastk.choices import Categorical, ChoiceModel
from nastk.errors import ConfigError
from nastk.options import Bool, Int, Option, Text
from nastk.space import SearchSpace
from nastk.supernet import Supernet, decisions_of

#: searched body / distillation / upsampling ops (the release's default list has also simple_1x1_grouped_2,
#: simple_5x5_grouped_2, growth1_1x1 and growth1_5x5)
BODY_OPS = ("simple_1x1", "simple_3x3", "simple_5x5", "growth1_3x3", "simple_3x3_grouped_2")
#: searched tail ops (3 -> 3 channels: no grouped ops)
TAIL_OPS = ("simple_1x1", "simple_3x3", "growth1_3x3")
BITS = (4, 8)
CELLS = 1
#: the low-resolution input size at which reported BitOps are counted (64 x 64 LR pixels)
BITOPS_LR_SIZE = 64


def option_name(op: str, bits: int) -> str:
    return f"{op}@{bits}"


def split_option(option: str):
    op, bits = option.split("@")
    return op, int(bits)


def layer_names(cells: int = CELLS) -> List[str]:
    names = []
    for c in range(cells):
        names += [f"cell{c}_body{i}" for i in range(4)] + [f"cell{c}_skip{i}" for i in range(3)]
    return names + ["upsample", "tail"]


def ops_of(layer: str) -> Sequence[str]:
    return TAIL_OPS if layer == "tail" else BODY_OPS


def check_network_options(scale: int, C: int) -> None:
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 2 or scale % 2:
        # the upsampling layer's 3 x scale^2 outputs must split into the grouped ops' 2 groups
        raise ConfigError(f"the sr space's scale must be an even integer of at least 2 (x2, x4, ...), got {scale!r}")
    if isinstance(C, bool) or not isinstance(C, int) or C < 4 or C % 4:
        raise ConfigError(f"the sr space's C must be a multiple of 4 of at least 4, got {C!r}")


def _pool(c1: torch.Tensor) -> torch.Tensor:
    """ESA's 7x7 max pooling, stride 3; a map smaller than 7 (a small training patch) is pooled whole."""
    return F.max_pool2d(c1, kernel_size=min(7, c1.shape[-2], c1.shape[-1]), stride=3)


@functools.lru_cache(maxsize=None)
def _scripted_pool():
    return torch.jit.script(_pool)


def _traceable_pool(c1: torch.Tensor) -> torch.Tensor:
    """:func:`_pool` as TorchScript (scripted when first traced), so a traced network keeps the size rule instead
    of the kernel of the traced input's size: an exported network runs on images of any size."""
    return _scripted_pool()(c1)


class ESA(nn.Module):
    """RFDN's enhanced spatial attention (fixed 8-bit convs, ``C/4`` channels inside)."""

    def __init__(self, C: int, conv: Callable[..., nn.Module]):
        super().__init__()
        f = max(C // 4, 1)
        self.conv1, self.conv_f = conv(C, f, 1), conv(f, f, 1)
        self.conv2 = conv(f, f, 3, stride=2, padding=0)
        self.conv_max, self.conv3, self.conv3_ = conv(f, f, 3), conv(f, f, 3), conv(f, f, 3)
        self.conv4 = conv(f, C, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1_ = self.conv1(x)
        c1 = self.conv2(c1_)
        pooled = (_traceable_pool if torch.jit.is_tracing() else _pool)(c1)
        c3 = self.conv3_(self.conv3(self.conv_max(pooled)))
        c3 = F.interpolate(c3, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return x * torch.sigmoid(self.conv4(c3 + self.conv_f(c1_)))


class SRCell(nn.Module):
    """One residual-distillation cell; ``layer(name, c_in, c_out)`` makes each searched layer."""

    def __init__(self, index: int, C: int, layer, conv, adq: bool):
        super().__init__()
        from nastk.quantization.quantnas import ADQ

        prefix = f"cell{index}"
        self.body = nn.ModuleList([layer(f"{prefix}_body{i}", C, C) for i in range(3)] + [layer(f"{prefix}_body3", C, C // 2)])
        self.skip = nn.ModuleList(layer(f"{prefix}_skip{i}", C, C // 2) for i in range(3))
        self.fuse = conv(2 * C, C, 1)
        self.esa = ESA(C, conv)
        self.adq = ADQ(C) if adq else None

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        distilled = []
        for body, skip in zip(self.body[:3], self.skip):
            distilled.append(skip(x))
            x = x + body(x)
        distilled.append(self.body[3](x))
        return self.esa(self.fuse(torch.cat(distilled, dim=1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.adq(self.residual, x) if self.adq is not None else self.residual(x) + x


class SRNetwork(nn.Module):
    """The QuantNAS SR network around searched layers made by ``layer(name, c_in, c_out)`` (fixed ops in a
    child, :class:`~nastk.quantization.quantnas.QuantMixedOp` in the supernet)."""

    def __init__(self, layer, state, scale: int = 2, C: int = 16, cells: int = CELLS, adq: bool = True):
        super().__init__()
        from nastk.quantization.quantnas import fixed_conv

        check_network_options(scale, C)
        conv = lambda c_in, c_out, k, **o: fixed_conv(c_in, c_out, k, state, **o)  # noqa: E731
        self.C, self.scale = C, scale
        self.cells = nn.ModuleList(SRCell(i, C, layer, conv, adq) for i in range(cells))
        self.fuse1 = conv(cells * C, C, 1)
        self.fuse3 = conv(C, C, 3)
        self.upsample = layer("upsample", C, 3 * scale ** 2)
        self.shuffle = nn.PixelShuffle(scale)
        self.tail = layer("tail", 3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        repeated = x.repeat(1, -(-self.C // x.shape[1]), 1, 1)[:, :self.C]
        h, outputs = repeated, []
        for cell in self.cells:
            h = cell(h)
            outputs.append(h)
        h = self.fuse3(self.fuse1(torch.cat(outputs, dim=1))) + repeated
        h = self.shuffle(self.upsample(h))
        return h + self.tail(h)


SHARED_OPTIONS = (Option("C", Int(minimum=4), "channels of the body (a multiple of 4)"),
                  Option("adq", Bool(), "wrap each cell in QuantNAS' ADQ module (off: a plain residual)"))


class SRSpace(SearchSpace):
    """QuantNAS' (op, bits) space on the reduced RFDN-style SR network (see the module docstring)."""

    name = "sr"
    capabilities = {"supernet"}
    #: ``--evaluator train`` trains a child on (bicubic low-resolution, high-resolution) pairs of the skimage-sr
    #: patches with L1 and scores Y-channel PSNR (4-px border) on whole held-out images, QuantNAS' protocol
    TRAINING_DATA = {"dataset": "skimage-sr", "data": "image_pairs",
                     "data_options": {"downscale": "bicubic", "psnr": "y", "border": 4}}
    BUILD_OPTIONS = (Option("scale", Int(minimum=2), "super-resolution factor (x2, x4)"),) + SHARED_OPTIONS
    #: ``upscale``, not ``scale``: the image_pairs data module's ``--scale`` makes the pairs; the two must agree
    #: (the quantnas step checks it)
    SUPERNET_OPTIONS = (Option("upscale", Int(minimum=2), "super-resolution factor of the network (x2, x4; "
                               "the same as the data's --scale)"),) + SHARED_OPTIONS + (
        Option("shared_lsq", Text(choices=("registered", "code_unregistered")),
               "shared-weights LSQ steps registered (trained, saved) or the released code's unregistered list"),)

    def choice_model(self) -> ChoiceModel:
        return ChoiceModel([Categorical(layer, tuple(option_name(op, b) for op in ops_of(layer) for b in BITS))
                            for layer in layer_names()])

    def build(self, arch, num_classes: Optional[int] = None, scale: int = 2, C: int = 16, adq: bool = True, **options):
        """The child network of ``arch``: every searched layer one op at one bit-width (real LSQ + HWGQ)."""
        from nastk.quantization.quantnas import QuantizationState, QuantOp

        if options:
            raise ConfigError(f"the sr space's build() has no option(s) {', '.join(sorted(options))}")
        chosen = self.choices_of(arch)
        state = QuantizationState()

        def layer(name, c_in, c_out):
            op, bits = split_option(chosen[name])
            module = QuantOp(op, c_in, c_out, C, (bits,), state)
            module.set_setting("fixed", bits)
            return module

        return SRNetwork(layer, state, scale, C, adq=adq)

    def supernet(self, num_classes: Optional[int] = None, upscale: int = 2, C: int = 16, adq: bool = True,
                 shared_lsq: str = "registered"):
        return SRSupernet(self, upscale, C, adq, shared_lsq)

    def cost(self, arch, num_classes: int = 10, input_size: int = BITOPS_LR_SIZE, scale: int = 2,
             C: int = 16) -> Dict[str, float]:
        """BitOps (``MACs b_w b_a``, every quantized conv) of the child on an ``input_size``^2 LR image, and params;
        also in millions (``bitops_m``, ``params_m``: what the ``bitops`` and ``params`` objectives and
        ``--constraint bitops<=...`` read)."""
        from nastk.quantization.quantnas import model_bitops

        model = self.build(arch, scale=scale, C=C)
        bitops = float(model_bitops(model, (1, 3, input_size, input_size)))
        params = float(sum(p.numel() for p in model.parameters() if p.requires_grad))
        return {"bitops": bitops, "params": params, "bitops_m": bitops / 1e6, "params_m": params / 1e6}


class SRSupernet(Supernet):
    """Every searched layer a :class:`~nastk.quantization.quantnas.QuantMixedOp`; the rest fixed 8-bit layers."""

    def __init__(self, space: SRSpace, scale: int = 2, C: int = 16, adq: bool = True, shared_lsq: str = "registered"):
        from nastk.quantization.quantnas import QuantizationState, QuantMixedOp

        super().__init__(space, decisions_of(space))
        self.quantization = QuantizationState()  # mode and noise distribution: set by the quantnas step
        self.adq, self.scale, self.C = bool(adq), scale, C
        self.num_classes = None  # an image-to-image network

        def layer(name, c_in, c_out):
            return QuantMixedOp(name, ops_of(name), BITS, c_in, c_out, C, self.quantization, shared_lsq)

        self.net = SRNetwork(layer, self.quantization, scale, C, adq=adq)
        self._flops: Optional[torch.Tensor] = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def child_build_options(self) -> Dict[str, object]:
        """The keywords of ``space.build`` that make the networks :meth:`extract` returns."""
        return {"scale": self.scale, "C": self.C, "adq": self.adq}

    def extract(self, arch) -> nn.Module:
        """``space.build(arch)`` (one op at one bit-width per layer) holding this path's inherited weights, LSQ steps
        and ADQ statistics (:func:`~nastk.quantization.quantnas.extract_child`)."""
        from nastk.quantization.quantnas import extract_child

        return extract_child(self, arch, self.net)

    def search_flops(self, lr_size: int = BITOPS_LR_SIZE):
        """``(flops, bits)``, each ``(decisions, options)``: FLOPs (2 MACs) of every (op, bits) option on an
        ``lr_size``^2 LR image and its bit-width: what search-time BitOps weighs with the probabilities."""
        from nastk.quantization.quantnas import op_macs

        if self._flops is not None and self._flops[0] == lr_size:
            return self._flops[1]
        flops = torch.zeros(self.allowed.shape)
        bits = torch.zeros(self.allowed.shape)
        for point in self.choice_points():
            d = point.decision
            hw = (lr_size * self.scale,) * 2 if self.decisions[d].name == "tail" else (lr_size, lr_size)
            for o, op in enumerate(point.candidates):
                for j, b in enumerate(point.bits):
                    flops[d, o * len(point.bits) + j] = 2 * op_macs(op, hw)
                    bits[d, o * len(point.bits) + j] = b
        self._flops = (lr_size, (flops, bits))
        return flops, bits

    def expected_cost(self, weights: torch.Tensor, metric: str = "bitops") -> torch.Tensor:
        """Search-time BitOps (QuantNAS' linear-in-bits formula) of the per-decision probabilities ``weights``."""
        from nastk.quantization.quantnas import search_bitops

        if metric != "bitops":
            raise ConfigError(f"the sr supernet's expected_cost knows 'bitops', not {metric!r}")
        flops, bits = self.search_flops()
        return search_bitops(weights, flops.to(weights.device), bits.to(weights.device))
