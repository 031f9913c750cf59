"""Zero-cost proxies: score an untrained network from one batch (methods.md sections 7 and 16).

``compute_proxies(model, (x, y), names, device, seed)`` returns a :class:`ProxyScores` with the
network-level ``scores`` and per-layer ``layerwise`` values; ``PROXIES`` holds each proxy's
metadata (:class:`ProxySpec`).
"""
from nastk.proxies.registry import PROXIES, ProxySpec, get_proxy, proxy_names

#: names from :mod:`nastk.proxies.compute`, which imports torch: loaded on first use, so that the
#: registry (e.g. for ``nastk --help``) stays cheap
_COMPUTE = ("ProxyScores", "compute_proxies", "group_by_pass", "nan_last")


def __getattr__(name):
    if name in _COMPUTE:
        from nastk.proxies import compute

        return getattr(compute, name)
    raise AttributeError(f"module 'nastk.proxies' has no attribute {name!r}")

__all__ = ["PROXIES", "ProxySpec", "ProxyScores", "compute_proxies", "get_proxy", "group_by_pass", "nan_last",
           "proxy_names"]
