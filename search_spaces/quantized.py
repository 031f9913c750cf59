"""Mixed-precision spaces: any space with a supernet x per-layer bit-widths (``quant:nb201``, ``quant:mobilenet``).

``get_space("quant:BASE")`` (the ``quant:`` prefix resolver of :mod:`nastk.registry`) gives a
:class:`QuantizedSpace`: the base space's choices followed by ``q{i}_wbits`` / ``q{i}_abits`` (bit options
2..8 by default; EQ-Net's forms with the ``forms`` supernet option are searched by the EQ-Net step) per
quantization unit of the base supernet (a layer; an NB201 cell). Every strategy gets the generic operators
of the product choice model; ``cost`` adds ``bitops_m`` (multiply-adds x weight bits x activation bits,
millions), ``model_size_kb`` (weight bits, bias at 32 bits) and EQ-Net's average bits (``avg_wbits``,
``avg_abits`` and their mean ``avg_bits``, first / last units excluded) to the base space's cost, so
``--objectives score,bitops``, ``--constraint 'bitops<=200'`` and ``--constraint 'avg_bits<=4'`` work.
The first and last units are 8 / 8.

``quant:BASE@largest`` is the bit-widths of one network, the base space's largest child (EQ-Net quantizes one
pretrained network): its base choices have that child's value as their only option, so a search varies the
bits alone and a supernet over it samples the bits alone.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Dict, Optional, Tuple

from nastk.choices import ChoiceModel, Ordered
from nastk.errors import CapabilityError, ConfigError
from nastk.options import Bool, Option
from nastk.space import SearchSpace

PREFIX = "quant:"
#: ``quant:BASE@NAME``: the bits of one base architecture, the base space's ``NAME()`` child
FIXED_BASES = ("largest",)
#: unit grouping per base space (module-path prefix depth; None: one unit per layer)
GROUP_DEPTH = {"nb201": 2}
DEFAULT_BITS = (2, 3, 4, 5, 6, 7, 8)


def parse_bits(text) -> Tuple[int, ...]:
    """``"2,4,8"`` (or a sequence) -> sorted distinct bit options, each in 2..8."""
    items = text.split(",") if isinstance(text, str) else list(text)
    try:
        bits = tuple(sorted({int(str(b).strip()) for b in items}))
    except ValueError:
        raise ConfigError(f"bits must be a comma-separated list of integers such as 2,4,8, got {text!r}") from None
    if not bits or any(b < 2 or b > 8 for b in bits):
        raise ConfigError(f"bit options must lie in 2..8, got {text!r}")
    return bits


class QuantizedSpace(SearchSpace):
    """``base`` x per-unit weight / activation bit-widths (module docstring)."""

    capabilities = frozenset({"supernet"})
    SUPERNET_OPTIONS = (
        Option("abs_offset", Bool(), "quant: spaces: EQ-Net code's quirk, an asymmetric LSQ offset enters as "
               "|offset| (default: signed, the paper's intent)", False),)

    def __init__(self, base_name: str, bits=DEFAULT_BITS, fixed_base: Optional[str] = None):
        from nastk.registry import get_space

        if fixed_base is not None and fixed_base not in FIXED_BASES:
            raise ConfigError(f"quant:{base_name}@{fixed_base}: the base architecture after @ is one of "
                              f"{', '.join(FIXED_BASES)}")
        self.base = get_space(base_name)
        self.base.require("supernet")
        if self.base.get_choice_model() is None:
            raise CapabilityError(f"space {base_name!r} has no choice model to extend with bit-widths")
        base_choices = self.base.get_choice_model().choices
        if fixed_base == "largest" and not all(getattr(choice, "ordered", False) for choice in base_choices):
            raise ConfigError(f"quant:{base_name}@largest: {base_name}'s choices are not all ordered, so it has no "
                              f"largest network (quant:{base_name} searches its architecture and bits together)")
        self.fixed_base = fixed_base
        self.name = PREFIX + base_name + (f"@{fixed_base}" if fixed_base else "")
        self.bits = parse_bits(bits)
        self.group_depth = GROUP_DEPTH.get(base_name)

    # --- choices --------------------------------------------------------------------------------------
    @lru_cache(maxsize=None)
    def unit_names(self) -> Tuple[str, ...]:
        from nastk.quantization.mixed_precision import quantization_groups

        base = self.base.supernet(num_classes=10)
        return tuple(g.name for g in quantization_groups(base, self.group_depth) if not g.fixed)

    def choice_model(self) -> ChoiceModel:
        base_choices = list(self.base.get_choice_model().choices)
        fixed = self.fixed_base_arch()
        if fixed is not None:
            base_choices = [_only(choice, value, self.name) for choice, value in zip(base_choices, fixed.choices)]
        count = len(self.unit_names())
        quant = [Ordered(f"q{i}_{kind}", self.bits) for i in range(count) for kind in ("wbits", "abits")]
        return ChoiceModel(base_choices + quant)

    def fixed_base_arch(self):
        """The one base architecture of a ``quant:BASE@NAME`` space (None: the base choices are free)."""
        return getattr(self.base, self.fixed_base)() if self.fixed_base else None

    def base_arch(self, arch):
        return self.base._arch(self._values(arch)[:len(self.base.get_choice_model().choices)])

    def bit_values(self, arch) -> Tuple[int, ...]:
        """``arch``'s quantization values in choice order (``q0_wbits, q0_abits, q1_wbits, ...``)."""
        return tuple(self._values(arch)[len(self.base.get_choice_model().choices):])

    def sample_spread(self, rng):
        """A random architecture whose average bits spread over the whole range, as EQ-Net draws its predictor's
        configurations across average-bit ranges (plain :meth:`sample` concentrates the average near the
        middle): a centre uniform over the bit options and a reach of 1 to 3 options, then every bit choice
        uniform over the options within that reach of the centre."""
        count = len(self.base.get_choice_model().choices)
        base = self._values(self.sample(rng))[:count]
        centre, reach = int(rng.integers(len(self.bits))), int(rng.integers(1, 4))
        options = self.bits[max(centre - reach, 0):centre + reach + 1]
        units = len(self.get_choice_model().choices) - count
        quant = tuple(options[int(rng.integers(len(options)))] for _ in range(units))
        return self._arch(self.get_choice_model().validate(tuple(base) + quant))

    def uniform(self, base_arch, bits: int):
        """``base_arch`` with every free unit at ``bits`` / ``bits``."""
        quant = (bits,) * (len(self.get_choice_model().choices) - len(base_arch.choices))
        return self._arch(self.get_choice_model().validate(tuple(base_arch.choices) + quant))

    # --- networks -------------------------------------------------------------------------------------
    def supernet(self, num_classes: int = 10, abs_offset: bool = False, device=None, **options):
        """The base supernet (``options`` are its own) under switchable fake quantization."""
        from nastk.quantization.mixed_precision import QuantizedSupernet

        base = self.base.supernet(num_classes=num_classes, **options)
        net = QuantizedSupernet(self, base, bit_options=self.bits, group_depth=self.group_depth,
                                abs_offset=abs_offset)
        return net.to(device) if device is not None else net

    def supernet_options(self):
        """This space's options and the base space's."""
        return tuple(self.SUPERNET_OPTIONS) + tuple(self.base.supernet_options())

    def cost(self, arch, num_classes: int = 10, input_size: Optional[int] = None) -> Dict[str, float]:
        """The base space's cost plus the bit costs of :meth:`QuantizedSupernet.bit_costs
        <nastk.quantization.mixed_precision.QuantizedSupernet.bit_costs>` (BitOps, model size, average bits);
        the layers are counted once per base architecture, the bits are arithmetic."""
        base_arch = self.base_arch(arch)
        out = dict(self.base.cost(base_arch, num_classes=num_classes))
        size = input_size or (self.base.input_size(base_arch) if hasattr(self.base, "input_size") else 32)
        net = _cost_supernet(self, num_classes)
        counts = _layer_counts(self, base_arch, num_classes, size)
        out.update(net.bit_costs(counts, net.unit_bits(self.bit_values(arch))))
        return out


