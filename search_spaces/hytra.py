"""HyTra, BossNAS' hybrid CNN-Transformer search space (methods.md 10.1), its supernet and stand-alone networks.

Stem: Conv7x7 stride 2 (64) + BN + ReLU + MaxPool stride 2 (224 -> 56). Then 16 searchable layers in 4
blocks of 4; each picks a (resolution, operator) pair, option ``o`` of :data:`OPTIONS`:
0 ``att7`` ResAtt @7x7, 1 ``conv7`` ResConv @7x7, 2 ``att14``, 3 ``conv14``, 4 ``conv28``, 5 ``conv56``
(scales relative to a 224 input: the stem's output is scale 56; at another input size every scale
shrinks with it). Output widths 2048 / 1024 / 512 / 256 at scales 7 / 14 / 28 / 56 (times ``width_mult``,
< 1 for CPU tests). A path is valid when the resolution never increases and falls by at most one step
(x 1/2) between consecutive layers (the first layer: from the stem's scale 56).

* **ResConv** (bottleneck x4): 1x1 reduce -> depthwise 3x3 positional-encoding conv (**PEG**; stride 2
  when down-sampling; not residual) -> BN -> ReLU -> 3x3 -> BN -> ReLU -> 1x1 expand -> BN (gamma 0)
  + shortcut -> ReLU.
* **ResAtt** (BoTNet-style): 1x1 projection (out/4) -> PEG -> BN -> ReLU -> multi-head self-attention over
  all positions (heads = out/4/64, at least 1; q, k, v from one bias-free 1x1 conv; scaled dot product; no
  position bias) -> BN -> ReLU -> 1x1 expand -> BN (gamma 0) + shortcut -> ReLU.
* Shortcut: identity; 1x1 + BN + ReLU when widths differ; 3x3 stride 2 + BN + ReLU when down-sampling.
  Down-sampling uses **separate weights** (its own reduce, PEG and shortcut: the input is then the larger
  scale's, narrower map), used whenever the input is larger than the op's scale.
* ``attention="standard"`` (default; the retraining code's ``out_i = sum_j A[i, j] v_j``) or
  ``attention="search_code_transposed"`` (BossNAS' search supernet: ``out_j = sum_i A[i, j] v_i``, the
  softmax taken over keys but applied transposed, methods.md 10.1).

Rating and sampling use each block's **restricted paths** (:func:`restricted_paths`): every valid 4-layer
sequence from the block's input scale (block 0: the stem's 56; later: the scale of the previous block's
chosen last layer) down to 7. This gives BossNAS' list sizes 51 (from 56), 80 (from 14) and 16 (from 7);
from 28 it gives 99, where BossNAS' fixed block-1 list has 105 (its extra 6 paths are not derivable from
the rules above; [R]).
"""
from __future__ import annotations

import itertools
import math
from functools import lru_cache
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from nastk.architecture import Architecture
from nastk.choices import Categorical, ChoiceModel
from nastk.errors import ArchitectureError, ConfigError
from nastk.options import Float, Option, Text
from nastk.space import SearchSpace
from nastk.supernet import ChoicePoint, Supernet, decisions_of

OPTIONS: Tuple[str, ...] = ("att7", "conv7", "att14", "conv14", "conv28", "conv56")
SCALE = {0: 7, 1: 7, 2: 14, 3: 14, 4: 28, 5: 56}
WIDTH = {7: 2048, 14: 1024, 28: 512, 56: 256}
STEM_WIDTH, STEM_SCALE = 64, 56
BLOCKS, LAYERS_PER_BLOCK = 4, 4
LAYERS = tuple(f"b{b}_l{l}" for b in range(BLOCKS) for l in range(LAYERS_PER_BLOCK))
ATTENTION = ("standard", "search_code_transposed")
#: BossNet-T0's path (16 layers: conv56, conv28, conv14 x3, att14, conv14, att7 x3, conv7, att7 x5), read from
#: the retraining model's per-stage encoding [[1], [1], [1, 1, 1, 0, 1], [0, 0, 0, 1, 0, 0, 0, 0, 0]] (1 = conv)
BOSSNET_T0 = "conv56,conv28,conv14,conv14,conv14,att14,conv14,att7,att7,att7,conv7,att7,att7,att7,att7,att7"


