"""What a pass is: one piece of work on a network whose result every proxy of that pass reads.

A pass class (registered in :data:`nastk.proxies.registry.PASSES`) computes, with :meth:`ProxyPass.run`,
an instance of itself holding what it computed (weights, gradients, ...). The pieces that cost extra
work are listed in ``OPTIONAL`` and computed only when a requested proxy declares it needs them, so
running a pass for one cheap proxy does not pay for the expensive pieces another proxy would read.
"""
from __future__ import annotations

from typing import Any, Callable, FrozenSet, Tuple

from nastk.proxies.layers import ProxyInput


class ProxyPass:
    """Base class of pass results. Subclasses define ``run`` and their attributes (documented there)."""

    #: Optional pieces this pass computes only on request (a proxy's ``needs``).
    OPTIONAL: Tuple[str, ...] = ()

    @classmethod
    def run(cls, inp: ProxyInput, needs: FrozenSet[str]) -> "ProxyPass":
        """The pass on ``inp``'s network and batch, computing the optional pieces in ``needs``."""
        raise NotImplementedError

    def shared(self, key: str, compute: Callable[[], Any]) -> Any:
        """``compute()``, evaluated once per pass result: a value several proxies derive the same way
        (e.g. the per-channel Fisher values of ``fisher`` and ``fisher_channel_sum``)."""
        memo = self.__dict__.setdefault("_shared", {})
        if key not in memo:
            memo[key] = compute()
        return memo[key]