def _only(choice, value, space_name: str):
    """``choice`` with ``value`` as its only option."""
    if value is None:
        raise ConfigError(f"{space_name}: choice {choice.name!r} is inactive in that base architecture; a fixed base "
                          f"needs every choice active")
    return Ordered(choice.name, (value,))


@lru_cache(maxsize=8)
def _cost_supernet(space: QuantizedSpace, num_classes: int):
    """A CPU supernet kept for analytic costs (multiply-adds do not depend on weight values)."""
    return space.supernet(num_classes=num_classes)


@lru_cache(maxsize=1024)
def _layer_counts(space: QuantizedSpace, base_arch, num_classes: int, size: int):
    """The per-layer counts of one base architecture at ``size`` x ``size`` (one forward of the cost supernet)."""
    import torch

    net = _cost_supernet(space, num_classes)
    net.set_active(space.uniform(base_arch, max(space.bits)))
    return tuple(net.count_layers(torch.zeros(1, 3, size, size)))


def quantized_space(rest: str) -> QuantizedSpace:
    """The ``quant:`` prefix resolver: ``quant:BASE`` -> ``QuantizedSpace(BASE)``, ``quant:BASE@largest`` -> the
    bits of ``BASE``'s largest child."""
    base_name, at, fixed = rest.partition("@")
    if not base_name or base_name.startswith(PREFIX) or (at and not fixed):
        raise ConfigError(f"write quant:SPACE or quant:SPACE@largest with a space that has a supernet (e.g. "
                          f"quant:mobilenet), got {PREFIX}{rest}")
    return QuantizedSpace(base_name, fixed_base=fixed or None)