def valid_step(previous_scale: int, option: int) -> bool:
    scale = SCALE[option]
    return scale == previous_scale or scale * 2 == previous_scale


@lru_cache(maxsize=None)
def restricted_paths(start_scale: int, layers: int = LAYERS_PER_BLOCK) -> Tuple[Tuple[int, ...], ...]:
    """Every valid sequence of ``layers`` options from an input at ``start_scale`` (module docstring)."""
    out = []
    for path in itertools.product(range(len(OPTIONS)), repeat=layers):
        scale, ok = start_scale, True
        for option in path:
            if not valid_step(scale, option):
                ok = False
                break
            scale = SCALE[option]
        if ok:
            out.append(path)
    return tuple(out)


def scaled(width: int, width_mult: float) -> int:
    return max(4, int(round(width * width_mult / 4)) * 4)


class HyTraSpace(SearchSpace):
    name = "hytra"
    capabilities = frozenset({"supernet"})
    BUILD_OPTIONS = (Option("width_mult", Float(above=0), "hytra: multiplier of every width (1: the published "
                            "network; small for CPU)", 1.0),
                     Option("attention", Text(choices=ATTENTION), "hytra: standard attention or the search "
                            "code's transposed one", "standard"))
    SUPERNET_OPTIONS = (Option("width_mult", Float(above=0), "hytra supernet: multiplier of every width"),
                        Option("attention", Text(choices=ATTENTION), "hytra supernet: standard attention or "
                               "the search code's transposed one (search_code_transposed)"))

    def choice_model(self) -> ChoiceModel:
        """16 categorical layers ``b{block}_l{layer}`` over :data:`OPTIONS` (validity: :meth:`check`)."""
        return ChoiceModel([Categorical(name, OPTIONS) for name in LAYERS])

    def to_str(self, arch: Architecture) -> str:
        return ",".join(self._values(arch))

    def from_str(self, text: str) -> Architecture:
        if not isinstance(text, str):
            raise ArchitectureError(f"HyTra architecture must be a string, got {type(text).__name__}")
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != len(LAYERS) or any(p not in OPTIONS for p in parts):
            raise ArchitectureError(f"HyTra architecture {text!r} must be {len(LAYERS)} comma-separated ops "
                                    f"from {', '.join(OPTIONS)}")
        return self.check(Architecture(self.name, tuple(parts)))

    def options_of(self, arch: Architecture) -> Tuple[int, ...]:
        return tuple(OPTIONS.index(v) for v in self._values(arch))

    def check(self, arch: Architecture) -> Architecture:
        """``arch`` if its resolutions never increase and fall by at most x1/2 per layer, else an error."""
        scale = STEM_SCALE
        for layer, option in enumerate(self.options_of(arch)):
            if not valid_step(scale, option):
                raise ArchitectureError(f"HyTra layer {LAYERS[layer]} ({OPTIONS[option]}) cannot follow scale "
                                        f"{scale}: resolution never increases and halves at most once per layer")
            scale = SCALE[option]
        return arch

    def sample(self, rng: np.random.Generator) -> Architecture:
        """A valid path: each block's 4 layers uniform over its restricted paths from the previous scale."""
        options: List[int] = []
        scale = STEM_SCALE
        for _ in range(BLOCKS):
            paths = restricted_paths(scale)
            block = paths[int(rng.integers(len(paths)))]
            options.extend(block)
            scale = SCALE[block[-1]]
        return Architecture(self.name, tuple(OPTIONS[o] for o in options))

    def mutate(self, arch: Architecture, rng: np.random.Generator) -> Architecture:
        """One block resampled among the paths valid between its neighbours."""
        for _ in range(100):
            options = list(self.options_of(arch))
            block = int(rng.integers(BLOCKS))
            scale = STEM_SCALE if block == 0 else SCALE[options[block * LAYERS_PER_BLOCK - 1]]
            paths = restricted_paths(scale)
            options[block * LAYERS_PER_BLOCK:(block + 1) * LAYERS_PER_BLOCK] = paths[int(rng.integers(len(paths)))]
            candidate = Architecture(self.name, tuple(OPTIONS[o] for o in options))
            try:
                if candidate != arch:
                    return self.check(candidate)
            except ArchitectureError:
                continue
        return self.sample(rng)

    def is_valid(self, arch: Architecture) -> bool:
        try:
            self.check(arch)
            return True
        except ArchitectureError:
            return False

    def neighbors(self, arch: Architecture) -> List[Architecture]:
        """The valid paths one layer away."""
        return [a for a in super().neighbors(arch) if self.is_valid(a)]

    def crossover(self, a: Architecture, b: Architecture, rng: np.random.Generator) -> Architecture:
        """The generic per-choice crossover, redrawn until the child is a valid path (else a parent)."""
        for _ in range(100):
            child = super().crossover(a, b, rng)
            if self.is_valid(child):
                return child
        return a if rng.random() < 0.5 else b

    def build(self, arch: Architecture, num_classes: int = 1000, width_mult: float = 1.0,
              attention: str = "standard"):
        """The stand-alone network of a valid path."""
        return HyTraNetwork(self.options_of(self.check(arch)), num_classes, width_mult, attention)

    def supernet(self, num_classes: int = 1000, width_mult: float = 1.0, attention: str = "standard"):
        return HyTraSupernet(self, num_classes, width_mult, attention)

    def cost(self, arch: Architecture, num_classes: int = 1000, input_size: int = 224) -> Dict[str, float]:
        from nastk.cost import model_cost

        return model_cost(self.build(arch, num_classes), input_size=input_size)


