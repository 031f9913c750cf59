"""MobileNet / MBConv elastic search spaces (methods.md 12): OFA, BigNAS / AttentiveNAS and a tiny CPU variant.

A network is a stem (3x3 stride 2, BN, act), optionally OFA's fixed first block, stages of MBConv
blocks (:class:`~nastk.elastic.ElasticMBConv`), and a head: 1x1 final expand + BN + act, global average
pool, optionally a 1x1 feature-mix layer (no BN, no bias) + act, dropout, linear. What varies is
declared once in a :class:`MobileNetSpec`, from which come the choice model, the supernet
(:mod:`search_spaces.mobilenet_supernet`), stand-alone children and the analytic cost.

**Choices** (all :class:`~nastk.choices.Ordered`; a setting with a single value is fixed, not a choice):
``resolution``; ``stem_width``; per stage ``i`` (from 1) ``s{i}_width``, ``s{i}_depth`` and either per
block ``j`` (from 1; every block up to the largest depth, skipped ones too, as OFA samples them)
``s{i}_b{j}_kernel``, ``s{i}_b{j}_expand`` or per stage ``s{i}_kernel``, ``s{i}_expand``; ``head_width``.
A stage of depth ``d`` runs its first ``d`` blocks.

Spaces:

* ``mobilenet`` - the tiny CPU variant (methods.md 12.3): stem 16; stages 16 / 24 / 32, strides
  1 / 2 / 2, depth {1,2,3}; per block kernel {3,5} (centre crop) and expand {3,4,6}; 1x1 -> 96, GAP,
  FC; zero-gamma. Where 12.3 is silent: ReLU everywhere, BN + ReLU after the 1x1 -> 96, no SE, no dropout.
* ``mobilenet-ofa`` - OFA-MobileNetV3 as 12.1 tabulates it: stem 16 h-swish; fixed MBConv k3 e1
  16 -> 16 ReLU with residual; stages 24 / 40 / 80 / 112 / 160, strides 2 / 2 / 2 / 1 / 2, act
  ReLU / ReLU / h-swish / h-swish / h-swish, SE no / yes / no / yes / yes; depth {2,3,4}; per block
  kernel {3,5,7} (learned kernel transform) and expand {3,4,6}; head 960 / 1280, dropout 0.1; resolution
  128..224 step 4 (a choice). BN gamma starts at 1 (OFA's initialisation; no zero-gamma).
* ``mobilenet-bignas`` - the AttentiveNAS space of 12.2: resolution {192,224,256,288}; per-stage kernel
  {3,5}, expand {4,5,6} (stage 1: 1, stages 6-7: 6), width and depth (up to 8); swish; SE in stages
  3, 5, 6, 7. The spec is silent on the widths and depths: they are AttentiveNAS's published supernet
  config (stem {16,24}; stages {16,24} d{1,2} s1, {24,32} d3-5 s2, {32,40} d3-6 s2, {64,72} d3-6 s2,
  {112,120,128} d3-8 s1, {192..216 step 8} d3-8 s2, {216,224} d{1,2} s1; head: final expand 6 x the last
  stage's width, feature mix {1792,1984}), dropout 0.2 (the rate AttentiveNAS gives its largest child;
  a training step may change ``supernet.dropout.p``), zero-gamma. As 12.1 says, the identity residual
  needs stride 1 and equal widths and is never on a stage's first block (AttentiveNAS's code adds a
  projection shortcut there instead; not done here).

Resolution is part of an OFA / BigNAS architecture, but the supernet runs whatever resolution its
input has: resizing images to :func:`resolution_of` ``(arch)`` is the data pipeline's job. The width
multiplier (``width_mult``, OFA's separate x1.2 supernet) is a supernet / build / cost option: every
width ``w`` becomes ``make_divisible(w * width_mult, 8)``; architectures keep the nominal (x1.0) widths.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple, Union

from nastk.architecture import Architecture
from nastk.choices import ChoiceModel, Ordered
from nastk.elastic import conv_cost, linear_cost, make_divisible, mbconv_cost, spatial
from nastk.errors import ConfigError
from nastk.options import Bool, Float, Option
from nastk.registry import get_space
from nastk.space import SearchSpace

Cost = Tuple[int, int]  # (parameters, multiply-adds)


# --- what varies ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Stage:
    """One stage: option values of its width, depth, kernel and expand ratio (one value: fixed)."""

    widths: Tuple[int, ...]
    depths: Tuple[int, ...]
    kernels: Tuple[int, ...]
    expands: Tuple[float, ...]
    stride: int
    act: str
    se: bool = False


@dataclass(frozen=True)
class MobileNetSpec:
    """A MobileNet-style elastic network (see the module docstring)."""

    stem: Tuple[int, ...]
    stem_act: str
    stages: Tuple[Stage, ...]
    head_act: str
    #: final 1x1 expand: a fixed width, or ``head_expand_ratio`` x the last stage's width
    head_expand: Optional[int] = None
    head_expand_ratio: Optional[int] = None
    #: 1x1 feature-mix widths after pooling (no BN, no bias); empty: none
    feature_mix: Tuple[int, ...] = ()
    dropout: float = 0.0
    #: OFA's fixed MBConv k3 e1 stem -> stem (ReLU, residual) before the stages
    first_block: bool = False
    #: kernel and expand ratio chosen per block (OFA) rather than per stage (AttentiveNAS)
    per_block: bool = True
    #: resolutions (a choice when given); otherwise costs use ``input_size`` (default 32)
    resolutions: Tuple[int, ...] = ()
    kernel_transform: bool = False
    zero_gamma: bool = True


TINY = MobileNetSpec(
    stem=(16,), stem_act="relu", head_act="relu", head_expand=96,
    stages=tuple(Stage((w,), (1, 2, 3), (3, 5), (3, 4, 6), s, "relu") for w, s in ((16, 1), (24, 2), (32, 2))))

OFA = MobileNetSpec(
    stem=(16,), stem_act="h_swish", head_act="h_swish", head_expand=960, feature_mix=(1280,), dropout=0.1,
    first_block=True, resolutions=tuple(range(128, 225, 4)), kernel_transform=True, zero_gamma=False,
    stages=tuple(Stage((w,), (2, 3, 4), (3, 5, 7), (3, 4, 6), s, act, se) for w, s, act, se in (
        (24, 2, "relu", False), (40, 2, "relu", True), (80, 2, "h_swish", False), (112, 1, "h_swish", True),
        (160, 2, "h_swish", True))))

BIGNAS = MobileNetSpec(
    stem=(16, 24), stem_act="swish", head_act="swish", head_expand_ratio=6, feature_mix=(1792, 1984), dropout=0.2,
    per_block=False, resolutions=(192, 224, 256, 288),
    stages=tuple(Stage(w, d, (3, 5), e, s, "swish", se) for w, d, e, s, se in (
        ((16, 24), (1, 2), (1,), 1, False),
        ((24, 32), (3, 4, 5), (4, 5, 6), 2, False),
        ((32, 40), (3, 4, 5, 6), (4, 5, 6), 2, True),
        ((64, 72), (3, 4, 5, 6), (4, 5, 6), 2, False),
        ((112, 120, 128), (3, 4, 5, 6, 7, 8), (4, 5, 6), 1, True),
        ((192, 200, 208, 216), (3, 4, 5, 6, 7, 8), (6,), 2, True),
        ((216, 224), (1, 2), (6,), 1, True))))


# --- the network as a list of units (one source for choices, supernet and costs) --------------------------
@dataclass(frozen=True)
class Role:
    """A layer setting: the choice it reads (None: fixed) and its value for each of that choice's options."""

    choice: Optional[str]
    values: Tuple

    def at(self, positions: Mapping[str, int]):
        return self.values[positions[self.choice]] if self.choice else self.values[0]

    @property
    def largest(self):
        return max(self.values)


