"""ParZC (AAAI 2025, methods.md 8.2): a learned proxy from layer-wise zero-cost statistics and the cell graph.

Two branches produce one token per NB201 edge (6 tokens of width ``d_model``), which are summed and
read out by a transformer encoder:

* **graph branch** (a simplified PINAT): op embedding of each edge + a positional term, a linear map
  of that edge's row of the Laplacian L = D - A of the cell's line graph (edge i -> edge j when i ends
  where j starts), then dropout and LayerNorm. Simplified against the spec: the PITE branch (three
  GATConv layers over op one-hots) is left out, and since every NB201 cell has all six edges the
  Laplacian is the same for all architectures, i.e. it acts as a fixed positional encoding.
* **MABN** (the Bayesian MLP-Mixer over x_zc, the concatenated, zero-padded per-layer grad_norm,
  snip and synflow values): Linear to 256, 16 patches of 16, a *Bayesian* patch embedding, mixer
  blocks, LayerNorm, mean over patches, a *Bayesian* head to 6 x d_model, added to the graph tokens.
  Bayesian linear layers sample W = mu + softplus(rho) * eps at every forward pass (rho starts at -5,
  no bias, no KL term, as in the ParZC code), so repeated forward passes give a predictive spread.

``token_mixing=False`` (default) reproduces the released mixer, whose two MLPs both act on the
feature dimension; ``True`` makes the first MLP mix across the 16 patches, the paper's intent.
:data:`CONFIGS` holds ``small`` (CPU-sized, the default) and ``full`` (the published NB201 sizes; d_model
768 instead of 765 because torch's attention needs d_model divisible by the 6 heads).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Dict, Sequence

import numpy as np
import torch
from torch import nn

from nastk.errors import ConfigError

NUM_OPS = 5
NUM_EDGES = 6
RHO_INIT = -5.0


@dataclass(frozen=True)
class ParZCConfig:
    d_model: int = 128
    heads: int = 4
    layers: int = 2
    ffn: int = 256
    mixer_dim: int = 128
    mixer_blocks: int = 2
    patches: int = 16
    patch_size: int = 16
    dropout: float = 0.1
    bayesian: bool = True
    token_mixing: bool = False

    def to_dict(self) -> Dict[str, object]:
        return asdict(self)


CONFIGS: Dict[str, ParZCConfig] = {
    "small": ParZCConfig(),
    "full": ParZCConfig(d_model=768, heads=6, layers=4, ffn=338, mixer_dim=512, mixer_blocks=4),
}


def config(name: str = "small", **overrides) -> ParZCConfig:
    if name not in CONFIGS:
        raise ConfigError(f"unknown ParZC configuration {name!r}; choose from {', '.join(CONFIGS)}")
    return replace(CONFIGS[name], **overrides)


class BayesianLinear(nn.Module):
    """y = x W^T with W = mu + softplus(rho) * eps, eps ~ N(0, 1) drawn at every forward pass."""

    def __init__(self, in_features: int, out_features: int, rho_init: float = RHO_INIT):
        super().__init__()
        self.mu = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.kaiming_uniform_(self.mu, a=math.sqrt(5))  # nn.Linear's default
        self.rho = nn.Parameter(torch.full((out_features, in_features), float(rho_init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sigma = nn.functional.softplus(self.rho)
        return nn.functional.linear(x, self.mu + sigma * torch.randn_like(sigma))


def _linear(in_features: int, out_features: int, bayesian: bool) -> nn.Module:
    return BayesianLinear(in_features, out_features) if bayesian else nn.Linear(in_features, out_features, bias=False)


class FeedForward(nn.Sequential):
    def __init__(self, width: int, expansion: float):
        hidden = max(1, int(width * expansion))
        super().__init__(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))


class MixerBlock(nn.Module):
    """Two pre-LayerNorm residual MLPs (expansion 4 and 0.5); the first optionally mixes tokens."""

    def __init__(self, patches: int, width: int, token_mixing: bool):
        super().__init__()
        self.token_mixing = token_mixing
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.mlp1 = FeedForward(patches if token_mixing else width, 4)
        self.mlp2 = FeedForward(width, 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (batch, patches, width)
        if self.token_mixing:
            x = x + self.mlp1(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        else:
            x = x + self.mlp1(self.norm1(x))
        return x + self.mlp2(self.norm2(x))


class MABN(nn.Module):
    """The Bayesian MLP-Mixer over the zero-cost statistics; returns (batch, 6, d_model)."""

    def __init__(self, in_features: int, cfg: ParZCConfig):
        super().__init__()
        self.cfg = cfg
        self.project = nn.Linear(in_features, cfg.patches * cfg.patch_size)
        self.embed = _linear(cfg.patch_size, cfg.mixer_dim, cfg.bayesian)
        self.blocks = nn.Sequential(*[MixerBlock(cfg.patches, cfg.mixer_dim, cfg.token_mixing)
                                      for _ in range(cfg.mixer_blocks)])
        self.norm = nn.LayerNorm(cfg.mixer_dim)
        self.head = _linear(cfg.mixer_dim, NUM_EDGES * cfg.d_model, cfg.bayesian)

    def forward(self, x_zc: torch.Tensor) -> torch.Tensor:
        patches = self.project(x_zc).view(len(x_zc), self.cfg.patches, self.cfg.patch_size)
        mixed = self.norm(self.blocks(self.embed(patches))).mean(dim=1)
        return self.head(mixed).view(len(x_zc), NUM_EDGES, self.cfg.d_model)


def line_graph_laplacian() -> torch.Tensor:
    """L = D - A of the NB201 cell's edges (edge i -> edge j when i's target is j's source), undirected."""
    from nastk.benchmarks.nb201 import EDGES

    adjacency = torch.zeros(NUM_EDGES, NUM_EDGES)
    for i, (target_i, _) in enumerate(EDGES):
        for j, (_, source_j) in enumerate(EDGES):
            if target_i == source_j:
                adjacency[i, j] = adjacency[j, i] = 1.0
    return torch.diag(adjacency.sum(1)) - adjacency


