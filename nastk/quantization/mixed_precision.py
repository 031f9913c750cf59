"""Quantization as a transform over any supernet: per-layer weight / activation bit-width decisions (and
optionally EQ-Net's granularity / symmetry decisions) added to the base supernet's own decisions.

:func:`quantization_groups` names the quantization units of a base supernet (every conv / linear layer, or
layers grouped by a module-path prefix: an NB201 cell), the first and the last unit being fixed at
``fixed_bits`` (EQ-Net keeps them 8 / 8). :class:`QuantizedSupernet` wraps the base supernet's layers in
:class:`~nastk.quantization.layers.QuantizedLayer` and is itself a :class:`~nastk.supernet.Supernet` whose
decisions are the base decisions followed by, per free unit ``i``, ``q{i}_wbits`` and ``q{i}_abits``, so
every strategy and training step sees one product choice model. EQ-Net's granularity / symmetry are run-time
settings of every quantizer (:meth:`QuantizedSupernet.set_forms`; the default is EQ-Net's search form,
per-tensor symmetric weights and asymmetric activations), not decisions of the space. Mixture paths over
bit decisions are not supported.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from nastk.architecture import Architecture
from nastk.errors import ArchitectureError, ConfigError
from nastk.quantization.bitops import BIAS_BITS
from nastk.quantization.layers import QuantizedLayer, quantizable, quantize_layers
from nastk.quantization.quantizers import (DEFAULT_BIT_OPTIONS, FULL_PRECISION, WEIGHT_FORMS, calibrating,
                                           form_key)
from nastk.supernet import Decision, Supernet

#: the weight forms' option names, in WEIGHT_FORMS order
WEIGHT_FORM_NAMES = tuple(form_key(c, s) for c, s in WEIGHT_FORMS)
#: activation symmetry options
ACT_FORM_NAMES = ("asym", "sym")
#: EQ-Net's search form: per-tensor symmetric weights, asymmetric activations
SEARCH_FORM = {"wform": "tensor_sym", "aform": "asym"}


@dataclass(frozen=True)
class LayerCount:
    """What one quantized layer runs per sample, whatever its bits: multiply-adds, weight elements, output
    channels, input elements (its activation quantizer's), and whether it has a bias."""

    macs: int
    weights: int
    outputs: int
    inputs: int
    bias: bool


@dataclass(frozen=True)
class QuantGroup:
    """One quantization unit: the layers (module names) that share a bit-width decision."""

    name: str
    layers: Tuple[str, ...]
    fixed: bool


def _group_name(layer: str, depth: Optional[int]) -> str:
    return layer if depth is None else ".".join(layer.split(".")[:depth])


def quantization_groups(base: nn.Module, group_depth: Optional[int] = None) -> List[QuantGroup]:
    """The base model's quantization units in module order; the first and the last are fixed."""
    names = [name for name, m in base.named_modules() if name and quantizable(m)]
    if not names:
        raise ConfigError(f"{type(base).__name__} has no conv / linear layer to quantize")
    order: Dict[str, List[str]] = {}
    for name in names:
        order.setdefault(_group_name(name, group_depth), []).append(name)
    keys = list(order)
    return [QuantGroup(k, tuple(order[k]), i in (0, len(keys) - 1)) for i, k in enumerate(keys)]


class QuantizedSupernet(Supernet):
    """A base supernet under mixed-precision fake quantization (module docstring).

    ``space``: the :class:`~search_spaces.quantized.QuantizedSpace`; its choice model is the base choices
    followed by the quantization choices, which this supernet's decisions mirror.
    """

    def __init__(self, space, base: Supernet, bit_options: Sequence[int] = DEFAULT_BIT_OPTIONS,
                 fixed_bits: int = 8, group_depth: Optional[int] = None, abs_offset: bool = False):
        model = space.get_choice_model()
        base_count = len(base.decisions)
        quant = [Decision(c.name, tuple(c.text(v) for v in c.options)) for c in model.choices[base_count:]]
        super().__init__(space, list(base.decisions) + quant)
        self.base = base
        self.base_count = base_count
        self.bit_options, self.fixed_bits = tuple(bit_options), int(fixed_bits)
        self.groups = quantization_groups(base, group_depth)
        quantize_layers(base, bit_options=tuple(sorted(set(self.bit_options) | {self.fixed_bits})),
                        abs_offset=abs_offset)
        self.group_layers: List[List[QuantizedLayer]] = [[base.get_submodule(n) for n in g.layers] for g in self.groups]
        self.free = [i for i, g in enumerate(self.groups) if not g.fixed]
        self.kinds = ("wbits", "abits")
        #: bits every free unit runs whatever the path says (None: the path's): a static QAT run fixes them;
        #: 32 runs the float network (the fixed first / last units too)
        self.precision_override: Optional[int] = None
        if len(quant) != len(self.free) * len(self.kinds):
            raise ConfigError("the quantized space's choices do not match its supernet's quantization units")
        fixed = space.fixed_base_arch()
        if fixed is not None:  # a space over one base network: samplers draw its bits only
            for d, option in enumerate(base.path_of_arch(fixed)):
                self.allowed[d] = False
                self.allowed[d, int(option)] = True
        self.set_uniform(max(self.bit_options), SEARCH_FORM["wform"], SEARCH_FORM["aform"])

    # --- the base supernet's behaviour ------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x)

    def set_regularization(self, enabled: bool) -> None:
        setter = getattr(self.base, "set_regularization", None)
        if setter is not None:
            setter(enabled)

    def layers(self) -> List[QuantizedLayer]:
        return [q for group in self.group_layers for q in group]

    # --- paths -------------------------------------------------------------------------------------------
    def path_of_arch(self, arch: Architecture):
        values = self.space._values(arch)
        base_arch = self.space.base._arch(values[:self.base_count])
        model = self.space.get_choice_model()
        quant = tuple(c.position(v) for c, v in zip(model.choices[self.base_count:], values[self.base_count:]))
        return tuple(self.base.path_of_arch(base_arch)) + quant

    def arch_of_path(self, choices: Sequence[int]) -> Architecture:
        base_arch = self.base.arch_of_path(choices[:self.base_count])
        model = self.space.get_choice_model()
        quant = tuple(c.options[int(o)] for c, o in zip(model.choices[self.base_count:], choices[self.base_count:]))
        return self.space._arch(tuple(base_arch.choices) + quant)

    def set_path(self, path) -> None:
        if len(path) != len(self.decisions):
            raise ArchitectureError(f"expected {len(self.decisions)} choices, got {len(path)}")
        quant = list(path[self.base_count:])
        if any(isinstance(v, torch.Tensor) and v.dim() == 1 for v in quant):
            raise ConfigError("bit-width decisions take one option each; mixtures over bit-widths are not supported")
        self.base.set_path(path[:self.base_count])
        for offset, value in enumerate(quant):
            d = self.base_count + offset
            if not (0 <= int(value) < len(self.decisions[d].options)) or not self.allowed[d, int(value)]:
                raise ArchitectureError(f"option {value} of decision {self.decisions[d].name!r} is not allowed")
        model = self.space.get_choice_model()
        values = [c.options[int(o)] for c, o in zip(model.choices[self.base_count:], quant)]
        for g, (wbits, abits) in enumerate(self.unit_bits(values)):
            self._configure_group(g, wbits, abits)
        if self.precision_override == FULL_PRECISION:
            self.set_uniform(FULL_PRECISION)
        elif self.precision_override is not None:
            for g in self.free:
                self._configure_group(g, self.precision_override, self.precision_override)
        self.mode = self.base.mode
        self.current_path = tuple(self.base.current_path) + tuple(int(v) for v in quant)

    def unit_bits(self, values: Sequence[int]) -> List[Tuple[int, int]]:
        """``(weight bits, activation bits)`` of every unit (in :attr:`groups` order) for the quantization
        choices' values (``q0_wbits, q0_abits, q1_wbits, ...``): the free units' from ``values``, the fixed
        ones at ``fixed_bits``."""
        if len(values) != len(self.free) * len(self.kinds):
            raise ArchitectureError(f"expected {len(self.free) * len(self.kinds)} bit values, got {len(values)}")
        bits = [(self.fixed_bits, self.fixed_bits)] * len(self.groups)
        for j, g in enumerate(self.free):
            bits[g] = (int(values[2 * j]), int(values[2 * j + 1]))
        return bits

    def _configure_group(self, g: int, wbits: int, abits: int, wform: Optional[str] = None,
                         aform: Optional[str] = None) -> None:
        weight_form = WEIGHT_FORMS[WEIGHT_FORM_NAMES.index(wform)] if wform is not None else None
        act_symmetric = (aform == "sym") if aform is not None else None
        for q in self.group_layers[g]:
            q.configure(int(wbits), int(abits), weight_form, act_symmetric)

    def set_uniform(self, bits: int, wform: Optional[str] = None, aform: Optional[str] = None) -> None:
        """Every unit (the fixed ones too) at ``bits`` / ``bits`` (32: the float network); the base path kept."""
        for g in range(len(self.groups)):
            self._configure_group(g, bits, bits, wform, aform)

    def set_forms(self, forms: Sequence[Tuple[str, str]]) -> None:
        """Per layer (in :meth:`layers` order) a ``(weight form, activation form)`` pair of names, e.g.
        ``("channel_asym", "sym")``: EQ-Net's elastic granularity and symmetry."""
        layers = self.layers()
        if len(forms) != len(layers):
            raise ConfigError(f"set_forms needs one (weight form, activation form) per layer: {len(layers)}, got {len(forms)}")
        for q, (wform, aform) in zip(layers, forms):
            if wform not in WEIGHT_FORM_NAMES or aform not in ACT_FORM_NAMES:
                raise ConfigError(f"unknown form ({wform!r}, {aform!r}); weight forms {WEIGHT_FORM_NAMES}, "
                                  f"activation forms {ACT_FORM_NAMES}")
            q.weight_quantizer.set_form(*WEIGHT_FORMS[WEIGHT_FORM_NAMES.index(wform)])
            q.input_quantizer.set_form(False, aform == "sym")

    # --- calibration and costs ---------------------------------------------------------------------------
    @torch.no_grad()
    def calibrate(self, x: torch.Tensor) -> None:
        """EQ-Net's initialisation of every quantizer table (all bits and forms) from one batch ``x`` on the
        current base path (in eval mode: no BN statistics change)."""
        modes = {m: m.training for m in self.modules()}
        self.eval()
        try:
            with calibrating(self):
                self.base(x)
        finally:
            for m, mode in modes.items():
                m.train(mode)

    @torch.no_grad()
    def count_layers(self, x: torch.Tensor) -> List[LayerCount]:
        """What every layer (in :meth:`layers` order) of the current base path runs per sample of ``x``'s
        shape, from one eval-mode forward of ``x[:1]``; the counts do not depend on the bits."""
        for q in self.layers():  # a layer the path skips (a shallower stage's block) keeps zeros
            q.macs = q.active_weights = q.active_out = q.input_elements = 0
        modes = {m: m.training for m in self.modules()}
        self.eval()
        try:
            self.base(x[:1])
        finally:
            for m, mode in modes.items():
                m.train(mode)
        return [LayerCount(q.macs, q.active_weights, q.active_out, q.input_elements,
                           getattr(q.layer, "bias", None) is not None) for q in self.layers()]

    def bit_costs(self, counts: Sequence[LayerCount], unit_bits: Sequence[Tuple[int, int]]) -> Dict[str, float]:
        """The costs of layers with ``counts`` (:meth:`count_layers`) at ``unit_bits`` (:meth:`unit_bits`):
        BitOps (multiply-adds x weight bits x activation bits, millions), model size (weights at their bits,
        biases at 32; kB), the multiply-adds (millions) and EQ-Net's constraint, the average bits of the free
        units (first / last excluded): parameter-weighted weight bits ``avg_wbits``, feature-map-weighted
        activation bits ``avg_abits`` and their mean ``avg_bits``."""
        free = set(self.free)
        rows = [(g in free, bits) for g, (group, bits) in enumerate(zip(self.groups, unit_bits)) for _ in group.layers]
        bitops = size = macs = w = a = nw = na = 0
        for c, (is_free, (wb, ab)) in zip(counts, rows):
            if not c.macs:
                continue
            bitops += c.macs * wb * ab
            size += c.weights * wb + (c.outputs * BIAS_BITS if c.bias else 0)
            macs += c.macs
            if is_free:
                w, nw, a, na = w + c.weights * wb, nw + c.weights, a + c.inputs * ab, na + c.inputs
        avg_w, avg_a = w / max(nw, 1), a / max(na, 1)
        return {"bitops_m": bitops / 1e6, "model_size_kb": size / 8 / 1024, "quant_macs_m": macs / 1e6,
                "avg_wbits": avg_w, "avg_abits": avg_a, "avg_bits": (avg_w + avg_a) / 2}

    def measure(self, x: torch.Tensor) -> Dict[str, float]:
        """:meth:`bit_costs` of the current path (its bits as configured), counted on one forward of ``x``."""
        counts = self.count_layers(x)
        return self.bit_costs(counts, [(group[0].weight_bits, group[0].act_bits) for group in self.group_layers])