@dataclass(frozen=True)
class ConvUnit:
    """Conv (+ BN) + act: the stem, the final expand or the feature mix."""

    width: Role
    kernel: int = 1
    stride: int = 1
    act: Optional[str] = None
    bn: bool = True


@dataclass(frozen=True)
class BlockUnit:
    """One MBConv block; ``depth`` (None: always runs) skips it unless the stage depth exceeds ``index``."""

    width: Role
    kernel: Role
    expand: Role
    depth: Optional[Role]
    index: int
    stride: int
    act: str
    se: bool
    residual: bool


@dataclass(frozen=True)
class PoolUnit:
    """Global average pooling."""


@dataclass(frozen=True)
class ClassifierUnit:
    """Flatten, dropout, linear."""

    classes: int
    dropout: float


Unit = Union[ConvUnit, BlockUnit, PoolUnit, ClassifierUnit]


@dataclass(frozen=True)
class CostTerm:
    """One unit's cost: it depends on the choices in ``reads``, and counts only while ``depth`` (a
    ``(depth role, block index)`` pair, or None) keeps the block running."""

    reads: Tuple[str, ...]
    depth: Optional[Tuple[Role, int]]
    cost: Callable[[Mapping[str, int], int], Cost]  # (choice positions, network input size)


def _input_size(strides: Tuple[int, ...], size: int) -> int:
    for stride in strides:
        size = 1 if stride == 0 else spatial(size, stride)  # stride 0: global pooling
    return size


