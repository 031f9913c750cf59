"""The NATS-Bench size search space (Ss): five channel counts on NAS-Bench-201's best cell.

Every network has the same topology, the fixed cell
``|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|``,
and five layers: cell (c0), residual reduction (c1), cell (c2), residual reduction (c3), cell (c4);
the stem has c0 channels. Each ci is one of 8, 16, ..., 64: 8^5 = 32,768 networks.

An architecture's string is NATS-Bench's ``c0:c1:c2:c3:c4`` (``64:40:48:64:56``). Its NATS-Bench index
is the position in ``itertools.product([8..64 step 8], repeat=5)`` (idx 0 = ``8:8:8:8:8``, idx 32767 =
``64:64:64:64:64``), which is also the product order of the choice model, so ``enumerate()`` yields the
benchmark's index order; the benchmark owns it (``benchmark_for("nats-sss").index(arch)`` / ``.arch_at(i)``,
:mod:`nastk.benchmarks.nats_sss`), and the channel choices and layer names with it.
"""
from __future__ import annotations

from typing import Dict, Tuple

from nastk.architecture import Architecture
from nastk.benchmarks.nats_sss import (  # noqa: F401 (the benchmark's networks' facts, re-exported)
    BOSSNAS_BLOCKS, CELL, CELL_LAYERS, CELL_STR, CHANNELS, LAYERS, SIZE)
from nastk.choices import ChoiceModel, Ordered
from nastk.errors import ArchitectureError
from nastk.options import Option, Text
from nastk.space import SearchSpace


class NATSSizeSpace(SearchSpace):
    name = "nats-sss"
    capabilities = frozenset({"supernet"})  # + enumerate, mutate, ... from the choice model, build
    #: The benchmark's networks are small enough to build at full size by default.
    BUILD_OPTIONS = ()
    SUPERNET_OPTIONS = (Option("bn", Text(choices=("switchable", "shared")),
                               "nats-sss supernet: a private BatchNorm per width (BossNAS) or one shared, sliced BN "
                               "(recalibrate it per child)"),)

    def choice_model(self) -> ChoiceModel:
        """Five ordered choices ``c0`` ... ``c4``, each over :data:`CHANNELS`."""
        return ChoiceModel([Ordered(name, CHANNELS) for name in LAYERS])

    # --- codec ------------------------------------------------------------------------------------
    def to_str(self, arch: Architecture) -> str:
        return ":".join(str(c) for c in self.channels(arch))

    def from_str(self, text: str) -> Architecture:
        """``c0:c1:c2:c3:c4`` (NATS-Bench's string); ``c0=..,c1=..`` is read too."""
        if not isinstance(text, str):
            raise ArchitectureError(f"NATS size architecture must be a string, got {type(text).__name__}")
        if "=" in text:
            return super().from_str(text)
        parts = text.strip().split(":")
        if len(parts) != len(LAYERS) or not all(p.isdigit() and p.isascii() for p in parts):
            raise ArchitectureError(f"NATS size architecture {text!r} must be five channel counts 'c0:c1:c2:c3:c4' "
                                    f"from {', '.join(map(str, CHANNELS))}")
        values = tuple(int(p) for p in parts)
        bad = [v for v in values if v not in CHANNELS]
        if bad:
            raise ArchitectureError(f"NATS size architecture {text!r}: {bad[0]} is not a channel option "
                                    f"({', '.join(map(str, CHANNELS))})")
        return Architecture(self.name, values)

    def channels(self, arch: Architecture) -> Tuple[int, ...]:
        """The five channel counts of ``arch`` (validated)."""
        return tuple(int(c) for c in self._values(arch))

    # --- networks ---------------------------------------------------------------------------------
    def build(self, arch: Architecture, num_classes: int = 10, **options):
        """The stand-alone NATS-Bench size network (see :mod:`search_spaces.nats_sss_supernet`)."""
        from search_spaces.nats_sss_supernet import NATSSizeNetwork

        return NATSSizeNetwork(self.channels(arch), num_classes=num_classes, **options)

    def supernet(self, num_classes: int = 10, bn: str = "switchable"):
        """The slimmable supernet (prefix channel slices; switchable or shared BN)."""
        from search_spaces.nats_sss_supernet import NATSSizeSupernet

        return NATSSizeSupernet(self, num_classes=num_classes, bn=bn)

    def cost(self, arch: Architecture, num_classes: int = 10, input_size: int = 32) -> Dict[str, float]:
        from nastk.cost import model_cost

        return model_cost(self.build(arch, num_classes), input_size=input_size)
