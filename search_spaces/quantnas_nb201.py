"""QuantNAS over NAS-Bench-201 cells for image classification: the ``qnas-nb201`` space (methods.md 11A, issue 26).

NB201's network (:mod:`search_spaces.nb201.network`: stem, three stages of N cells joined by residual reductions,
head), quantized the QuantNAS way (:mod:`nastk.quantization.quantnas`): every convolution is a
:class:`~nastk.quantization.quantnas.QuantConv` (ReLU -> HWGQ activations -> LSQ per-channel weights), so NB201's
ReLU-Conv-BN op becomes ReLU -> quantize -> Conv -> BN with its BatchNorm kept. Each of the 6 edges is one decision
over (op, bits) pairs, op-major in NB201's op order: ``none``, ``skip_connect``, ``nor_conv_1x1@b``,
``nor_conv_3x3@b``, ``avg_pool_3x3`` -- the two convolutions at every bit-width of HWGQ's table (2, 3, 4, 8), the
three parameter-free ops without bits (11 options per edge). One edge's decision sets that edge in all 3N cells,
as in NB201. The fixed layers run at 8 bits: the stem's conv (it takes the normalised image as it comes: the pixels
are 8-bit already, and ReLU / unsigned HWGQ would drop the negative half), the reductions' convs (their 1x1
shortcut then takes a ReLU'd input, a simplification: HWGQ is unsigned) and the classifier (a bias-free 1x1
QuantConv on the pooled, ReLU'd features).

The supernet option ``bits`` (``--bits 2,4,8``, QuantNAS' choice and the default) says which bit-widths a search
may pick: the others are disallowed options of the supernet (:attr:`~nastk.supernet.Supernet.allowed`), so
alpha, the argmax and search-time BitOps never see them, while every architecture string means the same network
whatever a run searched. ADQ is not used: it renormalises the BN-free residual blocks of SR networks, and every
NB201 conv op already ends in a BatchNorm (the cell is no residual block).

BitOps of an architecture (``cost``: ``bitops`` and ``bitops_m``, what ``--objectives score,bitops`` and
``--constraint bitops<=...`` read) are the final-model formula ``MACs b_w b_a`` over every quantized conv, fixed
layers included; search-time BitOps are QuantNAS' ``sum p FLOPs b`` over the searched edges.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import torch
from torch import nn

from nastk.choices import Categorical, ChoiceModel
from nastk.errors import ConfigError
from nastk.options import Int, Option, Text
from nastk.space import SearchSpace
from nastk.supernet import Supernet, decisions_of
from search_spaces.nb201.constants import EDGES, OPS
from search_spaces.nb201.network import NB201Cell
from search_spaces.sr import option_name, split_option

#: the bit-widths architectures may take (HWGQ's fixed-step table)
SPACE_BITS = (2, 3, 4, 8)
#: the bit-widths a search picks from unless told (QuantNAS)
DEFAULT_BITS = "2,4,8"
#: the NB201 ops that are convolutions (quantized, with bits); the others have none
CONV_OPS = ("nor_conv_1x1", "nor_conv_3x3")
#: bits of the layers the search does not touch
FIXED_BITS = 8


def edge_options(bits: Sequence[int] = SPACE_BITS) -> Tuple[str, ...]:
    """An edge's options: NB201's ops in order, each convolution once per bit-width of ``bits`` (``nor_conv_3x3@4``)."""
    return tuple(option for op in OPS for option in ([option_name(op, b) for b in bits] if op in CONV_OPS else [op]))


def search_bits(bits) -> Tuple[int, ...]:
    """``"2,4,8"`` (or a sequence) -> the sorted bit-widths a search may pick, each in :data:`SPACE_BITS`."""
    from nastk.quantization.quantnas import check_bits_options
    from search_spaces.quantized import parse_bits

    return check_bits_options(parse_bits(bits))


def op_and_bits(option: str) -> Tuple[str, Optional[int]]:
    """``nor_conv_3x3@4`` -> ``("nor_conv_3x3", 4)``; ``skip_connect`` -> ``("skip_connect", None)``."""
    return split_option(option) if "@" in option else (option, None)


def quantize_fixed_layers(net: nn.Module, state) -> None:
    """The layers around the cells at :data:`FIXED_BITS`: the stem's conv (the image as it comes), the reductions'
    convs and the classifier (a net laid out by :func:`search_spaces.nb201.network.add_stages`, cells quantized)."""
    from nastk.quantization.quantnas import QuantLinear, quant_conv_like, quantize_convs

    net.stem[0] = quant_conv_like(net.stem[0], (FIXED_BITS,), state, quantize_input=False)
    quantize_convs(net.cells, (FIXED_BITS,), state)
    net.classifier = QuantLinear(net.classifier.in_features, net.classifier.out_features, (FIXED_BITS,), state)


class QuantNB201Cell(NB201Cell):
    """An NB201 cell (its forward: node j sums its inputs' ops) whose 6 edges are the given modules."""

    def __init__(self, ops: Sequence[nn.Module], channels: int):
        super().__init__(("none",) * len(EDGES), channels)
        self.ops = nn.ModuleList(ops)


class QuantNB201Space(SearchSpace):
    """QuantNAS' (op, bits) decisions on NB201's 6 edges (see the module docstring)."""

    name = "qnas-nb201"
    capabilities = frozenset({"supernet"})
    #: as NB201: searches train small networks by default (CPU); NB201's own network is C=16, N=5
    BUILD_OPTIONS = (Option("C", Int(minimum=1), "channels of the first stage (NB201's network: 16)", 8),
                     Option("N", Int(minimum=1), "cells per stage (NB201's network: 5)", 1))
    SUPERNET_OPTIONS = (
        Option("C", Int(minimum=1), "qnas-nb201 supernet: channels of the first stage (NB201's network: 16)", 8),
        Option("N", Int(minimum=1), "qnas-nb201 supernet: cells per stage (NB201's network: 5)", 1),
        Option("bits", Text(lists=True), "qnas-nb201 supernet: bit-widths the convolutions may take, comma-separated, "
               f"of {', '.join(map(str, SPACE_BITS))} (HWGQ's table)"),
        Option("shared_lsq", Text(choices=("registered", "code_unregistered")),
               "shared-weights LSQ steps registered (trained, saved) or the released code's unregistered list"))

    def choice_model(self) -> ChoiceModel:
        """Six categorical edges named ``"1<-0"`` ... ``"3<-2"`` (NB201's order), each over :func:`edge_options`."""
        return ChoiceModel([Categorical(f"{to}<-{source}", edge_options()) for to, source in EDGES])

    def build(self, arch, num_classes: int = 10, C: int = 16, N: int = 5, affine: bool = True,
              track_running_stats: bool = True):
        """The stand-alone quantized network of ``arch`` (what a child trains as): NB201's network with each
        edge's convolution at its bits (real LSQ + HWGQ), the fixed layers at 8 bits, tracked affine BatchNorms.
        ``affine`` / ``track_running_stats`` False: every BatchNorm the supernet's kind (no affine, batch
        statistics), as a supernet child is scored and exported (:meth:`QuantNB201Supernet.extract`)."""
        from nastk.quantization.quantnas import QuantizationState, quantize_convs
        from search_spaces.nb201.network import NB201Network

        chosen = [op_and_bits(option) for option in self.choices_of(arch).values()]
        net = NB201Network([op for op, _ in chosen], num_classes=num_classes, C=C, N=N, affine=affine,
                           track_running_stats=track_running_stats)
        if not (affine and track_running_stats):  # NB201's network keeps stem and head BatchNorms affine, tracking
            net.stem[1] = nn.BatchNorm2d(C, affine=affine, track_running_stats=track_running_stats)
            net.head[0] = nn.BatchNorm2d(net.head[0].num_features, affine=affine,
                                         track_running_stats=track_running_stats)
        state = QuantizationState()
        for cell in net.cells:
            if isinstance(cell, NB201Cell):
                for op, (_, bits) in zip(cell.ops, chosen):
                    if bits is not None:
                        quantize_convs(op, (bits,), state)
        quantize_fixed_layers(net, state)
        return net

    def supernet(self, num_classes: int = 10, C: int = 16, N: int = 5, bits=DEFAULT_BITS,
                 shared_lsq: str = "registered", **options):
        return QuantNB201Supernet(self, num_classes=num_classes, C=C, N=N, bits=bits, shared_lsq=shared_lsq, **options)

    def cost(self, arch, num_classes: int = 10, input_size: int = 32, C: int = 16, N: int = 5) -> Dict[str, float]:
        """BitOps (``MACs b_w b_a`` of every quantized conv) of the child on an ``input_size``^2 image, its
        multiply-adds and parameters; in millions as ``bitops_m``, ``flops_m`` (NB201's convention: MACs) and
        ``params_m`` (what the ``bitops``, ``flops`` and ``params`` objectives read)."""
        from nastk.cost import count_parameters
        from nastk.quantization.quantnas import model_bitops, model_macs

        model = self.build(arch, num_classes, C=C, N=N)
        shape = (1, 3, input_size, input_size)
        bitops = float(model_bitops(model, shape))
        return {"bitops": bitops, "bitops_m": bitops / 1e6, "flops_m": model_macs(model, shape) / 1e6,
                "params_m": count_parameters(model) / 1e6}


class QuantNB201Supernet(Supernet):
    """Every edge of every cell an :class:`~nastk.quantization.quantnas.OpBitsChoice` over NB201's ops (the
    convolutions quantized at every bit-width of :data:`SPACE_BITS`, those outside ``bits`` disallowed); the
    rest NB201's layout with fixed 8-bit layers. BatchNorm as NB201's supernet: batch statistics, no affine."""

    def __init__(self, space: QuantNB201Space, num_classes: int = 10, C: int = 16, N: int = 5, bits=DEFAULT_BITS,
                 shared_lsq: str = "registered", affine: bool = False, track_running_stats: bool = False):
        from nastk.quantization.quantnas import OpBitsChoice, QuantizationState, quantize_convs
        from search_spaces.nb201.network import add_stages, make_op

        bits = search_bits(bits)  # checked before anything is built
        super().__init__(space, decisions_of(space))
        self.bits = bits
        self.num_classes, self.C, self.N = num_classes, C, N
        self.affine, self.track_running_stats = bool(affine), bool(track_running_stats)
        self.quantization = QuantizationState()  # mode and noise distribution: set by the quantnas step

        def edge(decision: int, channels: int) -> OpBitsChoice:
            candidates = [make_op(op, channels, affine, track_running_stats) for op in OPS]
            for op, module in zip(OPS, candidates):
                if op in CONV_OPS:
                    quantize_convs(module, SPACE_BITS, self.quantization, shared_lsq=shared_lsq)
            return OpBitsChoice(decision, candidates, SPACE_BITS)

        add_stages(self, C, N, num_classes,
                   lambda channels: QuantNB201Cell([edge(d, channels) for d in range(len(EDGES))], channels),
                   affine, track_running_stats,
                   lambda channels: nn.BatchNorm2d(channels, affine=affine, track_running_stats=track_running_stats))
        quantize_fixed_layers(self, self.quantization)
        searched = set(edge_options(self.bits))
        for d, decision in enumerate(self.decisions):
            self.allowed[d, :len(decision.options)] = [option in searched for option in decision.options]
        self._flops: Optional[Tuple[int, Tuple[torch.Tensor, torch.Tensor]]] = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.head(self.cells(self.stem(x))).flatten(1))

    def child_build_options(self) -> Dict[str, object]:
        """The keywords of ``space.build`` that make the networks :meth:`extract` returns (this supernet's
        BatchNorm kind: a child runs as the supernet scores it)."""
        return {"C": self.C, "N": self.N, "affine": self.affine, "track_running_stats": self.track_running_stats}

    def extract(self, arch) -> nn.Module:
        """``space.build(arch)`` (each edge's op at its bits) holding this path's inherited weights and LSQ steps
        (:func:`~nastk.quantization.quantnas.extract_child`)."""
        from nastk.quantization.quantnas import extract_child

        return extract_child(self, arch, self)

    def search_flops(self, input_size: int = 32):
        """``(flops, bits)``, each ``(decisions, options)``: FLOPs (2 MACs) of every (op, bits) option over the 3N
        cells on an ``input_size``^2 image, and its bit-width (0 for ops without bits)."""
        from nastk.quantization.quantnas import option_flops

        if self._flops is None or self._flops[0] != input_size:
            self._flops = (input_size, option_flops(self, (1, 3, input_size, input_size)))
        return self._flops[1]

    def expected_cost(self, weights: torch.Tensor, metric: str = "bitops") -> torch.Tensor:
        """Search-time BitOps (QuantNAS' linear-in-bits formula) of the per-decision probabilities ``weights``."""
        from nastk.quantization.quantnas import search_bitops

        if metric != "bitops":
            raise ConfigError(f"the qnas-nb201 supernet's expected_cost knows 'bitops', not {metric!r}")
        flops, bits = self.search_flops()
        return search_bitops(weights, flops.to(weights.device), bits.to(weights.device))
