"""Proxies that need no data pass: size baselines and weight norms."""
from __future__ import annotations

from typing import Dict, Sequence

import torch

from nastk.cost import count_flops, count_parameters
from nastk.proxies.layers import ProxyInput, per_layer


def run(inp: ProxyInput, names: Sequence[str]) -> Dict[str, object]:
    out: Dict[str, object] = {}
    if "params" in names:
        out["params"] = float(count_parameters(inp.model))
    if "flops" in names:
        out["flops"] = float(count_flops(inp.model, input_size=int(inp.x.shape[-1]), channels=int(inp.x.shape[1])))
    if "l2_norm" in names:
        with torch.no_grad():
            out["l2_norm"] = per_layer(module.weight.norm() for _, module in inp.layers)
    return out