# --- operations -------------------------------------------------------------------------------------------
def bn(channels: int, zero: bool = False) -> nn.BatchNorm2d:
    norm = nn.BatchNorm2d(channels)
    if zero:
        nn.init.zeros_(norm.weight)
    return norm


class MultiHeadSelfAttention(nn.Module):
    """Self-attention over all positions; q, k, v from one bias-free 1x1 conv, no position bias."""

    def __init__(self, channels: int, heads: int, attention: str = "standard"):
        super().__init__()
        if attention not in ATTENTION:
            raise ConfigError(f"unknown attention {attention!r}; known: {', '.join(ATTENTION)}")
        if channels % heads:
            raise ConfigError(f"{channels} channels do not split into {heads} heads")
        self.heads, self.attention = heads, attention
        self.qkv = nn.Conv2d(channels, 3 * channels, 1, bias=False)

    def forward(self, x):
        n, c, h, w = x.shape
        d = c // self.heads
        q, k, v = self.qkv(x).reshape(n, 3, self.heads, d, h * w).unbind(1)  # (n, heads, d, positions)
        scores = torch.einsum("nhdi,nhdj->nhij", q, k) / math.sqrt(d)  # [i, j]: query i, key j
        weights = scores.softmax(dim=-1)  # normalised over keys j
        if self.attention == "standard":
            out = torch.einsum("nhij,nhdj->nhdi", weights, v)  # out_i = sum_j A[i, j] v_j
        else:
            out = torch.einsum("nhij,nhdi->nhdj", weights, v)  # search code: out_j = sum_i A[i, j] v_i
        return out.reshape(n, c, h, w)