def _unit_cost(unit: Unit, in_role: Role, positions: Mapping[str, int], size: int, num_classes: int) -> Cost:
    channels = in_role.at(positions)
    if isinstance(unit, ConvUnit):
        return conv_cost(channels, unit.width.at(positions), unit.kernel, spatial(size, unit.stride), bn=unit.bn)
    if isinstance(unit, BlockUnit):
        return mbconv_cost(channels, unit.width.at(positions), unit.kernel.at(positions), unit.expand.at(positions),
                           unit.stride, size, unit.se)
    if isinstance(unit, ClassifierUnit):
        return linear_cost(channels, num_classes)
    return 0, 0


# --- the spaces -----------------------------------------------------------------------------------------
class MobileNetSpace(SearchSpace):
    """A MobileNet-style elastic space defined by :attr:`spec` (subclasses set ``name`` and ``spec``)."""

    spec: MobileNetSpec = TINY
    capabilities = frozenset({"supernet"})  # + enumerate, mutate, ... from the choice model, build
    #: input size of costs for spaces without a resolution choice (CIFAR-10)
    DEFAULT_SIZE = 32
    #: keywords of :meth:`supernet` (``nastk supernet train --width-mult 1.2 --bn-momentum 0``)
    SUPERNET_OPTIONS = (
        Option("width_mult", Float(above=0), "mobilenet supernets: width multiplier of every layer", 1.0),
        Option("dropout", Float(minimum=0, below=1), "mobilenet supernets: classifier dropout (default: the space's, "
               "tiny 0, ofa 0.1, bignas 0.2; the sandwich step applies it to the largest child only)", None),
        Option("bn_momentum", Float(minimum=0, maximum=1), "mobilenet supernets: BatchNorm momentum while training "
               "(BigNAS: 0, then recalibrate per child: --bn-recalibration)", 0.1),
        Option("kernel_transform", Bool(), "mobilenet supernets: OFA's learned kernel transform (default: the "
               "space's, on for mobilenet-ofa)", None),
        Option("zero_gamma", Bool(), "mobilenet supernets: zero-initialise the last BN scale of residual blocks "
               "(default: the space's)", None))

    # --- choices ------------------------------------------------------------------------------------
    def choice_declarations(self) -> Dict[str, Tuple]:
        """``{choice name: option values}`` in choice order (settings with one value are not choices)."""
        spec, out = self.spec, {}

        def declare(name: str, values: Sequence) -> None:
            if len(values) > 1:
                out[name] = tuple(values)

        declare("resolution", spec.resolutions)
        declare("stem_width", spec.stem)
        for i, stage in enumerate(spec.stages, start=1):
            declare(f"s{i}_width", stage.widths)
            declare(f"s{i}_depth", stage.depths)
            for key in ([f"s{i}_b{j}" for j in range(1, max(stage.depths) + 1)] if spec.per_block else [f"s{i}"]):
                declare(f"{key}_kernel", stage.kernels)
                declare(f"{key}_expand", stage.expands)
        declare("head_width", spec.feature_mix)
        return out

    def choice_model(self) -> ChoiceModel:
        return ChoiceModel([Ordered(name, values) for name, values in self.choice_declarations().items()])

    def resolution_of(self, arch: Architecture) -> Optional[int]:
        """The image resolution ``arch`` runs at (None: the space has no resolution choice)."""
        return self.choices_of(arch).get("resolution")

    # --- the network --------------------------------------------------------------------------------
    def layout(self, num_classes: int = 10, width_mult: float = 1.0) -> Tuple[Unit, ...]:
        """The network as units, each setting bound to the choice it reads (widths scaled by ``width_mult``)."""
        _check_options(num_classes, width_mult)
        spec, declared = self.spec, self.choice_declarations()

        def role(name: str, values: Sequence, width: bool = False) -> Role:
            values = tuple(make_divisible(v * width_mult, 8) for v in values) if width else tuple(values)
            return Role(name if name in declared else None, values)

        stem = role("stem_width", spec.stem, width=True)
        units = [ConvUnit(stem, 3, 2, spec.stem_act)]
        if spec.first_block:
            units.append(BlockUnit(stem, Role(None, (3,)), Role(None, (1,)), None, 0, 1, "relu", False, True))
        width = stem
        for i, stage in enumerate(spec.stages, start=1):
            width, depth = role(f"s{i}_width", stage.widths, width=True), role(f"s{i}_depth", stage.depths)
            for j in range(max(stage.depths)):
                key = f"s{i}_b{j + 1}" if spec.per_block else f"s{i}"
                units.append(BlockUnit(width, role(f"{key}_kernel", stage.kernels), role(f"{key}_expand", stage.expands),
                                       depth if j >= min(stage.depths) else None, j, stage.stride if j == 0 else 1,
                                       stage.act, stage.se, residual=j > 0))
        if spec.head_expand_ratio:
            expand = Role(width.choice, tuple(w * spec.head_expand_ratio for w in width.values))
        else:
            expand = role("", (spec.head_expand,), width=True)
        units += [ConvUnit(expand, act=spec.head_act), PoolUnit()]
        if spec.feature_mix:
            units.append(ConvUnit(role("head_width", spec.feature_mix, width=True), act=spec.head_act, bn=False))
        units.append(ClassifierUnit(num_classes, spec.dropout))
        return tuple(units)

    @lru_cache(maxsize=8)
    def cost_terms(self, num_classes: int = 10, width_mult: float = 1.0) -> Tuple[CostTerm, ...]:
        """The network's cost as a sum of terms, each reading a few choices (exact and expected costs)."""
        terms, in_role, strides = [], Role(None, (3,)), ()
        for unit in self.layout(num_classes, width_mult):
            roles = [in_role] + [getattr(unit, name, None) for name in ("width", "kernel", "expand")]
            reads = tuple(dict.fromkeys(r.choice for r in roles if isinstance(r, Role) and r.choice))
            depth = (unit.depth, unit.index) if isinstance(unit, BlockUnit) and unit.depth is not None else None

            def cost(positions, size, unit=unit, in_role=in_role, strides=strides):
                return _unit_cost(unit, in_role, positions, _input_size(strides, size), num_classes)

            terms.append(CostTerm(reads, depth, cost))
            if isinstance(unit, PoolUnit):
                strides += (0,)
            elif isinstance(unit, (ConvUnit, BlockUnit)):
                strides += (unit.stride,)
                in_role = unit.width
        return tuple(terms)

    def input_size(self, arch: Optional[Architecture] = None, input_size: Optional[int] = None) -> int:
        """The input side costs use: ``input_size`` if given, else ``arch``'s resolution, else 32."""
        if input_size is not None:
            if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 1:
                raise ConfigError(f"input_size must be a positive integer, got {input_size!r}")
            return input_size
        resolution = self.resolution_of(arch) if arch is not None else None
        return self.DEFAULT_SIZE if resolution is None else resolution

    def latency(self, arch: Architecture, device=None, batch_size: int = 1, num_classes: int = 10,
                input_size: Optional[int] = None, repeats: int = 20) -> float:
        """Measured median latency (ms) of the child's stand-alone network (fresh weights: latency does not
        depend on their values) for a batch of ``batch_size`` on ``device`` (the run's device; None: torch's
        default device)."""
        from nastk.cost import measure_latency
        from nastk.devices import resolve_device

        device = resolve_device(device)
        size = self.input_size(arch, input_size)
        return measure_latency(self.build(arch, num_classes, device=device), (batch_size, 3, size, size), device,
                               repeats=repeats)

    def cost(self, arch: Architecture, num_classes: int = 10, input_size: Optional[int] = None,
             width_mult: float = 1.0) -> Dict[str, float]:
        """Analytic params and multiply-adds (millions) of the child, as :func:`nastk.cost.model_cost`
        would measure its stand-alone network; ``input_size`` None: the architecture's resolution (32
        in spaces without one)."""
        model = self.get_choice_model()
        positions = {c.name: c.position(v) for c, v in zip(model.choices, self._values(arch))}
        size = self.input_size(arch, input_size)
        params = flops = 0
        for term in self.cost_terms(num_classes, float(width_mult)):
            if term.depth is None or term.depth[0].at(positions) > term.depth[1]:
                p, f = term.cost(positions, size)
                params, flops = params + p, flops + f
        return {"params_m": params / 1e6, "flops_m": flops / 1e6}

    def supernet(self, num_classes: int = 10, **options):
        """The elastic weight-sharing supernet (see :mod:`search_spaces.mobilenet_supernet`)."""
        from search_spaces.mobilenet_supernet import MobileNetSupernet

        return MobileNetSupernet(self, num_classes=num_classes, **options)

    def build(self, arch: Architecture, num_classes: int = 10, device=None, **options):
        """A stand-alone child with fresh weights (a fresh supernet's extracted child); ``options`` are
        the supernet's (``width_mult``, ``dropout``, ...)."""
        self._values(arch)
        return self.supernet(num_classes, device=device, **options).extract(arch)


class TinyMobileNetSpace(MobileNetSpace):
    name = "mobilenet"
    spec = TINY


class OFAMobileNetSpace(MobileNetSpace):
    name = "mobilenet-ofa"
    spec = OFA


class BigNASMobileNetSpace(MobileNetSpace):
    name = "mobilenet-bignas"
    spec = BIGNAS


def resolution_of(arch: Architecture) -> Optional[int]:
    """The image resolution an architecture of a MobileNet space runs at (None: it has no resolution choice)."""
    space = get_space(arch.space)
    if not isinstance(space, MobileNetSpace):
        raise ConfigError(f"space {arch.space!r} is not a MobileNet space and has no resolution choice")
    return space.resolution_of(arch)


def _check_options(num_classes: int, width_mult: float) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
    if isinstance(width_mult, bool) or not isinstance(width_mult, (int, float)) or not 0 < width_mult < 100:
        raise ConfigError(f"width_mult must be a positive number, got {width_mult!r}")