class GraphEncoder(nn.Module):
    """Simplified PINAT node encoder: op embedding + Laplacian positional term -> (batch, 6, d_model)."""

    def __init__(self, cfg: ParZCConfig):
        super().__init__()
        self.embedding = nn.Embedding(NUM_OPS, cfg.d_model)
        self.register_buffer("laplacian", line_graph_laplacian())
        self.position = nn.Sequential(nn.Linear(NUM_EDGES, NUM_OPS + 1), nn.Linear(NUM_OPS + 1, cfg.d_model))
        self.dropout = nn.Dropout(cfg.dropout)
        self.norm = nn.LayerNorm(cfg.d_model)

    def forward(self, ops: torch.Tensor) -> torch.Tensor:
        return self.norm(self.dropout(self.embedding(ops) + self.position(self.laplacian)))


class ParZC(nn.Module):
    """score = readout(transformer(graph tokens + MABN(x_zc)))."""

    def __init__(self, in_features: int, cfg: ParZCConfig = CONFIGS["small"]):
        super().__init__()
        self.cfg = cfg
        self.graph = GraphEncoder(cfg)
        self.mabn = MABN(in_features, cfg)
        layer = nn.TransformerEncoderLayer(cfg.d_model, cfg.heads, cfg.ffn, cfg.dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.readout = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_model, bias=False), nn.Dropout(cfg.dropout),
                                     nn.Linear(cfg.d_model, 1, bias=False))

    def forward(self, x_zc: torch.Tensor, ops: torch.Tensor) -> torch.Tensor:
        tokens = self.encoder(self.graph(ops) + self.mabn(x_zc))
        return self.readout(tokens.mean(dim=1)).squeeze(-1)


class ZCMLP(nn.Module):
    """The plain-MLP baseline on the same x_zc (no graph, no Bayesian layers); ignores ``ops``."""

    def __init__(self, in_features: int, hidden: int = 256, dropout: float = 0.1):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, 1))

    def forward(self, x_zc: torch.Tensor, ops: torch.Tensor) -> torch.Tensor:
        return self.net(x_zc).squeeze(-1)


def op_indices(space, archs: Sequence) -> np.ndarray:
    """(n, 6) op indices of NB201 architectures, the graph branch's input."""
    return np.array([space.op_indices(arch) for arch in archs], dtype=np.int64).reshape(len(archs), NUM_EDGES)