class HyTraOp(nn.Module):
    """One ResConv or ResAtt op at one scale, with separate weights for the down-sampling case."""

    def __init__(self, option: int, in_same: Optional[int], in_down: Optional[int], width_mult: float, attention: str):
        super().__init__()
        self.option, self.scale = option, SCALE[option]
        out = scaled(WIDTH[self.scale], width_mult)
        mid = out // 4
        self.is_attention = OPTIONS[option].startswith("att")
        self.entry = nn.ModuleDict()  # "same" / "down": reduce + PEG (+ BN, ReLU), and the shortcut
        for kind, c_in in (("same", in_same), ("down", in_down)):
            if c_in is None:
                continue
            stride = 2 if kind == "down" else 1
            shortcut: nn.Module
            if stride == 2:
                shortcut = nn.Sequential(nn.Conv2d(c_in, out, 3, 2, 1, bias=False), bn(out), nn.ReLU())
            elif c_in != out:
                shortcut = nn.Sequential(nn.Conv2d(c_in, out, 1, bias=False), bn(out), nn.ReLU())
            else:
                shortcut = nn.Identity()
            self.entry[kind] = nn.ModuleDict({
                "reduce": nn.Conv2d(c_in, mid, 1, bias=False),
                "peg": nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False),
                "norm": bn(mid), "shortcut": shortcut})
        if self.is_attention:
            self.body = nn.Sequential(MultiHeadSelfAttention(mid, max(1, mid // 64), attention), bn(mid), nn.ReLU())
        else:
            self.body = nn.Sequential(nn.Conv2d(mid, mid, 3, 1, 1, bias=False), bn(mid), nn.ReLU())
        self.expand = nn.Sequential(nn.Conv2d(mid, out, 1, bias=False), bn(out, zero=True))

    def forward(self, x, down: bool):
        entry = self.entry["down" if down else "same"]
        y = F.relu(entry["norm"](entry["peg"](entry["reduce"](x))))
        return F.relu(self.expand(self.body(y)) + entry["shortcut"](x))


def in_widths(layer: int, option: int, width_mult: float) -> Tuple[Optional[int], Optional[int]]:
    """(input width without, with down-sampling) of ``option`` at ``layer`` (None: impossible there)."""
    scale = SCALE[option]
    if layer == 0:
        return (STEM_WIDTH if scale == STEM_SCALE else None, STEM_WIDTH if scale * 2 == STEM_SCALE else None)
    return scaled(WIDTH[scale], width_mult), (scaled(WIDTH[scale * 2], width_mult) if scale * 2 in WIDTH else None)


def stem() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, STEM_WIDTH, 7, 2, 3, bias=False), bn(STEM_WIDTH), nn.ReLU(), nn.MaxPool2d(3, 2, 1))


class HyTraNetwork(nn.Module):
    """A stand-alone HyTra network: the stem, the path's 16 ops (down-sampling where the scale falls), head."""

    def __init__(self, options: Sequence[int], num_classes: int = 1000, width_mult: float = 1.0,
                 attention: str = "standard"):
        super().__init__()
        self.stem = stem()
        self.options = tuple(options)
        scales = [STEM_SCALE] + [SCALE[o] for o in self.options]
        self.down = [scales[i + 1] < scales[i] for i in range(len(self.options))]
        ops = []
        for i, (o, down) in enumerate(zip(self.options, self.down)):  # only the entry (same / down) the path uses
            same, smaller = in_widths(i, o, width_mult)
            ops.append(HyTraOp(o, None if down else same, smaller if down else None, width_mult, attention))
        self.ops = nn.ModuleList(ops)
        self.classifier = nn.Linear(scaled(WIDTH[SCALE[self.options[-1]]], width_mult), num_classes)

    def forward(self, x):
        x = self.stem(x)
        for op, down in zip(self.ops, self.down):
            x = op(x, down)
        return self.classifier(F.adaptive_avg_pool2d(x, 1).flatten(1))


# --- the supernet -------------------------------------------------------------------------------------------
class HyTraLayer(ChoicePoint):
    """One searchable layer: all 6 ops (each with its down-sampling weights)."""

    def __init__(self, layer: int, width_mult: float, attention: str):
        super().__init__(decisions=(LAYERS[layer],))
        self.ops = nn.ModuleList(HyTraOp(o, *in_widths(layer, o, width_mult), width_mult, attention)
                                 for o in range(len(OPTIONS)))
        self.active = 0

    def configure(self, values, allowed) -> None:
        (value,) = values
        if isinstance(value, torch.Tensor):
            raise ConfigError("the HyTra supernet runs single paths only")
        self.active = int(value)

    def candidate_parameters(self, option: int):
        return list(self.ops[option].parameters())

    def forward(self, x, base: int):
        op = self.ops[self.active]
        target = base * SCALE[self.active] // 7
        if x.shape[-1] == target:
            if "same" not in op.entry:
                raise ArchitectureError(f"{OPTIONS[self.active]} cannot take the stem's output without down-sampling")
            return op(x, down=False)
        if x.shape[-1] == 2 * target and "down" in op.entry:
            return op(x, down=True)
        raise ArchitectureError(f"{OPTIONS[self.active]} (scale {SCALE[self.active]}) cannot follow an input at "
                                f"{x.shape[-1]} pixels: resolution never increases and halves at most once per layer")


class HyTraSupernet(Supernet):
    """16 layers x 6 ops; ``forward(x, block=k)`` returns the feature map after block ``k``."""

    blocks = tuple(tuple(range(b * LAYERS_PER_BLOCK, (b + 1) * LAYERS_PER_BLOCK)) for b in range(BLOCKS))

    def __init__(self, space, num_classes: int = 1000, width_mult: float = 1.0, attention: str = "standard"):
        super().__init__(space, decisions_of(space))
        self.width_mult = width_mult
        self.stem = stem()
        self.layers = nn.ModuleList(HyTraLayer(i, width_mult, attention) for i in range(len(LAYERS)))
        self.classifiers = nn.ModuleDict({str(s): nn.Linear(scaled(w, width_mult), num_classes) for s, w in WIDTH.items()})
        self._base = 7
        self.set_active(space.from_str(BOSSNET_T0))

    def block_outputs(self, block: int):
        """(channels, adapter factor to scale 7) of every scale a block can end at."""
        return [(scaled(WIDTH[s], self.width_mult), s // 7) for s in sorted(WIDTH)]

    def adapter_factor(self, features: torch.Tensor) -> int:
        return max(1, features.shape[-1] // self._base)

    def start_scale(self, block: int) -> int:
        """The scale block ``block``'s input has: the stem's, or that of the previous block's (only allowed) last op."""
        if block == 0:
            return STEM_SCALE
        last = self.blocks[block - 1][-1]
        allowed = np.flatnonzero(self.allowed[last])
        if len(allowed) != 1:
            raise ConfigError(f"block {block} is rated after block {block - 1} is fixed (its last layer allows "
                              f"{len(allowed)} options)")
        return SCALE[int(allowed[0])]

    def block_paths(self, block: int) -> List[Tuple[int, ...]]:
        return list(restricted_paths(self.start_scale(block)))

    def path_of_arch(self, arch):
        return self.space.options_of(arch)

    def arch_of_path(self, choices):
        return self.space.check(Architecture(self.space.name, tuple(OPTIONS[int(c)] for c in choices)))

    def forward(self, x: torch.Tensor, block: Optional[int] = None) -> torch.Tensor:
        self._base = max(1, x.shape[-1] // 32)  # the size of scale 7 at this input
        last = len(self.layers) - 1 if block is None else self.blocks[block][-1]
        x = self.stem(x)
        for layer in self.layers[:last + 1]:
            x = layer(x, self._base)
        if block is not None:
            return x
        scale = SCALE[self.layers[-1].active]
        return self.classifiers[str(scale)](F.adaptive_avg_pool2d(x, 1).flatten(1))
