"""Networks of the GAN spaces (search_spaces/gan.py): stand-alone G and D from a genotype, their
weight-sharing supernets, and EAGAN's fixed stage-1 discriminator.

A stand-alone network and its supernet share one cell class: a cell's edges are either the chosen
ops (stand-alone) or :class:`~nastk.supernet.CandidateOps` holding every option (supernet), so the
supernet with a path computes what the stand-alone network of that genotype computes.
Generators use pre-activation BN-ReLU-conv ops with batch statistics (no running buffers, so an EMA
of the parameters is the whole EMA generator); discriminators have spectral norm on every weight and
no BatchNorm (methods.md 5.1).
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import spectral_norm

from nastk.architecture import Architecture
from nastk.supernet import CandidateOps, Supernet, decisions_of
from search_spaces.gan import DOWN_OPS, NORMAL_OPS, ROW, UP_OPS


class Zero(nn.Module):
    """The ``none`` op: contributes nothing (its term is dropped from the node's sum)."""

    def forward(self, x):
        return None


def _sum(terms):
    terms = [t for t in terms if t is not None]
    out = terms[0]
    for t in terms[1:]:
        out = out + t
    return out


def inherited_state(supernet: nn.Module, prefix: str = "body.") -> dict:
    """The state dict of the stand-alone network of the supernet's active path: every edge's active
    candidate's tensors under the stand-alone network's names (``edges.j.candidates.k.`` -> ``edges.j.``)."""
    import re

    active = {}
    for name, module in supernet.named_modules():
        if isinstance(module, CandidateOps):
            active[name[len(prefix):] if name.startswith(prefix) else name] = module.active
    out = {}
    for name, tensor in supernet.state_dict().items():
        name = name[len(prefix):] if name.startswith(prefix) else name
        match = re.match(r"(.*edges\.\d+)\.candidates\.(\d+)\.(.*)", name)
        if match:
            if active.get(match.group(1)) != int(match.group(2)):
                continue
            name = f"{match.group(1)}.{match.group(3)}"
        out[name] = tensor.detach().clone()
    return out


def _active(edge: nn.Module) -> nn.Module:
    """The module an edge runs now (a supernet edge's active candidate)."""
    return edge.candidates[edge.active] if isinstance(edge, CandidateOps) else edge


# --- generator ops -----------------------------------------------------------------------------------
def _bn_relu_conv(channels: int, kernel: int, dilation: int = 1) -> nn.Module:
    return nn.Sequential(nn.BatchNorm2d(channels, track_running_stats=False), nn.ReLU(),
                         nn.Conv2d(channels, channels, kernel, padding=dilation * (kernel - 1) // 2, dilation=dilation))


def generator_normal_op(name: str, channels: int) -> nn.Module:
    kernels = {"conv1x1": (1, 1), "conv3x3": (3, 1), "conv5x5": (5, 1), "dil_conv3x3": (3, 2), "dil_conv5x5": (5, 2)}
    if name == "none":
        return Zero()
    if name == "skip":
        return nn.Identity()
    return _bn_relu_conv(channels, *kernels[name])


def up_op(name: str, channels: int) -> nn.Module:
    if name == "deconv":
        return nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1)
    return nn.Upsample(scale_factor=2, mode=name, **({"align_corners": False} if name == "bilinear" else {}))


class GeneratorCell(nn.Module):
    """u0, u1 = up0(x), up1(x); c = op2(u0) + op3(u1) (+ earlier cells' c, up-sampled, 1x1 conv);
    out = op4(u0) + op5(u1) + op6(c)."""

    def __init__(self, edges: Sequence[nn.Module], channels: int, earlier_cells: int):
        super().__init__()
        self.edges = nn.ModuleList(edges)
        self.skips = nn.ModuleList(nn.Conv2d(channels, channels, 1) for _ in range(earlier_cells))

    def forward(self, x, earlier: Sequence[torch.Tensor]):
        e = self.edges
        u0, u1 = e[0](x), e[1](x)
        c = _sum([e[2](u0), e[3](u1)] + [skip(F.interpolate(h, size=u0.shape[-2:], mode="nearest"))
                                          for skip, h in zip(self.skips, earlier)])
        return _sum([e[4](u0), e[5](u1), e[6](c)]), c


class _GeneratorBody(nn.Module):
    """The generator skeleton around cells made by ``edge(cell, j)``: latent split, cells, output head."""

    def __init__(self, config: dict, width: int, latent_per_cell: int, edge):
        super().__init__()
        self.cells_count, self.bottom = config["cells"], config["bottom_width"]
        self.width, self.latent_per_cell = width, latent_per_cell
        self.latent_dim = self.cells_count * latent_per_cell
        #: chunk k of z -> the input of cell k (k = 0) or a map added to it (k >= 1)
        self.latent = nn.ModuleList(nn.Linear(latent_per_cell, (self.bottom * 2 ** k) ** 2 * width)
                                    for k in range(self.cells_count))
        self.cells = nn.ModuleList(GeneratorCell([edge(k, j) for j in range(ROW)], width, k)
                                   for k in range(self.cells_count))
        self.head = nn.Sequential(nn.BatchNorm2d(width, track_running_stats=False), nn.ReLU(),
                                  nn.Conv2d(width, config["channels"], 3, padding=1), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        chunks = z.flatten(1).split(self.latent_per_cell, dim=1)
        h, earlier = None, []
        for k, (cell, linear) in enumerate(zip(self.cells, self.latent)):
            side = self.bottom * 2 ** k
            injected = linear(chunks[k]).view(len(z), self.width, side, side)
            h = injected if h is None else h + injected
            h, c = cell(h, earlier)
            earlier.append(c)
        return self.head(h)


class Generator(_GeneratorBody):
    """The stand-alone generator of a (cells x 7) genotype matrix."""

    def __init__(self, matrix: Sequence[Sequence[int]], config: dict, width: int, latent_per_cell: int):
        def edge(k, j):
            value = int(matrix[k][j])
            return up_op(UP_OPS[value], width) if j < 2 else generator_normal_op(NORMAL_OPS[value], width)

        super().__init__(config, width, latent_per_cell, edge)


class GeneratorSupernet(Supernet):
    """Every edge of every cell holds all its options (one decision per genotype element)."""

    def __init__(self, space, width: int, latent_per_cell: int):
        super().__init__(space, decisions_of(space))
        names = space.get_choice_model().names

        def edge(k, j):
            ops = [up_op(o, width) for o in UP_OPS] if j < 2 else [generator_normal_op(o, width) for o in NORMAL_OPS]
            return CandidateOps(names[k * ROW + j], ops)

        self.body = _GeneratorBody(space.config, width, latent_per_cell, edge)
        self.latent_dim = self.body.latent_dim
        self.cell_width, self.latent_per_cell = width, latent_per_cell

    def extract(self, arch) -> nn.Module:
        """The stand-alone generator of ``arch`` with the supernet's weights (the same function)."""
        arch = arch if isinstance(arch, Architecture) else self.arch_of_path(arch)
        self.set_active(arch)
        net = Generator(self.space.matrix(arch), self.space.config, self.cell_width, self.latent_per_cell)
        net.load_state_dict(inherited_state(self))
        return net

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z)


# --- discriminator ops -------------------------------------------------------------------------------
def _relu_sn_conv(channels: int, kernel: int, dilation: int = 1, stride: int = 1) -> nn.Module:
    return nn.Sequential(nn.ReLU(), spectral_norm(nn.Conv2d(channels, channels, kernel, stride=stride,
                                                            padding=dilation * (kernel - 1) // 2, dilation=dilation)))


_KERNELS = {"conv1x1": (1, 1), "conv3x3": (3, 1), "conv5x5": (5, 1), "dil_conv3x3": (3, 2), "dil_conv5x5": (5, 2)}


def discriminator_normal_op(name: str, channels: int) -> nn.Module:
    if name == "none":
        return Zero()
    if name == "skip":
        return nn.Identity()
    return _relu_sn_conv(channels, *_KERNELS[name])


def down_op(name: Optional[str], channels: int) -> nn.Module:
    """``None``: no down-sampling (element 5 = -1)."""
    if name is None:
        return nn.Identity()
    if name == "avg_pool":
        return nn.AvgPool2d(2)
    if name == "max_pool":
        return nn.MaxPool2d(2)
    return _relu_sn_conv(channels, *_KERNELS[name], stride=2)


class DiscriminatorCell(nn.Module):
    """n1 = op0(x); n2 = op1(x) + op2(n1); n3 = op3(x) + op4(n2); out = down(n3) + shortcut(x)
    (both identity when the cell does not down-sample)."""

    def __init__(self, edges: Sequence[nn.Module]):
        super().__init__()
        self.edges = nn.ModuleList(edges)

    def forward(self, x):
        e = self.edges
        n1 = e[0](x)
        n2 = _sum([e[1](x), e[2](n1)])
        n3 = _sum([e[3](x), e[4](n2)])
        if isinstance(_active(e[5]), nn.Identity):
            return n3 + x
        return e[5](n3) + e[6](x)


class _DiscriminatorBody(nn.Module):
    def __init__(self, config: dict, width: int, edge):
        super().__init__()
        self.stem = spectral_norm(nn.Conv2d(config["channels"], width, 3, padding=1))
        self.cells = nn.Sequential(*[DiscriminatorCell([edge(k, j) for j in range(ROW)])
                                     for k in range(config["cells"])])
        self.linear = spectral_norm(nn.Linear(width, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.cells(self.stem(x)))
        return self.linear(h.sum(dim=(2, 3)))


class Discriminator(_DiscriminatorBody):
    """The stand-alone discriminator of a (cells x 7) genotype matrix (-1 = inactive)."""

    def __init__(self, matrix: Sequence[Sequence[int]], config: dict, width: int):
        def edge(k, j):
            value = int(matrix[k][j])
            if j < 5:
                return discriminator_normal_op(NORMAL_OPS[value], width)
            return down_op(DOWN_OPS[value] if value >= 0 else None, width)

        super().__init__(config, width, edge)


class DiscriminatorSupernet(Supernet):
    def __init__(self, space, width: int):
        super().__init__(space, decisions_of(space))
        names = space.get_choice_model().names

        def edge(k, j):
            name = names[k * ROW + j]
            if j == 0:
                return CandidateOps(name, [discriminator_normal_op(o, width) for o in NORMAL_OPS[1:]])
            if j < 5:
                return CandidateOps(name, [discriminator_normal_op(o, width) for o in NORMAL_OPS])
            return CandidateOps(name, ([down_op(None, width)] if j == 5 else []) + [down_op(o, width) for o in DOWN_OPS])

        self.body = _DiscriminatorBody(space.config, width, edge)
        self.cell_width = width

    def extract(self, arch) -> nn.Module:
        """The stand-alone discriminator of ``arch`` with the supernet's weights."""
        arch = arch if isinstance(arch, Architecture) else self.arch_of_path(arch)
        self.set_active(arch)
        net = Discriminator(self.space.matrix(arch), self.space.config, self.cell_width)
        net.load_state_dict(inherited_state(self))
        return net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class FixedDiscriminator(nn.Module):
    """EAGAN's stage-1 ``simple_Discriminator``, sized to the image: log2(size) 4x4 stride-2 convs (64,
    then 128 channels), BN before the LeakyReLU(0.2) of the 1st, 3rd and 5th, LeakyReLU after the
    others, sum-pool, a spectral-normalised linear."""

    def __init__(self, channels: int, image_size: int, width: int = 64):
        super().__init__()
        layers: List[nn.Module] = []
        in_channels = channels
        for i in range(int(round(math.log2(image_size)))):
            out_channels = width if i == 0 else 2 * width
            layers.append(nn.Conv2d(in_channels, out_channels, 4, stride=2, padding=1))
            if i % 2 == 0:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.LeakyReLU(0.2))
            in_channels = out_channels
        self.body = nn.Sequential(*layers)
        self.linear = spectral_norm(nn.Linear(in_channels, 1))

    def forward(self, x):
        return self.linear(self.body(x).sum(dim=(2, 3)))
