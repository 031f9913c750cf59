"""Mixed-precision spaces: any space with a supernet x per-layer bit-widths (``quant:nb201``, ``quant:mobilenet``).

``get_space("quant:BASE")`` (the ``quant:`` prefix resolver of :mod:`nastk.registry`) gives a
:class:`QuantizedSpace`: the base space's choices followed by ``q{i}_wbits`` / ``q{i}_abits`` (bit options
2..8 by default; EQ-Net's forms with the ``forms`` supernet option are searched by the EQ-Net step) per
quantization unit of the base supernet (a layer; an NB201 cell). Every strategy gets the generic operators
of the product choice model; ``cost`` adds ``bitops_m`` (multiply-adds x weight bits x activation bits,
millions) and ``model_size_kb`` (weight bits, bias at 32 bits) to the base space's cost, so
``--objectives score,bitops`` and ``--constraint 'bitops<=200'`` work. The first and last units are 8 / 8.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Dict, Optional, Tuple

from nastk.choices import ChoiceModel, Ordered
from nastk.errors import CapabilityError, ConfigError
from nastk.options import Bool, Option
from nastk.space import SearchSpace

PREFIX = "quant:"
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

    def __init__(self, base_name: str, bits=DEFAULT_BITS):
        from nastk.registry import get_space

        self.base = get_space(base_name)
        self.base.require("supernet")
        if self.base.get_choice_model() is None:
            raise CapabilityError(f"space {base_name!r} has no choice model to extend with bit-widths")
        self.name = PREFIX + base_name
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
        count = len(self.unit_names())
        quant = [Ordered(f"q{i}_{kind}", self.bits) for i in range(count) for kind in ("wbits", "abits")]
        return ChoiceModel(base_choices + quant)

    def base_arch(self, arch):
        return self.base._arch(self._values(arch)[:len(self.base.get_choice_model().choices)])

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
        """The base space's cost plus ``bitops_m``, ``model_size_kb`` and the average bits of the free units."""
        import torch

        base_arch = self.base_arch(arch)
        out = dict(self.base.cost(base_arch, num_classes=num_classes))
        net = _cost_supernet(self, num_classes)
        net.set_active(arch)
        size = input_size or (self.base.input_size(base_arch) if hasattr(self.base, "input_size") else 32)
        out.update(net.measure(torch.zeros(1, 3, size, size)))
        out.update(net.average_bits())
        return out


@lru_cache(maxsize=8)
def _cost_supernet(space: QuantizedSpace, num_classes: int):
    """A CPU supernet kept for analytic costs (multiply-adds do not depend on weight values)."""
    return space.supernet(num_classes=num_classes)


def quantized_space(base_name: str) -> QuantizedSpace:
    """The ``quant:`` prefix resolver: ``quant:BASE`` -> ``QuantizedSpace(BASE)``."""
    if not base_name or base_name.startswith(PREFIX):
        raise ConfigError(f"write quant:SPACE with a space that has a supernet (e.g. quant:mobilenet), got {PREFIX}{base_name}")
    return QuantizedSpace(base_name)
