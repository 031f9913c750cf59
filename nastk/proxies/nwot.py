"""NASWOT's kernel of binary ReLU activation codes (Mellor et al.).

K_ij counts the ReLU units on which inputs i and j agree (both on or both off); a network that
separates its inputs well has a K far from singular, so the score is log|det K|. K is accumulated
layer by layer, so the codes of the whole network are never held at once.

Codes are taken from the inputs of every ``nn.ReLU`` during the train-mode forward (BatchNorm
normalises with the batch's statistics), as the NASWOT paper's code does. alethiometer 1.1.2 (a
derivative of the zero-cost-nas library) runs the same kernel in eval mode, where a fresh network's
BatchNorm uses its initial running statistics, so its values differ from these (Spearman 0.77
over 30 NB201 networks). Eval mode alone does not explain all of it (nastk's kernel in eval mode still
differs by up to 6.5%); the rest is not yet pinned down (``docs/results/proxies_reference.md``).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

#: float32 matrix products of 0/1 codes are exact while a row has fewer units than this.
_EXACT_COLUMNS = 1 << 24


class CodeKernel:
    def __init__(self, batch: int, device):
        self.kernel = torch.zeros(batch, batch, dtype=torch.float64, device=device)

    def add(self, activation: torch.Tensor) -> None:
        codes = (activation.detach().reshape(len(activation), -1) > 0).to(torch.float32)
        for start in range(0, codes.shape[1], _EXACT_COLUMNS):
            block = codes[:, start:start + _EXACT_COLUMNS]
            both_on = (block @ block.T).double()
            on = block.sum(1).double()
            # agreements = both on + both off = both_on + (m - on_i - on_j + both_on)
            self.kernel += 2.0 * both_on - on[:, None] - on[None, :] + block.shape[1]

    def hooks(self, model: nn.Module):
        """Forward pre-hooks on every ReLU (pre-hooks, so in-place ReLUs are seen before they act)."""
        return [module.register_forward_pre_hook(lambda _m, inputs: self.add(inputs[0]))
                for module in model.modules() if isinstance(module, nn.ReLU)]

    def score(self) -> float:
        return self.log_determinant(self.kernel)

    @staticmethod
    def log_determinant(kernel: torch.Tensor) -> float:
        """log|det K| (NaN for a singular K): the NASWOT score."""
        sign, logdet = np.linalg.slogdet(kernel.cpu().numpy())
        return float(logdet) if sign != 0 else float("nan")
